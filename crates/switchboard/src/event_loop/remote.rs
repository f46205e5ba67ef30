//! [`Remote`]: a handle that sends to one connection of an event loop from anywhere (another
//! connection's callback, another thread, a task), and [`Recipients`]: many of them, grouped by
//! loop, for one frame to all.
//!
//! A `Remote` is the connection's mailbox (its loop's [`Woken`], shared by every connection
//! of the loop, so a `Remote` costs no allocation) and its [`Address`]. Sending posts [`Mail`]
//! there and wakes the loop, which feeds each item to its connection, if the address still
//! names it, with the calls a [`Socket`](super::Socket) makes, then polls each connection that
//! got mail once: what was mailed to a connection in one turn leaves in one write.

use std::fmt;
use std::sync::Arc;

use proto::{CloseCode, EncodedFrame, Message, SendError};

use super::mail::{Address, Mail};
use super::wake::Woken;
use crate::error::Error;

/// Sends to one connection of an [`EventLoop`](super::EventLoop) from anywhere; got from
/// [`Socket::remote`](super::Socket::remote).
///
/// Its methods queue and return at once; the connection's loop sends what was queued in order,
/// as [`Socket::send`](super::Socket::send) would (the same limits, and nothing once the
/// connection is closing). Mail for a connection that has ended is dropped, even when another
/// connection has taken its place in the loop.
///
/// A sender elsewhere cannot see its connection fall behind, so mail meets the server's send
/// queue, as [`Sender::try_send`](crate::Sender::try_send) does: a message for a connection
/// whose unwritten output is over [`max_send_queue`](crate::ServerBuilder::max_send_queue) is
/// dropped or closes the connection with 1013, by the server's
/// [`backpressure`](crate::ServerBuilder::backpressure) policy.
///
/// # Examples
///
/// A chat in pairs: each message goes to the connection that opened before.
///
/// ```
/// use std::sync::Mutex;
///
/// use switchboard::event_loop::{Handler, Remote, Socket};
/// use switchboard::{Message, http::Request};
///
/// #[derive(Default)]
/// struct Pairs {
///     waiting: Mutex<Option<Remote>>,
/// }
///
/// impl Handler for Pairs {
///     /// The peer, once there is one.
///     type State = Option<Remote>;
///
///     fn open(&self, socket: &mut Socket<'_>, _: &Request<()>) -> Option<Remote> {
///         let mut waiting = self.waiting.lock().unwrap();
///         match waiting.take() {
///             Some(peer) => Some(peer),
///             None => {
///                 *waiting = Some(socket.remote());
///                 None
///             }
///         }
///     }
///
///     fn message(&self, peer: &mut Option<Remote>, _: &mut Socket<'_>, message: Message) {
///         if let Some(peer) = peer {
///             // Queued for the peer's loop; `Err` once that loop has ended.
///             let _ = peer.send(message);
///         }
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Remote {
    mailbox: Arc<Woken>,
    to: Address,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("mailbox", &Arc::as_ptr(&self.mailbox))
            .field("token", &self.to.token)
            .field("generation", &self.to.generation)
            .finish()
    }
}

/// Two `Remote`s are equal when they name the same connection.
impl PartialEq for Remote {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.mailbox, &other.mailbox) && self.to == other.to
    }
}

impl Eq for Remote {}

impl Remote {
    pub(super) fn new(mailbox: Arc<Woken>, to: Address) -> Self {
        Self { mailbox, to }
    }

    fn post(&self, mail: Mail) -> Result<(), Error> {
        if self.mailbox.post(mail) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Queues a message for the connection.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the mail can no longer be delivered: the connection's loop has
    /// ended, or the connection, served in a task of its own, has. `Ok` means queued: the
    /// connection may still end before its loop delivers it, and then it is dropped.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        self.post(Mail::Message(self.to, message.into()))
    }

    /// Queues a frame encoded once for many connections (shared, not copied); see
    /// [`EncodedFrame`] and, for many connections at once, [`Recipients`].
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_encoded(&self, frame: &EncodedFrame) -> Result<(), Error> {
        self.post(Mail::Frame(self.to, frame.clone()))
    }

    /// Queues the start of the closing handshake with `code` and `reason`, as
    /// [`Socket::close`](super::Socket::close); the handler's
    /// [`close`](super::Handler::close) follows when it is over.
    ///
    /// # Errors
    ///
    /// [`Error::Send`] for a code that may not be sent or a reason over 123 bytes (checked
    /// before anything is queued); otherwise as [`send`](Self::send).
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if !code.is_allowed_on_wire() {
            return Err(SendError::InvalidCloseCode { code: code.0 }.into());
        }
        if reason.len() > 123 {
            let len = reason.len();
            return Err(SendError::CloseReasonTooLong { len }.into());
        }
        self.post(Mail::Close(self.to, code, reason.into()))
    }
}

