//! [`Metrics`]: what a [`Server`](crate::Server) counts, rendered in the Prometheus text
//! exposition format (version 0.0.4) for a `/metrics` endpoint.
//!
//! Counters are plain atomics; a connection adds its message and byte counts in batches (when
//! it waits for input, and when it ends), not once per message, so that connections on
//! different cores do not contend on every frame.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::histogram::Histogram;

/// Why an opening handshake did not produce a connection; the `reason` label of
/// `switchboard_handshake_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The TLS handshake failed.
    Tls,
    /// The handshake did not complete within the handshake timeout (a slow or stalled client).
    Timeout,
    /// The request head was over the size limit (431).
    HeadTooLarge,
    /// The request was not a valid WebSocket upgrade (400).
    BadRequest,
    /// The client asked for a WebSocket version other than 13 (426).
    UnsupportedVersion,
    /// The `Origin` was not on the allow-list (403).
    Origin,
    /// The accept hook refused the request.
    Rejected,
    /// The server was at its connection limit (503).
    OverCapacity,
    /// The client's address was at its connection limit (429).
    AddressLimit,
    /// The transport failed or the client went away mid-handshake.
    Io,
    /// Anything else (a server-side mistake, such as a subprotocol the client did not offer).
    Other,
}

impl HandshakeFailure {
    const ALL: [Self; 11] = [
        Self::Tls,
        Self::Timeout,
        Self::HeadTooLarge,
        Self::BadRequest,
        Self::UnsupportedVersion,
        Self::Origin,
        Self::Rejected,
        Self::OverCapacity,
        Self::AddressLimit,
        Self::Io,
        Self::Other,
    ];

    /// Every reason, in the order `/metrics` lists them.
    pub fn all() -> &'static [Self] {
        &Self::ALL
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::HeadTooLarge => "head_too_large",
            Self::BadRequest => "bad_request",
            Self::UnsupportedVersion => "unsupported_version",
            Self::Origin => "origin",
            Self::Rejected => "rejected",
            Self::OverCapacity => "over_capacity",
            Self::AddressLimit => "address_limit",
            Self::Io => "io",
            Self::Other => "other",
        }
    }
}

/// The counters of a server. Cheap to clone; clones share the counters.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    http_requests: AtomicU64,
    /// WebSockets opened over HTTP/1.1 and over HTTP/2.
    websockets_http1: AtomicU64,
    websockets_http2: AtomicU64,
    http2_connections_open: AtomicU64,
    http2_connections_total: AtomicU64,
    backpressure_drops: AtomicU64,
    backpressure_disconnects: AtomicU64,
    /// Handshakes under way, and the times accepting waited for the handshake limits.
    handshakes_in_progress: AtomicU64,
    accepts_held: AtomicU64,
    handshake_failures: [AtomicU64; HandshakeFailure::ALL.len()],
    /// From accepting a TCP connection to its `101`, in microseconds (HTTP/1.1 upgrades).
    handshake_time: Histogram,
    closes: Mutex<BTreeMap<u16, u64>>,
    /// What the application adds; see [`Metrics::extend`].
    extensions: Extensions,
}

/// Writes Prometheus text lines of what runs on a server.
type Extension = dyn Fn(&mut String) + Send + Sync;

#[derive(Default)]
struct Extensions(Mutex<Vec<Arc<Extension>>>);

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.0.lock().map_or(0, |e| e.len());
        write!(f, "Extensions({count})")
    }
}

/// A connection's counts, added to [`Metrics`] in one go. 32 bits each, as they count only
/// since the last time they were added (whenever the connection waits for input) and every
/// connection holds one; [`Link`](crate::link::Link) adds them early when one would overflow.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) messages_in: u32,
    pub(crate) messages_out: u32,
    pub(crate) bytes_in: u32,
    pub(crate) bytes_out: u32,
}

impl Metrics {
    /// Counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// WebSocket connections open now.
    pub fn connections_open(&self) -> u64 {
        self.inner.connections_open.load(Ordering::Relaxed)
    }

    /// WebSocket connections opened since the start.
    pub fn connections_total(&self) -> u64 {
        self.inner.connections_total.load(Ordering::Relaxed)
    }

    /// Text and binary messages received since the start (a connection adds its counts when
    /// it waits for input and when it ends, so this trails by what is being read now).
    pub fn messages_received(&self) -> u64 {
        self.inner.messages_in.load(Ordering::Relaxed)
    }

    /// Text and binary messages queued for sending since the start (added as
    /// [`messages_received`](Self::messages_received) is).
    pub fn messages_sent(&self) -> u64 {
        self.inner.messages_out.load(Ordering::Relaxed)
    }

    /// WebSocket bytes received since the start, frame headers included.
    pub fn bytes_received(&self) -> u64 {
        self.inner.bytes_in.load(Ordering::Relaxed)
    }

    /// WebSocket bytes sent since the start, frame headers included.
    pub fn bytes_sent(&self) -> u64 {
        self.inner.bytes_out.load(Ordering::Relaxed)
    }

