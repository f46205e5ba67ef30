//! [`ServerBuilder`]: a server's limits, TLS, hooks and routes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use ipnet::IpNet;
use proto::{CloseCode, Message};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Notify;

use super::admission::{self, HandshakeGate};
use super::forwarded::TrustedProxies;
use super::origin::AllowedOrigins;
use super::router::{self, Handler, Route, Router};
use super::{Hook, Server, Shared, UpgradeCheck, http2, plain};
use crate::accept::AcceptOptions;
use crate::addresses::AddressLimit;
use crate::backpressure::{Backpressure, SendQueue};
use crate::hook::{Accept, Reject};
use crate::link::{Farewell, Group};
use crate::metrics::Metrics;
use crate::throttle::LogThrottle;
use crate::tls::ServerTls;

/// Builds a [`Server`]: limits, TLS, hooks and routes first, then [`bind`](Self::bind).
///
/// Defaults suit a server on the internet: 25,000 connections, a 10 s handshake, an 8 KiB
/// request head, a 1 MiB request body, a ping after 30 s of silence and 10 s to answer it, a 5 s closing handshake,
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
    origins: AllowedOrigins,
    max_connections: usize,
    send_queue: SendQueue,
    shutdown_grace: Duration,
    metrics: Metrics,
    http2: bool,
    h2c: bool,
    http2_max_streams: u32,
    max_handshakes: usize,
    handshake_rate: Option<u32>,
    /// Made by the setters, so that the servers of one builder's clones share it.
    gate: Arc<HandshakeGate>,
    addresses: Option<Arc<AddressLimit>>,
    trusted_proxies: Vec<IpNet>,
    farewell: Farewell,
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
            origins: AllowedOrigins::default(),
            max_connections: 25_000,
            send_queue: SendQueue::SERVER,
            shutdown_grace: Duration::from_secs(10),
            metrics: Metrics::new(),
            http2: true,
            h2c: false,
            http2_max_streams: http2::DEFAULT_MAX_STREAMS,
            max_handshakes: admission::DEFAULT_MAX_HANDSHAKES,
            handshake_rate: None,
            gate: Arc::new(HandshakeGate::new(admission::DEFAULT_MAX_HANDSHAKES, None)),
            addresses: None,
            trusted_proxies: Vec::new(),
            farewell: Farewell::default(),
        }
    }
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("options", &self.options)
            .field("tls", &self.tls)
            .field("routes", &self.router.paths().collect::<Vec<_>>())
            .field("origins", &self.origins.as_slice())
            .field("max_connections", &self.max_connections)
            .field("send_queue", &self.send_queue)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("http2", &self.http2)
            .field("h2c", &self.h2c)
            .field("http2_max_streams", &self.http2_max_streams)
            .field("max_handshakes", &self.max_handshakes)
            .field("handshake_rate", &self.handshake_rate)
            .field("addresses", &self.addresses)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("farewell", &self.farewell)
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

    /// The longest request head accepted (default 8 KiB), plain HTTP requests' included; a
    /// longer one gets 431.
    pub fn max_head_size(mut self, bytes: usize) -> Self {
        self.options.max_head_size = bytes;
        self
    }

    /// How long the opening handshake may take, TLS included (default 10 s); a client that
    /// sends its request slower than that (a slowloris) is dropped. On a plain HTTP connection
    /// it bounds each request's head and body too, and how long the connection stays open
    /// without a request.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.options.handshake_timeout = timeout;
        self
    }

    /// Accepts permessage-deflate (RFC 7692) from clients that offer it, as `config` says
    /// (level, threshold, context takeover, windows); `None`, the default, never compresses.
    ///
    /// With `server_no_context_takeover`, a message broadcast with [`Topics`](crate::Topics)
    /// is compressed once for all its recipients; with context takeover (the default) each
    /// connection compresses it with its own history, for a better ratio at the cost of CPU
    /// and a compressor's state (zlib's window and tables) kept per connection.
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

    /// The most opening handshakes under way at once (default 512): TLS, the request head,
    /// the checks and the accept hook. At the limit the server stops accepting until one
    /// finishes, and new clients wait in the kernel's listen backlog: a reconnect storm is
    /// served at the pace the machine can take, not as a pile of half-done handshakes that
    /// all time out. A keep-alive connection's later requests and an HTTP/2 connection's
    /// streams do not count.
    ///
    /// The servers of one builder's clones (one per thread, see
    /// [`bind_reuse_port`](Self::bind_reuse_port)) share this limit, and the rate below.
    pub fn max_handshakes(mut self, count: usize) -> Self {
        self.max_handshakes = count.max(1);
        self.gate = Arc::new(HandshakeGate::new(self.max_handshakes, self.handshake_rate));
        self
    }

    /// At most this many handshakes started per second, in bursts of a tenth of that (default:
    /// no limit but [`max_handshakes`](Self::max_handshakes)). Clients beyond the rate wait in
    /// the listen backlog, as at the concurrency limit.
    pub fn handshake_rate(mut self, per_second: Option<u32>) -> Self {
        self.handshake_rate = per_second.filter(|&r| r > 0);
        self.gate = Arc::new(HandshakeGate::new(self.max_handshakes, self.handshake_rate));
        self
    }

    /// The most connections from one client address (an IPv6 client counts by its /64), plain
    /// HTTP included (default: no limit). Past it a connection is answered `429 Too Many
    /// Requests` with `Retry-After` before its request is read. Behind a proxy, set
    /// [`trusted_proxies`](Self::trusted_proxies): connections from a trusted proxy are
    /// counted by the address it forwards, as each upgrade request arrives. The servers of one
    /// builder's clones share the counts.
    pub fn max_connections_per_address(mut self, count: Option<usize>) -> Self {
        self.addresses = count.map(AddressLimit::new);
        self
    }

    /// The proxies (address blocks, such as `10.0.0.0/8` or `127.0.0.1/32`) whose
    /// `Forwarded` or `X-Forwarded-For` header tells the client's address (see
    /// [`ClientAddr`](crate::ClientAddr)). Those headers from anyone else are ignored, since
    /// a client can write them; none are trusted by default.
    pub fn trusted_proxies<I: IntoIterator<Item = IpNet>>(mut self, proxies: I) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// The Close frame that shutting down sends every WebSocket (default `1001 Going Away`,
    /// "server shutting down"). A server that comes back soon says `1012` (service restart).
    pub fn shutdown_close(mut self, code: CloseCode, reason: &str) -> Self {
        self.farewell.code = code;
        self.farewell.reason = reason.to_owned();
        self
    }

    /// A message sent to every WebSocket just before the shutdown's Close frame, made per
    /// connection (so that it can carry a hint of its own, such as a randomized time to wait
    /// before reconnecting); `None` from `message` sends nothing, and so does a connection
    /// that called [`WebSocket::skip_shutdown_message`](crate::WebSocket::skip_shutdown_message).
    pub fn shutdown_message<F>(mut self, message: F) -> Self
    where
        F: Fn() -> Option<Message> + Send + Sync + 'static,
    {
        self.farewell.message = Some(Arc::new(message));
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
    /// the [shutdown's Close](Self::shutdown_close) (default 10 s).
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

    /// Serves HTTP/2 over TLS (default on): ALPN offers `h2` before `http/1.1`, and a client
    /// that picks it gets the routes over HTTP/2 and its WebSockets through extended CONNECT
    /// (RFC 8441), several on one connection, each through the same checks as an HTTP/1.1
    /// upgrade and run by the same handler. Off, the server speaks HTTP/1.1 only; without
    /// [`tls`](Self::tls), too, unless [`h2c`](Self::h2c) is on.
    ///
    /// Each WebSocket on an HTTP/2 connection counts against
    /// [`max_connections`](Self::max_connections), as the connection itself does.
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }

    /// Serves HTTP/2 with prior knowledge in clear text, h2c (RFC 9113 §3.3; default off), on a
    /// server without [`tls`](Self::tls): a connection that opens with the HTTP/2 preface
    /// (`PRI * HTTP/2.0`) is served as one that agreed on `h2` over TLS, routes and
    /// WebSockets (extended CONNECT) alike, and HTTP/1.1 on the same port goes on as before.
    /// For clients behind a proxy that ends TLS and speaks HTTP/2 to the server; browsers
    /// never use h2c. Off, the preface gets `400` as any malformed request does; with TLS or
    /// with [`http2`](Self::http2) off, this has no effect.
    pub fn h2c(mut self, enabled: bool) -> Self {
        self.h2c = enabled;
        self
    }

    /// Whether connections in clear text may open with HTTP/2 (h2c): [`h2c`](Self::h2c) and
    /// [`http2`](Self::http2) on, and no TLS.
    pub fn serves_h2c(&self) -> bool {
        self.h2c && self.http2 && self.tls.is_none()
    }

    /// The most streams (requests and WebSockets) open at once on one HTTP/2 connection
    /// (default 100, the least RFC 9113 §6.5.2 recommends); a client that opens more has them
    /// refused with `REFUSED_STREAM`. Each stream may have 256 KiB received and not yet read
    /// by its handler, and the connection that much per stream, so that a handler that stops
    /// reading stalls its own stream and no other.
    pub fn http2_max_concurrent_streams(mut self, streams: u32) -> Self {
        self.http2_max_streams = streams.max(1);
        self
    }

    /// The ALPN protocols the server offers, in order of preference: `h2` (when
    /// [`http2`](Self::http2) is on) and `http/1.1` with TLS; empty without it (HTTP/1.1 in
    /// clear text).
    pub fn alpn_protocols(&self) -> Vec<String> {
        self.tls
            .as_ref()
            .map(|tls| tls.alpn_offered(self.http2))
            .unwrap_or_default()
    }

    /// Accepts upgrades only from pages of these origins (`https://example.com`, compared
    /// without regard to case): a request whose `Origin` header names another gets 403.
    /// Requests without an `Origin` header (not from a browser) are not affected. Empty (the
    /// default): any origin.
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        origins: I,
    ) -> Self {
        self.origins = AllowedOrigins::new(origins);
        self
    }

    /// Runs `hook` on every valid upgrade request before it is accepted, like Node ws's
    /// `verifyClient`: it sees the request (path, query, headers, [`PeerAddr`](crate::PeerAddr)) and returns
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

    /// Answers plain HTTP requests for `path`, any method, with `handler`. A path ending in `*`
    /// is a prefix route: `/admin/*` answers every path that starts with `/admin/`. An exact
    /// route wins over prefix routes, and a longer prefix over a shorter one.
    ///
    /// The handler gets the request with its body, at most
    /// [`max_body_size`](Self::max_body_size) bytes (a longer one gets 413 without reaching
    /// it), and its [`PeerAddr`](crate::PeerAddr). A `HEAD` request gets the handler's
    /// headers and `Content-Length` without the body. Requests on one connection are answered
    /// in turn (HTTP/1.1 keep-alive).
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// use switchboard::Server;
    /// use switchboard::http::{Method, Request, Response, StatusCode};
    ///
    /// let server = Server::builder()
    ///     .route("/api/echo", |request: Request<bytes::Bytes>| async move {
    ///         if request.method() != Method::POST {
    ///             let mut response = Response::new("use POST\n".into());
    ///             *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    ///             return response;
    ///         }
    ///         Response::new(request.into_body())
    ///     })
    ///     .bind("127.0.0.1:9001")
    ///     .await?;
    /// # drop(server);
    /// # Ok(())
    /// # }
    /// ```
    pub fn route<H, F>(mut self, path: &str, handler: H) -> Self
    where
        H: Fn(Request<Bytes>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Bytes>> + Send + 'static,
    {
        self.router.route(path, Route::text(boxed(handler)));
        self
    }

    /// As [`route`](Self::route), for a JSON API: the server's own refusals of its requests
    /// (413 for a body over [`max_body_size`](Self::max_body_size), 408 for one too slow, 400
    /// for one unreadable) are `application/json`, `{"error":{"code":"...","message":"..."}}`
    /// with code `too_large`, `timeout` or `bad_request`.
    pub fn api_route<H, F>(mut self, path: &str, handler: H) -> Self
    where
        H: Fn(Request<Bytes>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Bytes>> + Send + 'static,
    {
        self.router.route(path, Route::json(boxed(handler)));
        self
    }

    /// Answers plain HTTP requests that no [`route`](Self::route) matches with `handler`
    /// (which gets them as a route's handler does). Without one they get 426 Upgrade
    /// Required.
    pub fn http<H, F>(mut self, handler: H) -> Self
    where
        H: Fn(Request<Bytes>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Bytes>> + Send + 'static,
    {
        self.router.fallback(boxed(handler));
        self
    }

    /// The largest request body a route's handler gets (default 1 MiB); a longer one is
    /// answered 413 Content Too Large, and the rest of it is not read.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.router.max_body_size(bytes);
        self
    }

    /// Serves a health check at `path` (`/healthz`, say): `200 ok` while the server runs.
    pub fn health_endpoint(self, path: &str) -> Self {
        self.health_check(path, || Ok(()))
    }

    /// Serves a health check at `path` that asks `check` on every request: `200 ok` when it
    /// answers `Ok`, `503 Service Unavailable` with the reason when it answers `Err` (a
    /// service the server depends on is unreachable, say). `check` must not block. Replaces
    /// a [`health_endpoint`](Self::health_endpoint) on the same path.
    pub fn health_check<F>(self, path: &str, check: F) -> Self
    where
        F: Fn() -> Result<(), String> + Send + Sync + 'static,
    {
        self.health_report(path, move || check().map(|()| None))
    }

    /// As [`health_check`](Self::health_check), where `check` may also answer
    /// `Ok(Some(note))`: `200` with `degraded: NOTE`, for a server that serves but not all of
    /// it (one of several backing services is unreachable, say), so that a load balancer
    /// keeps it while a person reading the answer learns what is wrong.
    pub fn health_report<F>(self, path: &str, check: F) -> Self
    where
        F: Fn() -> Result<Option<String>, String> + Send + Sync + 'static,
    {
        self.route(path, move |request| {
            let answer = router::only_get(&request).unwrap_or_else(|| {
                let plain = "text/plain; charset=utf-8";
                match check() {
                    Ok(None) => router::text(StatusCode::OK, plain, "ok\n".into()),
                    Ok(Some(note)) => {
                        router::text(StatusCode::OK, plain, format!("degraded: {note}\n"))
                    }
                    Err(why) => router::text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        plain,
                        format!("unavailable: {why}\n"),
                    ),
                }
            });
            async move { answer }
        })
    }

    /// Serves the server's [`Metrics`] at `path` (`/metrics`, say) in the Prometheus text
    /// format.
    pub fn metrics_endpoint(self, path: &str) -> Self {
        let metrics = self.metrics.clone();
        self.route(path, move |request| {
            let answer = router::only_get(&request).unwrap_or_else(|| {
                router::text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics.render(),
                )
            });
            async move { answer }
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
    /// their [`Metrics`]. Any process of the same user may join the port the same way: one
    /// that must not share it claims it first (as `switchboard serve --threads` does).
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
        let h2c = self.serves_h2c();
        let group = Group::new(
            &self.options.config,
            self.max_connections,
            self.send_queue,
            self.metrics,
            self.farewell,
        );
        let http2 = (self.http2 && self.tls.is_some() || h2c)
            .then(|| http2::builder(&self.options, self.http2_max_streams));
        let shared = Arc::new(Shared {
            h2c,
            config: Arc::new(self.options.config.clone()),
            http1: plain::builder(&self.options),
            http2,
            tls: self.tls.map(|tls| tls.acceptor(self.http2)),
            options: self.options,
            router: self.router,
            hook: self.hook,
            check: self.check,
            origins: self.origins,
            group: Arc::new(group),
            gate: self.gate,
            addresses: self.addresses,
            proxies: TrustedProxies::new(self.trusted_proxies),
            refusals: LogThrottle::default(),
            drain: Notify::new(),
        });
        Server::new(listener, shared, self.shutdown_grace)
    }
}

/// `handler` as the router keeps it.
fn boxed<H, F>(handler: H) -> Arc<Handler>
where
    H: Fn(Request<Bytes>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Bytes>> + Send + 'static,
{
    Arc::new(move |request| Box::pin(handler(request)))
}
