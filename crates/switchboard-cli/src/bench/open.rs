//! Opening connections: WebSocket (ws://, wss://, with or without permessage-deflate) and
//! plain TCP for `--raw`, one at a time or many with bounded concurrency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use indicatif::ProgressBar;
use switchboard::{ConnectOptions, DeflateConfig, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use super::args::BenchArgs;
use super::stats::Errors;

/// How long connecting plus the opening handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How connections open: how wss:// verifies the server (`--ca`, `--insecure`), whether
/// permessage-deflate is offered. Every connection of a run opens through [`open`], deep in
/// the workload modules, so the choice is made once ([`configure`]) rather than threaded
/// through each of them.
static CONNECT_OPTIONS: std::sync::OnceLock<ConnectOptions> = std::sync::OnceLock::new();
/// Connections on which the server agreed permessage-deflate.
static DEFLATE_AGREED: AtomicU64 = AtomicU64::new(0);

/// Sets how the connections of this run open, from `--insecure`, `--ca` and `--deflate`.
/// Called once, before any connection opens.
pub(crate) fn configure(args: &BenchArgs) -> anyhow::Result<()> {
    let tls = crate::trust::client_tls(args.ca.as_deref(), args.insecure)?;
    let _ = CONNECT_OPTIONS.set(ConnectOptions {
        timeout: CONNECT_TIMEOUT,
        tls,
        deflate: args.deflate.then(DeflateConfig::default),
        ..ConnectOptions::default()
    });
    Ok(())
}

/// Connections so far on which the server agreed permessage-deflate.
pub(crate) fn deflate_agreed() -> u64 {
    DEFLATE_AGREED.load(Ordering::Relaxed)
}

/// A transport [`switchboard::connect_with`] may hand back (plain TCP; TLS for `wss://`).
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// Opens a WebSocket connection to `url`, whatever its scheme needs.
///
/// Takes the URL by value so that the transport's type borrows nothing.
pub(crate) async fn open(url: String) -> Result<WebSocket<impl Transport>, switchboard::Error> {
    let options = CONNECT_OPTIONS.get_or_init(|| ConnectOptions {
        timeout: CONNECT_TIMEOUT,
        ..ConnectOptions::default()
    });
    let (ws, _response) = switchboard::connect_with(&url, options).await?;
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
        bail!("{url}: a raw TCP target needs a port");
    }
    Ok(authority.to_owned())
}

/// Opens a plain TCP connection (for `--raw`), with Nagle off as WebSocket connections have it.
pub(crate) async fn open_raw(addr: &str) -> std::io::Result<tokio::net::TcpStream> {
    let connect = tokio::net::TcpStream::connect(addr);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens `n` connections with `open`, at most `concurrency` at a time; returns those that
/// opened and counts the failures into `errors`.
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
