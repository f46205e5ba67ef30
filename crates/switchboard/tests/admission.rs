//! Who gets in and how fast: the limit of connections per client address (behind trusted
//! proxies too), the bound on handshakes under way, and what shutting down tells clients.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard::http::HeaderValue;
use switchboard::{
    ClientAddr, CloseCode, ConnectOptions, HandshakeFailure, Message, Metrics, Server,
    ServerBuilder,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::timeout;

/// A server whose handler sends the client its [`ClientAddr`], then echoes.
async fn address_server(builder: ServerBuilder) -> (SocketAddr, Metrics) {
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics().clone();
    tokio::spawn(server.serve(|mut ws, request| async move {
        let client = request.extensions().get::<ClientAddr>().map(|c| c.0);
        let _ = ws.send(Message::text(format!("{client:?}"))).await;
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_data() && ws.send(message).await.is_err() {
                break;
            }
        }
    }));
    (addr, metrics)
}

/// Connects with `X-Forwarded-For: forwarded`; returns the socket and the address the server
/// saw, or the handshake error's text.
async fn connect_as(
    addr: SocketAddr,
    forwarded: Option<&'static str>,
) -> Result<(switchboard::WebSocket<switchboard::MaybeTlsStream>, String), String> {
    let mut options = ConnectOptions::default();
    if let Some(forwarded) = forwarded {
        options
            .headers
            .insert("x-forwarded-for", HeaderValue::from_static(forwarded));
    }
    let url = format!("ws://{addr}/");
    let (mut ws, _) = switchboard::connect_with(&url, &options)
        .await
        .map_err(|e| e.to_string())?;
    match ws.recv().await {
        Some(Ok(Message::Text(seen))) => Ok((ws, seen.to_string())),
        other => panic!("expected the address, got {other:?}"),
    }
}

