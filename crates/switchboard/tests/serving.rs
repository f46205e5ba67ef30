//! What a server offers beyond limits: wss://, accept hooks, Origin checks, plain HTTP routes,
//! metrics, and a graceful drain.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard::http::{Request, Response, StatusCode};
use switchboard::tls::{ClientTls, ServerTls};
use switchboard::{
    Accept, CloseCode, ConnectOptions, Error, Message, PeerAddr, Reject, Server, ServerBuilder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Echoes every message; answers "who" with the `User` the hook attached.
async fn start(builder: ServerBuilder) -> (SocketAddr, switchboard::Metrics) {
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics().clone();
    tokio::spawn(server.serve(echo));
    (addr, metrics)
}

#[derive(Clone, Debug)]
struct User(String);

async fn echo(mut ws: switchboard::WebSocket<switchboard::MaybeTlsStream>, request: Request<()>) {
    while let Some(Ok(message)) = ws.recv().await {
        let reply = match &message {
            Message::Text(t) if t.as_str() == "who" => {
                let user = request.extensions().get::<User>().map(|u| u.0.clone());
                let peer = request.extensions().get::<PeerAddr>().is_some();
                Message::text(format!("{user:?} peer={peer} protocol={:?}", ws.protocol()))
            }
            m if m.is_data() => message,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}

/// A plain HTTP GET; returns the status and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of an unlabelled or labelled sample in Prometheus text.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
}

#[tokio::test]
async fn wss_round_trip_with_a_generated_certificate() {
    let tls = ServerTls::self_signed(["localhost", "127.0.0.1"]).unwrap();
    let ca = tls.self_signed_pem().unwrap().to_owned();
    let (addr, _) = start(Server::builder().tls(tls)).await;
    let url = format!("wss://localhost:{}/", addr.port());

    let options = ConnectOptions {
        tls: Some(ClientTls::from_ca_pem(ca.as_bytes()).unwrap()),
        ..ConnectOptions::default()
    };
    let (mut ws, _) = switchboard::connect_with(&url, &options).await.unwrap();
    assert!(ws.get_ref().is_tls());
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("over tls"));
    let big = Message::binary(vec![7u8; 300_000]);
    ws.send(big.clone()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), big);
    ws.close(CloseCode::NORMAL, "").await.unwrap();

    // The same certificate is untrusted by default (webpki roots) and by IP against a
    // certificate that does not name it...
    let err = switchboard::connect(&url).await.unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err}");
    let other = ServerTls::self_signed(["example.test"]).unwrap();
    let options = ConnectOptions {
        tls: Some(ClientTls::from_ca_pem(other.self_signed_pem().unwrap().as_bytes()).unwrap()),
        ..ConnectOptions::default()
    };
    assert!(switchboard::connect_with(&url, &options).await.is_err());
    // ...and accepted by an insecure client.
    let options = ConnectOptions {
        tls: Some(ClientTls::dangerous_insecure()),
        ..ConnectOptions::default()
    };
    let (mut ws, _) = switchboard::connect_with(&url, &options).await.unwrap();
    ws.send(Message::text("insecure")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("insecure"));
}

