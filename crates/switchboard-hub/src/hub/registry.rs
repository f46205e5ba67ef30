//! This node's connections by user and by connection id, what is known of each from its
//! handshake (for an operator's list), and what the server side may ask of each: subscribe it
//! to a channel, unsubscribe it, list its channels, end it. Sessions register when they start
//! and leave when they end; the commands reach them through their mailbox (`mailbox.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::mailbox::Mailbox;
use super::outbox::Outbox;

/// What a connection's handshake said of it, kept for listing.
#[derive(Debug)]
pub(super) struct Profile {
    /// The client's address (behind trusted proxies, the one they forwarded).
    pub(super) address: Option<String>,
    pub(super) user_agent: Option<String>,
    /// Whether permessage-deflate was agreed.
    pub(super) compression: bool,
    pub(super) since: SystemTime,
    /// Its sending half, for the bytes waiting in its send queue.
    pub(super) sender: Outbox,
}

/// One connection, as [`Registry::matching`] lists it.
pub(super) struct Listed {
    pub(super) conn: String,
    pub(super) user: String,
    pub(super) address: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) compression: bool,
    pub(super) since: SystemTime,
    pub(super) send_queue: usize,
    pub(super) mailbox: Arc<Mailbox>,
}

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
    /// Connection id → its entry, boxed: a map keeps room for about twice its entries, and
    /// an entry is five times its box.
    conns: HashMap<String, Box<Entry>>,
    /// User → their connection ids on this node.
    users: HashMap<String, Vec<String>>,
}

#[derive(Debug)]
struct Entry {
    user: String,
    mailbox: Arc<Mailbox>,
    profile: Profile,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Maps> {
        // Every operation leaves the maps consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection; its mailbox is where its commands arrive.
    pub(super) fn register(&self, conn: &str, user: &str, profile: Profile) -> Arc<Mailbox> {
        let mailbox = Arc::new(Mailbox::default());
        let entry = Entry {
            user: user.to_owned(),
            mailbox: mailbox.clone(),
            profile,
        };
        let mut maps = self.lock();
        maps.conns.insert(conn.to_owned(), Box::new(entry));
        maps.users
            .entry(user.to_owned())
            .or_insert_with(one_conn)
            .push(conn.to_owned());
        mailbox
    }

    /// Forgets a connection.
    pub(super) fn deregister(&self, conn: &str) {
        let mut maps = self.lock();
        let Some(entry) = maps.conns.remove(conn) else {
            return;
        };
        let user = entry.user;
        if let Some(conns) = maps.users.get_mut(&user) {
            conns.retain(|c| c != conn);
            if conns.is_empty() {
                maps.users.remove(&user);
            }
        }
    }

    /// Makes a registered connection `user`'s, as if it had registered as that user.
    pub(super) fn rename(&self, conn: &str, user: &str) {
        let mut maps = self.lock();
        let Some(entry) = maps.conns.get_mut(conn) else {
            return;
        };
        let old = std::mem::replace(&mut entry.user, user.to_owned());
        if let Some(conns) = maps.users.get_mut(&old) {
            conns.retain(|c| c != conn);
            if conns.is_empty() {
                maps.users.remove(&old);
            }
        }
        maps.users
            .entry(user.to_owned())
            .or_insert_with(one_conn)
            .push(conn.to_owned());
    }

    /// The mailboxes of the connections `whom` names.
    pub(super) fn mailboxes(&self, whom: Whom<'_>) -> Vec<Arc<Mailbox>> {
        let maps = self.lock();
        match whom {
            Whom::Conn(conn) => maps
                .conns
                .get(conn)
                .map(|entry| entry.mailbox.clone())
                .into_iter()
                .collect(),
            Whom::User(user) => maps
                .users
                .get(user)
                .into_iter()
                .flatten()
                .filter_map(|conn| maps.conns.get(conn).map(|e| e.mailbox.clone()))
                .collect(),
        }
    }

    /// Up to `limit` connections whose user contains `search` (ignoring case; every
    /// connection without one), by connection id.
    pub(super) fn matching(&self, search: Option<&str>, limit: usize) -> Vec<Listed> {
        let search = search.map(str::to_lowercase).filter(|s| !s.is_empty());
        let maps = self.lock();
        let mut listed: Vec<Listed> = maps
            .conns
            .iter()
            .filter(|(_, entry)| {
                let user = entry.user.to_lowercase();
                search.as_deref().is_none_or(|s| user.contains(s))
            })
            .map(|(conn, entry)| Listed {
                conn: conn.clone(),
                user: entry.user.clone(),
                address: entry.profile.address.clone(),
                user_agent: entry.profile.user_agent.clone(),
                compression: entry.profile.compression,
                since: entry.profile.since,
                send_queue: entry.profile.sender.buffered_amount(),
                mailbox: entry.mailbox.clone(),
            })
            .collect();
        listed.sort_by(|a, b| a.conn.cmp(&b.conn));
        listed.truncate(limit);
        listed
    }
}

/// Room for a user's connections on this node: most users have one, and a `Vec` grown from
/// empty makes room for four.
fn one_conn() -> Vec<String> {
    Vec::with_capacity(1)
}

#[cfg(test)]
mod tests {
    use switchboard::{Config, Role, WebSocket};

