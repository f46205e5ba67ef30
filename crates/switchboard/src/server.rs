//! [`Server`]: a TCP listener that accepts WebSocket connections and hands each to a handler
//! in its own task; plain HTTP requests go to an optional router.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use proto::handshake::server::is_upgrade_request;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::accept::{AcceptOptions, accept_request, read_request, write_response};
use crate::error::Error;
use crate::websocket::WebSocket;

type HttpHandler = dyn Fn(&Request<()>) -> Response<Bytes> + Send + Sync;
type UpgradeCheck = dyn Fn(&Request<()>) -> Option<Response<Bytes>> + Send + Sync;

/// Builds a [`Server`]: limits first, then [`bind`](Self::bind).
#[derive(Clone, Default)]
pub struct ServerBuilder {
    options: AcceptOptions,
    http: Option<Arc<HttpHandler>>,
    check_upgrade: Option<Arc<UpgradeCheck>>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// The largest message accepted, in bytes (default 16 MiB); larger ones close with 1009.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.options.config.max_message_size = bytes;
        self
    }

    /// The largest frame accepted, in bytes (default 16 MiB); larger ones close with 1009.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.options.config.max_frame_size = bytes;
        self
    }

    /// The most fragments per message (default 131,072); more close with 1008.
    pub fn max_fragments(mut self, count: usize) -> Self {
        self.options.config.max_fragments = count;
        self
    }

    /// The longest request head accepted (default 8 KiB); a longer one gets 431.
    pub fn max_head_size(mut self, bytes: usize) -> Self {
        self.options.max_head_size = bytes;
        self
    }

    /// How long a client may take to send its request head (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.options.handshake_timeout = timeout;
        self
    }

    /// Subprotocols spoken, in order of preference.
    pub fn protocols<I: IntoIterator<Item = S>, S: Into<String>>(mut self, protocols: I) -> Self {
        self.options.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Answers plain HTTP requests (those that do not ask for an upgrade) with `handler`.
    /// Without one they get 426 Upgrade Required.
    pub fn http<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Request<()>) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.http = Some(Arc::new(handler));
        self
    }

    /// Looks at each upgrade request before it is accepted: `None` upgrades it, `Some(response)`
    /// answers with that response instead (404 for a path that is not a WebSocket endpoint, 403
    /// for an origin that is not allowed). Without a check every valid upgrade is accepted,
    /// whatever its path.
    pub fn check_upgrade<F>(mut self, check: F) -> Self
    where
        F: Fn(&Request<()>) -> Option<Response<Bytes>> + Send + Sync + 'static,
    {
        self.check_upgrade = Some(Arc::new(check));
        self
    }

    /// Listens on `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server {
            listener,
            options: Arc::new(self.options),
            http: self.http,
            check_upgrade: self.check_upgrade,
        })
    }
}

/// A WebSocket server on a TCP listener.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let server = switchboard::Server::builder().bind("127.0.0.1:9001").await?;
/// server
///     .serve(|mut ws, _request| async move {
///         while let Some(Ok(message)) = ws.recv().await {
///             if message.is_data() && ws.send(message).await.is_err() {
///                 break;
///             }
///         }
///     })
///     .await
/// # }
/// ```
pub struct Server {
    listener: TcpListener,
    options: Arc<AcceptOptions>,
    http: Option<Arc<HttpHandler>>,
    check_upgrade: Option<Arc<UpgradeCheck>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder with the default limits.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address the server listens on.
    ///
    /// # Errors
    ///
    /// When the socket's address cannot be read.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections forever, running `handler` in a task of its own for each WebSocket.
    ///
    /// # Errors
    ///
    /// Only when accepting fails in a way that will not pass (not for a single client's
    /// failure, which is logged and dropped).
    pub async fn serve<H, F>(self, handler: H) -> io::Result<()>
    where
        H: Fn(WebSocket<TcpStream>, Request<()>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(handler);
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) if is_transient(&e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let options = self.options.clone();
            let http = self.http.clone();
            let check_upgrade = self.check_upgrade.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let routes = (http.as_deref(), check_upgrade.as_deref());
                match handshake(stream, &options, routes).await {
                    Ok(Some((ws, request))) => handler(ws, request).await,
                    Ok(None) => {}
                    Err(e) => tracing::debug!(%peer, error = %e, "handshake failed"),
                }
            });
        }
    }
}

/// Reads one request; upgrades it, or answers it as plain HTTP (`Ok(None)`).
async fn handshake(
    mut stream: TcpStream,
    options: &AcceptOptions,
    (http, check_upgrade): (Option<&HttpHandler>, Option<&UpgradeCheck>),
) -> Result<Option<(WebSocket<TcpStream>, Request<()>)>, Error> {
    stream.set_nodelay(true)?;
    let (request, read_buf) = read_request(&mut stream, options).await?;
    let refusal = if is_upgrade_request(&request) {
        check_upgrade.and_then(|check| check(&request))
    } else {
        Some(match http {
            Some(handler) => handler(&request),
            None => upgrade_required(),
        })
    };
    if let Some(response) = refusal {
        let (parts, body) = response.into_parts();
        let mut head = Response::from_parts(parts, ());
        head.headers_mut()
            .insert(http::header::CONTENT_LENGTH, body.len().into());
        head.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        write_response(&mut stream, &head, &body).await?;
        let _ = stream.shutdown().await;
        return Ok(None);
    }
    let ws = accept_request(&request, stream, read_buf, options).await?;
    Ok(Some((ws, request)))
}

fn upgrade_required() -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(b"this endpoint speaks websocket\n"));
    *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
    let headers = response.headers_mut();
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 23 || code == 24) // ENFILE, EMFILE
}
