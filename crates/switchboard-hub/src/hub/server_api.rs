//! What the application's backend may do with the hub of this node, as plain async methods on
//! [`Hub`]: publish, broadcast, read history and presence, list channels, and act on the
//! node's connections (disconnect, subscribe, unsubscribe).

use serde::Serialize;
use serde_json::value::RawValue;
use switchboard::CloseCode;
use tokio::sync::oneshot;

use super::Hub;
use super::registry::{Command, Whom};
use crate::broker::{BrokerError, ClientInfo, History, HistoryRange, StreamPosition};
use crate::protocol::{ErrorCode, check_channel};

/// How many publications [`Hub::history`] returns when given no limit.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// Why a server-side call on the hub failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The channel name is empty, too long, or has spaces or control characters.
    #[error("invalid channel {channel:?}: {reason}")]
    InvalidChannel {
        /// The name given.
        channel: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data is larger than [`HubConfig::max_data_size`](crate::HubConfig::max_data_size).
    #[error("data is {size} bytes, limit is {limit}")]
    TooLarge {
        /// The data's size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An argument other than a channel or data is out of range (the field is named).
    #[error("{field}: {reason}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker failed; nothing was done unless the error says otherwise.
    #[error(transparent)]
    Unavailable(#[from] BrokerError),
    /// Some of a user's connections did what was asked and others could not (they are told
    /// apart in `reason`).
    #[error("{done} of {total} connections done: {reason}")]
    Partial {
        /// Connections that did it.
        done: usize,
        /// Connections asked.
        total: usize,
        /// Why the others did not.
        reason: String,
    },
}

impl HubError {
    /// A stable code for programs: `invalid_channel`, `too_large`, `bad_request`,
    /// `unavailable` or `partial`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidChannel { .. } => ErrorCode::InvalidChannel.as_str(),
            Self::TooLarge { .. } => ErrorCode::TooLarge.as_str(),
            Self::Invalid { .. } => ErrorCode::BadRequest.as_str(),
            Self::Unavailable(_) => ErrorCode::Unavailable.as_str(),
            Self::Partial { .. } => "partial",
        }
    }
}

/// This node, as [`Hub::info`] describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The node's name: the prefix of its connection ids.
    pub node: String,
    /// Clients connected to this node.
    pub connections: usize,
    /// The hub's version.
    pub version: &'static str,
}

/// A channel this node follows, as [`Hub::channels`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChannelInfo {
    /// The channel's name.
    pub channel: String,
    /// How many of this node's connections subscribe to it.
    pub subscribers: usize,
}