#[tokio::test]
async fn a_plain_client_on_a_tls_port_fails_the_handshake_and_is_counted() {
    let tls = ServerTls::self_signed(["localhost"]).unwrap();
    let (addr, metrics) = start(Server::builder().tls(tls)).await;
    assert!(
        switchboard::connect(&format!("ws://{addr}/"))
            .await
            .is_err()
    );
    timeout(Duration::from_secs(5), async {
        while metrics.handshake_failures(switchboard::HandshakeFailure::Tls) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_accept_hook_refuses_or_attaches_data_and_picks_the_protocol() {
    let builder = Server::builder()
        .protocols(["chat.v1", "chat.v2"])
        .on_upgrade(|request| {
            let query = request.uri().query().unwrap_or("").to_owned();
            async move {
                match query.strip_prefix("user=") {
                    Some("mallory") => Err(Reject::new(StatusCode::FORBIDDEN).body("banned\n")),
                    Some(user) if user.starts_with("v2") => Ok(Accept::new()
                        .extension(User(user.to_owned()))
                        .protocol("chat.v2")),
                    Some(user) => Ok(Accept::new().extension(User(user.to_owned()))),
                    None => Err(StatusCode::UNAUTHORIZED.into()),
                }
            }
        });
    let (addr, metrics) = start(builder).await;
    let mut options = ConnectOptions {
        protocols: vec!["chat.v2".into(), "chat.v1".into()],
        ..ConnectOptions::default()
    };

    let (mut ws, _) = switchboard::connect_with(&format!("ws://{addr}/?user=alice"), &options)
        .await
        .unwrap();
    ws.send(Message::text("who")).await.unwrap();
    // The server's preference wins over the client's order.
    let expected = "Some(\"alice\") peer=true protocol=Some(\"chat.v1\")";
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(expected));

    let (mut ws, _) = switchboard::connect_with(&format!("ws://{addr}/?user=v2bob"), &options)
        .await
        .unwrap();
    ws.send(Message::text("who")).await.unwrap();
    let expected = "Some(\"v2bob\") peer=true protocol=Some(\"chat.v2\")";
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(expected));

    options.protocols.clear();
    for (query, status) in [("?user=mallory", "403"), ("", "401")] {
        let err = switchboard::connect_with(&format!("ws://{addr}/{query}"), &options)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(status), "{query}: {err}");
    }
    assert_eq!(
        metrics.handshake_failures(switchboard::HandshakeFailure::Rejected),
        2
    );
}

