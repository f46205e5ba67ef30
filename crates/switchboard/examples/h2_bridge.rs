//! A bridge between WebSockets over HTTP/1.1 and over HTTP/2 (RFC 8441), for running the
//! Autobahn|Testsuite, which speaks HTTP/1.1 only, against either side of switchboard's
//! HTTP/2. Each end does its own handshake and the bridge copies the bytes after it both ways
//! as they are: the frames, their masking and the closing handshake are those of the two ends.
//! Its TLS trusts and presents anything: a loopback test tool, nothing else.
//!
//! ```text
//! # Autobahn's fuzzingclient -> ws://127.0.0.1:9001 -> HTTP/2 -> `switchboard serve` (TLS)
//! cargo run --release -p switchboard --example h2_bridge -- to-h2 127.0.0.1:9001 wss://127.0.0.1:8443
//! # a client over HTTP/2 -> wss://127.0.0.1:9443 (self-signed) -> ws://... Autobahn's fuzzingserver
//! cargo run --release -p switchboard --example h2_bridge -- from-h2 127.0.0.1:9443 ws://127.0.0.1:9001
//! ```
//!
//! `to-h2` answers each HTTP/1.1 upgrade itself (its `101` computed from the client's key)
//! once the server has answered the extended CONNECT carrying the client's
//! `Sec-WebSocket-Extensions` and `Sec-WebSocket-Protocol`, and returns the server's choices:
//! permessage-deflate is agreed end to end. Every WebSocket is a stream of one HTTP/2
//! connection (a new one if it fails). `from-h2` does the reverse: each extended CONNECT
//! becomes an HTTP/1.1 upgrade to the upstream, and the upstream's `101` its `200`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchboard::http::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use switchboard::http::{Method, Request, Response, StatusCode, Uri, Version};
use switchboard::proto::handshake::{accept_key, client, server};
use switchboard::tls::ClientTls;
use switchboard::tls::rustls::{self, pki_types};
use switchboard::{AcceptOptions, ConnectOptions, Error, Http2Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The longest response head read from the upstream.
const MAX_HEAD: usize = 64 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, listen, target] = args.as_slice() else {
        return Err("usage: h2_bridge to-h2|from-h2 LISTEN_ADDR TARGET_URL".into());
    };
    let listener = TcpListener::bind(listen.as_str()).await?;
    eprintln!("h2_bridge {mode}: listening on {listen}, to {target}");
    match mode.as_str() {
        "to-h2" => to_h2(listener, target.clone()).await,
        "from-h2" => from_h2(listener, target.parse()?).await,
        _ => Err(format!("unknown mode {mode:?}: to-h2 or from-h2").into()),
    }
}

// --- HTTP/1.1 in, HTTP/2 out ------------------------------------------------------------

/// The HTTP/2 connection the WebSockets share, made again when it fails.
struct Upstream {
    url: String,
    options: ConnectOptions,
    connection: Mutex<Option<Http2Connection>>,
}

impl Upstream {
    async fn connection(&self, fresh: bool) -> Result<Http2Connection, Error> {
        let mut current = self.connection.lock().await;
        if let (Some(connection), false) = (&*current, fresh) {
            return Ok(connection.clone());
        }
        let connection = Http2Connection::connect(&self.url, &self.options).await?;
        *current = Some(connection.clone());
        Ok(connection)
    }
}

async fn to_h2(listener: TcpListener, url: String) -> Result<(), Box<dyn std::error::Error>> {
    let upstream = Arc::new(Upstream {
        url,
        options: ConnectOptions {
            tls: Some(ClientTls::dangerous_insecure()),
            timeout: TIMEOUT,
            ..ConnectOptions::default()
        },
        connection: Mutex::new(None),
    });
    upstream.connection(true).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(e) = relay_to_h2(tcp, &upstream).await {
                eprintln!("h2_bridge to-h2: {e}");
            }
        });
    }
}

