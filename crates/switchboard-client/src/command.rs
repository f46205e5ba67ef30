//! What the application's handles ask of the connection task.

use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use crate::event::{ClientError, ClientInfo, Event, History};

/// What the application asks of the connection task.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe {
        channel: String,
        join_leave: bool,
        events: mpsc::UnboundedSender<Event>,
        done: oneshot::Sender<Result<(), ClientError>>,
    },
    Unsubscribe {
        channel: String,
        done: Option<oneshot::Sender<Result<(), ClientError>>>,
    },
    Ask(Ask),
    Close,
}

/// A request that has one answer.
#[derive(Debug)]
pub(crate) enum Ask {
    Publish {
        channel: String,
        data: Box<RawValue>,
        done: oneshot::Sender<Result<u64, ClientError>>,
    },
    Presence {
        channel: String,
        done: oneshot::Sender<Result<Vec<ClientInfo>, ClientError>>,
    },
    History {
        channel: String,
        limit: Option<usize>,
        done: oneshot::Sender<Result<History, ClientError>>,
    },
}

impl Ask {
    /// Answers with `error`.
    pub(crate) fn fail(self, error: ClientError) {
        match self {
            Self::Publish { done, .. } => drop(done.send(Err(error))),
            Self::Presence { done, .. } => drop(done.send(Err(error))),
            Self::History { done, .. } => drop(done.send(Err(error))),
        }
    }

    /// Whether the application stopped waiting for the answer.
    pub(crate) fn abandoned(&self) -> bool {
        match self {
            Self::Publish { done, .. } => done.is_closed(),
            Self::Presence { done, .. } => done.is_closed(),
            Self::History { done, .. } => done.is_closed(),
        }
    }
}
