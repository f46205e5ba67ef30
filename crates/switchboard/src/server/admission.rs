//! Who gets in, and how fast. A connection is admitted while the server is under its
//! connection limit (handshakes and plain HTTP count too) and its address under the limit per
//! address; one beyond either is answered (`503` or `429`, with `Retry-After`) without reading
//! its request. Handshakes under way are bounded in number, and optionally in rate: at either
//! bound the server stops accepting for a while, and new clients wait in the kernel's backlog
//! rather than in a pile of half-done handshakes (TLS is the expensive part of a reconnect
//! storm).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, Response, StatusCode, header};
use proto::handshake::server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Shared;
use crate::addresses::AddressTicket;
use crate::link::Member;
use crate::metrics::{HandshakeFailure, Metrics};
use crate::rate::TokenBucket;

/// Handshakes under way at once, by default: enough to keep both cores busy with TLS while
/// thousands reconnect, few enough that their buffers stay small.
pub(super) const DEFAULT_MAX_HANDSHAKES: usize = 512;

/// The bounds on handshakes under way.
#[derive(Debug)]
pub(super) struct HandshakeGate {
    permits: Arc<Semaphore>,
    rate: Option<Mutex<TokenBucket>>,
}

impl HandshakeGate {
    /// At most `max` handshakes at once and, with `rate`, at most that many started per second
    /// (bursts of a tenth of a second's worth).
    pub(super) fn new(max: usize, rate: Option<u32>) -> Self {
        let rate = rate.filter(|&r| r > 0).map(|r| {
            let burst = (r / 10).max(1);
            Mutex::new(TokenBucket::new(f64::from(r), burst))
        });
        Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
            rate,
        }
    }

    /// Waits until one more handshake may start.
    pub(super) async fn ready(&self, metrics: &Metrics) -> OwnedSemaphorePermit {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                metrics.accept_held();
                // The semaphore is never closed.
                let acquired = self.permits.clone().acquire_owned().await;
                acquired.unwrap_or_else(|_| unreachable!("the handshake semaphore is never closed"))
            }
        };
        if let Some(rate) = &self.rate {
            let mut held = false;
            loop {
                let wait = {
                    let mut bucket = rate.lock().unwrap_or_else(|e| e.into_inner());
                    if bucket.try_take() {
                        break;
                    }
                    bucket.wait()
                };
                if !held {
                    metrics.accept_held();
                    held = true;
                }
                tokio::time::sleep(wait).await;
            }
        }
        permit
    }
}

/// A handshake under way: counted, and holding its place under the limit, until dropped.
#[derive(Debug)]
pub(super) struct Handshake {
    _permit: OwnedSemaphorePermit,
    metrics: Metrics,
    started: Instant,
}

impl Handshake {
    pub(super) fn new(permit: OwnedSemaphorePermit, metrics: &Metrics) -> Self {
        metrics.handshake_started();
        Self {
            _permit: permit,
            metrics: metrics.clone(),
            started: Instant::now(),
        }
    }

    /// When the connection was accepted.
    pub(super) fn started(&self) -> Instant {
        self.started
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.metrics.handshake_ended();
    }
}

/// A connection let in: its membership in the server's group, and its count under the limit
/// per address when there is one.
pub(super) struct Admitted {
    pub(super) member: Member,
    pub(super) address: Option<AddressTicket>,
}

/// Admits `tcp` into the server's group, counted for its address when there is a limit per
/// address; or answers it (`503`, `429`) in a task of its own, bounded by its own timeout, and
/// counts the refusal.
pub(super) fn admit(
    shared: &Shared,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(Admitted, TcpStream)> {
    let group = &shared.group;
    let Some(member) = group.admit() else {
        group
            .metrics()
            .handshake_failed(HandshakeFailure::OverCapacity);
        // As the other refusals a client can cause at will: at most a line a second.
        let mut logged = false;
        shared.refusals.log(|suppressed| {
            logged = true;
            tracing::info!(%peer, suppressed, "at the connection limit: 503");
        });
        if !logged {
            tracing::debug!(%peer, "at the connection limit: 503");
        }
        let body = "server at its connection limit, try again later\n";
        tokio::spawn(refuse(tcp, StatusCode::SERVICE_UNAVAILABLE, body));
        return None;
    };
    // A trusted proxy's connections carry many clients: they are counted by the address
    // forwarded in each upgrade request instead.
    let mut address = None;
    if let Some(limit) = &shared.addresses
        && !shared.proxies.trusts(peer.ip())
    {
        let Some(ticket) = limit.acquire(peer.ip()) else {
            group
                .metrics()
                .handshake_failed(HandshakeFailure::AddressLimit);
            shared.refusals.log(|suppressed| {
                tracing::info!(%peer, suppressed, "address at its connection limit: 429");
            });
            let body = "too many connections from your address, try again later\n";
            tokio::spawn(refuse(tcp, StatusCode::TOO_MANY_REQUESTS, body));
            return None;
        };
        address = Some(ticket);
    }
    Some((Admitted { member, address }, tcp))
}

/// Answers a connection that is not admitted with `status` without reading its request, then
/// reads briefly what it sent, so that closing does not reset the connection before the client
/// has read the answer.
async fn refuse(mut tcp: TcpStream, status: StatusCode, body: &'static str) {
    let mut response = Response::new(());
    *response.status_mut() = status;
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

/// Whether a failed `accept` may succeed if tried again (a client that gave up, no file
/// descriptor free for a moment).
pub(super) fn is_transient(e: &io::Error) -> bool {
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
