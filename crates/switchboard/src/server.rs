//! [`Server`]: a TCP (or TLS) listener that accepts WebSocket connections and hands each to a
//! handler in its own task; plain HTTP requests go to routes (`/healthz`, `/metrics` and the
//! application's own).
//!
//! Every connection is bounded: the whole opening handshake (TLS, request head, accept hook,
//! response) by the handshake timeout, the head by its size, the number of connections by a
//! limit (`503` beyond it), a silent peer by keepalive pings, the closing handshake by the
//! close timeout, and what is queued for a slow reader by the send queue limit. On shutdown
//! the server stops accepting, sends `1001 Going Away` to every client, and waits up to a grace
//! period for them to finish.

use std::future::{Future, pending};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use proto::handshake::server::{is_upgrade_request, validate_request};
use proto::handshake::{HandshakeError, server};
use proto::{CloseCode, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::accept::{
    AcceptOptions, PreparedUpgrade, choose_protocol, read_head, reject, write_response,
};
use crate::error::Error;
use crate::hook::{Accept, PeerAddr, Reject};
use crate::metrics::{HandshakeFailure, Metrics, Tally};
use crate::router::{self, Router};
use crate::split::{Backpressure, SendQueue};
use crate::stream::MaybeTlsStream;
use crate::tls::ServerTls;
use crate::wakeups::{SlotId, Wakeups};
use crate::websocket::WebSocket;

type Hook = dyn Fn(&Request<()>) -> Pin<Box<dyn Future<Output = Result<Accept, Reject>> + Send>>
    + Send
    + Sync;
type UpgradeCheck = dyn Fn(&Request<()>) -> Option<Response<Bytes>> + Send + Sync;

/// Builds a [`Server`]: limits, TLS, hooks and routes first, then [`bind`](Self::bind).
///
/// Defaults suit a server on the internet: 25,000 connections, a 10 s handshake, an 8 KiB
/// request head, a ping after 30 s of silence and 10 s to answer it, a 5 s closing handshake,
/// 1 MiB queued per connection (then disconnect with 1013), 10 s to drain on shutdown. The
/// message limits (16 MiB) are what RFC 6455 conformance needs; lower them if clients send
/// small messages.
#[derive(Clone)]
pub struct ServerBuilder {
    options: AcceptOptions,
    tls: Option<ServerTls>,
    router: Router,
    hook: Option<Arc<Hook>>,
    check: Option<Arc<UpgradeCheck>>,
    origins: Vec<String>,
    max_connections: usize,
    send_queue: SendQueue,
    shutdown_grace: Duration,
    metrics: Metrics,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        let mut options = AcceptOptions::default();
        options.config.idle_timeout = Some(Duration::from_secs(30));
        Self {
            options,
            tls: None,
            router: Router::default(),
            hook: None,
            check: None,
            origins: Vec::new(),
            max_connections: 25_000,
            send_queue: SendQueue {
                limit: 1 << 20,
                policy: Backpressure::Disconnect,
            },
            shutdown_grace: Duration::from_secs(10),
            metrics: Metrics::new(),
        }
    }
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("options", &self.options)
            .field("tls", &self.tls)
            .field("routes", &self.router.paths().collect::<Vec<_>>())
            .field("origins", &self.origins)
            .field("max_connections", &self.max_connections)
            .field("send_queue", &self.send_queue)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// The largest message accepted, in bytes (default 16 MiB); larger ones close with 1009.
    /// A compressed message counts with its inflated size.
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

    /// How long the opening handshake may take, TLS included (default 10 s); a client that
    /// sends its request slower than that (a slowloris) is dropped.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.options.handshake_timeout = timeout;
        self
    }

    /// Accepts permessage-deflate (RFC 7692) from clients that offer it, as `config` says
    /// (level, threshold, context takeover, windows); `None`, the default, never compresses.
    ///
    /// With `server_no_context_takeover`, a message broadcast with [`Topics`](crate::Topics)
    /// is compressed once for all its recipients; with context takeover (the default) each
    /// connection compresses it with its own history, for a better ratio at more CPU and
    /// about 300 KiB of zlib state per connection.
    pub fn deflate(mut self, config: Option<proto::deflate::DeflateConfig>) -> Self {
        self.options.deflate = config;
        self
    }

    /// The most connections at once, handshakes and plain HTTP included (default 25,000);
    /// beyond it a new connection gets `503 Service Unavailable`.
    pub fn max_connections(mut self, count: usize) -> Self {
        self.max_connections = count;
        self
    }

    /// The connection limit set with [`max_connections`](Self::max_connections).
    pub fn connection_limit(&self) -> usize {
        self.max_connections
    }

    /// After this long without hearing from a client, ping it (default 30 s); `None` never
    /// pings. A client that then sends nothing within the [`pong_timeout`](Self::pong_timeout)
    /// is closed with 1011.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options.config.idle_timeout = timeout;
        self
    }

    /// How long a pinged client has to answer (default 10 s).
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.options.config.pong_timeout = timeout;
        self
    }

    /// How long a closing handshake may take before the connection is dropped (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.options.config.close_timeout = timeout;
        self
    }

    /// The most bytes queued for one connection by a split [`Sender`](crate::Sender)
    /// (default 1 MiB). A single message larger than that is still accepted when the queue is
    /// empty.
    pub fn max_send_queue(mut self, bytes: usize) -> Self {
        self.send_queue.limit = bytes;
        self
    }

    /// What happens to a message for a connection whose send queue is full (default
    /// [`Backpressure::Disconnect`]); see [`Sender::try_send`](crate::Sender::try_send).
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.send_queue.policy = policy;
        self
    }

    /// How long [`Server::serve_with_shutdown`] waits for clients to close after sending them
    /// 1001 (default 10 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Subprotocols spoken, in order of preference: the first one the client also offers is
    /// chosen (an accept hook can choose otherwise, see [`Accept::protocol`]).
    pub fn protocols<I: IntoIterator<Item = S>, S: Into<String>>(mut self, protocols: I) -> Self {
        self.options.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Serves `wss://`: TLS on every connection.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Accepts upgrades only from pages of these origins (`https://example.com`, compared
    /// without regard to case): a request whose `Origin` header names another gets 403.
    /// Requests without an `Origin` header (not from a browser) are not affected. Empty (the
    /// default): any origin.
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        origins: I,
    ) -> Self {
        self.origins = origins
            .into_iter()
            .map(|o| normalize_origin(&o.into()))
            .collect();
        self
    }

    /// Runs `hook` on every valid upgrade request before it is accepted, like Node ws's
    /// `verifyClient`: it sees the request (path, query, headers, [`PeerAddr`]) and returns
    /// [`Accept`] (with data for the handler, and optionally the subprotocol) or [`Reject`]
    /// (the HTTP response the client gets). It runs within the handshake timeout.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// use switchboard::{Accept, Reject, Server};
    /// use switchboard::http::StatusCode;
    ///
    /// #[derive(Clone)]
    /// struct User(String);
    ///
    /// let server = Server::builder()
    ///     .on_upgrade(|request| {
    ///         let token = request.uri().query().unwrap_or("").to_owned();
    ///         async move {
    ///             match token.strip_prefix("token=") {
    ///                 Some(user) => Ok(Accept::new().extension(User(user.to_owned()))),
    ///                 None => Err(Reject::new(StatusCode::UNAUTHORIZED)),
    ///             }
    ///         }
    ///     })
    ///     .bind("127.0.0.1:9001")
    ///     .await?;
    /// server
    ///     .serve(|ws, request| async move {
    ///         let user = request.extensions().get::<User>().cloned();
    ///         # drop((ws, user));
    ///     })
    ///     .await
    /// # }
    /// ```
    pub fn on_upgrade<H, F>(mut self, hook: H) -> Self
    where
        H: Fn(&Request<()>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Accept, Reject>> + Send + 'static,
    {
        self.hook = Some(Arc::new(move |request: &Request<()>| {
            Box::pin(hook(request)) as Pin<Box<dyn Future<Output = _> + Send>>
        }));
        self
    }

    /// Looks at each upgrade request before anything else about it: `None` goes on with the
    /// handshake, `Some(response)` answers with that response instead (404 for a path that is
    /// not a WebSocket endpoint, say). Synchronous and first; for checks that need to wait or
    /// to attach data, see [`on_upgrade`](Self::on_upgrade).
    pub fn check_upgrade<F>(mut self, check: F) -> Self
    where
        F: Fn(&Request<()>) -> Option<Response<Bytes>> + Send + Sync + 'static,
    {
        self.check = Some(Arc::new(check));
        self
    }

    /// Answers plain HTTP requests for `path` (exact match, any method) with `handler`;
    /// `HEAD` requests get its headers without the body.
    pub fn route<F>(mut self, path: &str, handler: F) -> Self
    where
        F: Fn(&Request<()>) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.router.route(path, Arc::new(handler));
        self
    }

    /// Answers plain HTTP requests that no [`route`](Self::route) matches with `handler`.
    /// Without one they get 426 Upgrade Required.
    pub fn http<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Request<()>) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.router.fallback(Arc::new(handler));
        self
    }

    /// Serves a health check at `path` (`/healthz`, say): `200 ok` while the server runs.
    pub fn health_endpoint(self, path: &str) -> Self {
        self.route(path, |request| {
            router::only_get(request).unwrap_or_else(|| {
                router::text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into())
            })
        })
    }

    /// Serves the server's [`Metrics`] at `path` (`/metrics`, say) in the Prometheus text
    /// format.
    pub fn metrics_endpoint(self, path: &str) -> Self {
        let metrics = self.metrics.clone();
        self.route(path, move |request| {
            router::only_get(request).unwrap_or_else(|| {
                router::text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics.render(),
                )
            })
        })
    }

    /// The counters the server will keep (also [`Server::metrics`]).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Listens on `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(self.from_listener(listener))
    }

    /// Listens on `addr` with `SO_REUSEPORT`: several servers, one per thread (each on a
    /// runtime of its own), may listen on the same address, and the kernel spreads new
    /// connections among them. Bind the first to port 0 if you like, then the others to the
    /// port it got. Each server counts its connections against
    /// [`max_connections`](Self::max_connections) on its own; clones of one builder share
    /// their [`Metrics`].
    ///
    /// # Errors
    ///
    /// When the address cannot be bound, or already is by a socket without `SO_REUSEPORT`.
    #[cfg(unix)]
    pub async fn bind_reuse_port(self, addr: SocketAddr) -> io::Result<Server> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        Ok(self.from_listener(socket.listen(1024)?))
    }

    /// Serves on a listener bound elsewhere (systemd socket activation, tests).
    pub fn from_listener(self, listener: TcpListener) -> Server {
        let shared = Arc::new(Shared {
            config: Arc::new(self.options.config.clone()),
            wakeups: Wakeups::new(&self.options.config),
            options: self.options,
            tls: self.tls.map(|tls| tls.acceptor()),
            router: self.router,
            hook: self.hook,
            check: self.check,
            origins: self.origins,
            max_connections: self.max_connections,
            send_queue: self.send_queue,
            metrics: self.metrics,
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            shutting_down: AtomicBool::new(false),
        });
        Server {
            listener,
            shared,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// A WebSocket server on a TCP listener.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let server = switchboard::Server::builder()
///     .health_endpoint("/healthz")
///     .metrics_endpoint("/metrics")
///     .bind("127.0.0.1:9001")
///     .await?;
/// let shutdown = async {
///     let _ = tokio::signal::ctrl_c().await;
/// };
/// server
///     .serve_with_shutdown(
///         |mut ws, _request| async move {
///             while let Some(Ok(message)) = ws.recv().await {
///                 if message.is_data() && ws.send(message).await.is_err() {
///                     break;
///                 }
///             }
///         },
///         shutdown,
///     )
///     .await
/// # }
/// ```
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown_grace: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// What every connection task of a server shares.
struct Shared {
    /// `options.config`, shared by every connection.
    config: Arc<proto::Config>,
    options: AcceptOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    hook: Option<Arc<Hook>>,
    check: Option<Arc<UpgradeCheck>>,
    origins: Vec<String>,
    max_connections: usize,
    send_queue: SendQueue,
    metrics: Metrics,
    /// Connections admitted and not yet over (handshakes, HTTP, WebSockets).
    active: AtomicUsize,
    /// Notified when `active` drops to zero.
    idle: Notify,
    shutting_down: AtomicBool,
    /// How the server reaches its connections: shutdown, deadlines, cancellation.
    wakeups: Wakeups,
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

    /// The server's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Accepts connections forever, running `handler` in a task of its own for each WebSocket.
    ///
    /// # Errors
    ///
    /// Only when accepting fails in a way that will not pass (not for a single client's
    /// failure, which is logged and dropped).
    pub async fn serve<H, F>(self, handler: H) -> io::Result<()>
    where
        H: Fn(WebSocket<MaybeTlsStream>, Request<()>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        self.serve_with_shutdown(handler, pending()).await
    }

    /// Accepts connections until `signal` completes, then drains: stops accepting, sends
    /// `1001 Going Away` to every open WebSocket (their handlers see the client's Close, then
    /// the end), waits until every connection is over or the
    /// [grace period](ServerBuilder::shutdown_grace) ends, cancels the handlers still running,
    /// and returns.
    ///
    /// A WebSocket learns of the shutdown while it is receiving (`recv`, or the task of a
    /// split connection); a handler that never receives is cancelled at the end of the grace
    /// period.
    ///
    /// # Errors
    ///
    /// As [`serve`](Self::serve).
    pub async fn serve_with_shutdown<H, F, S>(self, handler: H, signal: S) -> io::Result<()>
    where
        H: Fn(WebSocket<MaybeTlsStream>, Request<()>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
        S: Future<Output = ()>,
    {
        let Self {
            listener,
            shared,
            shutdown_grace,
        } = self;
        let handler = Arc::new(handler);
        let sweeper = Sweeper::start(&shared);
        tokio::pin!(signal);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) if is_transient(&e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let Some(guard) = Active::admit(&shared) else {
                shared
                    .metrics
                    .handshake_failed(HandshakeFailure::OverCapacity);
                tracing::debug!(%peer, "at the connection limit: 503");
                // Bounded by its own timeout.
                tokio::spawn(over_capacity(tcp));
                continue;
            };
            let slot = guard.slot;
            let task = tokio::spawn(connection(guard, tcp, peer, handler.clone()));
            shared.wakeups.set_abort(slot, task.abort_handle());
        }

        // Drain.
        drop(listener);
        let open = shared.active.load(Ordering::Acquire);
        tracing::info!(
            connections = open,
            "shutting down: closing connections with 1001"
        );
        shared.shutting_down.store(true, Ordering::Release);
        shared.wakeups.wake_all();
        if !shared.wait_idle(Instant::now() + shutdown_grace).await {
            let left = shared.active.load(Ordering::Acquire);
            tracing::warn!(
                connections = left,
                "grace period over: dropping connections"
            );
            shared.wakeups.abort_all();
            // Aborted tasks end at their next turn; a split connection's own task may take
            // a closing handshake longer, and is not waited for.
            shared
                .wait_idle(Instant::now() + Duration::from_secs(1))
                .await;
        }
        drop(sweeper);
        Ok(())
    }
}

impl Shared {
    /// Waits until no connection is left (`true`) or `deadline` passes (`false`).
    async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.active.load(Ordering::Acquire) == 0 {
                return true;
            }
            tokio::select! {
                () = idle => {}
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }
}

/// The task that fires a server's deadlines, for as long as the server serves and then for as
/// long as connections are left. Dropped with `serve` (cancelled), it cancels every connection,
/// as a `JoinSet` would.
struct Sweeper {
    shared: Arc<Shared>,
}

impl Sweeper {
    fn start(shared: &Arc<Shared>) -> Self {
        tokio::spawn({
            let shared = shared.clone();
            async move { shared.wakeups.sweep().await }
        });
        Self {
            shared: shared.clone(),
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if !self.shared.shutting_down.load(Ordering::Acquire) {
            self.shared.wakeups.abort_all();
        }
        self.shared.wakeups.close();
    }
}

/// The task of one admitted connection: the handshake, then the handler.
fn connection<H, F>(
    guard: Active,
    tcp: TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
) -> impl Future<Output = ()> + Send + 'static
where
    H: Fn(WebSocket<MaybeTlsStream>, Request<()>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    // The handshake runs boxed, and is freed before the handler runs: its state (TLS, the
    // request being parsed, the hook) is several times a connection's, and the task would
    // otherwise keep room for it, and for what it captures, for the connection's whole life.
    ConnectionTask::Starting {
        start: Box::pin(async move {
            let (mut ws, request) = upgrade(tcp, peer, guard.shared.clone()).await?;
            ws.attach(ServerLink::new(guard));
            Some(handler(ws, request))
        }),
    }
}

pin_project_lite::pin_project! {
    /// A connection's task, written out rather than as an `async` block, which would keep
    /// room for its state beside the handler's: the task is the handler's size, and an idle
    /// connection's memory is mostly its task.
    #[project = ConnectionTaskProj]
    enum ConnectionTask<St, F> {
        Starting { start: Pin<Box<St>> },
        Handling { #[pin] handling: F },
    }
}

impl<St, F> Future for ConnectionTask<St, F>
where
    St: Future<Output = Option<F>>,
    F: Future<Output = ()>,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.as_mut().project() {
                ConnectionTaskProj::Starting { start } => {
                    let Some(handling) = ready!(start.as_mut().poll(cx)) else {
                        return Poll::Ready(());
                    };
                    self.set(Self::Handling { handling });
                }
                ConnectionTaskProj::Handling { handling } => return handling.poll(cx),
            }
        }
    }
}

/// One admitted connection, counted in `Shared::active` and holding a slot of
/// `Shared::wakeups` until dropped.
struct Active {
    shared: Arc<Shared>,
    slot: SlotId,
}

impl Active {
    fn admit(shared: &Arc<Shared>) -> Option<Self> {
        let admitted = shared
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < shared.max_connections).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| Self {
            shared: shared.clone(),
            slot: shared.wakeups.insert(),
        })
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.shared.wakeups.remove(self.slot);
        if self.shared.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}

