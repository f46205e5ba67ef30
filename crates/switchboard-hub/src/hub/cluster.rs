//! The node among others: what the broker hands the hub ([`Events`]: channel events for the
//! fan-out, and the other nodes' [`NodeCommand`]s), how a command runs on this node's
//! connections ([`run`]), and how the hub runs one on every node ([`Hub::everywhere`]).

use std::sync::{Arc, Weak};
use std::time::{Duration, UNIX_EPOCH};

use switchboard::CloseCode;
use tokio::sync::oneshot;

use super::Hub;
use super::fanout::Fanout;
use super::mailbox::Command;
use super::registry::Whom;
use super::shared::Shared;
use crate::broker::{BoxFuture, BrokerEvents, ClientInfo, Publication};
use crate::nodes::{ChannelInfo, ConnectionInfo, NodeCommand, NodeInfo, NodeReply};
use crate::protocol::check_client_channel;

use super::server_api::HubError;

/// What the hub gives the broker to call: channel events go to the fan-out, commands from
/// other nodes to this node's connections.
#[derive(Debug)]
pub(super) struct Events {
    pub(super) fanout: Arc<Fanout>,
    /// Weak: the hub's shared state holds the broker, which holds this.
    pub(super) shared: Weak<Shared>,
}

impl BrokerEvents for Events {
    fn publication(&self, channel: &str, publication: &Arc<Publication>) {
        self.fanout.publication(channel, publication);
    }

    fn join(&self, channel: &str, client: &ClientInfo) {
        self.fanout.join(channel, client);
    }

    fn leave(&self, channel: &str, client: &ClientInfo) {
        self.fanout.leave(channel, client);
    }

    fn stream_lost(&self, channel: &str) {
        self.fanout.stream_lost(channel);
    }

    fn user_swept(&self, channel: &str, client: &ClientInfo) {
        if let Some(shared) = self.shared.upgrade() {
            shared.pusher_hooks.swept(channel, &client.user);
        }
    }

    fn command(&self, command: NodeCommand) -> BoxFuture<'static, NodeReply> {
        let shared = self.shared.clone();
        Box::pin(async move {
            match shared.upgrade() {
                Some(shared) => run(&shared, command).await,
                // The hub is gone: no connections here.
                None => NodeReply::default(),
            }
        })
    }
}

/// How long a listing waits for the sessions to say what they subscribe to: one busy with a
/// slow broker call is listed without.
const LISTING_WAIT: Duration = Duration::from_millis(500);

/// This node, as a reply names it.
fn node_info(shared: &Shared) -> NodeInfo {
    NodeInfo {
        node: shared.node.clone(),
        connections: shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started: shared.started,
        channels: shared.fanout.channel_count(),
        publications: shared.fanout.publications(),
        deliveries: shared.fanout.deliveries(),
        lagged: shared.fanout.lagged(),
    }
}

/// Runs `command` on this node's connections.
pub(super) async fn run(shared: &Shared, command: NodeCommand) -> NodeReply {
    let mut reply = NodeReply {
        node: node_info(shared),
        ..NodeReply::default()
    };
    match command {
        NodeCommand::Info => {}
        NodeCommand::Channels { pattern } => {
            let channels = shared.interest.channels().await.into_iter();
            reply.channels = channels
                .filter(|(channel, _)| pattern.as_deref().is_none_or(|p| glob(p, channel)))
                .map(|(channel, subscribers)| ChannelInfo {
                    channel,
                    subscribers,
                })
                .collect();
        }
        NodeCommand::Disconnect {
            user,
            conn,
            code,
            reason,
        } => {
            let whom = match (&user, &conn) {
                (Some(user), _) => Whom::User(user),
                (None, Some(conn)) => Whom::Conn(conn),
                (None, None) => return reply,
            };
            let code = CloseCode::from(code);
            // Another node checked these; a command that did not come from a node is refused.
            if !code.is_allowed_on_wire() || reason.len() > 123 {
                reply
                    .failures
                    .push("invalid close code or reason".to_owned());
                return reply;
            }
            let mailboxes = shared.registry.mailboxes(whom);
            reply.done = mailboxes
                .iter()
                .filter(|mailbox| {
                    let reason = reason.clone();
                    mailbox.send(Command::Disconnect { code, reason }).is_ok()
                })
                .count();
        }
        NodeCommand::Subscribe { user, channel } => {
            if let Err(e) = check_client_channel(&channel) {
                reply.failures.push(e);
                return reply;
            }
            let waits = ask(shared, &user, |done| Command::Subscribe {
                channel: channel.clone(),
                done,
            });
            for outcome in waits {
                match outcome.await {
                    Ok(Ok(())) => reply.done += 1,
                    Ok(Err(e)) => reply.failures.push(e.to_string()),
                    // The connection ended meanwhile: nothing to subscribe.
                    Err(_) => {}
                }
            }
        }
        NodeCommand::Connections { user, limit } => {
            reply.connections = connections(shared, user.as_deref(), limit).await;
        }
        NodeCommand::Unsubscribe { user, channel } => {
            let waits = ask(shared, &user, |done| Command::Unsubscribe {
                channel: channel.clone(),
                done,
            });
            for outcome in waits {
                if outcome.await == Ok(true) {
                    reply.done += 1;
                }
            }
        }
    }
    reply
}

