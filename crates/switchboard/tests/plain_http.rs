//! Plain HTTP on a server's port, served by hyper: keep-alive, request bodies and their limit,
//! `HEAD`, prefix routes, an upgrade after plain requests on one connection, the drain, and
//! malformed requests.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use switchboard::http::{Request, Response, Uri};
use switchboard::{ConnectOptions, HandshakeFailure, Message, Metrics, Server, ServerBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

mod support;

/// Routes that tell what they got: `/echo` answers with the request's method and body,
/// `/files/*` with the path, `/page` with a fixed page.
fn routes(builder: ServerBuilder) -> ServerBuilder {
    builder
        .route("/echo", |request: Request<Bytes>| async move {
            let body = format!("{} {:?}", request.method(), request.body());
            Response::new(Bytes::from(body))
        })
        .route("/files/*", |request: Request<Bytes>| async move {
            Response::new(Bytes::from(format!("file {}", request.uri().path())))
        })
        .route("/page", |_| async { Response::new("<h1>page</h1>".into()) })
}

/// Serves `builder` with the routes above and an echoing WebSocket handler.
async fn start(builder: ServerBuilder) -> (SocketAddr, Metrics) {
    support::echo_server(routes(builder)).await
}

/// A response read off a keep-alive connection: the head (lower case) and the body.
struct Answer {
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn status(&self) -> u16 {
        self.head[9..12].parse().unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        Self::header_in(&self.head, name)
    }

    /// The value of header `name` in a lower-case `head`.
    fn header_in<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|line| {
            let (n, value) = line.split_once(':')?;
            (n == name).then(|| value.trim())
        })
    }
}

/// Sends `request` and reads one response: the head, then as much body as it declares (none
/// for `HEAD`).
async fn ask(stream: &mut TcpStream, request: &str) -> Answer {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut more = async |buf: &mut Vec<u8>| {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed within a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let read = async {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            more(&mut buf).await;
        };
        let head = String::from_utf8(buf[..end].to_vec())
            .unwrap()
            .to_ascii_lowercase();
        let length = match Answer::header_in(&head, "content-length") {
            Some(length) if !request.starts_with("HEAD ") => length.parse().unwrap(),
            _ => 0,
        };
        while buf.len() < end + length {
            more(&mut buf).await;
        }
        Answer {
            head,
            body: buf[end..].to_vec(),
        }
    };
    timeout(Duration::from_secs(10), read).await.unwrap()
}

