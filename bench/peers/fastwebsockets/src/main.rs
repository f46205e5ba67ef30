//! fastwebsockets peer for the comparison: `fastwebsockets-peer HOST:PORT echo|broadcast`.
//!
//! Echo is the crate's `examples/echo_server.rs` (hyper upgrade, `FragmentCollector`, a
//! current-thread runtime, `unconstrained` connection tasks); broadcast uses the split halves of
//! `examples/echo_server_split.rs`, a writer task per connection fed by a channel. TCP_NODELAY
//! is set, as every server in the comparison has it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write as _;
use std::rc::Rc;

use fastwebsockets::{
    FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError, upgrade,
};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Peers = Rc<RefCell<HashMap<u64, mpsc::UnboundedSender<(OpCode, Vec<u8>)>>>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(mode)) = (args.get(1).cloned(), args.get(2).cloned()) else {
        eprintln!("usage: fastwebsockets-peer HOST:PORT echo|broadcast");
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        println!(
            "listening on {}",
            listener.local_addr().expect("local address")
        );
        let _ = std::io::stdout().flush();
        let peers = Peers::default();
        let mut next_id = 0u64;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            next_id += 1;
            let id = next_id;
            let peers = peers.clone();
            tokio::task::spawn_local(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let service = service_fn(move |req| {
                    let peers = peers.clone();
                    async move { server_upgrade(req, broadcast.then_some((peers, id))) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades()
                    .await;
            });
        }
    });
}

fn server_upgrade(
    mut req: Request<Incoming>,
    broadcast: Option<(Peers, u64)>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn_local(async move {
        let result = match broadcast {
            None => tokio::task::unconstrained(echo(fut)).await,
            Some((peers, id)) => broadcast_to_others(fut, peers, id).await,
        };
        if let Err(e) = result {
            eprintln!("websocket connection: {e}");
        }
    });
    Ok(response)
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn broadcast_to_others(
    fut: upgrade::UpgradeFut,
    peers: Peers,
    id: u64,
) -> Result<(), WebSocketError> {
    let ws = fut.await?;
    let (rx, mut tx) = ws.split(tokio::io::split);
    let mut rx = FragmentCollectorRead::new(rx);
    let (queue, mut queued) = mpsc::unbounded_channel::<(OpCode, Vec<u8>)>();
    peers.borrow_mut().insert(id, queue.clone());
    let writer = tokio::task::spawn_local(async move {
        while let Some((opcode, data)) = queued.recv().await {
            let close = opcode == OpCode::Close;
            let frame = Frame::new(true, opcode, None, Payload::Owned(data));
            if tx.write_frame(frame).await.is_err() || close {
                break;
            }
        }
    });
    let result = loop {
        // Pongs and the reply to a Close (the "obligated" writes) go through the writer too.
        let mut obligated = |frame: Frame<'_>| {
            let sent = queue.send((frame.opcode, frame.payload.to_vec()));
            async move { sent.map_err(|_| WebSocketError::ConnectionClosed) }
        };
        let frame = match rx.read_frame(&mut obligated).await {
            Ok(frame) => frame,
            Err(e) => break Err(e),
        };
        match frame.opcode {
            OpCode::Close => break Ok(()),
            OpCode::Text | OpCode::Binary => {
                let data = frame.payload.to_vec();
                for (peer, queue) in peers.borrow().iter() {
                    if *peer != id {
                        let _ = queue.send((frame.opcode, data.clone()));
                    }
                }
            }
            _ => {}
        }
    };
    peers.borrow_mut().remove(&id);
    drop(queue);
    let _ = writer.await;
    result
}
