//! tokio-tungstenite peer for the comparison: `tungstenite-peer HOST:PORT echo|broadcast`.
//!
//! Written as the crate's own examples are (`examples/echo-server.rs`: the read half forwarded
//! into the write half, which flushes once the input runs dry; `examples/server.rs`: a peer map
//! of unbounded channels for broadcast), on `#[tokio::main]`, with TCP_NODELAY as every server
//! in the comparison has it.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_channel::mpsc::{UnboundedSender, unbounded};
use futures_util::{StreamExt, TryStreamExt, future, pin_mut};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

type Peers = Arc<Mutex<HashMap<SocketAddr, UnboundedSender<Message>>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(mode)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: tungstenite-peer HOST:PORT echo|broadcast");
        std::process::exit(2);
    };
    let broadcast = match mode.as_str() {
        "echo" => false,
        "broadcast" => true,
        _ => {
            eprintln!("unknown mode {mode}");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(addr).await.expect("bind");
    println!(
        "listening on {}",
        listener.local_addr().expect("local address")
    );
    let _ = std::io::stdout().flush();
    let peers = Peers::default();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        if broadcast {
            tokio::spawn(broadcast_to_others(peers.clone(), stream, peer));
        } else {
            tokio::spawn(echo(stream));
        }
    }
}

async fn echo(stream: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
        .forward(write)
        .await;
}

async fn broadcast_to_others(peers: Peers, stream: TcpStream, addr: SocketAddr) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (tx, rx) = unbounded();
    peers.lock().unwrap().insert(addr, tx);
    let (outgoing, incoming) = ws.split();
    let from_this_one = incoming.try_for_each(|message| {
        if message.is_text() || message.is_binary() {
            let peers = peers.lock().unwrap();
            for (peer, tx) in peers.iter() {
                if peer != &addr {
                    let _ = tx.unbounded_send(message.clone());
                }
            }
        }
        future::ok(())
    });
    let to_this_one = rx.map(Ok).forward(outgoing);
    pin_mut!(from_this_one, to_this_one);
    future::select(from_this_one, to_this_one).await;
    peers.lock().unwrap().remove(&addr);
}
