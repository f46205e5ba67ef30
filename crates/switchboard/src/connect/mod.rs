//! The client side: connecting to a `ws://` or `wss://` URL, over HTTP/1.1 or, when asked and
//! the server takes it, over HTTP/2 (`http2.rs`), directly or through an HTTP or SOCKS5
//! proxy (`proxy/`). A server's refusal keeps its status, headers and body (`refusal.rs`).

mod http2;
pub(crate) mod proxy;
pub(crate) mod refusal;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::{HeaderMap, Response, StatusCode, Uri};
use proto::deflate::DeflateConfig;
use proto::handshake::client;
use proto::{Config, Role};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
use crate::head::read_head;
use crate::stream::MaybeTlsStream;
use crate::tls::ClientTls;
use crate::websocket::WebSocket;

pub use http2::Http2Connection;
pub use proxy::{Proxy, ProxyError};
pub use refusal::Refusal;

/// Options for [`connect_with`].
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Limits of the connection.
    pub config: Config,
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// Extra request headers (`Origin`, `Authorization`, cookies, ...).
    pub headers: HeaderMap,
    /// The longest response head accepted, in bytes.
    pub max_head_size: usize,
    /// How long connecting and the handshake may take together.
    pub timeout: Duration,
    /// permessage-deflate (RFC 7692): offered when `Some` (the default is `None`); the
    /// server may decline it.
    pub deflate: Option<DeflateConfig>,
    /// Which servers to trust for `wss://`; `None` trusts the Mozilla roots
    /// ([`ClientTls::webpki_roots`]).
    pub tls: Option<ClientTls>,
    /// Open a `wss://` WebSocket over HTTP/2 (RFC 8441) when the server takes it: TLS offers
    /// ALPN `h2` then `http/1.1`, and when the server chose `h2` and advertised
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL`, the WebSocket is an extended CONNECT stream.
    /// Otherwise it is HTTP/1.1 as without this option: on the same connection when the
    /// server chose `http/1.1`, on a new one when it chose `h2` without the setting. The
    /// response's version says which. Off by default (HTTP/1.1 only); `ws://` is always
    /// HTTP/1.1. To share one connection among several WebSockets, see [`Http2Connection`].
    pub http2: bool,
    /// The proxy to connect through (HTTP `CONNECT` or SOCKS5): TLS to the server, HTTP/2
    /// included, runs inside the tunnel. `None` (the default) connects directly; the
    /// environment is not read unless asked, with [`Proxy::from_env`].
    pub proxy: Option<Proxy>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            config: Config::default(),
            protocols: Vec::new(),
            headers: HeaderMap::new(),
            max_head_size: 16 * 1024,
            timeout: Duration::from_secs(30),
            deflate: None,
            tls: None,
            http2: false,
            proxy: None,
        }
    }
}

/// Connects to a `ws://` or `wss://` URL and completes the opening handshake.
///
/// ```no_run
/// # async fn run() -> Result<(), switchboard::Error> {
/// use switchboard::Message;
///
/// let (mut ws, _response) = switchboard::connect("ws://127.0.0.1:8080/ws").await?;
/// ws.send(Message::text("hello")).await?;
/// while let Some(message) = ws.recv().await {
///     println!("{:?}", message?);
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`Error::Url`] for a URL that is not `ws[s]://host[:port]/...`, [`Error::Io`] when the TCP
/// connection or the TLS handshake fails (an untrusted certificate included),
/// [`Error::Refused`] when the server refuses the upgrade, [`Error::Handshake`] when it answers
/// wrongly ([`Error::TlsAnswer`] when in TLS, to a `ws://` URL),
/// [`Error::Proxy`] when a proxy ([`ConnectOptions::proxy`]) cannot be reached or refuses,
/// [`Error::Timeout`].
pub async fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream>, Response<()>), Error> {
    connect_with(url, &ConnectOptions::default()).await
}

