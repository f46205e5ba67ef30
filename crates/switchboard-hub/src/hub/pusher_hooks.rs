//! Pusher's webhooks, for the apps with a webhook URL (see
//! [`PusherApp::webhook`](crate::pusher::PusherApp::webhook)): what the Pusher sessions of
//! this node tell each app's backend, queued without waiting and posted in Pusher's format by
//! the hub's webhook sender (batched, signed with the app's secret, retried).
//!
//! - `channel_occupied` and `channel_vacated`: a channel's first subscription in the
//!   deployment and the end of its last. Each node counts its own; the node whose count
//!   goes from 0 to 1 (or back to 0) asks the other nodes for theirs (the channel listing of
//!   the server API, through the broker) and tells only when they have none. The session
//!   counts a subscription before the node's interest shows it to the others, and its end
//!   after the interest dropped it: of two nodes whose first subscribers arrive at once (or
//!   whose last ones leave at once), at least one sees the other without any, so the hook
//!   may come twice, never not at all. When a node dies, its subscriptions end without
//!   `channel_vacated`;
//! - `member_added` and `member_removed`: a presence channel's user, once across nodes: the
//!   broker says, with the join (or leave), whether the connection is its user's first on
//!   the channel (or was its last), on any node ([`Broker::join_user`]), and the session
//!   that joined or left tells. A member whose node dies leaves the presence after the
//!   broker's node timeout; when that was its user's last connection on the channel, the
//!   node whose broker swept it tells
//!   ([`BrokerEvents::user_swept`](crate::BrokerEvents::user_swept));
//! - `client_event`: a client event, with its sender's socket id (and user on a presence
//!   channel);
//! - `cache_miss`: a cache channel's subscriber found no event to start from, so that the
//!   backend can trigger one; once per such subscription (Pusher tells it once for several).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::broker::Broker;
use crate::nodes::NodeCommand;
use crate::pusher::PusherApps;
use crate::webhook::{self, EventKind, Queue, WebhookConfig};

/// One event, as Pusher's webhooks write it.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Hook {
    name: &'static str,
    channel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
}

/// The webhook queues of the apps that have one, and this node's subscriptions to their
/// channels.
#[derive(Debug, Default)]
pub(super) struct PusherHooks {
    queues: HashMap<String, Queue<Hook>>,
    /// Subscriptions on this node by hub channel, for the apps with webhooks.
    occupancy: Mutex<HashMap<String, usize>>,
}

impl PusherHooks {
    /// Starts a sender for each app of `apps` with a webhook URL.
    pub(super) fn start(apps: &PusherApps) -> Self {
        let queues = apps
            .iter()
            .filter_map(|app| {
                let url = app.webhook.clone()?;
                let (queue, _metrics) = webhook::start(WebhookConfig::pusher(url, app));
                Some((app.id.clone(), queue))
            })
            .collect();
        Self {
            queues,
            occupancy: Mutex::default(),
        }
    }

    /// Whether app `app_id` has webhooks.
    pub(super) fn wants(&self, app_id: &str) -> bool {
        self.queues.contains_key(app_id)
    }

    fn push(&self, app_id: &str, hook: Hook) {
        if let Some(queue) = self.queues.get(app_id) {
            queue.push(hook);
        }
    }

    /// Counts a subscription to app `app_id`'s channel `name` on this node, or its end
    /// (`joined` false). When that is the node's first subscription to the channel (or the
    /// end of its last), and the other nodes sharing `broker` have none, it is the
    /// deployment's: `channel_occupied` (or `channel_vacated`). A subscription is counted
    /// before the node's interest has it, its end after the interest dropped it (see the
    /// module's docs).
    pub(super) async fn occupancy(
        &self,
        broker: &dyn Broker,
        app_id: &str,
        name: &str,
        joined: bool,
    ) {
        if !self.wants(app_id) {
            return;
        }
        let channel = crate::pusher::hub_channel(app_id, name);
        let Some(kind) = self.count(&channel, joined) else {
            return;
        };
        let asked = NodeCommand::Channels {
            pattern: Some(channel.clone()),
        };
        match broker.ask_nodes(&asked).await {
            Ok(replies) => {
                let elsewhere: usize = (replies.replies.iter())
                    .flat_map(|reply| &reply.channels)
                    .filter(|listed| listed.channel == channel)
                    .map(|listed| listed.subscribers)
                    .sum();
                if elsewhere > 0 {
                    return;
                }
            }
            // Told rather than lost: the hook may come twice.
            Err(e) => tracing::warn!(%channel, error = %e, "other nodes not asked for a webhook"),
        }
        let hook = Hook {
            name: kind.name(),
            channel: name.to_owned(),
            ..Hook::default()
        };
        self.push(app_id, hook);
    }

