//! The keys the Redis broker's scripts touch and the Pub/Sub channels it listens on.
//!
//! Keys, under the configured prefix `P` (channel names have no whitespace, so a channel's
//! keys never collide with another's):
//!
//! ```text
//! P:meta:CH       hash    epoch, offset (the latest one given)
//! P:history:CH    stream  entry id 0-OFFSET, fields t (ms, Redis clock) and b (body)
//! P:presence:CH   hash    connection id -> "NODE CLIENT_JSON"
//! P:users:CH      hash    user -> its entries in P:presence:CH (a user's first connection
//!                         and its last, decided with the join or leave)
//! P:node:NODE     set     "CONN CH" for every presence entry the node made
//! P:nodes         zset    node -> when it counts as gone (ms, Redis clock)
//! P:channel:CH    Pub/Sub "m EPOCH OFFSET TIME BODY" | "b EPOCH FIRST TIME LEN,LEN,.. BODIES"
//!                         | "j CLIENT_JSON" | "l CLIENT_JSON"
//! P:once:CH KEY   string  "EPOCH OFFSET" of an idempotent publish, for its window
//! P:control       Pub/Sub commands between nodes and their replies (JSON, see control.rs)
//! ```
//!
//! A body is `{"from":CLIENT,"data":DATA}` with `DATA` the publisher's exact JSON text.
//! With several shards, a channel's keys are all on its shard; `P:nodes`, `P:node:NODE`
//! (for that shard's presence entries) are on every shard, `P:control` on the first.
//!
//! On a Redis Cluster (`cluster.rs`), `CH` in every key and Pub/Sub name above is the
//! channel's hash tag `{CH}` (escaped, `slots.rs`), so one script touches one slot, and the
//! Pub/Sub is sharded: the scripts SPUBLISH. `P:nodes` and `P:node:NODE` are
//! `P:nodes:{T}` and `P:node:{T}NODE` with `T` a tag in a slot of the master they are on,
//! one pair per master like one per shard. Presence scripts touch a channel's slot and the
//! master's node keys, and the sweep touches many channels: they are flagged
//! `allow-cross-slot-keys` (Redis 7), all their keys being on one master. `P:control` is
//! on the master that owns its slot.

use std::borrow::Cow;

use super::slots;

/// Key and Pub/Sub names under a prefix.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    /// The prefix with its colon.
    prefix: String,
    /// On a Redis Cluster master, the hash tag of its node keys (a slot it owns): channels
    /// are then named by their own hash tags, and Pub/Sub is sharded.
    node_tag: Option<String>,
}

