//! [`MaybeTlsStream`]: the transport of a server or client connection, plain TCP or TLS, or a
//! WebSocket over an HTTP/2 stream ([`Http2Stream`]), a server's or a client's.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::connect::proxy::Proxy;
use crate::error::Error;
use crate::h2_stream::H2Stream;
use crate::tls::{self, ClientTls};

/// A TCP stream, with or without TLS: what [`Server`](crate::Server) hands its handler and
/// what [`connect`](crate::connect) returns, for `ws://` and `wss://` alike.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`, either side. Boxed: the TLS state is large and plain streams need none of it.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
    /// A WebSocket over one stream of an HTTP/2 connection (RFC 8441), which other streams
    /// share: a server's, or a client's ([`Http2Connection`](crate::Http2Connection)).
    Http2(Box<Http2Stream>),
}

/// One stream of an HTTP/2 connection, opened by an extended CONNECT (RFC 8441): the bytes of
/// a WebSocket's frames, carried in the stream's DATA frames under HTTP/2's flow control. The
/// connection's own task reads and writes the socket for all its streams.
pub struct Http2Stream {
    io: Http2Io,
    /// Whether the connection is over TLS (not h2c).
    tls: bool,
}

/// The stream as each side's HTTP/2 implementation gives it: hyper's on a server, `h2`'s on a
/// client.
enum Http2Io {
    Server(TokioIo<Upgraded>),
    Client(H2Stream),
}

impl Http2Stream {
    pub(crate) fn new(upgraded: Upgraded, tls: bool) -> Self {
        Self {
            io: Http2Io::Server(TokioIo::new(upgraded)),
            tls,
        }
    }

    pub(crate) fn client(stream: H2Stream) -> Self {
        Self {
            io: Http2Io::Client(stream),
            // The client speaks HTTP/2 over TLS only.
            tls: true,
        }
    }
}

impl AsyncRead for Http2Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Server(s) => Pin::new(s).poll_read(cx, buf),
            Self::Client(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Http2Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Server(s) => Pin::new(s).poll_write(cx, buf),
            Self::Client(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Server(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Client(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Server(s) => s.is_write_vectored(),
            Self::Client(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Server(s) => Pin::new(s).poll_flush(cx),
            Self::Client(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Server(s) => Pin::new(s).poll_shutdown(cx),
            Self::Client(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl std::fmt::Debug for Http2Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Stream").finish_non_exhaustive()
    }
}

impl MaybeTlsStream {
    /// Opens the transport to `uri`'s host and port: TCP (with `TCP_NODELAY`), then TLS for
    /// `wss://` and `https://`, trusting `tls` (the Mozilla roots when `None`). For a
    /// WebSocket, [`connect`](crate::connect) does this and the handshake; this serves other
    /// protocols on the same URLs and trust settings, such as HTTP requests to a server's API.
    ///
    /// # Errors
    ///
    /// [`Error::Url`] for a scheme other than `ws`, `wss`, `http` and `https`, or no host;
    /// [`Error::Io`] when the connection or the TLS handshake fails.
    pub async fn connect(uri: &Uri, tls: Option<&ClientTls>) -> Result<Self, Error> {
        Self::connect_via(uri, tls, false, None).await
    }

    /// [`connect`](Self::connect), offering ALPN `h2` before `http/1.1` when `http2` (TLS
    /// only), through `proxy` when there is one; [`alpn_h2`](Self::alpn_h2) says whether the
    /// server chose `h2`.
    pub(crate) async fn connect_via(
        uri: &Uri,
        tls: Option<&ClientTls>,
        http2: bool,
        proxy: Option<&Proxy>,
    ) -> Result<Self, Error> {
        let secure = match uri.scheme_str() {
            Some("ws" | "http") => false,
            Some("wss" | "https") => true,
            _ => {
                return Err(Error::Url(format!(
                    "{uri}: expected ws://, wss://, http:// or https://"
                )));
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| Error::Url(format!("{uri}: no host")))?;
        // An IPv6 literal comes as "[::1]"; the socket address and the server name want it bare.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let server_name = if secure {
            Some(tls::server_name(host).map_err(Error::Url)?)
        } else {
            None
        };
        let tcp = match proxy {
            Some(proxy) => proxy.connect(host, port).await?,
            None => {
                let tcp = TcpStream::connect((host, port)).await?;
                tcp.set_nodelay(true)?;
                tcp
            }
        };
        let Some(name) = server_name else {
            return Ok(Self::Plain(tcp));
        };
        let default;
        let tls = match tls {
            Some(tls) => tls,
            None => {
                default = ClientTls::webpki_roots();
                &default
            }
        };
        let connector = if http2 {
            tls.connector_http2()
        } else {
            tls.connector()
        };
        let tls = connector.connect(name, tcp).await?;
        Ok(Self::Tls(Box::new(tls.into())))
    }

    /// The TCP stream underneath (for its addresses and socket options); `None` for an HTTP/2
    /// stream, whose connection other streams share.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Plain(tcp) => Some(tcp),
            Self::Tls(tls) => Some(tls.get_ref().0),
            Self::Http2(_) => None,
        }
    }

    /// Whether the stream is encrypted (an HTTP/2 stream when its connection is: not h2c).
    pub fn is_tls(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(_) => true,
            Self::Http2(s) => s.tls,
        }
    }

    /// Whether TLS agreed on ALPN `h2` (HTTP/2).
    pub(crate) fn alpn_h2(&self) -> bool {
        match self {
            Self::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(tls::ALPN_H2),
            _ => false,
        }
    }

    /// Whether this is a WebSocket over an HTTP/2 stream.
    pub fn is_http2(&self) -> bool {
        matches!(self, Self::Http2(_))
    }
}

impl From<TcpStream> for MaybeTlsStream {
    fn from(tcp: TcpStream) -> Self {
        Self::Plain(tcp)
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Http2(s) => Pin::new(&mut s.io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Http2(s) => Pin::new(&mut s.io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Self::Http2(s) => Pin::new(&mut s.io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
            Self::Http2(s) => s.io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Http2(s) => Pin::new(&mut s.io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Http2(s) => Pin::new(&mut s.io).poll_shutdown(cx),
        }
    }
}
