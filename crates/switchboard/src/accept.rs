//! The server side of the opening handshake over a tokio transport.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::{Request, Response};
use proto::deflate::{DeflateConfig, DeflateParams};
use proto::handshake::{HandshakeError, server};
use proto::{Config, Role};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::addresses::AddressTicket;
use crate::error::Error;
use crate::head::read_head;
use crate::websocket::WebSocket;

/// Options for accepting connections.
#[derive(Clone, Debug)]
pub struct AcceptOptions {
    /// Limits of each connection.
    pub config: Config,
    /// Subprotocols the server speaks, in order of preference; the first one the client also
    /// offers is chosen. Empty: none is chosen.
    pub protocols: Vec<String>,
    /// The longest request head accepted, in bytes; a longer one gets 431.
    pub max_head_size: usize,
    /// How long a client may take to send its request head.
    pub handshake_timeout: Duration,
    /// permessage-deflate (RFC 7692): accepted when the client offers it and this is `Some`
    /// (the default is `None`: no compression).
    pub deflate: Option<DeflateConfig>,
}

impl Default for AcceptOptions {
    fn default() -> Self {
        Self {
            config: Config::default(),
            protocols: Vec::new(),
            max_head_size: 8 * 1024,
            handshake_timeout: Duration::from_secs(10),
            deflate: None,
        }
    }
}

/// Accepts a WebSocket connection on a raw stream: reads the request, answers it, and returns
/// the connection and the request (path, query, headers) for the application to look at.
///
/// A request that is not a valid upgrade gets the matching 4xx response with a one-line reason
/// before the error is returned.
///
/// # Errors
///
/// [`Error::Handshake`] for a bad request, [`Error::Timeout`] when the head takes longer than
/// the handshake timeout, [`Error::Io`] when the transport fails.
pub async fn accept<S>(stream: S) -> Result<(WebSocket<S>, Request<()>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, &AcceptOptions::default()).await
}

/// [`accept`] with options.
///
/// # Errors
///
/// As [`accept`].
pub async fn accept_with<S>(
    mut stream: S,
    options: &AcceptOptions,
) -> Result<(WebSocket<S>, Request<()>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (request, read_buf) = read_request(&mut stream, options).await?;
    let ws = accept_request(&request, stream, read_buf, options).await?;
    Ok((ws, request))
}

/// Reads an HTTP request head; returns it with the bytes read past it.
///
/// A head over the size limit is answered with 431 before the error returns.
///
/// # Errors
///
/// As [`accept`].
pub async fn read_request<S>(
    stream: &mut S,
    options: &AcceptOptions,
) -> Result<(Request<()>, BytesMut), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max_head = options.max_head_size;
    let read = read_head(stream, |buf| server::parse_request(buf, max_head));
    match tokio::time::timeout(options.handshake_timeout, read).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(Error::Handshake(e))) => {
            reject(stream, &e).await;
            Err(e.into())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Timeout("request head")),
    }
}

/// Accepts a request the caller has already read (a server that routes plain HTTP elsewhere):
/// validates it, writes the 101 (or the 4xx with the reason), and wraps the stream. `read_buf`
/// holds any bytes read past the request head.
///
/// HTTP/1.1 only: the answer to an HTTP/2 extended CONNECT goes out through the HTTP/2
/// server, as [`PreparedUpgrade`] lets a hyper or axum server do for both versions.
///
/// # Errors
///
/// [`Error::Handshake`] when the request is not a valid upgrade (nothing is written for an
/// HTTP/2 CONNECT); [`Error::Io`].
pub async fn accept_request<S>(
    request: &Request<()>,
    mut stream: S,
    read_buf: BytesMut,
    options: &AcceptOptions,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if server::is_connect_request(request) {
        let why = "an HTTP/2 extended CONNECT is answered by the HTTP/2 server".into();
        return Err(HandshakeError::MalformedHttp(why).into());
    }
    match PreparedUpgrade::new(request, options) {
        Ok(upgrade) => upgrade.send(stream, read_buf).await,
        Err(e) => {
            reject(&mut stream, &e).await;
            Err(e.into())
        }
    }
}

/// The first of the server's `protocols` that the client offers (RFC 6455 §4.2.2 step 4: the
/// server picks; the client's order is only a hint).
pub(crate) fn choose_protocol<B>(request: &Request<B>, protocols: &[String]) -> Option<String> {
    let offered: Vec<&str> = server::requested_protocols(request).collect();
    protocols
        .iter()
        .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)))
        .map(|p| {
            // Answer with the client's spelling: the value must be one it sent.
            offered
                .iter()
                .find(|o| o.eq_ignore_ascii_case(p))
                .map_or_else(|| p.clone(), |o| (*o).to_owned())
        })
}

/// An upgrade validated for a server that writes the `101` itself (hyper, axum): send
/// [`response`](Self::response) as the answer to the request, then wrap the upgraded connection
/// (`hyper::upgrade::on(&mut request)`) with [`into_websocket`](Self::into_websocket).
///
/// The same code takes an HTTP/1.1 `GET` upgrade and an HTTP/2 extended CONNECT (RFC 8441),
/// answered `200` without `Sec-WebSocket-Accept`, once the server enables it (hyper's
/// `http2::Builder::enable_connect_protocol`, which `axum::serve` calls with axum's `http2`
/// feature) and the route takes `CONNECT` as well as `GET`. The engine then runs over the
/// HTTP/2 stream, under its flow control.
///
/// See `examples/axum_upgrade.rs`.
#[derive(Debug)]
pub struct PreparedUpgrade {
    response: Response<()>,
    protocol: Option<String>,
    config: Arc<Config>,
    /// The agreed permessage-deflate parameters and the server's settings, when negotiated.
    deflate: Option<(DeflateParams, DeflateConfig)>,
    /// The connection's count under a server's limit per address, kept as long as it lasts.
    address: Option<AddressTicket>,
}

