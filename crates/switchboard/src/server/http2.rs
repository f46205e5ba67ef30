//! HTTP/2 on hyper, for a TLS connection that agreed on ALPN `h2` or, with h2c on, a clear-text
//! one that opened with the HTTP/2 preface (prior knowledge): plain requests go to the
//! router as over HTTP/1.1, and a WebSocket opens a stream with an extended CONNECT
//! (RFC 8441: `:method = CONNECT`, `:protocol = websocket`), which passes the checks of
//! [`upgrade::prepare`], is answered `200`, and runs the unchanged engine over the stream in a
//! task of its own, with a membership of its own in the server's group (its limit, drain and
//! deadlines). The connection's task drives the socket for all its streams until the client
//! closes, it stays without a stream for the handshake timeout, or the server drains (GOAWAY,
//! then `1001` on every WebSocket, and the connection ends with its last stream).
//!
//! Refusals: a CONNECT without `:protocol` gets 400, one with another protocol 501 (RFC 8441
//! §4 leaves both to the server; RFC 9110 §9.3.6 CONNECT to a proxy is not served). A client
//! past the streams limit has its stream refused by h2 with `REFUSED_STREAM`. A stream reset by
//! the client ends its WebSocket as a dropped connection (1006), and no other.
//!
//! Flow control is h2's, per stream: what a handler has not read yet is at most
//! [`STREAM_WINDOW`] bytes, and the connection's window is that times the streams limit, so a
//! stalled handler stops its own stream without starving the others. What a slow client has
//! not read stays in its WebSocket's send queue, under the server's limit and backpressure
//! policy like any WebSocket's.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::Shared;
use super::rewind::Rewind;
use super::router;
use super::upgrade::{self, Refusal};
use crate::accept::AcceptOptions;
use crate::hook::{ClientAddr, PeerAddr};
use crate::link::{Link, Remote};
use crate::metrics::HandshakeFailure;
use crate::stream::{Http2Stream, MaybeTlsStream};
use crate::websocket::WebSocket;

/// hyper's settings for a server's HTTP/2 connections.
pub(super) type Builder = http2::Builder<TokioExecutor>;

/// Streams open at once per connection, by default.
pub(super) const DEFAULT_MAX_STREAMS: u32 = 100;

/// What one stream may have received and not yet had read by its handler.
const STREAM_WINDOW: u32 = 256 * 1024;

/// The largest window HTTP/2 allows (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// hyper's settings: extended CONNECT on, `max_streams` streams at once, request heads as
/// long as over HTTP/1.1, and the WebSockets' keepalive timings for pings of the connection.
pub(super) fn builder(options: &AcceptOptions, max_streams: u32) -> Builder {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    let head = u32::try_from(options.max_head_size).unwrap_or(u32::MAX);
    builder
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(max_streams)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(STREAM_WINDOW.saturating_mul(max_streams).min(MAX_WINDOW))
        .max_header_list_size(head)
        .keep_alive_interval(options.config.idle_timeout)
        .keep_alive_timeout(options.config.pong_timeout);
    builder
}

/// Serves an HTTP/2 connection, whose first bytes (`read`) the server has read already, until
/// it ends; its WebSockets run `handler` in tasks of their own.
pub(super) async fn serve<H, F>(
    stream: MaybeTlsStream,
    read: Bytes,
    peer: SocketAddr,
    shared: Arc<Shared>,
    handler: Arc<H>,
) where
    H: Fn(WebSocket<MaybeTlsStream>, Request<()>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let Some(builder) = &shared.http2 else {
        return;
    };
    let metrics = shared.group.metrics().clone();
    metrics.http2_connection_opened();
    tracing::debug!(%peer, "http/2 connection");
    let activity = Arc::new(Activity::default());
    let tls = stream.is_tls();
    let service = {
        let shared = shared.clone();
        let activity = activity.clone();
        service_fn(move |request| {
            let stream = Stream::open(&activity);
            answer(request, peer, tls, shared.clone(), handler.clone(), stream)
        })
    };
    let io = TokioIo::new(Rewind::new(stream, read));
    let conn = builder.serve_connection(io, service);
    let drained = shared.drained();
    let idle = activity.idle(shared.options.handshake_timeout);
    tokio::pin!(conn, drained, idle);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = &mut drained => {
            // GOAWAY: no new stream; the connection ends with the last open one, each
            // WebSocket closing with 1001 as it learns of the drain.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = &mut idle => {
            tracing::debug!(%peer, "http/2 connection idle: closing");
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%peer, "http/2 connection ended: {e}");
    }
    metrics.http2_connection_closed();
}

