//! Commands between nodes ([`Broker::ask_nodes`](crate::Broker::ask_nodes)) over one Pub/Sub
//! channel, `P:control`, that every node's follower subscribes to.
//!
//! A node publishes `{"kind":"ask","id",from,command}`; every other node runs the command
//! and publishes `{"kind":"reply","id",to,reply}`. PUBLISH answers how many connections
//! heard the ask, so the asker knows how many replies to wait for without a list of nodes:
//! the others, plus itself when its own follower is subscribed. Redis sends a connection its
//! messages in the order it published them, so the asker's follower hears its own ask before
//! any reply to it, and the asker stops counting itself before the replies are counted.
//!
//! On a Redis Cluster the channel is sharded (SSUBSCRIBE, SPUBLISH) and lives on the master
//! that owns its slot; SPUBLISH counts that master's subscribers, which are every node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::shared::{Shared, unavailable};
use crate::broker::{BrokerError, BrokerEvents};
use crate::nodes::{NodeCommand, NodeReplies, NodeReply};
use crate::random::random_hex;

/// A message on the control channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Message {
    Ask {
        id: String,
        from: String,
        command: NodeCommand,
    },
    Reply {
        id: String,
        to: String,
        reply: NodeReply,
    },
}

/// What the follower heard for one of this node's asks.
#[derive(Debug)]
enum Heard {
    /// The ask itself: this node's follower was one of those PUBLISH counted.
    Own,
    Reply(NodeReply),
}

/// This node's asks waiting for replies.
#[derive(Debug)]
pub(super) struct Control {
    /// This node's name on the control channel.
    node: String,
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<Heard>>>,
}

impl Control {
    pub(super) fn new(node: String) -> Self {
        Self {
            node,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Heard>>> {
        // Inserts and removes leave the map consistent, so a poisoned lock is still usable.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Stops waiting for an ask's replies, however [`ask`] ends.
struct Waiting<'a> {
    control: &'a Control,
    id: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.control.waiting().remove(self.id);
    }
}

/// Asks every other node to run `command`, and gathers the replies that come within the
/// broker's timeout.
pub(super) async fn ask(
    shared: &Shared,
    control: &Control,
    command: &NodeCommand,
) -> Result<NodeReplies, BrokerError> {
    let id = random_hex(8);
    let (heard, mut replies) = mpsc::unbounded_channel();
    // Waiting before publishing: the follower may hear the ask before PUBLISH returns.
    control.waiting().insert(id.clone(), heard);
    let _waiting = Waiting { control, id: &id };
    let message = Message::Ask {
        id: id.clone(),
        from: control.node.clone(),
        command: command.clone(),
    };
    let mut expected = publish(shared, &message).await?;
    let deadline = Instant::now() + shared.config.timeout;
    let mut gathered = Vec::new();
    while gathered.len() < expected {
        match tokio::time::timeout_at(deadline, replies.recv()).await {
            Ok(Some(Heard::Own)) => expected -= 1,
            Ok(Some(Heard::Reply(reply))) => gathered.push(reply),
            Ok(None) | Err(_) => break,
        }
    }
    let unanswered = expected.saturating_sub(gathered.len());
    Ok(NodeReplies::new(gathered, unanswered))
}

/// Publishes `message` on the control channel; returns how many nodes heard it.
async fn publish(shared: &Shared, message: &Message) -> Result<usize, BrokerError> {
    let message = serde_json::to_string(message).map_err(unavailable)?;
    let mut con = shared.con();
    let mut publish = redis::cmd(shared.keys.publish());
    publish.arg(shared.keys.control()).arg(message);
    shared.bounded(publish.query_async(&mut con)).await
}

/// Handles a message of the control channel: runs another node's ask and publishes the
/// reply, or hands a reply (or this node's own ask) to the ask waiting for it.
pub(super) fn heard(
    shared: &Arc<Shared>,
    control: &Control,
    events: &Arc<dyn BrokerEvents>,
    payload: &[u8],
) {
    let message = match serde_json::from_slice::<Message>(payload) {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable control message");
            return;
        }
    };
    match message {
        Message::Ask { id, from, .. } if from == control.node => {
            if let Some(waiting) = control.waiting().get(&id) {
                let _ = waiting.send(Heard::Own);
            }
        }
        Message::Ask { id, from, command } => {
            let run = events.command(command);
            let shared = shared.clone();
            tokio::spawn(async move {
                let reply = Message::Reply {
                    id,
                    to: from,
                    reply: run.await,
                };
                if let Err(e) = publish(&shared, &reply).await {
                    tracing::warn!(error = %e, "could not reply to another node");
                }
            });
        }
        Message::Reply { id, to, reply } if to == control.node => {
            if let Some(waiting) = control.waiting().get(&id) {
                let _ = waiting.send(Heard::Reply(reply));
            }
        }
        // Another node's reply.
        Message::Reply { .. } => {}
    }
}
