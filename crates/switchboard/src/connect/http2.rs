//! The client over HTTP/2 (RFC 8441): TLS offering ALPN `h2` then `http/1.1`, the server's
//! SETTINGS awaited, and each WebSocket an extended CONNECT stream (`:protocol = websocket`)
//! of the one connection, running the unchanged engine in the client role over the stream.
//!
//! A server that chose HTTP/1.1 in ALPN, or did not advertise
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`, cannot take a WebSocket over HTTP/2; [`negotiate`]
//! says which, for [`connect_with`](super::connect_with) to fall back to HTTP/1.1.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http::header::{
    CONNECTION, HOST, HeaderMap, HeaderName, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, TE, TRANSFER_ENCODING, UPGRADE,
};
use http::{Request, Response, Uri};
use proto::Role;
use proto::handshake::client;

use super::ConnectOptions;
use super::refusal::Refusal;
use crate::error::Error;
use crate::h2_stream::{self, H2Stream};
use crate::stream::{Http2Stream, MaybeTlsStream};
use crate::websocket::WebSocket;

/// What one stream may have received and the engine not yet read.
const STREAM_WINDOW: u32 = 256 * 1024;

/// What all streams together may have received and not yet read: room for 64 busy streams
/// before one waits for another's reader.
const CONNECTION_WINDOW: u32 = 64 * STREAM_WINDOW;

/// Headers a relayed request loses: HTTP/2 forbids the connection-specific ones (RFC 9113
/// §8.2.2) and replaces `Host` and the key (RFC 8441 §5).
const FORBIDDEN: [HeaderName; 7] = [
    HOST,
    CONNECTION,
    UPGRADE,
    TE,
    TRANSFER_ENCODING,
    SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_ACCEPT,
];

/// An HTTP/2 connection to a server that takes WebSockets over it (RFC 8441): each
/// [`open`](Self::open) is a WebSocket on a stream of its own, all of them sharing one TCP and
/// TLS connection. Clones share the connection, which ends when the last clone and the last of
/// its WebSockets are dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), switchboard::Error> {
/// use switchboard::{ConnectOptions, Http2Connection, Message};
///
/// let connection = Http2Connection::connect("wss://example.com/", &ConnectOptions::default()).await?;
/// let (mut chat, _) = connection.open("/chat").await?;
/// let (mut feed, _) = connection.open("/feed?since=10").await?;
/// chat.send(Message::text("hello")).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Http2Connection {
    send: SendRequest<Bytes>,
    /// The scheme and authority the connection was made for.
    base: Uri,
    options: Arc<ConnectOptions>,
}

impl std::fmt::Debug for Http2Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Connection")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What the server agreed on.
pub(super) enum Negotiated {
    /// HTTP/2, with extended CONNECT.
    Http2(Http2Connection),
    /// HTTP/1.1 in ALPN: the stream, for an HTTP/1.1 handshake.
    Http1(MaybeTlsStream),
    /// HTTP/2 without `SETTINGS_ENABLE_CONNECT_PROTOCOL`: the connection is closed.
    NoExtendedConnect,
}

impl Http2Connection {
    /// Connects to `url`'s host (`wss://` or `https://`) over TLS with ALPN `h2`, and waits
    /// for the server's SETTINGS. `options` apply to every WebSocket [`open`](Self::open)
    /// opens; their [`timeout`](ConnectOptions::timeout) bounds connecting, and each opening.
    /// [`ConnectOptions::http2`] is not needed.
    ///
    /// # Errors
    ///
    /// [`Error::Http2Unavailable`] when the server chose HTTP/1.1 or did not advertise
    /// extended CONNECT ([`connect_with`](crate::connect_with) with
    /// [`ConnectOptions::http2`] falls back to HTTP/1.1 instead); [`Error::Url`] for a
    /// `ws://` URL (HTTP/2 is offered over TLS only); otherwise as
    /// [`connect`](crate::connect).
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Self, Error> {
        let uri = super::parse(url)?;
        if !is_tls(&uri) {
            return Err(Error::Url(format!(
                "{url}: websockets over http/2 need wss:// (tls)"
            )));
        }
        let negotiated = tokio::time::timeout(options.timeout, negotiate(&uri, options))
            .await
            .map_err(|_| Error::Timeout("http/2 connection"))??;
        match negotiated {
            Negotiated::Http2(connection) => Ok(connection),
            Negotiated::Http1(_) => {
                Err(Error::Http2Unavailable("the server chose http/1.1 in alpn"))
            }
            Negotiated::NoExtendedConnect => Err(Error::Http2Unavailable(
                "the server did not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL",
            )),
        }
    }

    /// Opens a WebSocket on a new stream of the connection: an extended CONNECT to `target`,
    /// a path with its query (`/chat?room=1`) or a URL of the same host and port, with the
    /// connection's subprotocols, permessage-deflate offer and extra headers. Waits while
    /// the server's limit of concurrent streams is reached.
    ///
    /// The response is the server's (version HTTP/2, status 200).
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] when the server refuses (as over HTTP/1.1; the body is not read),
    /// or a handshake error when it answers
    /// with a subprotocol or extension it was not offered; [`Error::Io`] when the connection
    /// is gone or the stream was refused; [`Error::Url`]; [`Error::Timeout`].
    pub async fn open(
        &self,
        target: &str,
    ) -> Result<(WebSocket<MaybeTlsStream>, Response<()>), Error> {
        let uri = self.target(target)?;
        tokio::time::timeout(self.options.timeout, self.open_uri(&uri))
            .await
            .map_err(|_| Error::Timeout("http/2 websocket handshake"))?
    }

    /// Opens a stream with an extended CONNECT to `target` (as for [`open`](Self::open))
    /// carrying `headers` as they are, `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions`
    /// included, and returns the server's 2xx response and the stream, without checking what
    /// the server agreed: for a relay that leaves the WebSocket's handshake to its two ends,
    /// such as a bridge from HTTP/1.1 to HTTP/2. `Sec-WebSocket-Version: 13` is added when
    /// missing; the headers HTTP/2 forbids or replaces (`Host`, `Connection`, `Upgrade`,
    /// `Sec-WebSocket-Key`, ...) are left out.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), but only the status is checked.
    pub async fn open_raw(
        &self,
        target: &str,
        headers: &HeaderMap,
    ) -> Result<(Response<()>, MaybeTlsStream), Error> {
        let uri = self.target(target)?;
        let mut request = client::build_http2_request(&uri, &[], &HeaderMap::new())?;
        let own = request.headers_mut();
        for (name, value) in headers {
            if !FORBIDDEN.contains(name) && name != SEC_WEBSOCKET_VERSION {
                own.append(name.clone(), value.clone());
            }
        }
        if let Some(version) = headers.get(SEC_WEBSOCKET_VERSION) {
            own.insert(SEC_WEBSOCKET_VERSION, version.clone());
        }
        let opening = async {
            let (response, stream) = self.send_connect(request).await?;
            if !response.status().is_success() {
                let refusal = Refusal::new(response.map(|()| Bytes::new()), false);
                return Err(Error::Refused(Box::new(refusal)));
            }
            let io = MaybeTlsStream::Http2(Box::new(Http2Stream::client(stream)));
            Ok((response, io))
        };
        tokio::time::timeout(self.options.timeout, opening)
            .await
            .map_err(|_| Error::Timeout("http/2 websocket handshake"))?
    }

    /// Sends an extended CONNECT (`:protocol = websocket`) on a new stream; the response's
    /// head and the stream.
    async fn send_connect(
        &self,
        mut request: Request<()>,
    ) -> Result<(Response<()>, H2Stream), Error> {
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        // Ready once the server's limit of concurrent streams leaves room for one more.
        let mut send = self.send.clone().ready().await.map_err(h2_error)?;
        let (response, stream) = send.send_request(request, false).map_err(h2_error)?;
        let (parts, body) = response.await.map_err(h2_error)?.into_parts();
        // A refusal drops the stream: h2 resets it, and the connection serves the others.
        Ok((Response::from_parts(parts, ()), H2Stream::new(stream, body)))
    }

    /// `target` as a full URI on this connection.
    fn target(&self, target: &str) -> Result<Uri, Error> {
        let uri = if target.starts_with('/') {
            let scheme = self.base.scheme_str().unwrap_or("wss");
            let authority = self.base.authority().map_or("", |a| a.as_str());
            super::parse(&format!("{scheme}://{authority}{target}"))?
        } else {
            super::parse(target)?
        };
        fn origin(u: &Uri) -> (Option<&str>, u16) {
            (u.host(), u.port_u16().unwrap_or(443))
        }
        if !is_tls(&uri) || origin(&uri) != origin(&self.base) {
            return Err(Error::Url(format!(
                "{target}: not a path of this connection ({})",
                self.base
            )));
        }
        Ok(uri)
    }

    /// The extended CONNECT, its answer checked, and the WebSocket over the stream.
    pub(super) async fn open_uri(
        &self,
        uri: &Uri,
    ) -> Result<(WebSocket<MaybeTlsStream>, Response<()>), Error> {
        let options = &self.options;
        let protocols: Vec<&str> = options.protocols.iter().map(String::as_str).collect();
        let mut request = client::build_http2_request(uri, &protocols, &options.headers)?;
        if let Some(config) = &options.deflate {
            request
                .headers_mut()
                .insert(SEC_WEBSOCKET_EXTENSIONS, config.offer());
        }
        let (response, stream) = self.send_connect(request).await?;
        if !response.status().is_success() {
            let refusal = Refusal::new(response.map(|()| Bytes::new()), false);
            return Err(Error::Refused(Box::new(refusal)));
        }
        let agreed =
            client::validate_http2_response(&response, &protocols, options.deflate.as_ref())?;
        let io = MaybeTlsStream::Http2(Box::new(Http2Stream::client(stream)));
        let mut ws = WebSocket::from_raw(io, Role::Client, options.config.clone(), BytesMut::new());
        if let (Some(params), Some(config)) = (&agreed.deflate, &options.deflate) {
            ws.enable_deflate(params, config);
        }
        Ok((ws.with_protocol(agreed.protocol), response))
    }
}