/// What a WebSocket accepted by a [`Server`] carries: the server's counters, its shutdown
/// signal and deadlines, its send-queue settings, and its admission.
pub(crate) struct ServerLink {
    active: Active,
    /// Counts not yet added to the server's metrics.
    pub(crate) tally: Tally,
    /// The code of the first Close frame, sent or received.
    close_code: Option<CloseCode>,
    /// The waker and the deadline last given to the connection's slot: the slot is locked
    /// again only when one of them changes.
    waker: Option<Waker>,
    armed: Option<u64>,
}

impl std::fmt::Debug for ServerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerLink")
            .field("tally", &self.tally)
            .field("close_code", &self.close_code)
            .finish_non_exhaustive()
    }
}

impl ServerLink {
    fn new(active: Active) -> Self {
        active.shared.metrics.connection_opened();
        Self {
            active,
            tally: Tally::default(),
            close_code: None,
            waker: None,
            armed: None,
        }
    }

    /// Whether the server is shutting down; if not, its start wakes `cx`.
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> bool {
        // Registered before the flag is read, so a shutdown in between is not missed.
        self.watch(cx.waker(), self.armed);
        self.active.shared.shutting_down.load(Ordering::Acquire)
    }

    /// Whether `deadline` has come, by the server's clock; if not, it wakes `cx` then.
    pub(crate) fn poll_deadline(
        &mut self,
        deadline: std::time::Instant,
        cx: &mut Context<'_>,
    ) -> bool {
        let wakeups = &self.active.shared.wakeups;
        let at = wakeups.deadline_ms(deadline);
        if wakeups.is_due(at) {
            return true;
        }
        self.watch(cx.waker(), Some(at));
        false
    }