#[tokio::test]
async fn only_allowed_origins_may_upgrade() {
    let builder = Server::builder().allowed_origins(["https://chat.example.com/"]);
    let (addr, metrics) = start(builder).await;
    let url = format!("ws://{addr}/");
    let with_origin = |origin: &'static str| {
        let mut options = ConnectOptions::default();
        options.headers.insert("origin", origin.parse().unwrap());
        options
    };
    let allowed = with_origin("HTTPS://chat.example.com");
    assert!(switchboard::connect_with(&url, &allowed).await.is_ok());
    let err = switchboard::connect_with(&url, &with_origin("https://evil.example"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // Not a browser: no Origin header, no check.
    assert!(switchboard::connect(&url).await.is_ok());
    assert_eq!(
        metrics.handshake_failures(switchboard::HandshakeFailure::Origin),
        1
    );
}

#[tokio::test]
async fn plain_http_goes_to_routes_and_the_built_in_endpoints() {
    let builder = Server::builder()
        .health_endpoint("/healthz")
        .metrics_endpoint("/metrics")
        .route("/", |_request| async {
            Response::new("<h1>chat</h1>".into())
        });
    let (addr, _) = start(builder).await;
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(addr, "/").await, (200, "<h1>chat</h1>".into()));
    let (status, _) = get(addr, "/elsewhere").await;
    assert_eq!(status, 426, "unrouted plain requests are told to upgrade");
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE switchboard_connections_open gauge"));
    // WebSocket upgrades still work on any path, routed ones included.
    let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/healthz"))
        .await
        .unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hi"));
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let (addr, _) = start(Server::builder().metrics_endpoint("/metrics")).await;
    let url = format!("ws://{addr}/");
    for (code, count) in [(CloseCode::NORMAL, 3), (CloseCode(4000), 2)] {
        let (mut ws, _) = switchboard::connect(&url).await.unwrap();
        for i in 0..count {
            ws.send(Message::text(format!("message {i}")))
                .await
                .unwrap();
            assert!(ws.recv().await.unwrap().is_ok());
        }
        ws.close(code, "").await.unwrap();
    }
    // A bad handshake: a version the server does not speak.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 426 "));

    // The server records a connection when it is over: wait for both.
    let text = timeout(Duration::from_secs(10), async {
        loop {
            let (_, text) = get(addr, "/metrics").await;
            if sample(&text, "switchboard_connections_open") == 0 {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(sample(&text, "switchboard_connections_total"), 2);
    assert_eq!(sample(&text, "switchboard_messages_received_total"), 5);
    assert_eq!(sample(&text, "switchboard_messages_sent_total"), 5);
    // "message N" is 9 bytes: a 6-byte masked header in, a 2-byte header out.
    assert!(sample(&text, "switchboard_bytes_received_total") >= 5 * 15);
    assert!(sample(&text, "switchboard_bytes_sent_total") >= 5 * 11);
    assert_eq!(sample(&text, "switchboard_closes_total{code=\"1000\"}"), 1);
    assert_eq!(sample(&text, "switchboard_closes_total{code=\"4000\"}"), 1);
    assert_eq!(
        sample(
            &text,
            "switchboard_handshake_failures_total{reason=\"unsupported_version\"}"
        ),
        1
    );
    assert!(sample(&text, "switchboard_http_requests_total") >= 1);
}

#[tokio::test]
async fn shutdown_sends_1001_to_every_client_and_returns_after_they_leave() {
    let server = Server::builder()
        .shutdown_grace(Duration::from_secs(10))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(echo, async {
        let _ = stopped.await;
    }));
    let url = format!("ws://{addr}/");
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = switchboard::connect(&url).await.unwrap();
        ws.send(Message::text("ready")).await.unwrap();
        assert!(ws.recv().await.unwrap().is_ok());
        clients.push(ws);
    }
    // One client is split: its driver answers the server's Close by itself.
    let (_sender, mut receiver) = clients.pop().unwrap().split();
    stop.send(()).unwrap();
    for mut ws in clients {
        let close = timeout(Duration::from_secs(5), ws.recv()).await.unwrap();
        let Some(Ok(Message::Close(Some(frame)))) = close else {
            panic!("expected a close frame, got {close:?}")
        };
        assert_eq!(frame.code, CloseCode::GOING_AWAY);
        assert!(ws.recv().await.is_none());
    }
    let close = timeout(Duration::from_secs(5), receiver.recv())
        .await
        .unwrap();
    assert!(
        matches!(&close, Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::GOING_AWAY),
        "{close:?}"
    );
    // Every client answered: the server returns well before the grace period ends.
    timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test(start_paused = true)]
async fn shutdown_gives_up_on_clients_after_the_grace_period() {
    let server = Server::builder()
        .shutdown_grace(Duration::from_secs(3))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // A handler that never receives, so never learns of the shutdown.
    let serving = tokio::spawn(server.serve_with_shutdown(
        |ws, _request| async move {
            let _held = ws;
            std::future::pending::<()>().await
        },
        async {
            let _ = stopped.await;
        },
    ));
    let (_ws, _) = switchboard::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}

/// Thread-per-core serving: servers on one port with SO_REUSEPORT share the connections.
#[cfg(unix)]
#[tokio::test]
async fn servers_with_reuse_port_share_one_address() {
    let first = Server::builder()
        .bind_reuse_port("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = first.local_addr().unwrap();
    let second = Server::builder().bind_reuse_port(addr).await.unwrap();
    for (index, server) in [first, second].into_iter().enumerate() {
        tokio::spawn(server.serve(move |mut ws, _| async move {
            // Tells the client which server it reached.
            let _ = ws.send(Message::text(index.to_string())).await;
            while let Some(Ok(_)) = ws.recv().await {}
        }));
    }
    let mut reached = [0; 2];
    for _ in 0..64 {
        let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/"))
            .await
            .unwrap();
        match ws.recv().await {
            Some(Ok(Message::Text(text))) => reached[text.parse::<usize>().unwrap()] += 1,
            other => panic!("expected the server's index, got {other:?}"),
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    }
    // The kernel spreads connections by their addresses: 64 all on one side would be a
    // one-in-2^63 chance.
    assert!(reached[0] > 0 && reached[1] > 0, "{reached:?}");
}