impl PreparedUpgrade {
    /// Validates `request` (RFC 6455 §4.2.1) and builds the `101 Switching Protocols`, or for
    /// an HTTP/2 extended CONNECT (RFC 8441 §5) the `200`, with
    /// the first of `options.protocols` that the client offers, and permessage-deflate when
    /// `options.deflate` is set and the client offers it acceptably (RFC 7692 §5).
    ///
    /// # Errors
    ///
    /// The request is not a valid upgrade (a CONNECT whose `:protocol`, hyper's
    /// `ext::Protocol`, is not `websocket` included): answer with
    /// [`refusal`](Self::refusal) (its [`status`](HandshakeError::status) and reason).
    pub fn new<B>(request: &Request<B>, options: &AcceptOptions) -> Result<Self, HandshakeError> {
        if server::is_connect_request(request) {
            // RFC 8441 §4: the protocol travels in `:protocol`, which hyper hands over as an
            // extension; a CONNECT without it is not a WebSocket's.
            match request.extensions().get::<hyper::ext::Protocol>() {
                Some(protocol) if protocol.as_str().eq_ignore_ascii_case("websocket") => {}
                Some(protocol) => {
                    let why = format!("connect with :protocol {:?}", protocol.as_str());
                    return Err(HandshakeError::MalformedHttp(why));
                }
                None => {
                    let why = "connect without :protocol".into();
                    return Err(HandshakeError::MalformedHttp(why));
                }
            }
        }
        Self::with_protocol(
            request,
            options,
            Arc::new(options.config.clone()),
            choose_protocol(request, &options.protocols),
        )
    }

    /// As [`new`](Self::new), with the protocol chosen and `config` (`options.config`,
    /// shared by the caller's connections).
    pub(crate) fn with_protocol<B>(
        request: &Request<B>,
        options: &AcceptOptions,
        config: Arc<Config>,
        protocol: Option<String>,
    ) -> Result<Self, HandshakeError> {
        let mut response = if server::is_connect_request(request) {
            server::connect_response(request, protocol.as_deref())?
        } else {
            server::accept_response(request, protocol.as_deref())?
        };
        let deflate = options.deflate.as_ref().and_then(|config| {
            let params = config.negotiate(request.headers())?;
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_EXTENSIONS, params.to_header());
            Some((params, config.clone()))
        });
        Ok(Self {
            response,
            protocol,
            config,
            deflate,
            address: None,
        })
    }

    /// The answer to `request` when [`new`](Self::new) refused it with `error`, body
    /// included: [`HandshakeError::to_response`] for an HTTP/1.1 upgrade; for an HTTP/2
    /// CONNECT, without the headers HTTP/2 forbids and with `400` (and the version spoken) in
    /// place of `426` (`server::reject_connect_response`), so that only the stream ends.
    pub fn refusal<B, R: From<String>>(
        request: &Request<B>,
        error: &HandshakeError,
    ) -> Response<R> {
        if !server::is_connect_request(request) {
            return error.to_response();
        }
        let (head, body) = server::reject_connect_response(error);
        let (parts, ()) = head.into_parts();
        Response::from_parts(parts, R::from(body))
    }

    /// The `101` response (the `200` over HTTP/2: status and headers) to send, with an empty
    /// body of the HTTP server's type.
    pub fn response<B: Default>(&self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = self.response.status();
        *response.version_mut() = self.response.version();
        *response.headers_mut() = self.response.headers().clone();
        response
    }

    /// The subprotocol chosen, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The permessage-deflate parameters agreed, if any (also in the response's
    /// `Sec-WebSocket-Extensions`).
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref().map(|(params, _)| params)
    }

    /// The upgrade, with the connection's count under the limit per address.
    pub(crate) fn holding(mut self, ticket: AddressTicket) -> Self {
        self.address = Some(ticket);
        self
    }

    /// Wraps the connection once the `101` is sent; `read_buf` holds any bytes already read
    /// past the request (empty for hyper's upgrades).
    pub fn into_websocket<S>(self, io: S, read_buf: BytesMut) -> WebSocket<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut ws = WebSocket::from_raw(io, Role::Server, self.config, read_buf);
        if let Some((params, config)) = &self.deflate {
            ws.enable_deflate(params, config);
        }
        if let Some(ticket) = self.address {
            ws.hold(ticket);
        }
        ws.with_protocol(self.protocol)
    }

    /// Writes the `101` on `stream` and wraps it, for a server that reads requests itself.
    pub(crate) async fn send<S>(
        self,
        mut stream: S,
        read_buf: BytesMut,
    ) -> Result<WebSocket<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        write_response(&mut stream, &self.response, b"").await?;
        Ok(self.into_websocket(stream, read_buf))
    }
}

/// Writes an HTTP response (and body) and flushes it.
///
/// # Errors
///
/// [`Error::Io`].
pub async fn write_response<S>(
    stream: &mut S,
    response: &Response<()>,
    body: &[u8],
) -> Result<(), Error>
where
    S: AsyncWrite + Unpin,
{
    let mut out = Vec::with_capacity(256 + body.len());
    server::write_response(response, body, &mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(())
}

/// Answers a failed handshake with its status and reason, then ends the stream. Best effort:
/// the peer may already be gone.
async fn reject<S: AsyncWrite + Unpin>(stream: &mut S, error: &HandshakeError) {
    let (response, body) = server::reject_response(error);
    if write_response(stream, &response, body.as_bytes())
        .await
        .is_ok()
    {
        let _ = stream.shutdown().await;
    }
}
