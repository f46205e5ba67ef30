//! Plain HTTP/1.1 on hyper: a connection whose first request is not an upgrade is served by
//! hyper from that request on (read again from the bytes the server read), its requests going
//! to the router, until the client closes, the next request's head takes longer than the
//! handshake timeout to arrive, or the server drains. An upgrade request among them passes the
//! checks of the fast path ([`upgrade::prepare`]); hyper sends its `101` and hands the stream
//! back, and the connection goes on as a WebSocket.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use http::Request;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use proto::handshake::server;

use super::Shared;
use super::rewind::Rewind;
use super::upgrade;
use crate::accept::{AcceptOptions, PreparedUpgrade};
use crate::hook::PeerAddr;
use crate::metrics::HandshakeFailure;
use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;

/// The transport hyper serves.
type Io = TokioIo<Rewind<MaybeTlsStream>>;

/// hyper's settings for a server's connections: request heads as long as the server's own
/// parser takes, each within the handshake timeout, which also bounds how long an idle
/// keep-alive connection waits for its next request.
pub(super) fn builder(options: &AcceptOptions) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.handshake_timeout)
        .max_header_size(options.max_head_size);
    builder
}

/// An upgrade answered `101`, waiting for hyper to hand the stream over.
struct Upgrading {
    on_upgrade: OnUpgrade,
    upgrade: PreparedUpgrade,
    request: Request<()>,
}

/// Serves `stream`, whose first bytes (`read`) the server has read already, until it ends or
/// upgrades; returns the WebSocket and its request in the second case.
pub(super) async fn serve(
    stream: MaybeTlsStream,
    read: Bytes,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<(WebSocket<MaybeTlsStream>, Request<()>)> {
    let upgrading = Mutex::new(None);
    {
        let service = service_fn(|request| answer(request, peer, shared, &upgrading));
        let io = TokioIo::new(Rewind::new(stream, read));
        let conn = shared.http1.serve_connection(io, service).with_upgrades();
        let drained = shared.drained();
        tokio::pin!(conn, drained);
        let served = tokio::select! {
            served = conn.as_mut() => served,
            () = &mut drained => {
                // Ends the connection once the request in progress, if any, is answered.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = served {
            tracing::debug!(%peer, "http connection ended: {e}");
        }
    }
    let upgrading = upgrading.into_inner().unwrap_or_else(|e| e.into_inner());
    let Upgrading {
        on_upgrade,
        upgrade,
        request,
    } = upgrading?;
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            let metrics = shared.group.metrics();
            upgrade::failed(metrics, peer, HandshakeFailure::Io, &e.to_string());
            return None;
        }
    };
    // hyper hands back the transport it was given: the downcast does not fail.
    let parts = upgraded.downcast::<Io>().ok()?;
    // hyper read its buffer off the transport before what is left of the replayed bytes.
    let (stream, unread) = parts.io.into_inner().into_parts();
    let mut read_buf = BytesMut::from(parts.read_buf);
    read_buf.extend_from_slice(&unread);
    Some((upgrade.into_websocket(stream, read_buf), request))
}

/// Answers one request: a plain one from the router, an upgrade with its `101` (kept in
/// `upgrading` for [`serve`] to finish) or its refusal.
async fn answer(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    shared: &Shared,
    upgrading: &Mutex<Option<Upgrading>>,
) -> io::Result<http::Response<Full<Bytes>>> {
    request.extensions_mut().insert(PeerAddr(peer));
    let timeout = shared.options.handshake_timeout;
    if !server::is_upgrade_request(&request) {
        shared.group.metrics().http_request();
        let response = shared.router.handle(request, timeout).await;
        return Ok(response.map(Full::new));
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    let mut request = Request::from_parts(parts, ());
    let metrics = shared.group.metrics();
    match tokio::time::timeout(timeout, upgrade::prepare(shared, &mut request)).await {
        Ok(Ok(upgrade)) => {
            let response = upgrade.response();
            let mut upgrading = upgrading.lock().unwrap_or_else(|e| e.into_inner());
            *upgrading = Some(Upgrading {
                on_upgrade,
                upgrade,
                request,
            });
            Ok(response)
        }
        Ok(Err(refusal)) => {
            upgrade::failed(metrics, peer, refusal.reason, &refusal.detail);
            Ok(refusal.response.map(Full::new))
        }
        Err(_) => {
            // As on the fast path: no answer, the connection ends.
            upgrade::failed(metrics, peer, HandshakeFailure::Timeout, "timed out");
            Err(io::ErrorKind::TimedOut.into())
        }
    }
}