async fn relay_to_h2(mut tcp: TcpStream, upstream: &Upstream) -> Result<(), Error> {
    tcp.set_nodelay(true)?;
    let (request, rest) = match switchboard::read_request(&mut tcp, &AcceptOptions::default()).await
    {
        Ok(read) => read,
        // A port probe: connected and closed without a request.
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Err(e) = server::validate_request(&request) {
        let (response, body) = server::reject_response(&e);
        let mut out = Vec::new();
        server::write_response(&response, body.as_bytes(), &mut out);
        tcp.write_all(&out).await?;
        return Err(e.into());
    }
    let mut headers = HeaderMap::new();
    for (name, value) in request.headers() {
        if name == SEC_WEBSOCKET_EXTENSIONS || name == SEC_WEBSOCKET_PROTOCOL {
            headers.append(name.clone(), value.clone());
        }
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let opened = match upstream
        .connection(false)
        .await?
        .open_raw(&target, &headers)
        .await
    {
        // The connection failed (the server went away, say): once more on a new one.
        Err(Error::Io(_)) => {
            upstream
                .connection(true)
                .await?
                .open_raw(&target, &headers)
                .await
        }
        opened => opened,
    };
    let (answer, mut stream) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            let status = match &e {
                Error::Refused(refusal) => refusal.status(),
                _ => StatusCode::BAD_GATEWAY,
            };
            let head =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            tcp.write_all(head.as_bytes()).await?;
            return Err(e);
        }
    };
    // The 101 for the client's key, with what the server agreed over HTTP/2.
    let key = request.headers()[SEC_WEBSOCKET_KEY].as_bytes().trim_ascii();
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let own = response.headers_mut();
    own.insert(UPGRADE, HeaderValue::from_static("websocket"));
    own.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    own.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::try_from(accept_key(key)).expect("base64"),
    );
    for (name, value) in answer.headers() {
        if name == SEC_WEBSOCKET_EXTENSIONS || name == SEC_WEBSOCKET_PROTOCOL {
            own.append(name.clone(), value.clone());
        }
    }
    let mut out = Vec::new();
    server::write_response(&response, b"", &mut out);
    tcp.write_all(&out).await?;
    stream.write_all(&rest).await?;
    tokio::io::copy_bidirectional(&mut tcp, &mut stream).await?;
    Ok(())
}

// --- HTTP/2 in, HTTP/1.1 out ------------------------------------------------------------

async fn from_h2(listener: TcpListener, upstream: Uri) -> Result<(), Box<dyn std::error::Error>> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names)?;
    let key = pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let upstream = Arc::new(upstream);
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let acceptor = acceptor.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |request| answer(request, upstream.clone()));
            let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .enable_connect_protocol()
                .serve_connection(TokioIo::new(tls), service)
                .await;
            if let Err(e) = served {
                eprintln!("h2_bridge from-h2: connection: {e}");
            }
        });
    }
}

/// Answers one extended CONNECT with the upstream's answer to the same upgrade, and relays
/// the stream.
async fn answer(
    mut request: Request<Incoming>,
    upstream: Arc<Uri>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let status = |status: StatusCode| {
        let mut response = Response::new(Empty::new());
        *response.status_mut() = status;
        Ok(response)
    };
    let websocket = request
        .extensions()
        .get::<Protocol>()
        .is_some_and(|p| p.as_str() == "websocket");
    if request.method() != Method::CONNECT || !websocket {
        return status(StatusCode::BAD_REQUEST);
    }
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{upstream}{}", target.trim_start_matches('/'));
    let upgraded = hyper::upgrade::on(&mut request);
    let handshake = tokio::time::timeout(TIMEOUT, upgrade(&url, request.headers())).await;
    let (head, tcp, rest) = match handshake {
        Ok(Ok(upgrade)) => upgrade,
        Ok(Err(e)) => {
            eprintln!("h2_bridge from-h2: {url}: {e}");
            return status(StatusCode::BAD_GATEWAY);
        }
        Err(_) => return status(StatusCode::GATEWAY_TIMEOUT),
    };
    if head.status() != StatusCode::SWITCHING_PROTOCOLS {
        return status(head.status());
    }
    let mut response = Response::new(Empty::new());
    *response.version_mut() = Version::HTTP_2;
    for (name, value) in head.headers() {
        if name == SEC_WEBSOCKET_EXTENSIONS || name == SEC_WEBSOCKET_PROTOCOL {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    tokio::spawn(async move {
        let (Ok(upgraded), mut tcp) = (upgraded.await, tcp) else {
            return;
        };
        let mut stream = TokioIo::new(upgraded);
        if stream.write_all(&rest).await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
        }
    });
    Ok(response)
}

/// The HTTP/1.1 upgrade to `url`, offering what the CONNECT offered: the upstream's response
/// head, the connection, and the bytes read past the head.
async fn upgrade(
    url: &str,
    offered: &HeaderMap,
) -> Result<(Response<()>, TcpStream, BytesMut), Error> {
    let uri: Uri = url.parse().map_err(|e| Error::Url(format!("{url}: {e}")))?;
    let protocols: Vec<String> = offered
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let protocols: Vec<&str> = protocols.iter().map(String::as_str).collect();
    let (mut request, _key) = client::build_request(&uri, &protocols, &HeaderMap::new())?;
    for value in offered.get_all(SEC_WEBSOCKET_EXTENSIONS) {
        request
            .headers_mut()
            .append(SEC_WEBSOCKET_EXTENSIONS, value.clone());
    }
    let mut out = Vec::new();
    client::write_request(&request, &mut out);
    let host = uri.host().unwrap_or("127.0.0.1");
    let mut tcp = TcpStream::connect((host, uri.port_u16().unwrap_or(80))).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if let Some((response, len)) = client::parse_response(&buf, MAX_HEAD)? {
            let rest = buf.split_off(len);
            return Ok((response, tcp, rest));
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(Error::Closed);
        }
    }
}
