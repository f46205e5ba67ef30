//! Webhooks: the hub tells a backend, by HTTP POST, when a channel gains its first subscriber
//! or loses its last, and when a client joins or leaves a channel's presence.
//!
//! The events are taken from the hub's own calls to its broker ([`observer`]): subscribing
//! the node to a channel (`channel_occupied`), unsubscribing it (`channel_vacated`), and a
//! connection's presence join and leave (`member_added`, `member_removed`). Each is put in a
//! bounded queue without waiting, and dropped (and counted) when the queue is full, so a slow
//! backend never slows a session or the fan-out. One task per hub ([`sender`]) drains the
//! queue in batches, signs each body and retries it with backoff.
//!
//! The same machinery posts the webhooks of Pusher apps, in Pusher's format ([`Format`]),
//! with the events the Pusher sessions queue (see `hub/pusher_hooks.rs`).
//!
//! ## Occupied and vacated in a cluster
//!
//! They are per node: a channel is occupied on a node from its first subscriber there to its
//! last, so with several nodes the backend hears of it from each (the `node` field says
//! which). Presence events are sent once per cluster, by the node of the connection.

mod event;
mod metrics;
mod observer;
mod sender;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use http::Uri;

use crate::pusher::PusherApp;

pub use metrics::WebhookMetrics;
pub(crate) use observer::Observed;
pub(crate) use sender::{Queue, start};

/// Where and how the hub posts its events.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// The backend's URL, `http://` or `https://` (Mozilla roots).
    pub url: Uri,
    /// The HMAC-SHA256 key of the `X-Switchboard-Signature` header.
    pub secret: String,
    /// The events posted; the others are not queued (default: all).
    pub events: HashSet<EventKind>,
    /// Most events in one request (default 100).
    pub max_batch: usize,
    /// Events queued while the backend is slow or down; beyond it they are dropped
    /// (default 10000).
    pub queue: usize,
    /// Time for one request, connecting included, before it counts as failed (default 10s).
    pub timeout: Duration,
    /// How long a batch is retried before it is dropped (default 1 minute).
    pub retry_for: Duration,
    /// The wait after the first failure, doubled after each next one up to
    /// [`max_backoff`](Self::max_backoff), with jitter (default 500ms).
    pub backoff: Duration,
    /// The longest wait between two attempts (default 10s).
    pub max_backoff: Duration,
    /// How bodies are framed and signed: the hub's way, or a Pusher app's.
    pub(crate) format: Format,
}

/// How a webhook request's body is framed and signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// The hub's: `{"events":[...]}`, with `X-Switchboard-Timestamp` and
    /// `X-Switchboard-Signature` (see `sender.rs`).
    Switchboard,
    /// Pusher's, for this app: `{"time_ms":..., "events":[...]}`, with `X-Pusher-Key` and
    /// `X-Pusher-Signature`, the hex HMAC-SHA256 of the body with the app's secret.
    Pusher(Box<PusherApp>),
}

impl WebhookConfig {
    /// Every event to `url`, signed with `secret`, with the default limits.
    pub fn new(url: Uri, secret: impl Into<String>) -> Self {
        Self {
            url,
            secret: secret.into(),
            events: EventKind::ALL.into_iter().collect(),
            max_batch: 100,
            queue: 10_000,
            timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(60),
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            format: Format::Switchboard,
        }
    }

    /// The webhooks of Pusher app `app` to `url`, in Pusher's format, with the default limits.
    pub(crate) fn pusher(url: Uri, app: &PusherApp) -> Self {
        Self {
            format: Format::Pusher(Box::new(app.clone())),
            ..Self::new(url, app.secret.clone())
        }
    }
}

/// What a webhook event says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// `channel_occupied`: the channel's first subscriber on a node.
    ChannelOccupied,
    /// `channel_vacated`: its last subscriber on a node left.
    ChannelVacated,
    /// `member_added`: a connection joined the channel's presence.
    MemberAdded,
    /// `member_removed`: a connection left it.
    MemberRemoved,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::ChannelOccupied,
        Self::ChannelVacated,
        Self::MemberAdded,
        Self::MemberRemoved,
    ];

    /// Its name, the `type` of its JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChannelOccupied => "channel_occupied",
            Self::ChannelVacated => "channel_vacated",
            Self::MemberAdded => "member_added",
            Self::MemberRemoved => "member_removed",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown event name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown webhook event {0:?}: expected channel_occupied, channel_vacated, member_added or member_removed"
)]
pub struct UnknownEvent(pub String);

impl FromStr for EventKind {
    type Err = UnknownEvent;

    fn from_str(s: &str) -> Result<Self, UnknownEvent> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == s.trim())
            .ok_or_else(|| UnknownEvent(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_read_as_their_names() {
        for kind in EventKind::ALL {
            assert_eq!(kind.name().parse(), Ok(kind));
        }
        assert!("channel_created".parse::<EventKind>().is_err());
    }
}