    fn watch(&mut self, waker: &Waker, deadline: Option<u64>) {
        let same_waker = self.waker.as_ref().is_some_and(|w| w.will_wake(waker));
        if same_waker && deadline == self.armed {
            return;
        }
        let new_waker = (!same_waker).then_some(waker);
        let slot = self.active.slot;
        self.active
            .shared
            .wakeups
            .register(slot, new_waker, deadline);
        if let Some(waker) = new_waker {
            self.waker = Some(waker.clone());
        }
        self.armed = deadline;
    }

    pub(crate) fn note_close(&mut self, code: CloseCode) {
        self.close_code.get_or_insert(code);
    }

    pub(crate) fn note_received(&mut self, message: &Message) {
        match message {
            Message::Text(_) | Message::Binary(_) => self.tally.messages_in += 1,
            Message::Close(frame) => {
                self.note_close(frame.as_ref().map_or(CloseCode::NO_STATUS, |f| f.code));
            }
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }

    pub(crate) fn flush(&mut self) {
        self.active.shared.metrics.add(&mut self.tally);
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.active.shared.metrics
    }

    pub(crate) fn send_queue(&self) -> SendQueue {
        self.active.shared.send_queue
    }
}

impl Drop for ServerLink {
    fn drop(&mut self) {
        self.flush();
        let code = self.close_code.unwrap_or(CloseCode::ABNORMAL);
        self.active.shared.metrics.connection_closed(code.0);
    }
}

type Failure = (HandshakeFailure, String);

/// The handshake within the server's time limit; a failure is counted and logged.
async fn upgrade(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Option<(WebSocket<MaybeTlsStream>, Request<()>)> {
    let handshake = handshake(tcp, peer, &shared);
    match tokio::time::timeout(shared.options.handshake_timeout, handshake).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err((reason, e))) => {
            shared.metrics.handshake_failed(reason);
            tracing::debug!(%peer, reason = reason.as_str(), "handshake failed: {e}");
            None
        }
        Err(_) => {
            shared.metrics.handshake_failed(HandshakeFailure::Timeout);
            tracing::debug!(%peer, "handshake timed out");
            None
        }
    }
}

