//! WebSockets served from an event loop: the callbacks, and the same protocol, limits,
//! keepalive and drain as a connection in a task of its own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::event_loop::{EventLoop, Handler, Socket};
use switchboard::http::Request;
use switchboard::tls::{ClientTls, ServerTls};
use switchboard::{CloseCode, ConnectOptions, Message, Metrics, Server, ServerBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

mod support;
use support::{UPGRADE_REQUEST, read_to_end};

/// What the handler's callbacks saw, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// Echoes every message; answers "path" with the request's path; records its callbacks. Its
/// `open` queues `greeting` bytes, enough to make output wait for a peer that does not read.
#[derive(Default)]
struct Echo {
    seen: Seen,
    greeting: usize,
}

impl Handler for Echo {
    type State = String;

    fn open(&self, socket: &mut Socket<'_>, request: &Request<()>) -> String {
        self.seen.lock().unwrap().push("open".into());
        if self.greeting > 0 {
            socket
                .send(Message::binary(vec![1u8; self.greeting]))
                .unwrap();
        }
        request.uri().path().to_owned()
    }

    fn message(&self, path: &mut String, socket: &mut Socket<'_>, message: Message) {
        let reply = match &message {
            Message::Text(text) if text.as_str() == "path" => Message::text(path.clone()),
            _ => message,
        };
        let _ = socket.send(reply);
    }

    fn drain(&self, _: &mut String, socket: &mut Socket<'_>) {
        self.seen.lock().unwrap().push("drain".into());
        let _ = socket.send(Message::text("drained"));
    }

    fn close(&self, _: String, ending: Option<Result<Message, switchboard::Error>>) {
        let ending = match ending {
            Some(Ok(Message::Close(Some(frame)))) => format!("close {}", frame.code.0),
            Some(Ok(other)) => format!("close {other:?}"),
            Some(Err(e)) => format!("error {e}"),
            None => "gone".into(),
        };
        self.seen.lock().unwrap().push(ending);
    }
}

async fn start(builder: ServerBuilder, echo: Echo) -> (SocketAddr, Metrics) {
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics().clone();
    let echo = EventLoop::new(echo);
    tokio::spawn(server.serve(move |ws, request| echo.serve(ws, request)));
    (addr, metrics)
}

/// Waits until the handler has seen an event that starts with `event`.
async fn wait_for(seen: &Seen, event: &str) -> Vec<String> {
    timeout(Duration::from_secs(5), async {
        loop {
            let now = seen.lock().unwrap().clone();
            if now.iter().any(|e| e.starts_with(event)) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {event:?} in {:?}", seen.lock().unwrap()))
}

/// Waits until the server has counted a close with `code` (it counts once the connection is
/// over, which may be after the peer has read the Close).
async fn counted(metrics: &Metrics, code: u16) {
    timeout(Duration::from_secs(5), async {
        while metrics.closes(code) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no close {code} counted"));
    assert_eq!(metrics.closes(code), 1);
}

/// A client that completed the handshake by hand, for frames no well-behaved client sends.
async fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(UPGRADE_REQUEST.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    stream
}

#[tokio::test]
async fn messages_come_back_in_order_whole_and_at_any_time() {
    let (addr, _) = start(Server::builder(), Echo::default()).await;
    let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/room"))
        .await
        .unwrap();
    ws.send(Message::text("path")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("/room"));
    // Long after the handshake: the socket's next event wakes the loop.
    tokio::time::sleep(Duration::from_millis(50)).await;
    ws.send(Message::text("later")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("later"));
    // Many at once, and one that spans many reads.
    for i in 0..500 {
        ws.feed(Message::text(format!("m{i}"))).unwrap();
    }
    let big = Message::binary((0..1 << 20).map(|i| i as u8).collect::<Vec<u8>>());
    ws.feed(big.clone()).unwrap();
    ws.flush().await.unwrap();
    for i in 0..500 {
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text(format!("m{i}"))
        );
    }
    assert_eq!(ws.recv().await.unwrap().unwrap(), big);
}

#[tokio::test]
async fn the_handler_hears_of_the_open_and_of_the_peers_close() {
    let echo = Echo::default();
    let seen = echo.seen.clone();
    let (addr, metrics) = start(Server::builder(), echo).await;
    let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.close(CloseCode(4001), "bye").await.unwrap();
    assert_eq!(wait_for(&seen, "close 4001").await, ["open", "close 4001"]);
    counted(&metrics, 4001).await;
    assert_eq!(metrics.connections_open(), 0);
}

#[tokio::test]
async fn a_protocol_violation_is_closed_with_1002() {
    let echo = Echo::default();
    let seen = echo.seen.clone();
    let (addr, metrics) = start(Server::builder(), echo).await;
    let mut raw = raw_client(addr).await;
    // A text frame without a mask: clients must mask (RFC 6455 §5.1).
    raw.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let frames = timeout(Duration::from_secs(5), read_to_end(&mut raw))
        .await
        .unwrap();
    assert_eq!(frames[0], 0x88, "a Close: {frames:02x?}");
    assert_eq!(&frames[2..4], &1002u16.to_be_bytes());
    drop(raw);
    let seen = wait_for(&seen, "error").await;
    assert!(seen[1].contains("mask"), "{seen:?}");
    counted(&metrics, 1002).await;
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_with_1009() {
    let echo = Echo::default();
    let seen = echo.seen.clone();
    let (addr, metrics) = start(Server::builder().max_message_size(1024), echo).await;
    let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send(Message::binary(vec![0u8; 1024])).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::binary(vec![0u8; 1024])
    );
    ws.send(Message::binary(vec![0u8; 1025])).await.unwrap();
    let close = timeout(Duration::from_secs(5), ws.recv()).await.unwrap();
    assert!(
        matches!(&close, Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::MESSAGE_TOO_BIG),
        "{close:?}"
    );
    // The server reads until the client's end of the connection closes.
    drop(ws);
    let seen = wait_for(&seen, "error").await;
    assert!(seen[1].contains("exceeds the limit"), "{seen:?}");
    counted(&metrics, 1009).await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_pinged_then_closed_with_1011() {
    let builder = Server::builder()
        .idle_timeout(Some(Duration::from_secs(30)))
        .pong_timeout(Duration::from_secs(10));
    let (addr, metrics) = start(builder, Echo::default()).await;
    let mut dead = raw_client(addr).await;
    // The deadlines reach the connection through the server's sweeper and the loop's wakers.
    let frames = read_to_end(&mut dead).await;
    assert_eq!(&frames[..2], &[0x89, 0x00], "a ping first: {frames:02x?}");
    assert_eq!(frames[2], 0x88, "then a Close: {frames:02x?}");
    assert_eq!(&frames[4..6], &1011u16.to_be_bytes());
    counted(&metrics, 1011).await;
}

#[tokio::test]
async fn output_that_waited_for_a_slow_reader_ends_with_drain() {
    let echo = Echo {
        greeting: 16 << 20,
        ..Echo::default()
    };
    let seen = echo.seen.clone();
    let (addr, _) = start(Server::builder(), echo).await;
    let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    // More than the sockets' buffers hold waits for the client to read.
    wait_for(&seen, "open").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!seen.lock().unwrap().contains(&"drain".to_owned()));
    let greeting = ws.recv().await.unwrap().unwrap();
    assert_eq!(greeting.len(), 16 << 20);
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("drained"));
    wait_for(&seen, "drain").await;
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001() {
    let server = Server::builder()
        .shutdown_grace(Duration::from_secs(10))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let echo = EventLoop::new(Echo::default());
    let serving = tokio::spawn(server.serve_with_shutdown(
        move |ws, request| echo.serve(ws, request),
        async {
            let _ = stopped.await;
        },
    ));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/"))
            .await
            .unwrap();
        ws.send(Message::text("ready")).await.unwrap();
        assert!(ws.recv().await.unwrap().is_ok());
        clients.push(ws);
    }
    stop.send(()).unwrap();
    for mut ws in clients {
        let close = timeout(Duration::from_secs(5), ws.recv()).await.unwrap();
        assert!(
            matches!(&close, Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::GOING_AWAY),
            "{close:?}"
        );
        assert!(ws.recv().await.is_none());
    }
    timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn after_the_grace_period_a_peer_that_never_closes_is_dropped() {
    let server = Server::builder()
        .shutdown_grace(Duration::from_secs(3))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let echo = Echo::default();
    let seen = echo.seen.clone();
    let echo = EventLoop::new(echo);
    let serving = tokio::spawn(server.serve_with_shutdown(
        move |ws, request| echo.serve(ws, request),
        async {
            let _ = stopped.await;
        },
    ));
    // Reads nothing and never answers the server's Close.
    let mut silent = raw_client(addr).await;
    wait_for(&seen, "open").await;
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    // The Close went out, then the connection was dropped.
    let frames = timeout(Duration::from_secs(5), read_to_end(&mut silent))
        .await
        .unwrap();
    assert_eq!(frames[0], 0x88, "{frames:02x?}");
    wait_for(&seen, "gone").await;
}

#[tokio::test]
async fn a_tls_websocket_runs_the_same_handler_in_a_task() {
    let tls = ServerTls::self_signed(["localhost"]).unwrap();
    let ca = tls.self_signed_pem().unwrap().to_owned();
    let echo = Echo::default();
    let seen = echo.seen.clone();
    let (addr, _) = start(Server::builder().tls(tls), echo).await;
    let options = ConnectOptions {
        tls: Some(ClientTls::from_ca_pem(ca.as_bytes()).unwrap()),
        ..ConnectOptions::default()
    };
    let url = format!("wss://localhost:{}/secure", addr.port());
    let (mut ws, _) = switchboard::connect_with(&url, &options).await.unwrap();
    ws.send(Message::text("path")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("/secure"));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    assert_eq!(wait_for(&seen, "close 1000").await, ["open", "close 1000"]);
}