/// Whether the server ends the connection within 10 s, sending nothing more.
async fn closes(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    let read = timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

const GET_PAGE: &str = "GET /page HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn requests_follow_one_another_on_one_connection() {
    let (addr, metrics) = start(Server::builder().health_endpoint("/healthz")).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for (path, status, body) in [
        ("/page", 200, "<h1>page</h1>"),
        ("/healthz", 200, "ok\n"),
        ("/files/a/b.txt", 200, "file /files/a/b.txt"),
        ("/elsewhere", 426, "this endpoint speaks websocket\n"),
    ] {
        let answer = ask(
            &mut stream,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await;
        assert_eq!(
            (answer.status(), &answer.body[..]),
            (status, body.as_bytes())
        );
    }
    let text = metrics.render();
    assert!(
        text.contains("\nswitchboard_http_requests_total 4\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_health_check_answers_503_with_its_reason_while_it_fails() {
    let down = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let checked = down.clone();
    let builder =
        Server::builder()
            .health_endpoint("/healthz")
            .health_check("/healthz", move || match &*checked.lock().unwrap() {
                Some(why) => Err(why.clone()),
                None => Ok(()),
            });
    let (addr, _) = start(builder).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = ask(&mut stream, get).await;
    assert_eq!((answer.status(), &answer.body[..]), (200, &b"ok\n"[..]));
    *down.lock().unwrap() = Some("the database is unreachable".into());
    let answer = ask(&mut stream, get).await;
    assert_eq!(
        (answer.status(), &answer.body[..]),
        (503, &b"unavailable: the database is unreachable\n"[..])
    );
    *down.lock().unwrap() = None;
    assert_eq!(ask(&mut stream, get).await.status(), 200);
}

#[tokio::test]
async fn a_degraded_health_report_answers_200_with_its_note() {
    let state = std::sync::Arc::new(std::sync::Mutex::new(Ok(None)));
    let checked = state.clone();
    let builder =
        Server::builder().health_report("/healthz", move || checked.lock().unwrap().clone());
    let (addr, _) = start(builder).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = ask(&mut stream, get).await;
    assert_eq!((answer.status(), &answer.body[..]), (200, &b"ok\n"[..]));
    *state.lock().unwrap() = Ok(Some("one cache of two is unreachable".into()));
    let answer = ask(&mut stream, get).await;
    assert_eq!(
        (answer.status(), &answer.body[..]),
        (200, &b"degraded: one cache of two is unreachable\n"[..])
    );
    *state.lock().unwrap() = Err("every cache is unreachable".into());
    assert_eq!(ask(&mut stream, get).await.status(), 503);
}

#[tokio::test]
async fn a_body_reaches_its_handler_and_one_over_the_limit_gets_413() {
    let (addr, _) = start(Server::builder().max_body_size(16)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(ask(&mut stream, request).await.body, b"POST b\"hello\"");
    // Chunked, so the size is known only as it arrives.
    let request = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                   6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n";
    assert_eq!(
        ask(&mut stream, request).await.body,
        b"POST b\"hello world!\""
    );

    // Declared over the limit: refused before the body is sent.
    let request = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n";
    let answer = ask(&mut stream, request).await;
    assert_eq!(answer.status(), 413);
    assert_eq!(answer.body, b"request body over the limit of 16 bytes\n");
    assert!(closes(&mut stream).await);

    // Over the limit as it arrives.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                   10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n";
    assert_eq!(ask(&mut stream, request).await.status(), 413);
}

#[tokio::test]
async fn a_client_that_sends_a_body_over_the_limit_without_waiting_reads_the_413() {
    let (addr, _) = start(Server::builder().max_body_size(16)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // As most HTTP libraries do: the whole body first, then the answer is read. The body is
    // larger than the socket buffers hold, so the server must read it for the write to end.
    let body = vec![b'x'; 12 << 20];
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let sent = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await
    };
    timeout(Duration::from_secs(10), sent)
        .await
        .unwrap()
        .expect("the server reads the refused body instead of resetting the connection");
    let mut answer = Vec::new();
    let read = timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    read.unwrap().expect("the answer, then a clean close");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        answer.ends_with("request body over the limit of 16 bytes\n"),
        "{answer}"
    );
}

#[tokio::test]
async fn head_gets_the_headers_and_length_without_the_body() {
    let (addr, _) = start(Server::builder().metrics_endpoint("/metrics")).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = ask(&mut stream, "HEAD /page HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.header("content-length"), Some("13"));
    assert!(head.body.is_empty());
    // Nothing of the body follows: the next answer starts right after.
    let request = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    let answer = ask(&mut stream, request).await;
    assert_eq!(answer.status(), 405);
    assert_eq!(answer.header("allow"), Some("get, head"));
}

#[tokio::test]
async fn an_upgrade_after_plain_requests_passes_the_same_checks() {
    let builder = Server::builder().allowed_origins(["https://chat.example"]);
    let (addr, metrics) = start(builder).await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut stream, GET_PAGE).await.status(), 200);
    let upgrade = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                   Origin: https://evil.example\r\n\r\n";
    let refused = ask(&mut stream, upgrade).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.body, b"origin not allowed\n");
    assert!(closes(&mut stream).await);
    assert_eq!(metrics.handshake_failures(HandshakeFailure::Origin), 1);

    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut stream, GET_PAGE).await.status(), 200);
    let uri: Uri = format!("ws://{addr}/chat").parse().unwrap();
    let mut options = ConnectOptions::default();
    options
        .headers
        .insert("origin", "https://chat.example".parse().unwrap());
    let (mut ws, response) = switchboard::client_handshake(&uri, stream, &options)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("over keep-alive")).await.unwrap();
    let echoed = ws.recv().await.unwrap().unwrap();
    assert_eq!(echoed, Message::text("over keep-alive"));
    assert_eq!(metrics.connections_total(), 1);
}

#[tokio::test]
async fn a_bad_upgrade_after_a_plain_request_gets_its_status() {
    let (addr, metrics) = start(Server::builder()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut stream, GET_PAGE).await.status(), 200);
    let upgrade = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let refused = ask(&mut stream, upgrade).await;
    assert_eq!(refused.status(), 426);
    assert_eq!(refused.header("sec-websocket-version"), Some("13"));
    assert!(closes(&mut stream).await);
    let failures = metrics.handshake_failures(HandshakeFailure::UnsupportedVersion);
    assert_eq!(failures, 1);
}

#[tokio::test]
async fn malformed_requests_get_400() {
    let (addr, _) = start(Server::builder()).await;
    let malformed = "GET / HTTP/1.1\r\nBad Header\r\n\r\n";
    // The first request is read by the server's own parser...
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut stream, malformed).await.status(), 400);
    assert!(closes(&mut stream).await);
    // ...the ones after it by hyper.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut stream, GET_PAGE).await.status(), 200);
    assert_eq!(ask(&mut stream, malformed).await.status(), 400);
    assert!(closes(&mut stream).await);
    // The server goes on serving.
    let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send("still here").await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("still here")
    );
}

#[tokio::test]
async fn a_keep_alive_connection_ends_when_idle_past_the_handshake_timeout() {
    let builder = Server::builder().handshake_timeout(Duration::from_millis(300));
    let (addr, _) = start(builder).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut idle, GET_PAGE).await.status(), 200);
    let start = tokio::time::Instant::now();
    assert!(closes(&mut idle).await);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
}

#[tokio::test]
async fn the_drain_ends_an_idle_keep_alive_connection() {
    let server = routes(Server::builder()).bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(
        |ws, _| async move { drop(ws) },
        async {
            let _ = stopped.await;
        },
    ));
    let mut open = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut open, GET_PAGE).await.status(), 200);
    stop.send(()).unwrap();
    // Well before its idle timeout (10 s) and the grace period (10 s).
    let drained = timeout(Duration::from_secs(2), closes(&mut open)).await;
    assert_eq!(drained, Ok(true));
    timeout(Duration::from_secs(2), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
