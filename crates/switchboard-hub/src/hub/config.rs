//! [`HubConfig`]: the hub's limits and access rules.

use std::sync::Arc;
use std::time::Duration;

use super::limits::MessageRate;
use crate::auth::JwtKey;
use crate::hooks::Hooks;
use crate::pusher::PusherApps;
use crate::rules::ChannelRule;
use crate::webhook::WebhookConfig;

/// The default interval of the application-level heartbeat: under the 30 to 60 seconds after
/// which proxies and NATs commonly drop an idle connection.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(25);

/// The hub's limits and access rules. Which browser origins may connect is the server's to
/// check ([`ServerBuilder::allowed_origins`](switchboard::ServerBuilder::allowed_origins)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubConfig {
    /// The largest `data` of a publish, in bytes of JSON (default 64 KiB).
    pub max_data_size: usize,
    /// The most channels one connection may subscribe to (default 100).
    pub max_subscriptions: usize,
    /// How many messages a second one connection may send (default: no limit). Past it a
    /// message is answered `rate_limited` and dropped; a client that goes on regardless is
    /// closed with 1008 (see [`MessageRate`]).
    pub message_rate: Option<MessageRate>,
    /// The most publications one `history` reply or one recovery carries (default 1000).
    pub max_replay: usize,
    /// Verifies the `token` query parameter; without a key, tokens are refused.
    pub jwt: Option<JwtKey>,
    /// Channel rules, first match wins; unmatched channels are public.
    pub rules: Vec<ChannelRule>,
    /// How long a server-side publish's idempotency key is remembered (default 5 minutes):
    /// a publish repeated with the same key within it is not delivered again.
    pub idempotency_window: Duration,
    /// The application's decisions about connecting clients, subscribes and publishes (see
    /// [`Hooks`]); `None` lets the token, the name and the channel rules decide alone.
    pub hooks: Option<Arc<dyn Hooks>>,
    /// Where channel and presence events are POSTed; none by default.
    pub webhooks: Option<WebhookConfig>,
    /// How often every connection gets a `{"type":"heartbeat"}` frame (default 25 s), the
    /// interval `connected` announces: a client that hears nothing for about twice as long
    /// knows its connection is dead, though it cannot see protocol pings. `None` sends none.
    pub heartbeat: Option<Duration>,
    /// The Pusher apps whose clients [`Hub::serve_pusher`](super::Hub::serve_pusher) serves
    /// (none by default).
    pub pusher: PusherApps,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_data_size: 64 * 1024,
            max_subscriptions: 100,
            message_rate: None,
            max_replay: 1000,
            jwt: None,
            rules: Vec::new(),
            idempotency_window: Duration::from_secs(300),
            hooks: None,
            webhooks: None,
            heartbeat: Some(DEFAULT_HEARTBEAT),
            pusher: PusherApps::default(),
        }
    }
}
