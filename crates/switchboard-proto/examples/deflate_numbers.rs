//! Measures permessage-deflate on JSON-like messages of about 1 KiB: compression ratio,
//! throughput through a client/server pair of connections, and heap held per connection with
//! and without context takeover. Numbers for the design notes, not a test.
//!
//! ```text
//! cargo run --release -p switchboard-proto --example deflate_numbers
//! ```

use std::time::Instant;

use switchboard_proto::deflate::{DeflateConfig, DeflateParams};
use switchboard_proto::{Config, Connection, Message, Role};

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

/// A chat-like JSON message of about 1 KiB, different for every `n`.
fn message(n: u64) -> String {
    const WORDS: [&str; 24] = [
        "hello", "world", "meeting", "tomorrow", "deploy", "server", "client", "latency", "ok",
        "thanks", "review", "merge", "branch", "release", "night", "coffee", "bug", "fixed",
        "again", "soon", "channel", "presence", "history", "offset",
    ];
    let mut state = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::new();
    while text.len() < 830 {
        text.push_str(WORDS[(next() % 24) as usize]);
        text.push(' ');
    }
    format!(
        "{{\"op\":\"message\",\"channel\":\"room-{}\",\"offset\":{},\"epoch\":\"e{:x}\",\
         \"from\":{{\"user\":\"user-{}\",\"conn\":\"c-{:08x}\"}},\"data\":{{\"text\":\"{}\",\
         \"ts\":{},\"reply_to\":{},\"tags\":[\"t{}\",\"t{}\"]}}}}",
        next() % 16,
        1000 + n,
        next() % 0xffff,
        next() % 500,
        next() as u32,
        text.trim_end(),
        1_732_240_000_000 + n * 37,
        next() % 100_000,
        next() % 10,
        next() % 10,
    )
}

fn pair(params: Option<&DeflateParams>, config: &DeflateConfig) -> (Connection, Connection) {
    let mut server = Connection::new(Role::Server, Config::default());
    let mut client = Connection::new(Role::Client, Config::default());
    if let Some(params) = params {
        server.enable_deflate(params, config);
        client.enable_deflate(params, config);
    }
    (server, client)
}

/// Sends `messages` server -> client; returns wire bytes and the seconds it took.
fn run(
    params: Option<&DeflateParams>,
    config: &DeflateConfig,
    messages: &[String],
) -> (usize, f64) {
    let (mut server, mut client) = pair(params, config);
    let mut wire = 0;
    let start = Instant::now();
    for m in messages {
        server.send(Message::text(m.clone())).unwrap();
        while let Some(bytes) = server.poll_transmit() {
            wire += bytes.len();
            client.handle_input(&bytes);
        }
        let Some(Ok(Message::Text(_))) = client.poll_message() else {
            panic!("no message")
        };
    }
    (wire, start.elapsed().as_secs_f64())
}

/// Live heap per connection after each of `n` server connections received one compressed
/// message and sent one.
fn heap_per_connection(params: Option<&DeflateParams>, config: &DeflateConfig, n: usize) -> f64 {
    let inputs: Vec<Vec<u8>> = (0..n as u64)
        .map(|i| {
            let (_, mut client) = pair(params, config);
            client.send(Message::text(message(i))).unwrap();
            let mut wire = Vec::new();
            while let Some(bytes) = client.poll_transmit() {
                wire.extend_from_slice(&bytes);
            }
            wire
        })
        .collect();
    let before = alloc_count::snapshot();
    let mut servers = Vec::with_capacity(n);
    for (i, input) in inputs.iter().enumerate() {
        let (mut server, _) = pair(params, config);
        server.handle_input(input);
        let Some(Ok(Message::Text(_))) = server.poll_message() else {
            panic!("no message")
        };
        server.send(Message::text(message(i as u64 + 1))).unwrap();
        while server.poll_transmit().is_some() {}
        servers.push(server);
    }
    let per = alloc_count::snapshot().since(&before).live_bytes as f64 / n as f64;
    drop(servers);
    per
}

fn main() {
    let count = 20_000;
    let messages: Vec<String> = (0..count).map(message).collect();
    let plain: usize = messages.iter().map(String::len).sum();
    println!(
        "{count} JSON-like messages, {} bytes on average\n",
        plain / count as usize
    );
    let takeover = DeflateParams::default();
    let no_takeover = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    println!("{:<38} {:>8} {:>10} {:>9}", "", "ratio", "msgs/s", "MB/s");
    for level in [1, 3, 6] {
        let config = DeflateConfig {
            level,
            threshold: 0,
            ..DeflateConfig::default()
        };
        let cases: [(&str, Option<&DeflateParams>); 3] = [
            ("no deflate", None),
            ("deflate, context takeover", Some(&takeover)),
            ("deflate, no context takeover", Some(&no_takeover)),
        ];
        for (name, params) in cases {
            if params.is_none() && level != 1 {
                continue;
            }
            let (wire, secs) = run(params, &config, &messages);
            let label = match params {
                None => name.to_owned(),
                Some(_) => format!("{name}, level {level}"),
            };
            println!(
                "{:<38} {:>8.2} {:>10.0} {:>9.1}",
                label,
                plain as f64 / wire as f64,
                count as f64 / secs,
                plain as f64 / secs / 1e6,
            );
        }
    }
    println!("\nheap held per server connection after one message each way (1000 connections):");
    let config = DeflateConfig {
        threshold: 0,
        ..DeflateConfig::default()
    };
    for (name, params) in [
        ("no deflate", None),
        ("deflate, context takeover", Some(&takeover)),
        ("deflate, no context takeover", Some(&no_takeover)),
    ] {
        let per = heap_per_connection(params, &config, 1000);
        println!("  {name:<30} {:>9.1} KiB", per / 1024.0);
    }
}