    /// WebSocket connections opened since the start over HTTP `version`: `HTTP_11` (an
    /// upgrade, `101`) or `HTTP_2` (an extended CONNECT on a stream of a shared connection).
    pub fn websockets_total(&self, version: http::Version) -> u64 {
        match version {
            http::Version::HTTP_2 => self.inner.websockets_http2.load(Ordering::Relaxed),
            http::Version::HTTP_11 => self.inner.websockets_http1.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// HTTP/2 connections open now (each may carry many WebSockets and requests).
    pub fn http2_connections_open(&self) -> u64 {
        self.inner.http2_connections_open.load(Ordering::Relaxed)
    }

    /// HTTP/2 connections accepted since the start.
    pub fn http2_connections_total(&self) -> u64 {
        self.inner.http2_connections_total.load(Ordering::Relaxed)
    }

    /// Messages not queued for a slow reader under the drop policy.
    pub fn backpressure_drops(&self) -> u64 {
        self.inner.backpressure_drops.load(Ordering::Relaxed)
    }

    /// Connections closed for reading too slowly under the disconnect policy.
    pub fn backpressure_disconnects(&self) -> u64 {
        self.inner.backpressure_disconnects.load(Ordering::Relaxed)
    }

    /// Opening handshakes under way (see
    /// [`ServerBuilder::max_handshakes`](crate::ServerBuilder::max_handshakes)).
    pub fn handshakes_in_progress(&self) -> u64 {
        self.inner.handshakes_in_progress.load(Ordering::Relaxed)
    }

    /// Times the server stopped accepting for a while because handshakes were at their limit
    /// of concurrency or rate: clients waited in the kernel's backlog meanwhile.
    pub fn accepts_held(&self) -> u64 {
        self.inner.accepts_held.load(Ordering::Relaxed)
    }

    /// Handshakes that failed for `reason`.
    pub fn handshake_failures(&self, reason: HandshakeFailure) -> u64 {
        self.inner.handshake_failures[reason as usize].load(Ordering::Relaxed)
    }

    /// Connections that ended with close code `code` (see `switchboard_closes_total` in
    /// [`render`](Self::render)).
    pub fn closes(&self, code: u16) -> u64 {
        self.closes_map().get(&code).copied().unwrap_or(0)
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let i = &self.inner;
        let mut out = String::with_capacity(2048);
        // (name, type, value, help)
        #[rustfmt::skip]
        let counters: [(&str, &str, &AtomicU64, &str); 11] = [
            ("switchboard_connections_open", "gauge", &i.connections_open, "WebSocket connections open now."),
            ("switchboard_connections_total", "counter", &i.connections_total, "WebSocket connections opened."),
            ("switchboard_messages_received_total", "counter", &i.messages_in, "Text and binary messages received."),
            ("switchboard_messages_sent_total", "counter", &i.messages_out, "Text and binary messages queued for sending."),
            ("switchboard_bytes_received_total", "counter", &i.bytes_in, "WebSocket bytes received (frames, headers included)."),
            ("switchboard_bytes_sent_total", "counter", &i.bytes_out, "WebSocket bytes sent (frames, headers included)."),
            ("switchboard_http_requests_total", "counter", &i.http_requests, "Plain HTTP requests answered (not upgrades)."),
            ("switchboard_backpressure_dropped_total", "counter", &i.backpressure_drops, "Messages dropped because a connection's send queue was full."),
            ("switchboard_backpressure_disconnects_total", "counter", &i.backpressure_disconnects, "Connections closed because their send queue was full."),
            ("switchboard_handshakes_in_progress", "gauge", &i.handshakes_in_progress, "Opening handshakes under way (TLS, request head, checks)."),
            ("switchboard_accepts_held_total", "counter", &i.accepts_held, "Times accepting paused at the handshake limits (concurrency or rate)."),
        ];
        for (name, kind, value, help) in counters {
            let value = value.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_websockets_total WebSocket connections opened, by HTTP version \
             (2: on a stream of a shared HTTP/2 connection).\n\
             # TYPE switchboard_websockets_total counter\n\
             switchboard_websockets_total{{http=\"1.1\"}} {}\n\
             switchboard_websockets_total{{http=\"2\"}} {}",
            i.websockets_http1.load(Ordering::Relaxed),
            i.websockets_http2.load(Ordering::Relaxed),
        );
        #[rustfmt::skip]
        let http2: [(&str, &str, &AtomicU64, &str); 2] = [
            ("switchboard_http2_connections_open", "gauge", &i.http2_connections_open, "HTTP/2 connections open now."),
            ("switchboard_http2_connections_total", "counter", &i.http2_connections_total, "HTTP/2 connections accepted."),
        ];
        for (name, kind, value, help) in http2 {
            let value = value.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_closes_total Connections ended, by the close code of the \
             handshake's first Close frame (1006: no closing handshake).\n\
             # TYPE switchboard_closes_total counter"
        );
        for (code, count) in self.closes_map() {
            let _ = writeln!(out, "switchboard_closes_total{{code=\"{code}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_handshake_failures_total Opening handshakes that failed, by \
             reason.\n# TYPE switchboard_handshake_failures_total counter"
        );
        for reason in HandshakeFailure::ALL {
            let count = self.handshake_failures(reason);
            let _ = writeln!(
                out,
                "switchboard_handshake_failures_total{{reason=\"{}\"}} {count}",
                reason.as_str()
            );
        }
        let name = "switchboard_handshake_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from accepting a TCP connection to its 101 (TLS and the \
             request included), for WebSockets over HTTP/1.1.\n# TYPE {name} histogram"
        );
        i.handshake_time.render(&mut out, name, "", 1e6);
        let extensions = self
            .inner
            .extensions
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for extension in extensions {
            extension(&mut out);
        }
        out
    }

    /// Adds what `render` writes to [`render`](Self::render)'s text, after the server's own
    /// counters: the metrics of what runs on the server (a hub's API, its webhooks), in the
    /// same Prometheus text format (`# HELP`, `# TYPE`, then the samples), on the same
    /// `/metrics` endpoint.
    pub fn extend(&self, render: impl Fn(&mut String) + Send + Sync + 'static) {
        self.inner
            .extensions
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(render));
    }

    fn closes_map(&self) -> BTreeMap<u16, u64> {
        // Every update is one insert: a poisoned lock still holds a consistent map.
        self.inner
            .closes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn connection_opened(&self) {
        self.inner.connections_open.fetch_add(1, Ordering::Relaxed);
        self.inner.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn websocket_opened(&self, version: http::Version) {
        let counter = if version == http::Version::HTTP_2 {
            &self.inner.websockets_http2
        } else {
            &self.inner.websockets_http1
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_took(&self, took: Duration) {
        self.inner.handshake_time.observe_micros(took);
    }

    pub(crate) fn http2_connection_opened(&self) {
        let i = &self.inner;
        i.http2_connections_open.fetch_add(1, Ordering::Relaxed);
        i.http2_connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn http2_connection_closed(&self) {
        let i = &self.inner;
        i.http2_connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self, code: u16) {
        self.inner.connections_open.fetch_sub(1, Ordering::Relaxed);
        *self
            .inner
            .closes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    pub(crate) fn add(&self, tally: &mut Tally) {
        let i = &self.inner;
        for (counter, value) in [
            (&i.messages_in, &mut tally.messages_in),
            (&i.messages_out, &mut tally.messages_out),
            (&i.bytes_in, &mut tally.bytes_in),
            (&i.bytes_out, &mut tally.bytes_out),
        ] {
            if *value > 0 {
                counter.fetch_add(u64::from(std::mem::take(value)), Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn handshake_started(&self) {
        self.inner
            .handshakes_in_progress
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_ended(&self) {
        self.inner
            .handshakes_in_progress
            .fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn accept_held(&self) {
        self.inner.accepts_held.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_failed(&self, reason: HandshakeFailure) {
        self.inner.handshake_failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn http_request(&self) {
        self.inner.http_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn backpressure_drop(&self) {
        self.inner
            .backpressure_drops
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn backpressure_disconnect(&self) {
        self.inner
            .backpressure_disconnects
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_labels() {
        let m = Metrics::new();
        m.connection_opened();
        m.connection_opened();
        m.connection_closed(1000);
        m.handshake_failed(HandshakeFailure::Timeout);
        m.websocket_opened(http::Version::HTTP_2);
        m.http2_connection_opened();
        let mut tally = Tally {
            messages_in: 3,
            bytes_in: 40,
            ..Tally::default()
        };
        m.add(&mut tally);
        assert_eq!(tally.messages_in, 0, "the tally is emptied");
        // The getters read what /metrics renders.
        assert_eq!((m.messages_received(), m.bytes_received()), (3, 40));
        assert_eq!((m.messages_sent(), m.bytes_sent()), (0, 0));
        assert_eq!(HandshakeFailure::all().len(), HandshakeFailure::ALL.len());
        let text = m.render();
        for line in [
            "switchboard_connections_open 1",
            "switchboard_connections_total 2",
            "switchboard_messages_received_total 3",
            "switchboard_bytes_received_total 40",
            "switchboard_closes_total{code=\"1000\"} 1",
            "switchboard_handshake_failures_total{reason=\"timeout\"} 1",
            "switchboard_handshake_failures_total{reason=\"tls\"} 0",
            "# TYPE switchboard_connections_open gauge",
            "switchboard_websockets_total{http=\"1.1\"} 0",
            "switchboard_websockets_total{http=\"2\"} 1",
            "switchboard_http2_connections_open 1",
            "switchboard_http2_connections_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn what_the_application_adds_follows_the_servers_counters() {
        let m = Metrics::new();
        let clone = m.clone();
        clone.extend(|out| out.push_str("# TYPE app_things_total counter\napp_things_total 7\n"));
        let text = m.render();
        let server = text.find("switchboard_connections_open").unwrap();
        let app = text
            .find("app_things_total 7\n")
            .expect("the extension's lines");
        assert!(server < app);
    }
}
