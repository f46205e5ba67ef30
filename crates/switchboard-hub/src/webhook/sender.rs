//! The webhook queue and the one task that drains it: batches of events POSTed to the
//! backend, signed, and retried with backoff for a bounded time.
//!
//! ## Signature
//!
//! `X-Switchboard-Timestamp` is the Unix time of the attempt in seconds, and
//! `X-Switchboard-Signature` is `sha256=` and the hex HMAC-SHA256, keyed with the secret, of
//! the timestamp, a `.` and the exact body. A backend that refuses old timestamps refuses a
//! replayed request. Each attempt is signed afresh, with its own timestamp.
//!
//! A Pusher app's webhooks ([`Format::Pusher`]) are signed as Pusher signs them:
//! `X-Pusher-Key` is the app's key and `X-Pusher-Signature` the hex HMAC-SHA256 of the body
//! with its secret.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{Request, Uri};
use http_body_util::Full;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::time::Instant;

use serde::Serialize;

use super::event::{self, Event};
use super::{EventKind, Format, WebhookConfig, WebhookMetrics};
use crate::http_post::{Backend, json_post};
use crate::pusher::signature::webhook_signature;

/// The most of a webhook answer read (its body means nothing to the hub).
const MAX_ANSWER: usize = 64 * 1024;

/// The header of the request's signature.
pub(crate) const SIGNATURE: &str = "x-switchboard-signature";
/// The header of the signed timestamp.
pub(crate) const TIMESTAMP: &str = "x-switchboard-timestamp";

/// Where the hub puts events, without waiting.
#[derive(Debug)]
pub(crate) struct Queue<E = Event> {
    tx: mpsc::Sender<E>,
    events: HashSet<EventKind>,
    metrics: Arc<WebhookMetrics>,
}

impl<E> Queue<E> {
    /// Whether the backend is sent events of this kind.
    pub(crate) fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }

    /// Queues `event`; when the queue is full it is dropped and counted.
    pub(crate) fn push(&self, event: E) {
        if self.tx.try_send(event).is_err() {
            self.metrics.dropped_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the task that posts what the queue receives; it ends once the queue is dropped and
/// drained.
pub(crate) fn start<E>(config: WebhookConfig) -> (Queue<E>, Arc<WebhookMetrics>)
where
    E: Serialize + Send + Sync + 'static,
{
    let metrics = Arc::new(WebhookMetrics::default());
    let (tx, rx) = mpsc::channel(config.queue.max(1));
    let queue = Queue {
        tx,
        events: config.events.clone(),
        metrics: metrics.clone(),
    };
    tokio::spawn(run(rx, config, metrics.clone()));
    (queue, metrics)
}

/// Everything queued when the sender is free, at most `max_batch` per request.
async fn run<E: Serialize>(
    mut rx: mpsc::Receiver<E>,
    config: WebhookConfig,
    metrics: Arc<WebhookMetrics>,
) {
    let max_batch = config.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    let backend = Backend::default();
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        deliver(&backend, &config, &metrics, &batch).await;
        batch.clear();
    }
}

/// Posts one batch until the backend accepts it or `retry_for` runs out.
async fn deliver<E: Serialize>(
    backend: &Backend,
    config: &WebhookConfig,
    metrics: &WebhookMetrics,
    events: &[E],
) {
    let body = Bytes::from(event::body(events, &config.format));
    let count = events.len() as u64;
    let give_up = Instant::now() + config.retry_for;
    let mut backoff = config.backoff;
    loop {
        match tokio::time::timeout(config.timeout, attempt(backend, config, body.clone())).await {
            Ok(Ok(())) => {
                metrics.batches.fetch_add(1, Ordering::Relaxed);
                metrics.sent.fetch_add(count, Ordering::Relaxed);
                return;
            }
            Ok(Err(reason)) => {
                tracing::warn!(url = %config.url, %reason, "webhook failed");
            }
            Err(_) => {
                tracing::warn!(url = %config.url, timeout = ?config.timeout, "webhook got no answer");
            }
        }
        metrics.failed.fetch_add(1, Ordering::Relaxed);
        let pause = jitter(backoff);
        if Instant::now() + pause > give_up {
            metrics.dropped_expired.fetch_add(count, Ordering::Relaxed);
            tracing::warn!(url = %config.url, events = count, "webhook events dropped after retrying");
            return;
        }
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

/// Between half of `backoff` and all of it, so that hubs restarted together do not retry in
/// step.
fn jitter(backoff: Duration) -> Duration {
    let fraction = getrandom::u32().map_or(1.0, |r| f64::from(r) / f64::from(u32::MAX));
    backoff.mul_f64(0.5 + fraction / 2.0)
}

/// One POST; `Err` says why it failed.
async fn attempt(backend: &Backend, config: &WebhookConfig, body: Bytes) -> Result<(), String> {
    let request = match &config.format {
        Format::Switchboard => signed(&config.url, &config.secret, event::now_ms() / 1000, body),
        Format::Pusher(app) => pusher_signed(&config.url, app, body),
    }?;
    let (status, _) = backend.send(request, MAX_ANSWER).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// The request of one attempt at `timestamp` (Unix seconds), with its signature.
fn signed(
    url: &Uri,
    secret: &str,
    timestamp: u64,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    json_post(url)
        .header(TIMESTAMP, timestamp)
        .header(SIGNATURE, signature(secret, timestamp, &body))
        .body(Full::new(body))
        .map_err(|e| format!("bad request: {e}"))
}

/// The request of one attempt of a Pusher app's webhook, signed as Pusher signs them.
fn pusher_signed(
    url: &Uri,
    app: &crate::pusher::PusherApp,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    json_post(url)
        .header("x-pusher-key", &app.key)
        .header("x-pusher-signature", webhook_signature(app, &body))
        .body(Full::new(body))
        .map_err(|e| format!("bad request: {e}"))
}

/// `sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}`.
fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // Computed with Python's hmac module.
        assert_eq!(
            signature("Jefe", 1_700_000_000, br#"{"events":[]}"#),
            "sha256=a110c986da302c5f37accf36f899e479e3fefc1bf8e4d6b0c91b30f3838ed197"
        );
        assert_ne!(
            signature("Jefe", 1, b"{}"),
            signature("Jefe", 2, b"{}"),
            "the timestamp is signed"
        );
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_backoff() {
        for _ in 0..100 {
            let pause = jitter(Duration::from_secs(2));
            assert!(pause >= Duration::from_secs(1) && pause <= Duration::from_secs(2));
        }
    }
}