#[tokio::test]
async fn an_address_past_its_limit_gets_429_until_one_of_its_connections_leaves() {
    let builder = Server::builder().max_connections_per_address(Some(2));
    let (addr, metrics) = address_server(builder).await;
    let (first, seen) = connect_as(addr, None).await.unwrap();
    assert_eq!(seen, "Some(127.0.0.1)");
    let (_second, _) = connect_as(addr, None).await.unwrap();

    // Not read: the answer comes before the request.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut answer = Vec::new();
    timeout(Duration::from_secs(5), third.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 429 "), "{answer:?}");
    assert!(answer.contains("retry-after: 1"), "{answer:?}");
    assert!(answer.contains("too many connections from your address"));
    let err = connect_as(addr, None).await.unwrap_err();
    assert!(err.contains("429"), "{err}");
    assert_eq!(
        metrics.handshake_failures(HandshakeFailure::AddressLimit),
        2
    );

    drop(first);
    let admitted = async {
        loop {
            match connect_as(addr, None).await {
                Ok(connected) => return connected,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    timeout(Duration::from_secs(5), admitted).await.unwrap();
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_is_counted_and_forged_hops_are_not() {
    let builder = Server::builder()
        .max_connections_per_address(Some(1))
        .trusted_proxies(["127.0.0.0/8".parse().unwrap()]);
    let (addr, metrics) = address_server(builder).await;
    // The proxy appended the address it saw after what the client wrote.
    let (_a, seen) = connect_as(addr, Some("192.0.2.66, 203.0.113.5"))
        .await
        .unwrap();
    assert_eq!(seen, "Some(203.0.113.5)");
    let err = connect_as(addr, Some("203.0.113.5")).await.unwrap_err();
    assert!(err.contains("429"), "{err}");
    // Another client through the same proxy connection address gets in.
    let (_b, seen) = connect_as(addr, Some("203.0.113.6")).await.unwrap();
    assert_eq!(seen, "Some(203.0.113.6)");
    assert_eq!(
        metrics.handshake_failures(HandshakeFailure::AddressLimit),
        1
    );
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let builder = Server::builder().max_connections_per_address(Some(1));
    let (addr, _) = address_server(builder).await;
    let (_a, seen) = connect_as(addr, Some("203.0.113.5")).await.unwrap();
    assert_eq!(seen, "Some(127.0.0.1)");
    // Claiming another address does not get around the limit.
    let err = connect_as(addr, Some("203.0.113.77")).await.unwrap_err();
    assert!(err.contains("429"), "{err}");
}

#[tokio::test]
async fn at_the_handshake_limit_new_clients_wait_until_a_handshake_ends() {
    let builder = Server::builder().max_handshakes(2);
    let (addr, metrics) = address_server(builder).await;
    // Two clients that connect and never send their request hold both places.
    let stalled = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    let in_progress = async {
        while metrics.handshakes_in_progress() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(Duration::from_secs(5), in_progress).await.unwrap();

    let (tx, mut rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(connect_as(addr, None).await);
    });
    // The third waits in the listen backlog: it is not accepted while both places are taken.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "a third handshake ran");
    assert_eq!(metrics.handshakes_in_progress(), 2);
    assert!(metrics.accepts_held() >= 1);

    drop(stalled);
    let (_ws, seen) = timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen, "Some(127.0.0.1)");
    // The WebSocket's handshake is over, and the stalled ones were dropped.
    let settled = async {
        while metrics.handshakes_in_progress() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(Duration::from_secs(5), settled).await.unwrap();
}

#[tokio::test]
async fn a_handshake_rate_holds_accepting_back() {
    let builder = Server::builder().handshake_rate(Some(5));
    let (addr, metrics) = address_server(builder).await;
    // A burst of one, then one every 200 ms: three clients make the server wait twice.
    for _ in 0..3 {
        timeout(Duration::from_secs(5), connect_as(addr, None))
            .await
            .unwrap()
            .unwrap();
    }
    assert!(metrics.accepts_held() >= 2, "{}", metrics.accepts_held());
}

#[tokio::test]
async fn shutting_down_sends_the_message_and_close_code_the_server_chose() {
    let server = Server::builder()
        .shutdown_close(CloseCode::SERVICE_RESTART, "restarting")
        .shutdown_message(|| Some(Message::text("come back in 2 s")))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(
        |mut ws, _| async move {
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_data() && ws.send(message).await.is_err() {
                    break;
                }
            }
        },
        async {
            let _ = stopped.await;
        },
    ));
    let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hi"));
    stop.send(()).unwrap();
    let next = timeout(Duration::from_secs(5), ws.recv()).await.unwrap();
    assert_eq!(next.unwrap().unwrap(), Message::text("come back in 2 s"));
    let close = timeout(Duration::from_secs(5), ws.recv()).await.unwrap();
    match close {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::SERVICE_RESTART);
            assert_eq!(frame.reason, "restarting");
        }
        other => panic!("expected the Close frame, got {other:?}"),
    }
    timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_connection_that_skips_the_shutdown_message_gets_the_close_frame_alone() {
    let server = Server::builder()
        .shutdown_close(CloseCode::SERVICE_RESTART, "restarting")
        .shutdown_message(|| Some(Message::text("come back in 2 s")))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(
        |mut ws, _| async move {
            // A protocol of its own, whose peers the server's message would confuse.
            ws.skip_shutdown_message();
            if ws.send(Message::text("ready")).await.is_err() {
                return;
            }
            // Split, as a session that sends from elsewhere is: its receiving half closes.
            let (_sender, mut receiver) = ws.split();
            while let Some(Ok(_)) = receiver.recv().await {}
        },
        async {
            let _ = stopped.await;
        },
    ));
    let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("ready"));
    stop.send(()).unwrap();
    let close = timeout(Duration::from_secs(5), ws.recv()).await.unwrap();
    match close {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::SERVICE_RESTART);
            assert_eq!(frame.reason, "restarting");
        }
        other => panic!("expected the Close frame alone, got {other:?}"),
    }
    timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