/// Runs the opening handshake: TLS, the request head, then either a plain HTTP answer
/// (`Ok(None)`) or the checks, the hook and the `101`.
async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<Option<(WebSocket<MaybeTlsStream>, Request<()>)>, Failure> {
    let _ = tcp.set_nodelay(true);
    let mut stream = match &shared.tls {
        None => MaybeTlsStream::Plain(tcp),
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(tls) => MaybeTlsStream::Tls(Box::new(tls.into())),
            Err(e) => return Err((HandshakeFailure::Tls, e.to_string())),
        },
    };
    let (mut request, read_buf) = match read_head(&mut stream, shared.options.max_head_size).await {
        Ok(head) => head,
        Err(Error::Handshake(e)) => return Err(refuse(&mut stream, e).await),
        Err(e) => return Err((HandshakeFailure::Io, e.to_string())),
    };
    request.extensions_mut().insert(PeerAddr(peer));

    if !is_upgrade_request(&request) {
        shared.metrics.http_request();
        let response = shared.router.handle(&request);
        respond(&mut stream, &request, response)
            .await
            .map_err(|e| (HandshakeFailure::Io, e.to_string()))?;
        return Ok(None);
    }
    if let Some(response) = shared.check.as_ref().and_then(|check| check(&request)) {
        let status = response.status();
        let _ = respond(&mut stream, &request, response).await;
        return Err((
            HandshakeFailure::Rejected,
            format!("check answered {status}"),
        ));
    }
    if let Err(e) = validate_request(&request) {
        return Err(refuse(&mut stream, e).await);
    }
    if !origin_allowed(&request, &shared.origins) {
        let origin = request.headers().get(header::ORIGIN).cloned();
        let reject = Reject::new(StatusCode::FORBIDDEN).body("origin not allowed\n");
        let _ = respond(&mut stream, &request, reject.into_response()).await;
        return Err((HandshakeFailure::Origin, format!("origin {origin:?}")));
    }
    let mut protocol = choose_protocol(&request, &shared.options.protocols);
    if let Some(hook) = &shared.hook {
        match hook(&request).await {
            Ok(accept) => {
                request.extensions_mut().extend(accept.extensions);
                if accept.protocol.is_some() {
                    protocol = accept.protocol;
                }
            }
            Err(reject) => {
                let status = reject.status();
                let _ = respond(&mut stream, &request, reject.into_response()).await;
                return Err((
                    HandshakeFailure::Rejected,
                    format!("hook answered {status}"),
                ));
            }
        }
    }
    let upgrade = match PreparedUpgrade::with_protocol(
        &request,
        &shared.options,
        shared.config.clone(),
        protocol,
    ) {
        Ok(upgrade) => upgrade,
        Err(e) => return Err(refuse(&mut stream, e).await),
    };
    write_response(&mut stream, upgrade.response(), b"")
        .await
        .map_err(|e| (HandshakeFailure::Io, e.to_string()))?;
    Ok(Some((upgrade.into_websocket(stream, read_buf), request)))
}