/// Which connections [`Hub::disconnect`] ends.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// Every connection of this user on this node.
    User(&'a str),
    /// The connection with this id.
    Conn(&'a str),
}

/// Who server-side publications are from: no user, no connection, vouched for by the
/// server.
fn server() -> ClientInfo {
    ClientInfo {
        user: String::new(),
        conn: String::new(),
        authenticated: true,
        info: None,
    }
}

fn channel_ok(channel: &str) -> Result<(), HubError> {
    check_channel(channel).map_err(|reason| HubError::InvalidChannel {
        channel: channel.to_owned(),
        reason,
    })
}

impl Hub {
    /// Sends `command` to every connection of `user` on this node; the receivers get their
    /// answers (a connection that ends first drops its sender).
    fn ask<T>(
        &self,
        user: &str,
        command: impl Fn(oneshot::Sender<T>) -> Command,
    ) -> Vec<oneshot::Receiver<T>> {
        let mut waits = Vec::new();
        for mailbox in self.shared.registry.mailboxes(Whom::User(user)) {
            let (done, outcome) = oneshot::channel();
            if mailbox.send(command(done)).is_ok() {
                waits.push(outcome);
            }
        }
        waits
    }

    fn data_ok(&self, data: &RawValue) -> Result<(), HubError> {
        let (size, limit) = (data.get().len(), self.shared.config.max_data_size);
        if size > limit {
            return Err(HubError::TooLarge { size, limit });
        }
        Ok(())
    }

    /// Publishes `data` to `channel` from the server (its `from` has an empty user and
    /// connection, and `authenticated`), through the broker as a client's publish goes:
    /// an offset, history, delivery on every node. With `idempotency_key`, a publish repeated
    /// with the same key on the same channel within
    /// [`HubConfig::idempotency_window`](crate::HubConfig::idempotency_window) returns the
    /// first one's position and delivers nothing.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`], [`HubError::TooLarge`], [`HubError::Invalid`] for a key
    /// that is empty or longer than [`MAX_IDEMPOTENCY_KEY`], and [`HubError::Unavailable`]
    /// (nothing was published).
    pub async fn publish(
        &self,
        channel: &str,
        data: Box<RawValue>,
        idempotency_key: Option<&str>,
    ) -> Result<StreamPosition, HubError> {
        channel_ok(channel)?;
        self.data_ok(&data)?;
        let broker = &self.shared.broker;
        let position = match idempotency_key {
            None => broker.publish(channel, server(), data).await?,
            Some(key) => {
                if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
                    let reason = format!("must be 1 to {MAX_IDEMPOTENCY_KEY} bytes");
                    return Err(HubError::Invalid {
                        field: "idempotency_key",
                        reason,
                    });
                }
                let window = self.shared.config.idempotency_window;
                broker
                    .publish_once(channel, server(), data, key, window)
                    .await?
            }
        };
        Ok(position)
    }

    /// Publishes the same `data` to each of `channels`, as [`publish`](Self::publish) does,
    /// and returns one result per channel, in order. Names and size are checked for all
    /// before any is published.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`] or [`HubError::TooLarge`] before anything is published;
    /// a broker failure on one channel is that channel's result.
    pub async fn broadcast(
        &self,
        channels: &[String],
        data: Box<RawValue>,
    ) -> Result<Vec<Result<StreamPosition, HubError>>, HubError> {
        for channel in channels {
            channel_ok(channel)?;
        }
        self.data_ok(&data)?;
        let mut results = Vec::with_capacity(channels.len());
        for channel in channels {
            let published = self.shared.broker.publish(channel, server(), data.clone());
            results.push(published.await.map_err(HubError::from));
        }
        Ok(results)
    }

    /// The channel's position and its latest publications, oldest first: at most `limit`
    /// (default [`DEFAULT_HISTORY_LIMIT`], never more than
    /// [`HubConfig::max_replay`](crate::HubConfig::max_replay)); with `since`, the first of
    /// those after that offset.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`], [`HubError::Unavailable`].
    pub async fn history(
        &self,
        channel: &str,
        limit: Option<usize>,
        since: Option<u64>,
    ) -> Result<History, HubError> {
        channel_ok(channel)?;
        let limit = limit
            .unwrap_or(DEFAULT_HISTORY_LIMIT)
            .min(self.shared.config.max_replay);
        let range = match since {
            None => HistoryRange::Latest(limit),
            Some(offset) => HistoryRange::After { offset, limit },
        };
        Ok(self.shared.broker.history(channel, range).await?)
    }

    /// The clients present on the channel, on every node.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`], [`HubError::Unavailable`].
    pub async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, HubError> {
        channel_ok(channel)?;
        Ok(self.shared.broker.presence(channel).await?)
    }

    /// The channels this node's connections subscribe to, with how many subscribe to each,
    /// by name; with `pattern`, those it matches (`*` stands for any run of characters).
    pub async fn channels(&self, pattern: Option<&str>) -> Vec<ChannelInfo> {
        let mut channels: Vec<ChannelInfo> = (self.shared.interest.channels().await)
            .into_iter()
            .filter(|(channel, _)| pattern.is_none_or(|p| glob(p, channel)))
            .map(|(channel, subscribers)| ChannelInfo {
                channel,
                subscribers,
            })
            .collect();
        channels.sort_by(|a, b| a.channel.cmp(&b.channel));
        channels
    }

    /// This node: its name, its connections, the hub's version.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            node: self.shared.node.clone(),
            connections: self.connections(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// Closes the connections of `target` on this node with `code` and `reason`, and returns
    /// how many there were. Each leaves its channels as when its client closes.
    ///
    /// # Errors
    ///
    /// [`HubError::Invalid`] for a code that may not be sent (see
    /// [`CloseCode::is_allowed_on_wire`]) or a reason over 123 bytes.
    pub fn disconnect(
        &self,
        target: Target<'_>,
        code: CloseCode,
        reason: &str,
    ) -> Result<usize, HubError> {
        if !code.is_allowed_on_wire() {
            let reason = format!("{} may not be sent in a Close frame", code.0);
            return Err(HubError::Invalid {
                field: "code",
                reason,
            });
        }
        if reason.len() > 123 {
            let reason = "a close reason is at most 123 bytes".to_owned();
            return Err(HubError::Invalid {
                field: "reason",
                reason,
            });
        }
        let mailboxes = self.shared.registry.mailboxes(match target {
            Target::User(user) => Whom::User(user),
            Target::Conn(conn) => Whom::Conn(conn),
        });
        let sent = mailboxes.iter().filter(|mailbox| {
            let command = Command::Disconnect {
                code,
                reason: reason.to_owned(),
            };
            mailbox.send(command).is_ok()
        });
        Ok(sent.count())
    }

    /// Subscribes every connection of `user` on this node to `channel`, whatever the channel
    /// rules say: each gets a `subscribed` event (without `id`) and the channel's messages
    /// from then on, as if it had asked. Returns how many connections are subscribed
    /// (those that already were count).
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`]; [`HubError::Partial`] when some connection could not
    /// be subscribed (the broker failed, or it has its most subscriptions), with how many
    /// were.
    pub async fn subscribe(&self, user: &str, channel: &str) -> Result<usize, HubError> {
        channel_ok(channel)?;
        let waits = self.ask(user, |done| Command::Subscribe {
            channel: channel.to_owned(),
            done,
        });
        let total = waits.len();
        let mut done = 0;
        let mut failures = Vec::new();
        for outcome in waits {
            match outcome.await {
                Ok(Ok(())) => done += 1,
                Ok(Err(e)) => failures.push(e.to_string()),
                // The connection ended meanwhile: nothing to subscribe.
                Err(_) => {}
            }
        }
        if failures.is_empty() {
            Ok(done)
        } else {
            Err(HubError::Partial {
                done,
                total,
                reason: failures.join("; "),
            })
        }
    }

    /// Unsubscribes every connection of `user` on this node from `channel`: each that was
    /// subscribed gets an `unsubscribed` event (without `id`) and no more of its messages.
    /// Returns how many were subscribed.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidChannel`].
    pub async fn unsubscribe(&self, user: &str, channel: &str) -> Result<usize, HubError> {
        channel_ok(channel)?;
        let waits = self.ask(user, |done| Command::Unsubscribe {
            channel: channel.to_owned(),
            done,
        });
        let mut was = 0;
        for outcome in waits {
            if outcome.await == Ok(true) {
                was += 1;
            }
        }
        Ok(was)
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
