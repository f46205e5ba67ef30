//! What the API reads of an app's channels, from the hub's lists across nodes: the occupied
//! channels with their subscriptions (the hub's `channels`, its `pusher:ID:` prefix taken
//! off), and a presence channel's users (the hub's presence, each user once however many
//! connections it has).

use serde_json::{Map, Value, json};

use super::names::Info;
use super::refusal::Refusal;
use crate::hub::Hub;
use crate::pusher::{ChannelKind, hub_channel, pusher_name};

/// The occupied channels of app `app_id` whose names start with `prefix` (every channel
/// name is checked, so it holds no `*`), with their subscriptions on every node; the
/// server's own channels of users (`#server-to-user-`, `#online-`: no client channel starts
/// with `#`) are not listed, as in Pusher.
pub(super) async fn occupied(
    hub: &Hub,
    app_id: &str,
    prefix: &str,
) -> Result<Vec<(String, usize)>, Refusal> {
    let pattern = format!("{}*", hub_channel(app_id, prefix));
    let list = hub.channels(Some(&pattern)).await?;
    let occupied = (list.channels.into_iter())
        .filter(|c| c.subscribers > 0)
        .filter(|c| pusher_name(&c.channel).is_some_and(|name| !name.starts_with('#')));
    let named = occupied.filter_map(|c| Some((pusher_name(&c.channel)?.to_owned(), c.subscribers)));
    Ok(named.collect())
}

/// Subscriptions to app `app_id`'s channel `name` on every node.
pub(super) async fn subscriptions(hub: &Hub, app_id: &str, name: &str) -> Result<usize, Refusal> {
    let list = hub.channels(Some(&hub_channel(app_id, name))).await?;
    Ok(list.channels.iter().map(|c| c.subscribers).sum())
}

/// The users on app `app_id`'s presence channel `name`, each once, in the order they joined.
pub(super) async fn users(hub: &Hub, app_id: &str, name: &str) -> Result<Vec<String>, Refusal> {
    let clients = hub.presence(&hub_channel(app_id, name)).await?;
    let mut users: Vec<String> = Vec::new();
    for client in clients {
        if !users.contains(&client.user) {
            users.push(client.user);
        }
    }
    Ok(users)
}

/// The attributes `info` asks of channel `name`, which has `subscribers` subscriptions:
/// `user_count` of presence channels only.
pub(super) async fn attributes(
    hub: &Hub,
    app_id: &str,
    name: &str,
    subscribers: usize,
    info: Info,
) -> Result<Map<String, Value>, Refusal> {
    let mut attributes = Map::new();
    if info.subscriptions {
        attributes.insert("subscription_count".into(), json!(subscribers));
    }
    if info.users && ChannelKind::of(name) == ChannelKind::Presence {
        let users = users(hub, app_id, name).await?.len();
        attributes.insert("user_count".into(), json!(users));
    }
    Ok(attributes)
}