    /// Counts a subscription to hub channel `channel` on this node, or its end; the change
    /// of the node's occupancy it makes, if any.
    fn count(&self, channel: &str, joined: bool) -> Option<EventKind> {
        // Every change leaves the map consistent: a poisoned lock is still usable.
        let mut counts = self.occupancy.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(channel.to_owned()).or_default();
        let before = *count;
        *count = if joined {
            before + 1
        } else {
            before.saturating_sub(1)
        };
        let after = *count;
        if after == 0 {
            counts.remove(channel);
        }
        match (before, after) {
            (0, 1) => Some(EventKind::ChannelOccupied),
            (1, 0) => Some(EventKind::ChannelVacated),
            _ => None,
        }
    }

    /// `member_added` (or `member_removed`) of `user_id` on presence channel `name`, when
    /// app `app_id` has webhooks.
    pub(super) fn member(&self, app_id: &str, name: &str, user_id: &str, added: bool) {
        let kind = if added {
            EventKind::MemberAdded
        } else {
            EventKind::MemberRemoved
        };
        let hook = Hook {
            name: kind.name(),
            channel: name.to_owned(),
            user_id: Some(user_id.to_owned()),
            ..Hook::default()
        };
        self.push(app_id, hook);
    }

    /// `cache_miss` of cache channel `name`.
    pub(super) fn cache_miss(&self, app_id: &str, name: &str) {
        let hook = Hook {
            name: "cache_miss",
            channel: name.to_owned(),
            ..Hook::default()
        };
        self.push(app_id, hook);
    }

    /// `member_removed` of `user_id` on hub channel `channel`, when it is a Pusher presence
    /// channel: its last connection there was on a node that died (see
    /// [`BrokerEvents::user_swept`](crate::BrokerEvents::user_swept)).
    pub(super) fn swept(&self, channel: &str, user_id: &str) {
        if let Some((app_id, name)) = presence_channel(channel) {
            self.member(app_id, name, user_id, false);
        }
    }

    /// `client_event` of `event` with `data` on channel `name`, from `socket_id` (and
    /// `user_id` on a presence channel). Its data is a string, as Pusher's is: a string sent
    /// as is, other JSON as its text.
    pub(super) fn client_event(
        &self,
        app_id: &str,
        name: &str,
        event: &str,
        data: &RawValue,
        socket_id: &str,
        user_id: Option<&str>,
    ) {
        if !self.wants(app_id) {
            return;
        }
        let data =
            serde_json::from_str::<String>(data.get()).unwrap_or_else(|_| data.get().to_owned());
        let hook = Hook {
            name: "client_event",
            channel: name.to_owned(),
            event: Some(event.to_owned()),
            data: Some(data),
            socket_id: Some(socket_id.to_owned()),
            user_id: user_id.map(str::to_owned),
        };
        self.push(app_id, hook);
    }
}

/// The app id and name of hub channel `channel`, when it is a Pusher presence channel.
fn presence_channel(channel: &str) -> Option<(&str, &str)> {
    let rest = channel.strip_prefix(crate::pusher::HUB_PREFIX)?;
    let (app_id, name) = rest.split_once(':')?;
    let presence = crate::pusher::ChannelKind::of(name) == crate::pusher::ChannelKind::Presence;
    presence.then_some((app_id, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swept_user_is_removed_from_pusher_presence_channels_only() {
        assert_eq!(
            presence_channel("pusher:1:presence-room"),
            Some(("1", "presence-room"))
        );
        for other in [
            "pusher:1:private-x",
            "pusher:1:news",
            "presence-room",
            "pusher:1",
        ] {
            assert_eq!(presence_channel(other), None, "{other}");
        }
    }

    #[test]
    fn hooks_serialize_as_pushers_events() {
        let hook = Hook {
            name: "member_added",
            channel: "presence-a".into(),
            user_id: Some("ann".into()),
            ..Hook::default()
        };
        assert_eq!(
            serde_json::to_string(&hook).unwrap(),
            r#"{"name":"member_added","channel":"presence-a","user_id":"ann"}"#
        );
    }
}
