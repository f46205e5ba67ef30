//! WebSockets over HTTP/2 (RFC 8441), seen by a raw HTTP/2 client (the `h2` crate) over TLS
//! with ALPN `h2`: extended CONNECT, several WebSockets on one connection, plain requests,
//! the refusals of bad requests, the streams limit, RST_STREAM and the drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use pki_types::pem::PemObject as _;
use switchboard::http::{Method, Request, StatusCode, Version};
use switchboard::tls::ServerTls;
use switchboard::tls::rustls::{self, pki_types};
use switchboard::{Metrics, Server, ServerBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const WAIT: Duration = Duration::from_secs(5);

struct Running {
    addr: SocketAddr,
    metrics: Metrics,
    /// The server's certificate, for the client to trust.
    ca: pki_types::CertificateDer<'static>,
}

/// Starts `builder` with a self-signed certificate; it echoes every data message.
async fn start(builder: ServerBuilder) -> Running {
    start_until(builder, std::future::pending()).await.0
}

/// As [`start`], draining once `signal` completes; the task ends when the drain does.
async fn start_until(
    builder: ServerBuilder,
    signal: impl Future<Output = ()> + Send + 'static,
) -> (Running, tokio::task::JoinHandle<std::io::Result<()>>) {
    let tls = ServerTls::self_signed(["localhost"]).unwrap();
    let pem = tls.self_signed_pem().unwrap().as_bytes().to_vec();
    let ca = pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    let server = builder.tls(tls).bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics().clone();
    let serving = tokio::spawn(server.serve_with_shutdown(
        |mut ws, _| async move {
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_data() && ws.send(message).await.is_err() {
                    break;
                }
            }
        },
        signal,
    ));
    (Running { addr, metrics, ca }, serving)
}

/// TLS to the server, offering `alpn`.
async fn tls(running: &Running, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(running.ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(running.addr).await.unwrap();
    let name = pki_types::ServerName::try_from("localhost").unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    connector.connect(name, tcp).await.unwrap()
}

/// An HTTP/2 connection whose SETTINGS (extended CONNECT on) have arrived.
async fn connect(running: &Running) -> SendRequest<Bytes> {
    connect_with(running, &h2::client::Builder::new()).await
}

/// As [`connect`], with the client's settings.
async fn connect_with(running: &Running, builder: &h2::client::Builder) -> SendRequest<Bytes> {
    let tls = tls(running, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, connection) = builder.handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = timeout(WAIT, client.ready()).await.unwrap().unwrap();
    let settings = async {
        while !client.is_extended_connect_protocol_enabled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(WAIT, settings)
        .await
        .expect("SETTINGS_ENABLE_CONNECT_PROTOCOL");
    client = timeout(WAIT, client.ready()).await.unwrap().unwrap();
    client
}

/// A CONNECT to `path` with `protocol` as `:protocol` and the given version header.
fn connect_request(path: &str, protocol: Option<&str>, version: Option<&str>) -> Request<()> {
    let uri = match protocol {
        Some(_) => format!("https://localhost{path}"),
        None => "localhost:443".to_owned(),
    };
    let mut request = Request::builder().method(Method::CONNECT).uri(uri);
    if let Some(version) = version {
        request = request.header("sec-websocket-version", version);
    }
    let mut request = request.body(()).unwrap();
    if let Some(protocol) = protocol {
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from(protocol));
    }
    request
}

/// Sends `request` on a new stream; its response's head, the stream to send on and the body.
async fn open(
    client: &mut SendRequest<Bytes>,
    request: Request<()>,
) -> (
    switchboard::http::Response<()>,
    SendStream<Bytes>,
    RecvStream,
) {
    *client = timeout(WAIT, client.clone().ready())
        .await
        .unwrap()
        .unwrap();
    let (response, send) = client.send_request(request, false).unwrap();
    let response = timeout(WAIT, response).await.unwrap().unwrap();
    let (head, body) = response.into_parts();
    (
        switchboard::http::Response::from_parts(head, ()),
        send,
        body,
    )
}

/// Opens a WebSocket on `path`; asserts its 200.
async fn websocket(client: &mut SendRequest<Bytes>, path: &str) -> (SendStream<Bytes>, Frames) {
    let request = connect_request(path, Some("websocket"), Some("13"));
    let (response, send, body) = open(client, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key("sec-websocket-accept"));
    (send, Frames::new(body))
}

/// A masked client frame (RFC 6455 §5.3), payload under 126 bytes.
fn masked(opcode: u8, payload: &[u8]) -> Bytes {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    Bytes::from(frame)
}

/// The server's frames on one stream, read whole.
struct Frames {
    body: RecvStream,
    buf: BytesMut,
}

impl Frames {
    fn new(body: RecvStream) -> Self {
        Self {
            body,
            buf: BytesMut::new(),
        }
    }

    /// The next frame's opcode and payload (unmasked, under 126 bytes); `None` at the end.
    async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "a server does not mask");
                let len = usize::from(self.buf[1] & 0x7f);
                assert!(len < 126);
                if self.buf.len() >= 2 + len {
                    let frame = self.buf.split_to(2 + len);
                    return Some((frame[0] & 0x0f, frame[2..].to_vec()));
                }
            }
            let data = timeout(WAIT, self.body.data()).await.expect("a frame")?;
            let data = data.ok()?;
            let _ = self.body.flow_control().release_capacity(data.len());
            self.buf.extend_from_slice(&data);
        }
    }
}

