//! What every upgrade request passes, whether it opens a connection (read by the server's own
//! parser) or follows plain requests on a keep-alive connection (read by hyper), in this order:
//! the application's synchronous check, RFC 6455 §4.2.1's validation, the origin allow-list,
//! the accept hook, then the `101` with the subprotocol and permessage-deflate agreed
//! ([`PreparedUpgrade`]). A refusal is the response to send and how it is counted.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use proto::handshake::{HandshakeError, server};

use super::Shared;
use crate::accept::{PreparedUpgrade, choose_protocol};
use crate::hook::Reject;
use crate::metrics::{HandshakeFailure, Metrics};

/// An upgrade request turned down.
pub(super) struct Refusal {
    /// The answer to the request.
    pub(super) response: Response<Bytes>,
    pub(super) reason: HandshakeFailure,
    /// For the log.
    pub(super) detail: String,
}

impl Refusal {
    /// A refusal ends the connection on either path: a client that asked for a WebSocket has
    /// no use for it after.
    fn new(mut response: Response<Bytes>, reason: HandshakeFailure, detail: String) -> Self {
        response
            .headers_mut()
            .entry(header::CONNECTION)
            .or_insert(HeaderValue::from_static("close"));
        Self {
            response,
            reason,
            detail,
        }
    }

    /// Refuses a request that failed the handshake with its status and reason.
    pub(super) fn handshake(e: &HandshakeError) -> Self {
        Self::new(e.to_response(), failure(e), e.to_string())
    }
}

/// Runs the checks on `request` and prepares its `101`; data the accept hook attaches goes into
/// the request's extensions.
pub(super) async fn prepare(
    shared: &Shared,
    request: &mut Request<()>,
) -> Result<PreparedUpgrade, Refusal> {
    if let Some(response) = shared.check.as_ref().and_then(|check| check(request)) {
        let status = response.status();
        let detail = format!("check answered {status}");
        return Err(Refusal::new(response, HandshakeFailure::Rejected, detail));
    }
    server::validate_request(request).map_err(|e| Refusal::handshake(&e))?;
    if !shared.origins.allows(request) {
        let origin = request.headers().get(header::ORIGIN).cloned();
        let reject = Reject::new(StatusCode::FORBIDDEN).body("origin not allowed\n");
        let detail = format!("origin {origin:?}");
        return Err(Refusal::new(
            reject.into_response(),
            HandshakeFailure::Origin,
            detail,
        ));
    }
    let mut protocol = choose_protocol(request, &shared.options.protocols);
    if let Some(hook) = &shared.hook {
        match hook(request).await {
            Ok(accept) => {
                request.extensions_mut().extend(accept.extensions);
                if accept.protocol.is_some() {
                    protocol = accept.protocol;
                }
            }
            Err(reject) => {
                let detail = format!("hook answered {}", reject.status());
                let response = reject.into_response();
                return Err(Refusal::new(response, HandshakeFailure::Rejected, detail));
            }
        }
    }
    let config = shared.config.clone();
    PreparedUpgrade::with_protocol(request, &shared.options, config, protocol)
        .map_err(|e| Refusal::handshake(&e))
}

/// Counts and logs a handshake that failed.
pub(super) fn failed(metrics: &Metrics, peer: SocketAddr, reason: HandshakeFailure, detail: &str) {
    metrics.handshake_failed(reason);
    tracing::debug!(%peer, reason = reason.as_str(), "handshake failed: {detail}");
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
