//! A server's limits and timeouts against misbehaving clients: slowloris, oversized heads, too
//! many connections, dead peers, readers that never read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::{
    Backpressure, CloseCode, ConnectOptions, HandshakeFailure, Message, ProtocolError, Sender,
    Server, ServerBuilder, TrySendError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

mod support;
use support::{UPGRADE_REQUEST, echo_server, read_to_end};

/// Reads an HTTP response head.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slowloris_trickling_a_byte_a_second_is_dropped_by_the_handshake_timeout() {
    let (addr, metrics) = echo_server(Server::builder()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        for byte in UPGRADE_REQUEST.bytes().take(UPGRADE_REQUEST.len() - 1) {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Never finishes the head.
        std::future::pending::<()>().await;
    };
    let closed = async {
        let mut buf = [0u8; 64];
        if let Ok(n @ 1..) = reader.read(&mut buf).await {
            panic!("the server answered a slowloris: {:?}", &buf[..n]);
        }
    };
    tokio::select! {
        () = trickle => unreachable!(),
        () = closed => {}
    }
    let elapsed = start.elapsed();
    // The default handshake timeout is 10 s: the request (over 150 bytes at a byte a second)
    // is cut off then, not earlier and not much later.
    assert!(
        elapsed >= Duration::from_secs(10),
        "dropped after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(11),
        "dropped after {elapsed:?}"
    );
    assert_eq!(metrics.handshake_failures(HandshakeFailure::Timeout), 1);
}

