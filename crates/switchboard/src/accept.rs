//! The server side of the opening handshake over a tokio transport.

use std::time::Duration;

use bytes::BytesMut;
use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::{Request, Response};
use proto::deflate::DeflateConfig;
use proto::handshake::{HandshakeError, server};
use proto::{Config, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
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
    let mut buf = BytesMut::with_capacity(1024);
    let read = async {
        loop {
            match server::parse_request(&buf, options.max_head_size) {
                Ok(Some((request, len))) => {
                    let rest = buf.split_off(len);
                    return Ok((request, rest));
                }
                Ok(None) => {}
                Err(e) => return Err(e.into()),
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    };
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

/// Accepts a request the caller has already read (a hyper/axum upgrade, or a server that routes
/// plain HTTP elsewhere): validates it, writes the 101 (or the 4xx with the reason), and wraps
/// the stream. `read_buf` holds any bytes read past the request head.
///
/// # Errors
///
/// [`Error::Handshake`] when the request is not a valid upgrade; [`Error::Io`].
pub async fn accept_request<S>(
    request: &Request<()>,
    mut stream: S,
    read_buf: BytesMut,
    options: &AcceptOptions,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let offered: Vec<&str> = server::requested_protocols(request).collect();
    let protocol = options
        .protocols
        .iter()
        .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)))
        .cloned();
    let mut response = match server::accept_response(request, protocol.as_deref()) {
        Ok(response) => response,
        Err(e) => {
            reject(&mut stream, &e).await;
            return Err(e.into());
        }
    };
    let deflate = options.deflate.as_ref().and_then(|config| {
        let params = config.negotiate(request.headers())?;
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_EXTENSIONS, params.to_header());
        Some((params, config))
    });
    write_response(&mut stream, &response, b"").await?;
    let mut ws = WebSocket::from_raw(stream, Role::Server, options.config.clone(), read_buf);
    if let Some((params, config)) = deflate {
        ws.enable_deflate(&params, config);
    }
    Ok(ws.with_protocol(protocol))
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