/// [`connect`] with options.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_with(
    url: &str,
    options: &ConnectOptions,
) -> Result<(WebSocket<MaybeTlsStream>, Response<()>), Error> {
    let uri = parse(url)?;
    let handshake = async {
        if options.http2 && http2::is_tls(&uri) {
            match http2::negotiate(&uri, options).await? {
                http2::Negotiated::Http2(connection) => return connection.open_uri(&uri).await,
                http2::Negotiated::Http1(stream) => {
                    tracing::debug!(%uri, "the server chose http/1.1 in alpn");
                    return client_handshake(&uri, stream, options).await;
                }
                http2::Negotiated::NoExtendedConnect => {
                    tracing::debug!(%uri, "no extended connect over http/2: http/1.1 instead");
                }
            }
        }
        let stream =
            MaybeTlsStream::connect_via(&uri, options.tls.as_ref(), false, options.proxy.as_ref())
                .await?;
        client_handshake(&uri, stream, options).await
    };
    tokio::time::timeout(options.timeout, handshake)
        .await
        .map_err(|_| Error::Timeout("connect and handshake"))?
}

/// Whether `head` starts as a TLS record does (an alert or a handshake, protocol version 3.x,
/// RFC 8446 §5.1): what a TLS server answers a plain HTTP request with.
fn is_tls_record(head: &[u8]) -> bool {
    matches!(head, [0x15 | 0x16, 0x03, ..] | [0x15 | 0x16])
}

/// `url` as a URI.
fn parse(url: &str) -> Result<Uri, Error> {
    url.parse().map_err(|e| Error::Url(format!("{url}: {e}")))
}

/// Runs the client handshake for `uri` over an established stream.
///
/// # Errors
///
/// As [`connect`].
pub async fn client_handshake<S>(
    uri: &Uri,
    mut stream: S,
    options: &ConnectOptions,
) -> Result<(WebSocket<S>, Response<()>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let protocols: Vec<&str> = options.protocols.iter().map(String::as_str).collect();
    let (mut request, key) = client::build_request(uri, &protocols, &options.headers)?;
    if let Some(config) = &options.deflate {
        request
            .headers_mut()
            .insert(SEC_WEBSOCKET_EXTENSIONS, config.offer());
    }
    let mut out = Vec::with_capacity(256);
    client::write_request(&request, &mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;

    let max_head = options.max_head_size;
    // Set by the parser, read after it failed (the future must stay Send: no Cell).
    let tls_answer = AtomicBool::new(false);
    let parse = |buf: &[u8]| {
        let parsed = client::parse_response(buf, max_head);
        tls_answer.store(parsed.is_err() && is_tls_record(buf), Ordering::Relaxed);
        parsed
    };
    let (response, rest) = read_head(&mut stream, parse).await.map_err(|e| {
        if tls_answer.load(Ordering::Relaxed) {
            Error::TlsAnswer
        } else {
            e
        }
    })?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let refusal = refusal::read(&mut stream, response, rest).await;
        return Err(Error::Refused(Box::new(refusal)));
    }
    let agreed =
        client::validate_response_with(&response, &key, &protocols, options.deflate.as_ref())?;
    let mut ws = WebSocket::from_raw(stream, Role::Client, options.config.clone(), rest);
    if let (Some(params), Some(config)) = (&agreed.deflate, &options.deflate) {
        ws.enable_deflate(params, config);
    }
    Ok((ws.with_protocol(agreed.protocol), response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_alert_or_handshake_reads_as_tls_and_http_does_not() {
        // What a rustls server answers a plain request with: a fatal decode_error alert.
        assert!(is_tls_record(b"\x15\x03\x03\x00\x02\x02\x32"));
        assert!(is_tls_record(b"\x16\x03\x01\x00\x05"));
        assert!(is_tls_record(b"\x15"));
        assert!(!is_tls_record(b"HTTP/1.1 200 OK\r\n"));
        assert!(!is_tls_record(b"\x15\x04"));
        assert!(!is_tls_record(b""));
    }
}
