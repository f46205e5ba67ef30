//! A compression bomb against `switchboard serve`: small frames that inflate to gigabytes are
//! closed with 1009 after at most the message limit, and the server's memory stays bounded
//! (its peak resident set, read from /proc).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flate2::{Compress, Compression, FlushCompress};

/// The server's message limit in this test.
const LIMIT: usize = 1 << 20;
/// What each bomb inflates to.
const INFLATED: usize = 256 << 20;
/// Bombs sent at once, on as many connections.
const CONNECTIONS: usize = 16;

/// Kills the server when the test ends, however it ends.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--mode", "echo", "--listen", "127.0.0.1:0"])
        .args(["--max-message-size", &LIMIT.to_string()])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut server = Server {
        child,
        addr: String::new(),
    };
    for line in lines.by_ref() {
        let line = line.expect("server log");
        if let Some(at) = line.find("ws://") {
            server.addr = line[at + 5..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            break;
        }
    }
    assert!(
        !server.addr.is_empty(),
        "the server did not say where it listens"
    );
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    server
}

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field in /proc status")
}

/// A raw DEFLATE stream of `len` zero bytes, flushed and without the trailing 00 00 ff ff,
/// as a permessage-deflate payload.
fn bomb(len: usize) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let zeros = vec![0u8; 1 << 20];
    let mut out = Vec::with_capacity(len / 500);
    let mut left = len;
    while left > 0 {
        let chunk = &zeros[..left.min(zeros.len())];
        let before = compress.total_in();
        out.reserve(64 * 1024);
        compress
            .compress_vec(chunk, &mut out, FlushCompress::None)
            .unwrap();
        left -= (compress.total_in() - before) as usize;
    }
    loop {
        out.reserve(64 * 1024);
        compress
            .compress_vec(&[], &mut out, FlushCompress::Sync)
            .unwrap();
        if out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Opens a connection offering permessage-deflate and checks that the server accepts it.
fn open(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains(
            "sec-websocket-extensions: permessage-deflate; server_no_context_takeover\r\n"
        ),
        "{head}"
    );
    stream
}

/// Sends a compressed binary message (RSV1, FIN), masked with a zero key.
fn send_compressed(stream: &mut TcpStream, payload: &[u8]) {
    let mut frame = vec![0xc2, 0x80 | 127];
    frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    stream.write_all(&frame).unwrap();
    stream.write_all(payload).unwrap();
}

/// Reads the server's Close frame and returns its status code.
fn close_code(stream: &mut TcpStream) -> u16 {
    let mut head = [0; 2];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x88, "expected a Close frame");
    let mut body = vec![0; usize::from(head[1] & 0x7f)];
    stream.read_exact(&mut body).unwrap();
    u16::from_be_bytes([body[0], body[1]])
}

#[test]
fn compression_bombs_get_1009_and_memory_stays_bounded() {
    let server = start_server();
    let pid = server.child.id();
    let payload = bomb(INFLATED);
    assert!(payload.len() < INFLATED / 500, "{} bytes", payload.len());

    // A compressed message within the limit comes back.
    let mut stream = open(&server.addr);
    let small = bomb(1000);
    send_compressed(&mut stream, &small);
    let mut head = [0; 2];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[0] & 0x0f, 0x2, "a binary echo");
    drop(stream);
    std::thread::sleep(Duration::from_millis(200));
    let before = status_kib(pid, "VmRSS:");

    let bombers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let addr = server.addr.clone();
            let payload = payload.clone();
            std::thread::spawn(move || {
                let mut stream = open(&addr);
                send_compressed(&mut stream, &payload);
                close_code(&mut stream)
            })
        })
        .collect();
    for bomber in bombers {
        assert_eq!(bomber.join().unwrap(), 1009);
    }
    let peak = status_kib(pid, "VmHWM:");
    let grew_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "{CONNECTIONS} bombs of {} MiB each ({} KiB on the wire): peak RSS grew by {grew_mib} MiB",
        INFLATED >> 20,
        payload.len() / 1024
    );
    // Unbounded inflation would need CONNECTIONS * 256 MiB = 4 GiB. Each connection may hold
    // its frame and at most the limit inflated, plus zlib state and allocator slack.
    let bound_mib = (CONNECTIONS * (LIMIT + payload.len() + (2 << 20))) >> 20;
    assert!(grew_mib < bound_mib, "{grew_mib} MiB >= {bound_mib} MiB");
}
