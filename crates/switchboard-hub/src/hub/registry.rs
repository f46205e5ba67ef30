//! This node's connections by user and by connection id, and what the server side may ask of
//! each: subscribe it to a channel, unsubscribe it, end it. Sessions register when they start
//! and leave when they end; the commands reach them through their own queue, in order.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use switchboard::CloseCode;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::RequestError;

/// What the server side asks of one connection.
#[derive(Debug)]
pub(super) enum Command {
    /// Subscribe it to `channel` as if it had asked; `done` gets the outcome.
    Subscribe {
        channel: String,
        done: oneshot::Sender<Result<(), RequestError>>,
    },
    /// Unsubscribe it from `channel`; `done` learns whether it was subscribed.
    Unsubscribe {
        channel: String,
        done: oneshot::Sender<bool>,
    },
    /// Close it with this code and reason.
    Disconnect { code: CloseCode, reason: String },
}

/// Where commands for one connection go.
pub(super) type Mailbox = mpsc::UnboundedSender<Command>;

/// Which connections to address.
#[derive(Clone, Copy, Debug)]
pub(super) enum Whom<'a> {
    User(&'a str),
    Conn(&'a str),
}

/// This node's connections.
#[derive(Debug, Default)]
pub(super) struct Registry {
    inner: Mutex<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    /// Connection id → (user, mailbox).
    conns: HashMap<String, (String, Mailbox)>,
    /// User → their connection ids on this node.
    users: HashMap<String, Vec<String>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Maps> {
        // Every operation leaves the maps consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection; the receiver is where its commands arrive.
    pub(super) fn register(&self, conn: &str, user: &str) -> mpsc::UnboundedReceiver<Command> {
        let (mailbox, commands) = mpsc::unbounded_channel();
        let mut maps = self.lock();
        maps.conns
            .insert(conn.to_owned(), (user.to_owned(), mailbox));
        maps.users
            .entry(user.to_owned())
            .or_default()
            .push(conn.to_owned());
        commands
    }

    /// Forgets a connection.
    pub(super) fn deregister(&self, conn: &str) {
        let mut maps = self.lock();
        let Some((user, _)) = maps.conns.remove(conn) else {
            return;
        };
        if let Some(conns) = maps.users.get_mut(&user) {
            conns.retain(|c| c != conn);
            if conns.is_empty() {
                maps.users.remove(&user);
            }
        }
    }

    /// The mailboxes of the connections `whom` names.
    pub(super) fn mailboxes(&self, whom: Whom<'_>) -> Vec<Mailbox> {
        let maps = self.lock();
        match whom {
            Whom::Conn(conn) => maps
                .conns
                .get(conn)
                .map(|(_, m)| m.clone())
                .into_iter()
                .collect(),
            Whom::User(user) => maps
                .users
                .get(user)
                .into_iter()
                .flatten()
                .filter_map(|conn| maps.conns.get(conn).map(|(_, m)| m.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_found_by_user_and_by_id_until_they_leave() {
        let registry = Registry::default();
        let _a = registry.register("c1", "ann");
        let _b = registry.register("c2", "ann");
        let _c = registry.register("c3", "bob");
        assert_eq!(registry.mailboxes(Whom::User("ann")).len(), 2);
        assert_eq!(registry.mailboxes(Whom::Conn("c3")).len(), 1);
        registry.deregister("c1");
        registry.deregister("c1");
        assert_eq!(registry.mailboxes(Whom::User("ann")).len(), 1);
        registry.deregister("c2");
        assert!(registry.mailboxes(Whom::User("ann")).is_empty());
        assert!(registry.mailboxes(Whom::Conn("nope")).is_empty());
    }
}