    use super::*;

    /// A profile whose sender feeds an in-memory connection.
    fn profile(agent: &str) -> Profile {
        let (io, _peer) = tokio::io::duplex(64);
        let ws = WebSocket::from_raw(io, Role::Server, Config::default(), Default::default());
        let (sender, _receiver) = ws.split();
        let sender = Outbox::Task(sender);
        Profile {
            address: Some("127.0.0.1:1".to_owned()),
            user_agent: Some(agent.to_owned()),
            compression: false,
            since: SystemTime::now(),
            sender,
        }
    }

    #[tokio::test]
    async fn connections_are_found_by_user_and_by_id_until_they_leave() {
        let registry = Registry::default();
        let _a = registry.register("c1", "ann", profile("a"));
        let _b = registry.register("c2", "ann", profile("b"));
        let _c = registry.register("c3", "bob", profile("c"));
        assert_eq!(registry.mailboxes(Whom::User("ann")).len(), 2);
        assert_eq!(registry.mailboxes(Whom::Conn("c3")).len(), 1);
        registry.deregister("c1");
        registry.deregister("c1");
        assert_eq!(registry.mailboxes(Whom::User("ann")).len(), 1);
        registry.deregister("c2");
        assert!(registry.mailboxes(Whom::User("ann")).is_empty());
        assert!(registry.mailboxes(Whom::Conn("nope")).is_empty());
    }

    #[tokio::test]
    async fn a_renamed_connection_is_found_by_its_new_user_only() {
        let registry = Registry::default();
        let _a = registry.register("c1", "anonymous", profile("a"));
        let _b = registry.register("c2", "anonymous", profile("b"));
        registry.rename("c1", "pusher:1:ann");
        registry.rename("nope", "pusher:1:ann");
        assert_eq!(registry.mailboxes(Whom::User("pusher:1:ann")).len(), 1);
        assert_eq!(registry.mailboxes(Whom::User("anonymous")).len(), 1);
        registry.deregister("c1");
        assert!(registry.mailboxes(Whom::User("pusher:1:ann")).is_empty());
    }

    #[tokio::test]
    async fn listing_searches_users_ignoring_case_within_the_limit() {
        let registry = Registry::default();
        let _a = registry.register("c1", "Ann", profile("a"));
        let _b = registry.register("c2", "joanna", profile("b"));
        let _c = registry.register("c3", "bob", profile("c"));
        let users = |search, limit| -> Vec<String> {
            let listed = registry.matching(search, limit);
            listed.into_iter().map(|l| l.user).collect()
        };
        assert_eq!(users(Some("ANN"), 10), ["Ann", "joanna"]);
        assert_eq!(users(None, 10), ["Ann", "joanna", "bob"]);
        assert_eq!(users(Some(""), 2), ["Ann", "joanna"]);
        assert!(users(Some("zed"), 10).is_empty());
        let first = &registry.matching(Some("bob"), 1)[0];
        assert_eq!(first.user_agent.as_deref(), Some("c"));
        assert_eq!(first.send_queue, 0);
    }
}
