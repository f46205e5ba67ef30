//! Opening connections: WebSocket (ws://, wss://, with or without permessage-deflate, over
//! HTTP/1.1 or as streams of shared HTTP/2 connections), one at a time or many with bounded
//! concurrency. With `--raw` a connection is plain TCP to a raw echo, taken as a WebSocket
//! whose handshake is done: the workloads then run the same client, at the same cost per
//! message, against the raw echo as against a WebSocket server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use bytes::BytesMut;
use indicatif::ProgressBar;
use switchboard::{
    ConnectOptions, DeflateConfig, Http2Connection, MaybeTlsStream, Role, WebSocket,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use super::args::BenchArgs;
use super::stats::Errors;

/// How long connecting plus the opening handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How connections open: how wss:// verifies the server (`--ca`, `--insecure`), whether
/// permessage-deflate is offered, the proxy, the headers, origin and subprotocols. Every connection of a run opens through [`open`], deep in
/// the workload modules, so the choice is made once ([`configure`]) rather than threaded
/// through each of them.
static CONNECT_OPTIONS: std::sync::OnceLock<ConnectOptions> = std::sync::OnceLock::new();
/// With `--raw`: connections are plain TCP, without a handshake.
static RAW: AtomicBool = AtomicBool::new(false);
/// Connections on which the server agreed permessage-deflate.
static DEFLATE_AGREED: AtomicU64 = AtomicU64::new(0);
/// With `--http2`: the connection new WebSockets open on, until it has its share of them.
static HTTP2: std::sync::OnceLock<Http2Pool> = std::sync::OnceLock::new();
/// WebSockets opened over HTTP/2, and HTTP/2 connections opened.
static HTTP2_WEBSOCKETS: AtomicU64 = AtomicU64::new(0);
static HTTP2_CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// HTTP/2 connections, each shared by `per_connection` WebSockets.
struct Http2Pool {
    per_connection: usize,
    /// The connection being filled and how many WebSockets it has; `Err` once the server has
    /// said it takes none over HTTP/2.
    current: tokio::sync::Mutex<Result<Option<(Http2Connection, usize)>, ()>>,
}

impl Http2Pool {
    /// A connection with room for one more WebSocket; `None` when the server takes no
    /// WebSocket over HTTP/2 (said once on stderr).
    async fn connection(
        &self,
        url: &str,
        options: &ConnectOptions,
    ) -> Result<Option<Http2Connection>, switchboard::Error> {
        let mut current = self.current.lock().await;
        match &mut *current {
            Err(()) => return Ok(None),
            Ok(Some((connection, opened))) if *opened < self.per_connection => {
                *opened += 1;
                return Ok(Some(connection.clone()));
            }
            Ok(_) => {}
        }
        match Http2Connection::connect(url, options).await {
            Ok(connection) => {
                HTTP2_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                *current = Ok(Some((connection.clone(), 1)));
                Ok(Some(connection))
            }
            Err(switchboard::Error::Http2Unavailable(why)) => {
                eprintln!("note: {why}; connecting over HTTP/1.1");
                *current = Err(());
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Sets how the connections of this run open, from `--insecure`, `--ca`, `--deflate`,
/// `-H`, `--origin`, `-s` and `--proxy` (or the environment's proxy, said on stderr so that a run through a proxy is not
/// taken for a direct one). Called once, before any connection opens.
pub(crate) fn configure(args: &BenchArgs) -> anyhow::Result<()> {
    if args.raw {
        host_port(&args.url)?;
        RAW.store(true, Ordering::Relaxed);
    }
    let tls = crate::trust::client_tls(args.ca.as_deref(), args.insecure)?;
    let proxy = args.proxy.for_url(&raw_as_ws(&args.url))?;
    if let Some(proxy) = &proxy {
        eprintln!("note: connecting through proxy {proxy}");
    }
    let mut options = ConnectOptions {
        timeout: CONNECT_TIMEOUT,
        tls,
        deflate: args.deflate.then(DeflateConfig::default),
        proxy,
        ..ConnectOptions::default()
    };
    args.handshake.apply(&mut options);
    let _ = CONNECT_OPTIONS.set(options);
    if args.http2 {
        if args.streams_per_connection == 0 {
            bail!("--streams-per-connection must be at least 1");
        }
        let _ = HTTP2.set(Http2Pool {
            per_connection: args.streams_per_connection,
            current: tokio::sync::Mutex::new(Ok(None)),
        });
    }
    Ok(())
}

/// With `--http2`: WebSockets opened over HTTP/2 and the HTTP/2 connections they shared.
pub(crate) fn http2_opened() -> (u64, u64) {
    (
        HTTP2_WEBSOCKETS.load(Ordering::Relaxed),
        HTTP2_CONNECTIONS.load(Ordering::Relaxed),
    )
}

/// Connections so far on which the server agreed permessage-deflate.
pub(crate) fn deflate_agreed() -> u64 {
    DEFLATE_AGREED.load(Ordering::Relaxed)
}

/// A transport [`switchboard::connect_with`] may hand back (plain TCP; TLS for `wss://`; a
/// stream of an HTTP/2 connection).
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// Opens a WebSocket connection to `url`, whatever its scheme needs (with `--raw`, a TCP
/// connection to a raw echo); a failure is told as `connect` tells it (with a hint for the
/// usual mix-ups).
///
/// Takes the URL by value so that the transport's type borrows nothing.
pub(crate) async fn open(url: String) -> Result<WebSocket<impl Transport>, String> {
    if RAW.load(Ordering::Relaxed) {
        return open_raw(&url).await;
    }
    connect(&url)
        .await
        .map_err(|e| crate::connect::errors::explain(&url, &e, false))
}

/// The options every connection opens with (the defaults with the connect timeout, when
/// [`configure`] was not called).
fn options() -> &'static ConnectOptions {
    CONNECT_OPTIONS.get_or_init(|| ConnectOptions {
        timeout: CONNECT_TIMEOUT,
        ..ConnectOptions::default()
    })
}

async fn connect(url: &str) -> Result<WebSocket<MaybeTlsStream>, switchboard::Error> {
    let options = options();
    let ws = match HTTP2.get() {
        Some(pool) => match pool.connection(url, options).await? {
            Some(connection) => {
                let (ws, _response) = connection.open(url).await?;
                HTTP2_WEBSOCKETS.fetch_add(1, Ordering::Relaxed);
                ws
            }
            None => switchboard::connect_with(url, options).await?.0,
        },
        None => switchboard::connect_with(url, options).await?.0,
    };
    if ws.deflate().is_some() {
        DEFLATE_AGREED.fetch_add(1, Ordering::Relaxed);
    }
    Ok(ws)
}

/// The `host:port` of a URL (`ws://host:port/path`, `tcp://host:port` or `host:port`), for
/// `--raw`.
pub(crate) fn host_port(url: &str) -> anyhow::Result<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    if !authority.contains(':') {
        bail!("{url}: a raw echo target needs a port");
    }
    Ok(authority.to_owned())
}

/// A `--raw` target (`host:port`, `tcp://host:port`) as a `ws://` URL, for the
/// environment's proxy rules, which go by scheme and host.
fn raw_as_ws(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("ws://{url}/")
    }
}

/// Opens a plain TCP connection to the raw echo at `url` (for `--raw`), with Nagle off as
/// WebSocket connections have it, through the proxy when there is one, and wraps it as a
/// client WebSocket with the configuration of every other connection.
async fn open_raw(url: &str) -> Result<WebSocket<MaybeTlsStream>, String> {
    let addr = host_port(url).map_err(|e| e.to_string())?;
    let options = options();
    let connect = async {
        match &options.proxy {
            Some(proxy) => {
                let (host, port) = addr
                    .rsplit_once(':')
                    .and_then(|(host, port)| Some((host, port.parse().ok()?)))
                    .ok_or_else(|| std::io::Error::other(format!("{addr}: expected host:port")))?;
                Ok(proxy.connect(host, port).await?)
            }
            None => tokio::net::TcpStream::connect(&addr).await,
        }
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
        .and_then(|connected| connected)
        .and_then(|stream| stream.set_nodelay(true).map(|()| stream))
        .map_err(|e| e.to_string())?;
    Ok(WebSocket::from_raw(
        MaybeTlsStream::from(stream),
        Role::Client,
        options.config.clone(),
        BytesMut::new(),
    ))
}

/// Opens `n` connections with `open`, at most `concurrency` at a time; returns those that
/// opened and counts the failures into `errors`.
/// [`open_all`] for a run that needs every connection: the first error fails it.
pub(crate) async fn open_every<T, F, Fut, E>(
    n: usize,
    concurrency: usize,
    open: F,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let mut errors = Errors::default();
    let opened = open_all(n, concurrency, open, &mut errors, progress).await;
    if errors.count() > 0 {
        bail!(
            "{} of {n} connections failed: {}",
            errors.count(),
            errors.first()
        );
    }
    Ok(opened)
}

pub(crate) async fn open_all<T, F, Fut, E>(
    n: usize,
    concurrency: usize,
    open: F,
    errors: &mut Errors,
    progress: &ProgressBar,
) -> Vec<T>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let mut opened = Vec::with_capacity(n);
    let mut pending = JoinSet::new();
    let mut started = 0;
    while opened.len() + errors.count() < n {
        while started < n && pending.len() < concurrency.max(1) {
            pending.spawn(open());
            started += 1;
        }
        match pending.join_next().await {
            Some(Ok(Ok(conn))) => opened.push(conn),
            Some(Ok(Err(e))) => errors.add(format!("connect: {e}")),
            Some(Err(e)) => errors.add(format!("connect: {e}")),
            None => break,
        }
        progress.set_position((opened.len() + errors.count()) as u64);
    }
    opened
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_targets_need_a_port() {
        assert_eq!(host_port("ws://127.0.0.1:9/x").unwrap(), "127.0.0.1:9");
        assert_eq!(host_port("tcp://[::1]:9").unwrap(), "[::1]:9");
        assert_eq!(host_port("localhost:7").unwrap(), "localhost:7");
        assert!(host_port("ws://localhost/").is_err());
    }
}