/// This node's connections whose user contains `user`, with their subscriptions.
async fn connections(shared: &Shared, user: Option<&str>, limit: usize) -> Vec<ConnectionInfo> {
    let listed = shared.registry.matching(user, limit);
    // Asked all at once, then awaited in turn against one deadline.
    let asked: Vec<_> = listed
        .iter()
        .map(|one| {
            let (done, channels) = oneshot::channel();
            let sent = one.mailbox.send(Command::Subscriptions { done }).is_ok();
            sent.then_some(channels)
        })
        .collect();
    let deadline = tokio::time::Instant::now() + LISTING_WAIT;
    let mut subscriptions = Vec::with_capacity(asked.len());
    for channels in asked {
        let answer = match channels {
            Some(channels) => tokio::time::timeout_at(deadline, channels).await.ok(),
            None => None,
        };
        subscriptions.push(answer.and_then(Result::ok));
    }
    listed
        .into_iter()
        .zip(subscriptions)
        .map(|(one, subscriptions)| ConnectionInfo {
            conn: one.conn,
            user: one.user,
            node: shared.node.clone(),
            address: one.address,
            user_agent: one.user_agent,
            subscriptions,
            send_queue: one.send_queue,
            compression: one.compression,
            since: one
                .since
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })
        .collect()
}

/// Sends `command` to every connection of `user` on this node; the receivers get their
/// answers (a connection that ends first drops its sender).
fn ask<T>(
    shared: &Shared,
    user: &str,
    command: impl Fn(oneshot::Sender<T>) -> Command,
) -> Vec<oneshot::Receiver<T>> {
    let mut waits = Vec::new();
    for mailbox in shared.registry.mailboxes(Whom::User(user)) {
        let (done, outcome) = oneshot::channel();
        if mailbox.send(command(done)).is_ok() {
            waits.push(outcome);
        }
    }
    waits
}

/// The replies of every node to one command, this node's first.
pub(super) struct Gathered {
    pub(super) replies: Vec<NodeReply>,
    /// Nodes that heard the command and did not answer in time.
    pub(super) unanswered: usize,
}

impl Gathered {
    /// Connections that did it, on every node that answered.
    pub(super) fn done(&self) -> usize {
        self.replies.iter().map(|reply| reply.done).sum()
    }

    /// The command done everywhere, or what stopped it.
    pub(super) fn complete(self) -> Result<usize, HubError> {
        let done = self.done();
        let mut why: Vec<String> = self
            .replies
            .into_iter()
            .flat_map(|reply| reply.failures)
            .collect();
        if self.unanswered > 0 {
            why.push(unanswered(self.unanswered));
        }
        if why.is_empty() {
            Ok(done)
        } else {
            Err(HubError::Partial {
                done,
                reason: why.join("; "),
            })
        }
    }
}

fn unanswered(nodes: usize) -> String {
    match nodes {
        1 => "1 node did not answer in time".to_owned(),
        n => format!("{n} nodes did not answer in time"),
    }
}

impl Hub {
    /// Runs `command` on this node and, through the broker, on every other.
    ///
    /// # Errors
    ///
    /// When the broker cannot reach the other nodes: [`HubError::Unavailable`] for a
    /// question, [`HubError::Partial`] with what this node did for an action.
    pub(super) async fn everywhere(&self, command: NodeCommand) -> Result<Gathered, HubError> {
        let (here, others) = tokio::join!(
            run(&self.shared, command.clone()),
            self.shared.broker.ask_nodes(&command)
        );
        match others {
            Ok(others) => {
                let mut replies = Vec::with_capacity(1 + others.replies.len());
                replies.push(here);
                replies.extend(others.replies);
                Ok(Gathered {
                    replies,
                    unanswered: others.unanswered,
                })
            }
            // A question has no answer; an action was done here only.
            Err(e)
                if matches!(
                    command,
                    NodeCommand::Info
                        | NodeCommand::Channels { .. }
                        | NodeCommand::Connections { .. }
                ) =>
            {
                Err(e.into())
            }
            Err(e) => Err(HubError::Partial {
                done: here.done,
                reason: format!("only this node was reached ({e})"),
            }),
        }
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_stars_match_any_run() {
        assert!(glob("room", "room"));
        assert!(!glob("room", "rooms"));
        assert!(glob("room*", "rooms"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "a-b-c"));
        assert!(glob("a*b*c", "abc"));
        assert!(!glob("a*b*c", "a-c"));
        assert!(glob("*:42", "user:42"));
        assert!(
            !glob("ab*ba", "aba"),
            "the prefix and suffix may not overlap"
        );
    }
}
