//! What every upgrade request passes, whether it opens a connection (read by the server's own
//! parser), follows plain requests on a keep-alive connection (read by hyper), or opens a
//! stream of an HTTP/2 connection (an extended CONNECT, RFC 8441), in this order:
//! the application's synchronous check, RFC 6455 §4.2.1's validation, the origin allow-list,
//! the accept hook, then the `101` with the subprotocol and permessage-deflate agreed
//! ([`PreparedUpgrade`]). A refusal is the response to send and how it is counted.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use proto::handshake::{HandshakeError, server};

use super::Shared;
use crate::accept::{PreparedUpgrade, choose_protocol};
use crate::addresses::AddressTicket;
use crate::hook::{ClientAddr, PeerAddr, Reject};
use crate::metrics::{HandshakeFailure, Metrics};
use crate::throttle::LogThrottle;

/// An upgrade request turned down.
pub(super) struct Refusal {
    /// The answer to the request.
    pub(super) response: Response<Bytes>,
    pub(super) reason: HandshakeFailure,
    /// For the log.
    pub(super) detail: String,
}

impl Refusal {
    /// A refusal ends the connection on either HTTP/1.1 path: a client that asked for a
    /// WebSocket has no use for it after. Over HTTP/2 it ends the stream only, and
    /// connection-specific headers are not sent (RFC 9113 §8.2.2).
    pub(super) fn new(
        mut response: Response<Bytes>,
        reason: HandshakeFailure,
        detail: String,
    ) -> Self {
        if response.version() != Version::HTTP_2 {
            response
                .headers_mut()
                .entry(header::CONNECTION)
                .or_insert(HeaderValue::from_static("close"));
        }
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

    /// As [`handshake`](Self::handshake), for `request`, which may be an extended CONNECT.
    fn handshake_for<B>(request: &Request<B>, e: &HandshakeError) -> Self {
        if !server::is_connect_request(request) {
            return Self::handshake(e);
        }
        let (head, body) = server::reject_connect_response(e);
        let (parts, ()) = head.into_parts();
        let response = Response::from_parts(parts, Bytes::from(body));
        Self::new(response, failure(e), e.to_string())
    }
}

/// Runs the checks on `request` and prepares its `101`; data the accept hook attaches goes into
/// the request's extensions. In a `handshake` span: the hook's calls (a connect proxy) are
/// its children in a trace.
#[tracing::instrument(level = "debug", name = "handshake", skip_all)]
pub(super) async fn prepare(
    shared: &Shared,
    request: &mut Request<()>,
) -> Result<PreparedUpgrade, Refusal> {
    let version = request.version();
    // The application's answers go out in the request's version: over HTTP/2, without the
    // connection-specific headers of HTTP/1.1.
    let versioned = |mut response: Response<Bytes>| {
        if version == Version::HTTP_2 {
            *response.version_mut() = version;
        }
        response
    };
    if let Some(response) = shared.check.as_ref().and_then(|check| check(request)) {
        let status = response.status();
        let detail = format!("check answered {status}");
        let response = versioned(response);
        return Err(Refusal::new(response, HandshakeFailure::Rejected, detail));
    }
    let valid = if server::is_connect_request(request) {
        server::validate_connect_request(request)
    } else {
        server::validate_request(request)
    };
    valid.map_err(|e| Refusal::handshake_for(request, &e))?;
    if !shared.origins.allows(request) {
        let origin = request.headers().get(header::ORIGIN).cloned();
        let reject = Reject::new(StatusCode::FORBIDDEN).body("origin not allowed\n");
        let detail = format!("origin {origin:?}");
        return Err(Refusal::new(
            versioned(reject.into_response()),
            HandshakeFailure::Origin,
            detail,
        ));
    }
    let address =
        count_forwarded(shared, request).map_err(|client| over_address_limit(client, version))?;
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
                let response = versioned(reject.into_response());
                return Err(Refusal::new(response, HandshakeFailure::Rejected, detail));
            }
        }
    }
    let config = shared.config.clone();
    let prepared = PreparedUpgrade::with_protocol(request, &shared.options, config, protocol)
        .map_err(|e| Refusal::handshake_for(request, &e))?;
    Ok(match address {
        Some(ticket) => prepared.holding(ticket),
        None => prepared,
    })
}

/// Puts the client's address in `request`'s extensions and, when it came through a trusted
/// proxy and there is a limit per address, counts it there: the connection from the proxy was
/// not counted when it was accepted. `Err` holds the client's address when it is at the limit.
fn count_forwarded(
    shared: &Shared,
    request: &mut Request<()>,
) -> Result<Option<AddressTicket>, IpAddr> {
    let Some(PeerAddr(peer)) = request.extensions().get::<PeerAddr>().copied() else {
        return Ok(None);
    };
    let client = shared.proxies.client(peer, request.headers());
    request.extensions_mut().insert(ClientAddr(client));
    match &shared.addresses {
        Some(limit) if shared.proxies.trusts(peer.ip()) => match limit.acquire(client) {
            Some(ticket) => Ok(Some(ticket)),
            None => {
                shared.refusals.log(|suppressed| {
                    tracing::info!(%client, via = %peer, suppressed, "address at its connection limit: 429");
                });
                Err(client)
            }
        },
        _ => Ok(None),
    }
}

/// The refusal of a client whose address is at its connection limit.
fn over_address_limit(client: IpAddr, version: Version) -> Refusal {
    let reject = Reject::new(StatusCode::TOO_MANY_REQUESTS)
        .header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        .body("too many connections from your address, try again later\n");
    let mut response = reject.into_response();
    *response.version_mut() = version;
    let detail = format!("{client} at its connection limit");
    Refusal::new(response, HandshakeFailure::AddressLimit, detail)
}
/// Handshake failures, which a client can cause at will: at most one line a second.
static FAILURES: LogThrottle = LogThrottle::new(Duration::from_secs(1));

/// Counts and logs a handshake that failed: at info level one a second, with the count of
/// those held back; the others at debug level.
pub(super) fn failed(metrics: &Metrics, peer: SocketAddr, reason: HandshakeFailure, detail: &str) {
    metrics.handshake_failed(reason);
    let reason = reason.as_str();
    let mut logged = false;
    FAILURES.log(|suppressed| {
        logged = true;
        tracing::info!(%peer, reason, suppressed, "handshake failed: {detail}");
    });
    if !logged {
        tracing::debug!(%peer, reason, "handshake failed: {detail}");
    }
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