/// Answers a request that failed the handshake with its status.
async fn refuse(stream: &mut MaybeTlsStream, e: HandshakeError) -> Failure {
    reject(stream, &e).await;
    let reason = match e.status() {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => HandshakeFailure::HeadTooLarge,
        StatusCode::UPGRADE_REQUIRED => HandshakeFailure::UnsupportedVersion,
        StatusCode::BAD_REQUEST => HandshakeFailure::BadRequest,
        _ => HandshakeFailure::Other,
    };
    (reason, e.to_string())
}

/// Writes a plain HTTP response and ends the connection (no keep-alive: the server's HTTP is
/// for health checks, metrics and a few pages).
async fn respond(
    stream: &mut MaybeTlsStream,
    request: &Request<()>,
    response: Response<Bytes>,
) -> Result<(), Error> {
    let (parts, body) = response.into_parts();
    let mut head = Response::from_parts(parts, ());
    let headers = head.headers_mut();
    if !headers.contains_key(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, body.len().into());
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let body = if request.method() == Method::HEAD {
        &[][..]
    } else {
        &body[..]
    };
    write_response(stream, &head, body).await?;
    let _ = stream.shutdown().await;
    Ok(())
}

/// Answers a connection beyond the limit with 503 without reading its request, then reads
/// briefly what it sent, so that closing does not reset the connection before the client has
/// read the answer.
async fn over_capacity(mut tcp: TcpStream) {
    let body = "server at its connection limit, try again later\n";
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, body.len().into());
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let mut out = Vec::with_capacity(256);
    server::write_response(&response, body.as_bytes(), &mut out);
    let linger = async {
        tcp.write_all(&out).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < 64 * 1024 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => total += n,
            }
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), linger).await;
}

fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

fn origin_allowed(request: &Request<()>, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = normalize_origin(origin);
    allowed.contains(&origin)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that holds the socket and nothing else, as `switchboard_hub::echo` does.
    struct Holder(#[allow(dead_code)] WebSocket<MaybeTlsStream>);

    impl Future for Holder {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Ready(())
        }
    }

    /// An idle connection's memory is mostly its task, so the handshake's state must not stay
    /// in it: the task is the handler's future and not a byte more. And that future, the socket
    /// alone, fits the 384-byte cell tokio allocates for a future of up to 280 bytes (its
    /// header, scheduler, id and trailer take 104; cells are multiples of 128 bytes).
    #[tokio::test]
    async fn a_connection_task_is_its_handler_and_fits_a_small_cell() {
        let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let peer = tcp.local_addr().unwrap();
        let guard = Active::admit(&server.shared).unwrap();
        let handler = Arc::new(|ws: WebSocket<MaybeTlsStream>, _: Request<()>| Holder(ws));
        let task = connection(guard, tcp, peer, handler);
        assert_eq!(size_of_val(&task), size_of::<Holder>());
        #[cfg(target_pointer_width = "64")]
        assert!(
            size_of::<WebSocket<MaybeTlsStream>>() <= 280,
            "{} bytes",
            size_of::<WebSocket<MaybeTlsStream>>()
        );
    }
}