#[tokio::test]
async fn an_oversized_request_head_gets_431() {
    let (addr, metrics) = echo_server(Server::builder().max_head_size(4096)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let padding = format!("X-Padding: {}\r\n", "a".repeat(8000));
    let request = UPGRADE_REQUEST.replacen("\r\n\r\n", &format!("\r\n{padding}\r\n"), 1);
    // The server answers as soon as 4 KiB arrived without the end of the head; it may close
    // before the rest is written.
    let _ = stream.write_all(request.as_bytes()).await;
    let response = String::from_utf8_lossy(&read_to_end(&mut stream).await).into_owned();
    assert!(
        response.starts_with("HTTP/1.1 431 "),
        "unexpected answer: {response:?}"
    );
    assert_eq!(
        metrics.handshake_failures(HandshakeFailure::HeadTooLarge),
        1
    );
}

#[tokio::test]
async fn beyond_the_connection_limit_a_client_gets_503_until_one_leaves() {
    let (addr, metrics) = echo_server(Server::builder().max_connections(2)).await;
    let url = format!("ws://{addr}/");
    let (mut first, _) = switchboard::connect(&url).await.unwrap();
    let (mut second, _) = switchboard::connect(&url).await.unwrap();

    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(UPGRADE_REQUEST.as_bytes()).await.unwrap();
    let head = read_head(&mut third).await;
    assert!(head.starts_with("HTTP/1.1 503 "), "{head:?}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head:?}"
    );
    let err = switchboard::connect(&url).await.unwrap_err();
    assert!(
        err.to_string().contains("503"),
        "expected a 503 handshake error, got {err}"
    );
    assert_eq!(
        metrics.handshake_failures(HandshakeFailure::OverCapacity),
        2
    );

    // The two admitted connections work; when one leaves, a new client gets in.
    second.send(Message::text("still served")).await.unwrap();
    assert_eq!(
        second.recv().await.unwrap().unwrap(),
        Message::text("still served")
    );
    first.close(CloseCode::NORMAL, "").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match switchboard::connect(&url).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("no room after a client left: {e}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_peer_that_never_answers_pings_is_closed() {
    let builder = Server::builder()
        .idle_timeout(Some(Duration::from_secs(30)))
        .pong_timeout(Duration::from_secs(10));
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics().clone();
    let outcome = Arc::new(Mutex::new(None));
    let seen = outcome.clone();
    tokio::spawn(server.serve(move |mut ws, _| {
        let seen = seen.clone();
        async move {
            let start = Instant::now();
            let result = ws.recv().await;
            *seen.lock().unwrap() = Some((result.map(|r| r.map_err(|e| e.to_string())), start));
        }
    }));

    // A client that completes the handshake and then never reads nor answers.
    let mut dead = TcpStream::connect(addr).await.unwrap();
    dead.write_all(UPGRADE_REQUEST.as_bytes()).await.unwrap();
    let head = read_head(&mut dead).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head:?}");
    let start = Instant::now();
    // Not reading would not stop the server's frames (the kernel buffers them); what matters
    // is that nothing comes back. Read them to see what the server sent.
    let frames = read_to_end(&mut dead).await;
    let elapsed = start.elapsed();

    // A ping after 30 s of silence, then a Close with 1011 10 s later.
    assert_eq!(&frames[..2], &[0x89, 0x00], "ping first: {frames:02x?}");
    assert_eq!(frames[2], 0x88, "then close: {frames:02x?}");
    assert_eq!(&frames[4..6], &1011u16.to_be_bytes());
    // The server's end of the stream after the pong timeout...
    assert!(
        elapsed >= Duration::from_secs(40),
        "closed after {elapsed:?}"
    );
    assert!(
        elapsed <= Duration::from_secs(41),
        "closed after {elapsed:?}"
    );
    // ...and the end of the connection at once: a peer that failed the keepalive is not
    // waited for (the close timeout, 5 s, is not spent on it).
    let (result, _) = timeout(Duration::from_secs(1), async {
        loop {
            if let Some(outcome) = outcome.lock().unwrap().take() {
                return outcome;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the handler ended as the Close went out");
    let err = result.expect("recv returned").unwrap_err();
    assert!(
        err.contains(&ProtocolError::KeepaliveTimeout.to_string()),
        "{err}"
    );
    assert_eq!(metrics.closes(1011), 1);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_answers_pings_stays_connected_while_silent() {
    let builder = Server::builder()
        .idle_timeout(Some(Duration::from_secs(30)))
        .pong_timeout(Duration::from_secs(10));
    let (addr, metrics) = echo_server(builder).await;
    let (ws, _) = switchboard::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    // The split driver answers pings while the application does nothing.
    let (sender, mut receiver) = ws.split();
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(!sender.is_closed());
    sender.send(Message::text("alive")).await.unwrap();
    let mut pings = 0;
    let echo = loop {
        match receiver.recv().await.unwrap().unwrap() {
            Message::Ping(_) => pings += 1,
            other => break other,
        }
    };
    assert_eq!(echo, Message::text("alive"));
    assert!(pings >= 5, "{pings} pings in 300 s");
    assert_eq!(metrics.connections_open(), 1);
}

/// A client socket with a small receive buffer that completes the handshake and never reads.
async fn non_reader(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(UPGRADE_REQUEST.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head:?}");
    stream
}

/// A server whose handler splits each connection and hands its sender to the test.
async fn broadcast_server(
    builder: ServerBuilder,
) -> (
    std::net::SocketAddr,
    switchboard::Metrics,
    tokio::sync::mpsc::UnboundedReceiver<Sender>,
) {
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics().clone();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |ws, _| {
        let tx = tx.clone();
        async move {
            let (sender, mut receiver) = ws.split();
            let _ = tx.send(sender);
            while receiver.recv().await.is_some() {}
        }
    }));
    (addr, metrics, rx)
}

const LIMIT: usize = 64 * 1024;

/// Publishes 4 KiB messages as fast as the connection takes them, checking the queue bound
/// after every one, until the queue is full. Returns how many were queued.
async fn flood(sender: &Sender) -> usize {
    let payload = vec![b'x'; 4096];
    let mut queued = 0;
    // 50,000 × 4 KiB = 200 MiB: far beyond any kernel socket buffer.
    for _ in 0..50_000 {
        match sender.try_send(Message::binary(payload.clone())) {
            Ok(()) => queued += 1,
            Err(TrySendError::Full) => return queued,
            Err(e) => panic!("{e} before the queue filled"),
        }
        assert!(
            sender.buffered_amount() <= LIMIT,
            "queue at {} bytes, limit {LIMIT}",
            sender.buffered_amount()
        );
        tokio::task::yield_now().await;
    }
    panic!("the queue never filled");
}

#[tokio::test]
async fn a_reader_that_never_reads_is_bounded_then_disconnected_with_1013() {
    let builder = Server::builder()
        .max_send_queue(LIMIT)
        .backpressure(Backpressure::Disconnect)
        .close_timeout(Duration::from_millis(200));
    let (addr, metrics, mut senders) = broadcast_server(builder).await;
    let _client = non_reader(addr).await;
    let sender = senders.recv().await.unwrap();
    let queued = timeout(Duration::from_secs(60), flood(&sender))
        .await
        .unwrap();
    assert!(queued > 0);
    assert!(sender.buffered_amount() <= LIMIT);
    assert_eq!(metrics.backpressure_disconnects(), 1);
    // The Close cannot reach a peer that does not read: the connection ends at the close
    // timeout, and its memory with it.
    timeout(Duration::from_secs(10), async {
        while !sender.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the connection ended");
    assert_eq!(
        sender.try_send(Message::text("late")),
        Err(TrySendError::Closed)
    );
    assert_eq!(metrics.closes(1013), 1);
}

#[tokio::test]
async fn under_the_drop_policy_a_slow_reader_misses_messages_but_stays() {
    let builder = Server::builder()
        .max_send_queue(LIMIT)
        .backpressure(Backpressure::Drop);
    let (addr, metrics, mut senders) = broadcast_server(builder).await;
    let _client = non_reader(addr).await;
    let sender = senders.recv().await.unwrap();
    timeout(Duration::from_secs(60), flood(&sender))
        .await
        .unwrap();
    for _ in 0..10 {
        assert_eq!(
            sender.try_send(Message::binary(vec![0u8; 4096])),
            Err(TrySendError::Full)
        );
        assert!(sender.buffered_amount() <= LIMIT);
    }
    assert!(metrics.backpressure_drops() >= 11);
    assert_eq!(metrics.backpressure_disconnects(), 0);
    assert!(!sender.is_closed());
}

#[tokio::test]
async fn close_with_reaches_a_reader_behind_a_full_queue_before_its_close() {
    let builder = Server::builder()
        .max_send_queue(LIMIT)
        .backpressure(Backpressure::Drop)
        .close_timeout(Duration::from_millis(200));
    let (addr, _metrics, mut senders) = broadcast_server(builder).await;
    let mut client = non_reader(addr).await;
    let sender = senders.recv().await.unwrap();
    timeout(Duration::from_secs(60), flood(&sender))
        .await
        .unwrap();
    // As large as the messages that filled the queue, so that it does not fit.
    let last = format!("come back in 500 ms{}", ".".repeat(4096));
    assert_eq!(
        sender.try_send(Message::text(last.clone())),
        Err(TrySendError::Full)
    );
    sender
        .close_with(
            Message::text(last.clone()),
            CloseCode::TRY_AGAIN_LATER,
            "too slow",
        )
        .unwrap();
    let received = timeout(Duration::from_secs(60), read_to_end(&mut client))
        .await
        .unwrap();
    // The text frame, then a Close frame with 1013 (0x03F5), at the end of the backlog.
    let text = received
        .windows(last.len())
        .rposition(|w| w == last.as_bytes())
        .expect("the last message arrived");
    let close = &received[text + last.len()..];
    assert_eq!(close[0], 0x88, "{close:?}");
    assert_eq!(&close[2..4], &[0x03, 0xF5], "{close:?}");
}

#[tokio::test]
async fn a_waiting_send_resumes_when_the_reader_catches_up() {
    let builder = Server::builder()
        .max_send_queue(LIMIT)
        .close_timeout(Duration::from_millis(200));
    let (addr, _metrics, mut senders) = broadcast_server(builder).await;
    let mut client = non_reader(addr).await;
    let sender = senders.recv().await.unwrap();
    // `send` waits for room instead of applying the policy: 8 MiB, more than the socket
    // buffers hold, stall until the client reads.
    const COUNT: usize = 2048;
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sending = tokio::spawn({
        let (sender, sent) = (sender.clone(), sent.clone());
        async move {
            for _ in 0..COUNT {
                sender.send(Message::binary(vec![b'x'; 4096])).await?;
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            sender.send(Message::text("after the backlog")).await
        }
    });
    let count = || sent.load(std::sync::atomic::Ordering::Relaxed);
    let stalled_at = timeout(Duration::from_secs(60), async {
        loop {
            let before = count();
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(sender.buffered_amount() <= LIMIT);
            if count() == before {
                return before;
            }
        }
    })
    .await
    .expect("sending stalls");
    assert!(stalled_at < COUNT, "every send completed without a reader");
    assert!(!sending.is_finished());
    // The sends complete once the client reads.
    let drain = tokio::spawn(async move { read_to_end(&mut client).await });
    timeout(Duration::from_secs(60), sending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    sender.close(CloseCode::NORMAL, "").unwrap();
    let received = timeout(Duration::from_secs(60), drain)
        .await
        .unwrap()
        .unwrap();
    let tail = b"after the backlog";
    assert!(received.windows(tail.len()).any(|w| w == tail));
    assert!(received.len() > COUNT * 4096);
}

#[tokio::test]
async fn the_close_timeout_is_configurable_on_the_client() {
    // A server that completes the handshake and then ignores everything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let (_ws, _request) = switchboard::accept(&mut stream).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut options = ConnectOptions::default();
    options.config.close_timeout = Duration::from_millis(100);
    let (mut ws, _) = switchboard::connect_with(&format!("ws://{addr}/"), &options)
        .await
        .unwrap();
    let start = std::time::Instant::now();
    let result = timeout(Duration::from_secs(5), ws.close(CloseCode::NORMAL, "")).await;
    assert!(matches!(result, Ok(Ok(()))), "{result:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    silent.abort();
}
