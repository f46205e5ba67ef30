//! [`Server`]: a TCP (or TLS) listener that accepts WebSocket connections and hands each to a
//! handler in its own task; plain HTTP requests go to routes (`/healthz`, `/metrics` and the
//! application's own), served by hyper.
//!
//! A connection's first request is read by the server's own parser: an upgrade takes the fast
//! path, with nothing of an HTTP stack left per connection. Any other request goes to hyper
//! (HTTP/1.1 keep-alive, request bodies, `HEAD`), and an upgrade that follows it on the same
//! connection passes the same checks.
//!
//! Every connection is bounded: the opening handshake (TLS, request head, accept hook,
//! response) by the handshake timeout, the head by its size, a request body by its size, the
//! number of connections by a limit (`503` beyond it) and per address (`429`), handshakes
//! under way by a count and a rate, a silent peer by keepalive pings, the closing handshake by
//! the close timeout, and what is queued for a slow reader by the send queue limit. On
//! shutdown the server stops accepting, ends idle HTTP connections, sends every WebSocket
//! client its Close (`1001 Going Away` unless the application chose another, with a message
//! before it if it likes), and waits up to a grace period for them to finish.
//!
//! - `builder.rs`: [`ServerBuilder`], the settings;
//! - `admission.rs`: who gets in and how fast (the connection limit, `503` beyond it; the
//!   limit per address, `429`; handshakes under way, bounded in number and rate);
//! - `forwarded.rs`: the client's address behind trusted proxies;
//! - `handshake.rs`: a connection's first request (TLS, head, then the fast path's `101`, or
//!   the request handed on to hyper);
//! - `upgrade.rs`: the checks every upgrade request passes (check, RFC 6455, origin, hook);
//! - `origin.rs`: the origin allow-list;
//! - `respond.rs`: the fast path's refusals;
//! - `plain.rs`: plain HTTP on hyper, keep-alive, and an upgrade among its requests;
//! - `http2.rs`: HTTP/2 on hyper (TLS with ALPN `h2`, or h2c): the routes, and WebSockets through
//!   extended CONNECT (RFC 8441), each stream's handler in a task of its own;
//! - `rewind.rs`: the transport that gives hyper the bytes already read;
//! - `router.rs`: the routes, their bodies and `HEAD`;
//! - `task.rs`: a connection's task, the handshake then the handler;
//! - this file: the accept loop and the drain.

mod admission;
mod builder;
mod forwarded;
mod handshake;
mod http2;
mod origin;
mod plain;
mod respond;
mod rewind;
mod router;
mod task;
mod upgrade;

use std::future::{Future, pending};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::accept::AcceptOptions;
use crate::hook::{Accept, Reject};
use crate::link::Group;
use crate::metrics::Metrics;
use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;

pub use builder::ServerBuilder;
use origin::AllowedOrigins;
use router::Router;
#[cfg(test)]
pub(crate) use task::sample as sample_task;

type Hook = dyn Fn(&Request<()>) -> Pin<Box<dyn Future<Output = Result<Accept, Reject>> + Send>>
    + Send
    + Sync;
type UpgradeCheck = dyn Fn(&Request<()>) -> Option<Response<Bytes>> + Send + Sync;

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
    origins: AllowedOrigins,
    /// hyper's settings for plain HTTP connections.
    http1: hyper::server::conn::http1::Builder,
    /// hyper's settings for HTTP/2 connections; `None` when HTTP/2 is off.
    http2: Option<http2::Builder>,
    /// Whether a clear-text connection may open with the HTTP/2 preface.
    h2c: bool,
    /// Admission, shutdown, deadlines and counters of the connections.
    group: Arc<Group>,
    /// The bounds on handshakes under way.
    gate: Arc<admission::HandshakeGate>,
    /// The limit of connections per client address, if any.
    addresses: Option<Arc<crate::addresses::AddressLimit>>,
    /// Whose `Forwarded` and `X-Forwarded-For` are believed.
    proxies: forwarded::TrustedProxies,
    /// Keeps the log of refusals an attacker can repeat short.
    refusals: crate::LogThrottle,
    /// Wakes the plain HTTP connections when the group starts shutting down.
    drain: Notify,
}

impl Shared {
    /// Completes once the server drains.
    async fn drained(&self) {
        let notified = self.drain.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a drain in between is not missed.
        notified.as_mut().enable();
        if !self.group.is_shutting_down() {
            notified.await;
        }
    }
}

impl Server {
    fn new(listener: TcpListener, shared: Arc<Shared>, shutdown_grace: Duration) -> Self {
        Self {
            listener,
            shared,
            shutdown_grace,
        }
    }

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
        self.shared.group.metrics()
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
    /// every open WebSocket the [shutdown's Close](ServerBuilder::shutdown_close), `1001 Going
    /// Away` by default (their handlers see the client's Close, then
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
        let group = shared.group.clone();
        let sweeper = Sweeper::start(&group);
        tokio::pin!(signal);
        loop {
            let permit = tokio::select! {
                () = &mut signal => break,
                permit = shared.gate.ready(group.metrics()) => permit,
            };
            let (tcp, peer) = tokio::select! {
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) if admission::is_transient(&e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let Some((admitted, tcp)) = admission::admit(&shared, tcp, peer) else {
                continue;
            };
            let slot = admitted.member.slot();
            let pending = admission::Handshake::new(permit, group.metrics());
            let task = tokio::spawn(task::connection(
                admitted,
                pending,
                tcp,
                peer,
                shared.clone(),
                handler.clone(),
            ));
            group.set_abort(slot, task.abort_handle());
        }

        // Drain.
        drop(listener);
        tracing::info!(
            connections = group.members(),
            "shutting down: closing connections with {}",
            group.farewell().code
        );
        group.shut_down();
        shared.drain.notify_waiters();
        if !group.wait_idle(shutdown_grace).await {
            tracing::warn!(
                connections = group.members(),
                "grace period over: dropping connections"
            );
            group.abort_all();
            // Aborted tasks end at their next turn; a split connection's own task may take
            // a closing handshake longer, and is not waited for.
            group.wait_idle(Duration::from_secs(1)).await;
        }
        drop(sweeper);
        Ok(())
    }
}

/// The task that fires a server's deadlines, for as long as the server serves and then for as
/// long as connections are left. Dropped with `serve` (cancelled), it cancels every connection,
/// as a `JoinSet` would.
struct Sweeper {
    group: Arc<Group>,
}

impl Sweeper {
    fn start(group: &Arc<Group>) -> Self {
        tokio::spawn({
            let group = group.clone();
            async move { group.sweep().await }
        });
        Self {
            group: group.clone(),
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if !self.group.is_shutting_down() {
            self.group.abort_all();
        }
        self.group.close();
    }
}