/// Connections to send one frame to, grouped by loop: [`send_encoded`](Self::send_encoded)
/// takes each loop's mailbox lock once per frame, whatever the number of connections there,
/// and hands each loop the list of its connections without copying it.
///
/// Inserting or removing while a frame is on its way copies that loop's list once.
#[derive(Debug, Default)]
pub struct Recipients {
    groups: Vec<Group>,
    len: usize,
}

/// The connections of one mailbox.
#[derive(Debug)]
struct Group {
    mailbox: Arc<Woken>,
    to: Arc<Vec<Address>>,
}

impl Recipients {
    /// No connections yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the connection of `remote` (once: a connection added twice is sent every frame
    /// twice).
    pub fn insert(&mut self, remote: &Remote) {
        let group = match self
            .groups
            .iter_mut()
            .position(|group| Arc::ptr_eq(&group.mailbox, &remote.mailbox))
        {
            Some(index) => &mut self.groups[index],
            None => {
                self.groups.push(Group {
                    mailbox: remote.mailbox.clone(),
                    to: Arc::default(),
                });
                self.groups.last_mut().expect("a group was just pushed")
            }
        };
        Arc::make_mut(&mut group.to).push(remote.to);
        self.len += 1;
    }

    /// Takes out the connection of `remote`; `false` if it was not there.
    pub fn remove(&mut self, remote: &Remote) -> bool {
        let Some(index) = self
            .groups
            .iter()
            .position(|group| Arc::ptr_eq(&group.mailbox, &remote.mailbox))
        else {
            return false;
        };
        let group = &mut self.groups[index];
        let Some(at) = group.to.iter().position(|&to| to == remote.to) else {
            return false;
        };
        Arc::make_mut(&mut group.to).swap_remove(at);
        if group.to.is_empty() {
            self.groups.swap_remove(index);
        }
        self.len -= 1;
        true
    }

    /// How many connections there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `frame` (shared, not copied) for every connection but `except`'s. Connections of
    /// loops that have ended are skipped.
    pub fn send_encoded(&self, frame: &EncodedFrame, except: Option<&Remote>) {
        for group in &self.groups {
            let except = except
                .filter(|except| Arc::ptr_eq(&except.mailbox, &group.mailbox))
                .map(|except| except.to);
            if group.to.iter().all(|&to| Some(to) == except) {
                continue;
            }
            group.mailbox.post(Mail::Frames {
                to: group.to.clone(),
                except,
                frame: frame.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    fn remote(mailbox: &Arc<Woken>, token: u32) -> Remote {
        Remote::new(
            mailbox.clone(),
            Address {
                token,
                generation: 0,
            },
        )
    }

    /// The addresses of one frame's mail, each mail item in turn.
    fn mailed(mailbox: &Woken) -> Vec<Vec<u32>> {
        let (mut tokens, mut mail) = (Vec::new(), Vec::new());
        mailbox.take(&mut tokens, &mut mail, Waker::noop());
        let mut items = Vec::new();
        for item in mail {
            let mut to = Vec::new();
            item.open(|address, _| to.push(address.token));
            items.push(to);
        }
        items
    }

    #[test]
    fn a_remote_is_send_sync_clone_and_debug() {
        fn check<T: Clone + Send + Sync + fmt::Debug>() {}
        check::<Remote>();
    }

    #[test]
    fn one_frame_is_one_mail_item_per_loop_without_the_sender() {
        let (first, second) = (Arc::default(), Arc::default());
        let mut recipients = Recipients::new();
        for token in 0..3 {
            recipients.insert(&remote(&first, token));
        }
        recipients.insert(&remote(&second, 7));
        assert_eq!(recipients.len(), 4);
        let frame = EncodedFrame::binary(b"hi");
        recipients.send_encoded(&frame, Some(&remote(&first, 1)));
        assert_eq!(mailed(&first), [vec![0, 2]]);
        assert_eq!(mailed(&second), [vec![7]]);
        // A loop with no one but the sender gets nothing.
        recipients.send_encoded(&frame, Some(&remote(&second, 7)));
        assert_eq!(mailed(&second), Vec::<Vec<u32>>::new());
        assert_eq!(mailed(&first), [vec![0, 1, 2]]);
        assert!(recipients.remove(&remote(&first, 0)));
        assert!(!recipients.remove(&remote(&first, 0)));
        assert!(recipients.remove(&remote(&second, 7)));
        recipients.send_encoded(&frame, None);
        assert_eq!(mailed(&first), [vec![2, 1]]);
        assert_eq!(mailed(&second), Vec::<Vec<u32>>::new());
        assert_eq!(recipients.len(), 2);
    }

    #[test]
    fn a_closed_mailbox_refuses_mail() {
        let mailbox = Arc::default();
        let remote = remote(&mailbox, 0);
        remote.send(Message::text("kept")).unwrap();
        mailbox.close();
        assert!(matches!(
            remote.send(Message::text("no")),
            Err(Error::Closed)
        ));
        assert_eq!(mailed(&mailbox), Vec::<Vec<u32>>::new());
    }
}