/// Whether `uri` is one HTTP/2 is offered for: TLS.
pub(super) fn is_tls(uri: &Uri) -> bool {
    matches!(uri.scheme_str(), Some("wss" | "https"))
}

/// TLS to `uri`'s host offering ALPN `h2` then `http/1.1`, and on `h2` the HTTP/2 handshake
/// and the server's SETTINGS.
pub(super) async fn negotiate(uri: &Uri, options: &ConnectOptions) -> Result<Negotiated, Error> {
    let stream =
        MaybeTlsStream::connect_via(uri, options.tls.as_ref(), true, options.proxy.as_ref())
            .await?;
    if !stream.alpn_h2() {
        return Ok(Negotiated::Http1(stream));
    }
    let head = u32::try_from(options.max_head_size).unwrap_or(u32::MAX);
    let (send, mut connection) = h2::client::Builder::new()
        .enable_push(false)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(head)
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(h2_error)?;
    let mut ping_pong = connection
        .ping_pong()
        .ok_or(Error::Http2Unavailable("no ping on a new connection"))?;
    // The connection's task reads and writes the socket for every stream; it ends once the
    // last handle and the last stream are dropped, or the server goes away.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("http/2 connection ended: {e}");
        }
    });
    // The server's SETTINGS are the first frame it sends (RFC 9113 §3.4), so they have been
    // applied once it answers a PING: then the setting's absence means it is off.
    ping_pong.ping(h2::Ping::opaque()).await.map_err(h2_error)?;
    if !send.is_extended_connect_protocol_enabled() {
        return Ok(Negotiated::NoExtendedConnect);
    }
    Ok(Negotiated::Http2(Http2Connection {
        send,
        base: Uri::builder()
            .scheme("wss")
            .authority(uri.authority().map_or("", |a| a.as_str()))
            .path_and_query("/")
            .build()
            .map_err(|e| Error::Url(format!("{uri}: {e}")))?,
        options: Arc::new(options.clone()),
    }))
}

fn h2_error(e: h2::Error) -> Error {
    Error::Io(h2_stream::io_error(e))
}