/// Answers one stream: a plain request from the router, an extended CONNECT with its WebSocket
/// (or its refusal), any other CONNECT with a refusal.
async fn answer<H, F>(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    handler: Arc<H>,
    stream: Stream,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    H: Fn(WebSocket<MaybeTlsStream>, Request<()>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    request.extensions_mut().insert(PeerAddr(peer));
    let timeout = shared.options.handshake_timeout;
    let metrics = shared.group.metrics();
    if request.method() != Method::CONNECT {
        metrics.http_request();
        let response = shared.router.handle(request, timeout).await;
        return Ok(for_http2(response));
    }
    let refusal = match request.extensions().get::<Protocol>() {
        None => Some(refuse(
            StatusCode::BAD_REQUEST,
            HandshakeFailure::BadRequest,
            "connect without :protocol",
        )),
        Some(protocol) if !protocol.as_str().eq_ignore_ascii_case("websocket") => Some(refuse(
            StatusCode::NOT_IMPLEMENTED,
            HandshakeFailure::Other,
            &format!("connect with :protocol {:?}", protocol.as_str()),
        )),
        Some(_) => None,
    };
    if let Some(refusal) = refusal {
        upgrade::failed(metrics, peer, refusal.reason, &refusal.detail);
        return Ok(for_http2(refusal.response));
    }
    let Some(member) = shared.group.admit() else {
        upgrade::failed(
            metrics,
            peer,
            HandshakeFailure::OverCapacity,
            "at the limit",
        );
        let mut response = router::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "server at its connection limit, try again later\n".into(),
        );
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(for_http2(response));
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    let mut request = Request::from_parts(parts, ());
    let prepared =
        match tokio::time::timeout(timeout, upgrade::prepare(&shared, &mut request)).await {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(refusal)) => {
                upgrade::failed(metrics, peer, refusal.reason, &refusal.detail);
                return Ok(for_http2(refusal.response));
            }
            Err(_) => {
                upgrade::failed(metrics, peer, HandshakeFailure::Timeout, "timed out");
                let response = router::text(
                    StatusCode::REQUEST_TIMEOUT,
                    "text/plain; charset=utf-8",
                    "handshake timed out\n".into(),
                );
                return Ok(for_http2(response));
            }
        };
    let response = prepared.response();
    let slot = member.slot();
    let group = shared.group.clone();
    let task = tokio::spawn(async move {
        // Fulfilled once hyper has sent the 200; an error if the stream ended first.
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                let metrics = shared.group.metrics();
                upgrade::failed(metrics, peer, HandshakeFailure::Io, &e.to_string());
                return;
            }
        };
        let io = MaybeTlsStream::Http2(Box::new(Http2Stream::new(upgraded, tls)));
        let mut ws = prepared.into_websocket(io, BytesMut::new());
        let client = request.extensions().get::<ClientAddr>().map(|c| c.0);
        ws.attach(Link::new(member, &Remote::of(peer, client)));
        shared.group.metrics().websocket_opened(Version::HTTP_2);
        drop(shared);
        handler(ws, request).await;
        drop(stream);
    });
    group.set_abort(slot, task.abort_handle());
    Ok(response)
}

/// A refusal of a CONNECT that is not a WebSocket's.
fn refuse(status: StatusCode, reason: HandshakeFailure, detail: &str) -> Refusal {
    let body = format!("{detail}: this server accepts :protocol websocket only\n");
    let mut response = router::text(status, "text/plain; charset=utf-8", body);
    *response.version_mut() = Version::HTTP_2;
    Refusal::new(response, reason, detail.to_owned())
}

/// `response` without the headers HTTP/2 forbids (RFC 9113 §8.2.2): a refusal that closes an
/// HTTP/1.1 connection ends only its stream here.
fn for_http2(response: Response<Bytes>) -> Response<Full<Bytes>> {
    let mut response = response.map(Full::new);
    let headers = response.headers_mut();
    for name in [
        header::CONNECTION,
        header::UPGRADE,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    response
}

/// The streams of one connection: how many are open, and whether one opened or ended lately.
#[derive(Default)]
struct Activity {
    open: AtomicUsize,
    touched: AtomicBool,
}

impl Activity {
    /// Completes once the connection has had no stream for a whole `period`.
    async fn idle(&self, period: Duration) {
        loop {
            tokio::time::sleep(period).await;
            let touched = self.touched.swap(false, Ordering::AcqRel);
            if !touched && self.open.load(Ordering::Acquire) == 0 {
                return;
            }
        }
    }
}

/// A stream open on its connection, until dropped (its response sent, or its WebSocket over).
struct Stream(Arc<Activity>);

impl Stream {
    fn open(activity: &Arc<Activity>) -> Self {
        activity.open.fetch_add(1, Ordering::AcqRel);
        activity.touched.store(true, Ordering::Release);
        Self(activity.clone())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.touched.store(true, Ordering::Release);
    }
}
