//! Wakers that name one connection of one event loop, with no allocation.
//!
//! A connection's driver registers a waker wherever it waits on something other than its
//! socket: its deadline and the server's shutdown, both in the server's wake-up slots
//! (`wakeups.rs`). A task would give every connection a waker of its own for free; here the
//! waker's data is the loop's number and the connection's token packed into the pointer-sized
//! word, never dereferenced. Waking it queues the token on that loop and wakes the loop's task.
//! A waker that outlives its connection (or its loop) wakes whoever holds the token now, which
//! polls, finds nothing to do, and waits again.
//!
//! The same [`Woken`] is the loop's mailbox: [`Remote`](super::Remote)s post [`Mail`] there,
//! under the same lock, and the loop takes the tokens and the mail together.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::mail::Mail;

/// The bits of the packed word that number the loop; the rest is the token.
const LOOP_BITS: u32 = if usize::BITS >= 64 { 16 } else { 8 };
const TOKEN_BITS: u32 = usize::BITS - LOOP_BITS;
/// Tokens at or above this have no waker of their own: the loop refuses more connections.
pub(crate) const MAX_TOKENS: usize = 1 << if TOKEN_BITS > 32 { 32 } else { TOKEN_BITS };

/// The loops alive, by number; a loop's number is freed when it ends.
static LOOPS: Mutex<Vec<Option<Arc<Woken>>>> = Mutex::new(Vec::new());

/// What wakers and [`Remote`](super::Remote)s have asked of one loop (or of one connection in
/// a task of its own) since it last looked.
#[derive(Debug, Default)]
pub(crate) struct Woken {
    inner: Mutex<WokenInner>,
}

#[derive(Debug, Default)]
struct WokenInner {
    tokens: Vec<u32>,
    mail: Vec<Mail>,
    /// The loop's task, woken once per batch of tokens and mail.
    task: Option<Waker>,
    /// Whoever took from here has ended: nothing more is kept.
    closed: bool,
}

impl Woken {
    fn push(&self, token: u32) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.closed {
            return;
        }
        inner.tokens.push(token);
        if let Some(task) = inner.task.take() {
            drop(inner);
            task.wake();
        }
    }

    /// Queues `mail` and wakes the loop; `false` once the loop has ended.
    pub(super) fn post(&self, mail: Mail) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.closed {
            return false;
        }
        inner.mail.push(mail);
        if let Some(task) = inner.task.take() {
            drop(inner);
            task.wake();
        }
        true
    }

    /// Moves the tokens woken and the mail posted so far into `tokens` and `mail` (emptied
    /// first), and registers `task` to be woken by the next.
    pub(crate) fn take(&self, tokens: &mut Vec<u32>, mail: &mut Vec<Mail>, task: &Waker) {
        tokens.clear();
        mail.clear();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut inner.tokens, tokens);
        std::mem::swap(&mut inner.mail, mail);
        match &inner.task {
            Some(registered) if registered.will_wake(task) => {}
            _ => inner.task = Some(task.clone()),
        }
    }

    /// The taker has ended: later mail is refused, and what is queued is dropped (it may hold
    /// frames a publisher shares).
    pub(super) fn close(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.closed = true;
        let mail = std::mem::take(&mut inner.mail);
        let task = inner.task.take();
        inner.tokens = Vec::new();
        drop(inner);
        drop((mail, task));
    }
}

/// A loop's place among the loops, freed on drop.
#[derive(Debug)]
pub(crate) struct LoopId {
    number: usize,
    woken: Arc<Woken>,
}

impl LoopId {
    /// Numbers a new loop; `None` when every number is taken.
    pub(crate) fn new() -> Option<Self> {
        let woken = Arc::new(Woken::default());
        let mut loops = LOOPS.lock().unwrap_or_else(PoisonError::into_inner);
        let number = match loops.iter().position(Option::is_none) {
            Some(free) => free,
            None if loops.len() < 1 << LOOP_BITS => {
                loops.push(None);
                loops.len() - 1
            }
            None => return None,
        };
        loops[number] = Some(woken.clone());
        Some(Self { number, woken })
    }

    pub(crate) fn woken(&self) -> &Arc<Woken> {
        &self.woken
    }

    /// The waker of connection `token` of this loop.
    pub(crate) fn waker(&self, token: usize) -> Waker {
        debug_assert!(token < MAX_TOKENS);
        let word = (self.number << TOKEN_BITS) | token;
        // SAFETY: the vtable's functions never dereference the data, which is a plain number;
        // they are thread-safe (a lock), and clone and drop own nothing.
        unsafe { Waker::from_raw(RawWaker::new(word as *const (), &VTABLE)) }
    }
}

impl Drop for LoopId {
    fn drop(&mut self) {
        self.woken.close();
        let mut loops = LOOPS.lock().unwrap_or_else(PoisonError::into_inner);
        loops[self.number] = None;
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop_waker);

fn clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn wake(data: *const ()) {
    let word = data as usize;
    let number = word >> TOKEN_BITS;
    let token = (word & ((1 << TOKEN_BITS) - 1)) as u32;
    let woken = {
        let loops = LOOPS.lock().unwrap_or_else(PoisonError::into_inner);
        loops.get(number).and_then(Clone::clone)
    };
    if let Some(woken) = woken {
        woken.push(token);
    }
}

fn drop_waker(_: *const ()) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by each test here: a waker of a loop gone wakes whichever loop takes its number
    /// next, which would be the other test's.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[test]
    fn a_waker_queues_its_token_on_its_own_loop() {
        let _alone = one_at_a_time();
        let first = LoopId::new().unwrap();
        let second = LoopId::new().unwrap();
        let mut tokens = Vec::new();
        let mut mail = Vec::new();
        first.waker(7).wake_by_ref();
        let waker = second.waker(9);
        #[allow(clippy::redundant_clone)]
        let clone = waker.clone();
        drop(waker);
        clone.wake();
        first.waker(MAX_TOKENS - 1).wake();
        first.woken().take(&mut tokens, &mut mail, Waker::noop());
        assert_eq!(tokens, [7, (MAX_TOKENS - 1) as u32]);
        second.woken().take(&mut tokens, &mut mail, Waker::noop());
        assert_eq!(tokens, [9]);
    }

    #[test]
    fn a_loop_gone_refuses_mail() {
        let _alone = one_at_a_time();
        let gone = LoopId::new().unwrap();
        let mailbox = gone.woken().clone();
        drop(gone);
        let to = super::super::mail::Address {
            token: 0,
            generation: 0,
        };
        assert!(!mailbox.post(Mail::Message(to, proto::Message::text("late"))));
    }

    #[test]
    fn a_waker_of_a_loop_gone_does_nothing() {
        let _alone = one_at_a_time();
        let gone = LoopId::new().unwrap();
        let waker = gone.waker(3);
        drop(gone);
        waker.wake();
    }
}
