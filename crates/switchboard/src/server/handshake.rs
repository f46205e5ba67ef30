//! A server's opening handshake, from an admitted TCP stream to a WebSocket, in this order:
//! TLS; the request head (at most `max_head_size`); a plain HTTP request goes to the routes;
//! then the application's synchronous check, RFC 6455 §4.2.1's validation, the origin
//! allow-list, the accept hook, and the `101` with the subprotocol and permessage-deflate
//! agreed ([`accept::complete`], shared with [`accept_request`](crate::accept_request)). The
//! whole of it runs within the handshake timeout; every failure is counted by reason.

use std::net::SocketAddr;

use http::{Request, StatusCode, header};
use proto::handshake::{HandshakeError, server};
use tokio::net::TcpStream;

use super::Shared;
use super::respond::respond;
use crate::accept::{self, choose_protocol};
use crate::error::Error;
use crate::head::read_head;
use crate::hook::{PeerAddr, Reject};
use crate::metrics::HandshakeFailure;
use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;

type Failure = (HandshakeFailure, String);

/// The handshake within the server's time limit; a failure is counted and logged.
pub(super) async fn upgrade(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<(WebSocket<MaybeTlsStream>, Request<()>)> {
    let metrics = shared.group.metrics();
    let handshake = handshake(tcp, peer, shared);
    match tokio::time::timeout(shared.options.handshake_timeout, handshake).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err((reason, e))) => {
            metrics.handshake_failed(reason);
            tracing::debug!(%peer, reason = reason.as_str(), "handshake failed: {e}");
            None
        }
        Err(_) => {
            metrics.handshake_failed(HandshakeFailure::Timeout);
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
    let max_head = shared.options.max_head_size;
    let parse = |buf: &[u8]| server::parse_request(buf, max_head);
    let (mut request, read_buf) = match read_head(&mut stream, parse).await {
        Ok(head) => head,
        Err(Error::Handshake(e)) => return Err(refuse(&mut stream, e).await),
        Err(e) => return Err((HandshakeFailure::Io, e.to_string())),
    };
    request.extensions_mut().insert(PeerAddr(peer));

    if !server::is_upgrade_request(&request) {
        shared.group.metrics().http_request();
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
    if let Err(e) = server::validate_request(&request) {
        return Err(refuse(&mut stream, e).await);
    }
    if !shared.origins.allows(&request) {
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
    let config = shared.config.clone();
    let options = &shared.options;
    match accept::complete(stream, &request, read_buf, options, config, protocol).await {
        Ok(ws) => Ok(Some((ws, request))),
        Err(Error::Handshake(e)) => Err((failure(&e), e.to_string())),
        Err(e) => Err((HandshakeFailure::Io, e.to_string())),
    }
}

/// Answers a request that failed the handshake with its status.
async fn refuse(stream: &mut MaybeTlsStream, e: HandshakeError) -> Failure {
    accept::reject(stream, &e).await;
    (failure(&e), e.to_string())
}

/// How a handshake error is counted.
fn failure(e: &HandshakeError) -> HandshakeFailure {
    match e.status() {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => HandshakeFailure::HeadTooLarge,
        StatusCode::UPGRADE_REQUIRED => HandshakeFailure::UnsupportedVersion,
        StatusCode::BAD_REQUEST => HandshakeFailure::BadRequest,
        _ => HandshakeFailure::Other,
    }
}