/// An echo round trip of `text` on one WebSocket.
async fn echo(send: &mut SendStream<Bytes>, frames: &mut Frames, text: &str) {
    send.send_data(masked(0x1, text.as_bytes()), false).unwrap();
    assert_eq!(frames.next().await, Some((0x1, text.as_bytes().to_vec())));
}

/// Waits until `metric` of `metrics` is `want`.
async fn until(what: &str, want: u64, metric: impl Fn() -> u64) {
    let reached = timeout(WAIT, async {
        while metric() != want {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    assert!(reached.await.is_ok(), "{what}: {} != {want}", metric());
}

#[tokio::test]
async fn websockets_share_one_connection_through_extended_connect() {
    let running = start(Server::builder().metrics_endpoint("/metrics")).await;
    let mut client = connect(&running).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(websocket(&mut client, "/chat").await);
    }
    // Interleaved: each stream gets its own echo.
    for round in 0..3 {
        for (i, (send, frames)) in sockets.iter_mut().enumerate() {
            echo(send, frames, &format!("stream {i} round {round}")).await;
        }
    }
    let metrics = &running.metrics;
    assert_eq!(metrics.websockets_total(Version::HTTP_2), 3);
    assert_eq!(metrics.websockets_total(Version::HTTP_11), 0);
    assert_eq!(metrics.http2_connections_total(), 1);
    assert_eq!(metrics.connections_open(), 3);

    // A ping is answered on its stream; a Close ends the WebSocket and its stream.
    let (send, frames) = &mut sockets[0];
    send.send_data(masked(0x9, b"p"), false).unwrap();
    assert_eq!(frames.next().await, Some((0xA, b"p".to_vec())));
    send.send_data(masked(0x8, &[0x03, 0xe8]), false).unwrap();
    assert_eq!(frames.next().await, Some((0x8, vec![0x03, 0xe8])));
    assert_eq!(frames.next().await, None, "the stream ends after the Close");
    until("open", 2, || metrics.connections_open()).await;
    assert_eq!(metrics.closes(1000), 1);
    let (send, frames) = &mut sockets[1];
    echo(send, frames, "still here").await;

    let text = metrics.render();
    assert!(
        text.contains("switchboard_websockets_total{http=\"2\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("switchboard_http2_connections_open 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn plain_requests_are_served_over_http2() {
    let running =
        start(Server::builder().health_endpoint("/healthz").route(
            "/api/echo",
            |request: Request<Bytes>| async move {
                switchboard::http::Response::new(request.into_body())
            },
        ))
        .await;
    let mut client = connect(&running).await;
    let request = Request::get("https://localhost/healthz").body(()).unwrap();
    client = client.ready().await.unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let data = timeout(WAIT, body.data()).await.unwrap().unwrap().unwrap();
    assert_eq!(&data[..], b"ok\n");

    let request = Request::post("https://localhost/api/echo")
        .body(())
        .unwrap();
    let mut client = client.ready().await.unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(Bytes::from_static(b"posted"), true).unwrap();
    let mut body = timeout(WAIT, response).await.unwrap().unwrap().into_body();
    let data = timeout(WAIT, body.data()).await.unwrap().unwrap().unwrap();
    assert_eq!(&data[..], b"posted");
}

#[tokio::test]
async fn bad_connects_get_their_status_and_the_connection_goes_on() {
    let running = start(
        Server::builder()
            .health_endpoint("/healthz")
            // As `serve`'s hub mode: WebSockets on /ws only.
            .check_upgrade(|request| {
                (request.uri().path() != "/ws").then(|| {
                    let mut response = switchboard::http::Response::new(Bytes::new());
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    response
                })
            }),
    )
    .await;
    let mut client = connect(&running).await;
    let cases = [
        (
            "no :protocol",
            connect_request("/ws", None, Some("13")),
            400,
        ),
        (
            "unknown :protocol",
            connect_request("/ws", Some("webtransport"), Some("13")),
            501,
        ),
        (
            "version 8",
            connect_request("/ws", Some("websocket"), Some("8")),
            400,
        ),
        (
            "no version",
            connect_request("/ws", Some("websocket"), None),
            400,
        ),
        (
            "a path that does not upgrade",
            connect_request("/healthz", Some("websocket"), Some("13")),
            404,
        ),
    ];
    for (what, request, status) in cases {
        let (response, _send, _body) = open(&mut client, request).await;
        assert_eq!(response.status().as_u16(), status, "{what}");
        if what.starts_with("version") || what.starts_with("no version") {
            assert_eq!(response.headers()["sec-websocket-version"], "13", "{what}");
        }
        assert!(!response.headers().contains_key("connection"), "{what}");
    }
    // The connection serves on: a WebSocket where one is served.
    let (mut send, mut frames) = websocket(&mut client, "/ws").await;
    echo(&mut send, &mut frames, "after the refusals").await;
    assert_eq!(running.metrics.http2_connections_total(), 1);
}

#[tokio::test]
async fn a_reset_stream_closes_its_websocket_only() {
    let running = start(Server::builder()).await;
    let mut client = connect(&running).await;
    let (mut reset, _) = websocket(&mut client, "/").await;
    let (mut send, mut frames) = websocket(&mut client, "/").await;
    until("open", 2, || running.metrics.connections_open()).await;
    reset.send_reset(h2::Reason::CANCEL);
    until("open", 1, || running.metrics.connections_open()).await;
    assert_eq!(running.metrics.closes(1006), 1, "an abrupt close");
    echo(&mut send, &mut frames, "unaffected").await;
}

#[tokio::test]
async fn a_stream_that_is_not_read_stalls_no_other() {
    let running = start(Server::builder()).await;
    // As browsers do: the connection's window larger than a stream's.
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(64 * 1024)
        .initial_connection_window_size(4 * 1024 * 1024);
    let mut client = connect_with(&running, &builder).await;
    let (mut stalled, mut unread) = websocket(&mut client, "/").await;
    let (mut send, mut frames) = websocket(&mut client, "/").await;
    // Echoes this client does not read: past its stream window the server's WebSocket cannot
    // write, stops reading, and the server's window for the stream fills in turn. 2 MiB is
    // more than every window and buffer on the way.
    let payload = [b'x'; 125];
    let frames_sent = 16 * 1024;
    for _ in 0..frames_sent {
        stalled.send_data(masked(0x2, &payload), false).unwrap();
    }
    // The other stream is unaffected...
    for round in 0..10 {
        echo(&mut send, &mut frames, &format!("round {round}")).await;
    }
    // ...and the stalled one resumes once read.
    for _ in 0..frames_sent {
        assert_eq!(unread.next().await, Some((0x2, payload.to_vec())));
    }
}

#[tokio::test]
async fn streams_past_the_limit_are_refused() {
    let running = start(
        Server::builder()
            .health_endpoint("/healthz")
            .http2_max_concurrent_streams(2),
    )
    .await;
    // The h2 client keeps to the server's limit; a raw one does not.
    let mut tls = tls(&running, &[b"h2"]).await;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&frame(0x4, 0, 0, &[])).await.unwrap(); // SETTINGS
    let mut raw = RawFrames::default();
    // The server's SETTINGS: acknowledged, so that its limit applies.
    loop {
        let (kind, flags, _, _) = raw.next(&mut tls).await;
        if kind == 0x4 && flags & 0x1 == 0 {
            break;
        }
    }
    tls.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap();
    // Three requests left open (no END_STREAM): GET /healthz, in HPACK's static table but for
    // the authority.
    let mut block = vec![0x82, 0x84, 0x87, 0x41, 9];
    block.extend_from_slice(b"localhost");
    for stream in [1, 3, 5] {
        tls.write_all(&frame(0x1, 0x4, stream, &block))
            .await
            .unwrap();
    }
    let refused = loop {
        let (kind, _, stream, payload) = raw.next(&mut tls).await;
        if kind == 0x3 {
            break (stream, u32::from_be_bytes(payload[..4].try_into().unwrap()));
        }
    };
    assert_eq!(
        refused,
        (5, 0x7),
        "RST_STREAM(REFUSED_STREAM) on the third stream"
    );
}

/// An HTTP/2 frame (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads whole HTTP/2 frames.
#[derive(Default)]
struct RawFrames {
    buf: Vec<u8>,
}

impl RawFrames {
    /// The next frame: type, flags, stream and payload.
    async fn next(&mut self, tls: &mut TlsStream<TcpStream>) -> (u8, u8, u32, Vec<u8>) {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let head: Vec<u8> = self.buf.drain(..9).collect();
                    let payload = self.buf.drain(..len).collect();
                    let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
                    return (head[3], head[4], stream, payload);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(WAIT, tls.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[tokio::test]
async fn drain_sends_goaway_and_1001_on_every_websocket() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let builder = Server::builder().shutdown_grace(Duration::from_secs(5));
    let (running, serving) = start_until(builder, async {
        let _ = stopped.await;
    })
    .await;
    let mut client = connect(&running).await;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        sockets.push(websocket(&mut client, "/").await);
    }
    stop.send(()).unwrap();
    for (send, frames) in &mut sockets {
        let (opcode, payload) = frames.next().await.expect("a Close");
        assert_eq!((opcode, &payload[..2]), (0x8, &[0x03, 0xe9][..]), "1001");
        send.send_data(masked(0x8, &[0x03, 0xe9]), true).unwrap();
    }
    // GOAWAY: no new stream on this connection.
    let refused = async {
        loop {
            let request = Request::get("https://localhost/").body(()).unwrap();
            match client.send_request(request, true) {
                Err(e) => return e,
                Ok((response, _)) => {
                    if let Err(e) = response.await {
                        return e;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let error = timeout(WAIT, refused).await.expect("GOAWAY");
    assert!(error.is_go_away(), "{error:?}");
    let drained = timeout(WAIT, serving).await.expect("the drain ends");
    drained.unwrap().unwrap();
    assert_eq!(running.metrics.closes(1001), 2);
    assert_eq!(running.metrics.http2_connections_open(), 0);
}

#[tokio::test]
async fn without_http2_alpn_agrees_on_http1() {
    let running = start(Server::builder().http2(false)).await;
    let off = tls(&running, &[b"h2", b"http/1.1"]).await;
    assert_eq!(off.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let on = start(Server::builder()).await;
    let http1 = tls(&on, &[b"http/1.1"]).await;
    assert_eq!(http1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let builder = Server::builder().tls(ServerTls::self_signed(["localhost"]).unwrap());
    assert_eq!(builder.alpn_protocols(), ["h2", "http/1.1"]);
    assert_eq!(builder.http2(false).alpn_protocols(), ["http/1.1"]);
}
