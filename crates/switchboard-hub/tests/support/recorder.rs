//! What a Redis broker delivers to its hub, recorded for the tests of several nodes, and the
//! clients and data they publish with.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use switchboard_hub::{BoxFuture, BrokerEvents, ClientInfo, NodeCommand, NodeReply, Publication};
use tokio::sync::Notify;

/// Every wait for events is bounded by this.
const STEP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Publication(String, u64),
    Join(String, String),
    Leave(String, String),
    Lost(String),
    /// A user's last connection on a channel, swept with its dead node.
    Swept(String, String),
    Command(NodeCommand),
}

/// Records what a broker delivers, and answers other nodes' commands as a node named `name`
/// with one connection (or never, when `silent`).
#[derive(Default)]
pub(crate) struct Recorder {
    events: Mutex<Vec<Event>>,
    changed: Notify,
    name: String,
    silent: bool,
}

impl Recorder {
    /// A recorder that answers commands as node `name`.
    #[allow(dead_code)] // for the tests that tell nodes apart
    pub(crate) fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// A recorder that records commands as node `name` and never answers them.
    #[allow(dead_code)] // for the tests that tell nodes apart
    pub(crate) fn silent(name: &str) -> Self {
        Self {
            silent: true,
            ..Self::named(name)
        }
    }

    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
        self.changed.notify_waiters();
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// The offsets delivered for `channel`, in delivery order.
    pub(crate) fn offsets(&self, channel: &str) -> Vec<u64> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Publication(c, offset) if c == channel => Some(offset),
                _ => None,
            })
            .collect()
    }

    /// Waits until `done` holds for the events, or fails after [`STEP`].
    pub(crate) async fn until(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let changed = self.changed.notified();
            if done(&self.events()) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("timed out waiting for {what}; events: {:?}", self.events());
            }
        }
    }
}

impl BrokerEvents for Recorder {
    fn publication(&self, channel: &str, publication: &Arc<Publication>) {
        self.push(Event::Publication(channel.into(), publication.offset));
    }
    fn join(&self, channel: &str, client: &ClientInfo) {
        self.push(Event::Join(channel.into(), client.conn.clone()));
    }
    fn leave(&self, channel: &str, client: &ClientInfo) {
        self.push(Event::Leave(channel.into(), client.conn.clone()));
    }
    fn stream_lost(&self, channel: &str) {
        self.push(Event::Lost(channel.into()));
    }
    fn user_swept(&self, channel: &str, client: &ClientInfo) {
        self.push(Event::Swept(channel.into(), client.conn.clone()));
    }
    fn command(&self, command: NodeCommand) -> BoxFuture<'static, NodeReply> {
        self.push(Event::Command(command));
        if self.silent {
            return Box::pin(std::future::pending());
        }
        let mut reply = NodeReply::default();
        reply.node.node.clone_from(&self.name);
        reply.node.connections = 1;
        reply.done = 1;
        Box::pin(std::future::ready(reply))
    }
}

/// A client whose connection id is `conn`.
pub(crate) fn client(conn: &str) -> ClientInfo {
    ClientInfo {
        user: format!("user-{conn}"),
        conn: conn.into(),
        authenticated: false,
        info: None,
    }
}

/// `{"n": N}`.
pub(crate) fn data(n: u64) -> Box<RawValue> {
    RawValue::from_string(format!(r#"{{"n": {n}}}"#)).unwrap()
}