impl Keys {
    /// The keys on one Redis (not a cluster).
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: format!("{prefix}:"),
            node_tag: None,
        }
    }

    /// The keys on a Redis Cluster master that owns `slot`.
    pub(super) fn cluster(prefix: &str, slot: u16) -> Self {
        Self {
            prefix: format!("{prefix}:"),
            node_tag: Some(slots::tag_in(slot)),
        }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How keys name `channel`: as it is, or as its hash tag on a cluster.
    fn name<'a>(&self, channel: &'a str) -> Cow<'a, str> {
        match self.node_tag {
            Some(_) => Cow::Owned(slots::tag(channel)),
            None => Cow::Borrowed(channel),
        }
    }

    pub(super) fn meta(&self, channel: &str) -> String {
        format!("{}meta:{}", self.prefix, self.name(channel))
    }

    pub(super) fn history(&self, channel: &str) -> String {
        format!("{}history:{}", self.prefix, self.name(channel))
    }

    /// Where the position of the publish with idempotency `key` on `channel` is kept.
    pub(super) fn once(&self, channel: &str, key: &str) -> String {
        format!("{}once:{} {key}", self.prefix, self.name(channel))
    }

    pub(super) fn presence(&self, channel: &str) -> String {
        format!("{}presence:{}", self.prefix, self.name(channel))
    }

    /// How many presence entries each user has on `channel`.
    pub(super) fn users(&self, channel: &str) -> String {
        format!("{}users:{}", self.prefix, self.name(channel))
    }

    /// Whether the keys are a Redis Cluster's (hash-tagged).
    pub(super) fn on_cluster(&self) -> bool {
        self.node_tag.is_some()
    }

    /// The hash tag of the node keys (empty when not on a cluster).
    pub(super) fn node_tag(&self) -> &str {
        self.node_tag.as_deref().unwrap_or_default()
    }

    pub(super) fn node(&self, node: &str) -> String {
        format!("{}node:{}{node}", self.prefix, self.node_tag())
    }

    /// A member of a node's set: a presence entry it made, `CONN CH` (`CH` as keys name it,
    /// which the sweep script puts after `P:presence:`).
    pub(super) fn member(&self, conn: &str, channel: &str) -> String {
        format!("{conn} {}", self.name(channel))
    }

    /// The connection id and channel of a node set's member.
    pub(super) fn of_member(&self, member: &str) -> Option<(String, String)> {
        let (conn, name) = member.split_once(' ')?;
        Some((conn.to_owned(), self.channel_named(name)?))
    }

    /// The channel that keys name `name` (see [`name`](Self::name)).
    pub(super) fn channel_named(&self, name: &str) -> Option<String> {
        match self.node_tag {
            Some(_) => slots::untag(name),
            None => Some(name.to_owned()),
        }
    }

    pub(super) fn nodes(&self) -> String {
        match &self.node_tag {
            Some(tag) => format!("{}nodes:{tag}", self.prefix),
            None => format!("{}nodes", self.prefix),
        }
    }

    /// The Pub/Sub channel of commands between nodes.
    pub(super) fn control(&self) -> String {
        format!("{}control", self.prefix)
    }

    /// PUBLISH, or SPUBLISH for sharded Pub/Sub on a cluster.
    pub(super) fn publish(&self) -> &'static str {
        if self.node_tag.is_some() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    pub(super) fn pubsub(&self, channel: &str) -> String {
        format!("{}channel:{}", self.prefix, self.name(channel))
    }

    /// The hub channel a Pub/Sub channel name stands for.
    pub(super) fn channel_of<'a>(&self, pubsub: &'a str) -> Option<Cow<'a, str>> {
        let name = pubsub
            .strip_prefix(&self.prefix)?
            .strip_prefix("channel:")?;
        match self.node_tag {
            Some(_) => slots::untag(name).map(Cow::Owned),
            None => Some(Cow::Borrowed(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubsub_names_map_back_to_channels() {
        let keys = Keys::new("sb");
        assert_eq!(keys.pubsub("a:b"), "sb:channel:a:b");
        assert_eq!(keys.channel_of("sb:channel:a:b").as_deref(), Some("a:b"));
        assert_eq!(keys.channel_of("other:channel:a"), None);
        assert_eq!(keys.meta("x"), "sb:meta:x");
        assert_eq!(
            keys.of_member(&keys.member("c1", "a b")),
            Some(("c1".into(), "a b".into()))
        );
    }

    #[test]
    fn on_a_cluster_a_channels_keys_share_its_slot_and_node_keys_their_masters() {
        let keys = Keys::cluster("sb", 5461);
        for channel in ["room", "a}b", "}", "{x}"] {
            let slot = slots::hash_slot(keys.meta(channel).as_bytes());
            for key in [
                keys.history(channel),
                keys.presence(channel),
                keys.once(channel, "k{1}"),
                keys.pubsub(channel),
            ] {
                assert_eq!(slots::hash_slot(key.as_bytes()), slot, "{key}");
            }
            let pubsub = keys.pubsub(channel);
            assert_eq!(keys.channel_of(&pubsub).as_deref(), Some(channel));
            let member = keys.member("c1", channel);
            assert_eq!(keys.of_member(&member), Some(("c1".into(), channel.into())));
            // The sweep script finds the presence key from the member.
            let (_, name) = member.split_once(' ').unwrap();
            assert_eq!(
                format!("{}presence:{name}", keys.prefix()),
                keys.presence(channel)
            );
        }
        assert_eq!(keys.meta("room"), "sb:meta:{room}");
        assert_eq!(slots::hash_slot(keys.nodes().as_bytes()), 5461);
        assert_eq!(slots::hash_slot(keys.node("n1").as_bytes()), 5461);
        assert_eq!(
            keys.node("n1"),
            format!("{}node:{}n1", keys.prefix(), keys.node_tag())
        );
        assert_eq!(keys.channel_of("sb:channel:room"), None, "untagged");
        assert_eq!(keys.publish(), "SPUBLISH");
        assert_eq!(Keys::new("sb").publish(), "PUBLISH");
    }
}
