//! [`Wakeups`]: what a group of connections (a server's) keeps for each of them, to reach it
//! from outside its task: a slot with the waker of whoever polls the connection, its next
//! deadline (keepalive, closing handshake) and the handle that cancels its task.
//!
//! One slab per group instead of a tokio timer, a `Notify` registration and a `JoinSet` entry
//! per connection, because an idle connection's memory is mostly what it holds to be woken
//! (bench/REPORT.md, row (f)). One task per group (the sweeper) fires the deadlines: it ticks
//! while any deadline is set, every `tick` (a sixteenth of the shortest timeout, between 5 and
//! 250 ms), so a deadline fires up to one tick late and never early. Shutdown wakes every slot;
//! cancelling aborts every task.
//!
//! A connection touches the lock only when its waker changes (once per task) or its deadline
//! does (once per keepalive period, and when it starts closing): it learns that a deadline is
//! due from the sweeper's clock, an atomic.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// No deadline.
const NEVER: u64 = u64::MAX;

/// Which slot is a connection's; the generation tells a reused slot from its earlier owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotId {
    index: u32,
    generation: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Slot {
    generation: u32,
    occupied: bool,
    /// Milliseconds after `Wakeups::epoch`; `NEVER` when none.
    deadline: u64,
    waker: Option<Waker>,
    abort: Option<AbortHandle>,
    /// The connection left its task for an event loop: nothing to abort, wake it instead.
    detached: bool,
}

/// Slots per page of the slab.
const PAGE: usize = 256;

#[derive(Debug, Default)]
struct Slots {
    /// The slab, in pages of [`PAGE`] slots that never move: grown by doubling, a vector of
    /// slots would hold a slot and a half per connection, and the allocator would keep the
    /// pages of the copies it outgrew.
    pages: Vec<Box<[Slot]>>,
    /// Slots ever used: the next new one.
    len: usize,
    free: Vec<u32>,
    /// The sweeper waits for a deadline to be set.
    parked: bool,
    /// The server is done: the sweeper ends once the last connection has.
    closed: bool,
}

impl Slots {
    fn get_mut(&mut self, index: usize) -> Option<&mut Slot> {
        self.pages.get_mut(index / PAGE)?.get_mut(index % PAGE)
    }

    /// A slot never used before; its index.
    fn grow(&mut self) -> usize {
        if self.len == self.pages.len() * PAGE {
            self.pages
                .push((0..PAGE).map(|_| Slot::default()).collect());
        }
        self.len += 1;
        self.len - 1
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.pages
            .iter()
            .flat_map(|page| page.iter())
            .take(self.len)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        (self.pages.iter_mut())
            .flat_map(|page| page.iter_mut())
            .take(self.len)
    }

    /// The slot `id` names, unless it was freed (and perhaps reused) since.
    fn owned(&mut self, id: SlotId) -> Option<&mut Slot> {
        self.get_mut(id.index as usize)
            .filter(|slot| slot.occupied && slot.generation == id.generation)
    }
}

/// The connections of one server, as the server reaches them; see the module docs.
#[derive(Debug)]
pub(crate) struct Wakeups {
    slots: Mutex<Slots>,
    epoch: Instant,
    /// The sweeper's clock: milliseconds after `epoch` at its last tick, never ahead of time.
    now_ms: AtomicU64,
    tick: Duration,
    /// Wakes the parked sweeper.
    unpark: Notify,
}

impl Wakeups {
    /// Slots for a server whose connections have the timeouts of `config`.
    pub(crate) fn new(config: &proto::Config) -> Self {
        let shortest = config.pong_timeout.min(config.close_timeout);
        let shortest = config
            .idle_timeout
            .map_or(shortest, |idle| idle.min(shortest));
        Self {
            slots: Mutex::default(),
            epoch: Instant::now(),
            now_ms: AtomicU64::new(0),
            tick: (shortest / 16).clamp(Duration::from_millis(5), Duration::from_millis(250)),
            unpark: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Nothing done under the lock can leave the slots inconsistent: a panic elsewhere
        // while holding it does not make them unusable.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for a new connection.
    pub(crate) fn insert(&self) -> SlotId {
        let mut slots = self.lock();
        let index = match slots.free.pop() {
            Some(index) => index,
            // A server's connections are bounded far below u32::MAX.
            None => u32::try_from(slots.grow()).unwrap_or(u32::MAX),
        };
        let Some(slot) = slots.get_mut(index as usize) else {
            unreachable!("a slot's index is below the slots made");
        };
        slot.occupied = true;
        slot.deadline = NEVER;
        SlotId {
            index,
            generation: slot.generation,
        }
    }

    /// Frees a connection's slot.
    pub(crate) fn remove(&self, id: SlotId) {
        let mut slots = self.lock();
        let slots = &mut *slots;
        let Some(slot) = slots.owned(id) else {
            return;
        };
        *slot = Slot {
            generation: slot.generation.wrapping_add(1),
            ..Slot::default()
        };
        slots.free.push(id.index);
    }

    /// Gives the slot the handle that cancels its connection's task; nothing if the task has
    /// already ended.
    pub(crate) fn set_abort(&self, id: SlotId, abort: AbortHandle) {
        if let Some(slot) = self.lock().owned(id)
            && !slot.detached
        {
            slot.abort = Some(abort);
        }
    }

    /// The slot's connection left its task (for an event loop): the handle is dropped, so that
    /// the task's memory is freed, and cancelling wakes the connection instead.
    pub(crate) fn detach(&self, id: SlotId) {
        if let Some(slot) = self.lock().owned(id) {
            slot.abort = None;
            slot.detached = true;
        }
    }

    /// Wakes the slot's connection at shutdown, and at `deadline` (milliseconds, see
    /// [`deadline_ms`](Self::deadline_ms); `None` for none), through `waker` from now on
    /// (`None`: the one given before).
    pub(crate) fn register(&self, id: SlotId, waker: Option<&Waker>, deadline: Option<u64>) {
        let mut slots = self.lock();
        let slots = &mut *slots;
        let Some(slot) = slots.owned(id) else {
            return;
        };
        if let Some(waker) = waker {
            slot.waker = Some(waker.clone());
        }
        let deadline = deadline.unwrap_or(NEVER);
        slot.deadline = deadline;
        if deadline != NEVER && slots.parked {
            slots.parked = false;
            self.unpark.notify_one();
        }
    }

    /// `deadline` in the slots' unit: whole milliseconds after the epoch, rounded up, so that
    /// it is never due early.
    pub(crate) fn deadline_ms(&self, deadline: std::time::Instant) -> u64 {
        let after = Instant::from_std(deadline).saturating_duration_since(self.epoch);
        // In u64, not `as_nanos`' u128: this runs on every poll that waits.
        let ms = u64::from(after.subsec_nanos().div_ceil(1_000_000));
        after
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(ms)
            .min(NEVER - 1)
    }

    /// The sweeper's clock: the time of its last tick, behind the true time by at most a tick
    /// while it ticks (while any deadline is set), for stamps that must be cheap.
    pub(crate) fn now(&self) -> std::time::Instant {
        let ms = self.now_ms.load(Ordering::Acquire);
        (self.epoch + Duration::from_millis(ms)).into_std()
    }

    /// Whether the sweeper's clock has passed `deadline_ms`.
    pub(crate) fn is_due(&self, deadline_ms: u64) -> bool {
        deadline_ms <= self.now_ms.load(Ordering::Acquire)
    }

    /// Wakes every connection (the server is shutting down).
    pub(crate) fn wake_all(&self) {
        for slot in self.lock().iter() {
            if let Some(waker) = &slot.waker {
                waker.wake_by_ref();
            }
        }
    }

    /// Cancels every connection's task, and wakes every connection that has none, to learn
    /// that it is cancelled.
    pub(crate) fn abort_all(&self) {
        for slot in self.lock().iter() {
            if let Some(abort) = &slot.abort {
                abort.abort();
            }
            if slot.detached
                && let Some(waker) = &slot.waker
            {
                waker.wake_by_ref();
            }
        }
    }

    /// The server stops serving: the sweeper goes on only while connections are left.
    pub(crate) fn close(&self) {
        let mut slots = self.lock();
        slots.closed = true;
        if slots.parked {
            slots.parked = false;
            self.unpark.notify_one();
        }
    }

    /// Fires the deadlines due, for as long as the server runs and then until its last
    /// connection is gone.
    pub(crate) async fn sweep(&self) {
        loop {
            let parked = {
                let mut slots = self.lock();
                let slots = &mut *slots;
                if slots.closed && slots.free.len() == slots.len {
                    return;
                }
                let elapsed = self.epoch.elapsed().as_millis();
                let now = u64::try_from(elapsed).unwrap_or(NEVER - 1);
                self.now_ms.store(now, Ordering::Release);
                let mut armed = false;
                for slot in slots.iter_mut() {
                    if slot.deadline <= now {
                        slot.deadline = NEVER;
                        if let Some(waker) = &slot.waker {
                            waker.wake_by_ref();
                        }
                    }
                    armed |= slot.deadline != NEVER;
                }
                slots.parked = !armed && !slots.closed;
                slots.parked
            };
            if parked {
                self.unpark.notified().await;
            } else {
                tokio::time::sleep(self.tick).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A configuration whose shortest timeout is `timeout`.
    fn shortest(timeout: Duration) -> proto::Config {
        proto::Config {
            idle_timeout: Some(timeout * 2),
            pong_timeout: timeout,
            close_timeout: timeout * 3,
            ..proto::Config::default()
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_freed_slot_ignores_its_former_owner() {
        let wakeups = Wakeups::new(&shortest(Duration::from_secs(1)));
        let first = wakeups.insert();
        wakeups.remove(first);
        let second = wakeups.insert();
        assert_eq!(first.index, second.index);
        let (count, waker) = waker();
        wakeups.register(first, Some(&waker), Some(0));
        wakeups.remove(first);
        wakeups.wake_all();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "stale id reached the new slot"
        );
        wakeups.register(second, Some(&waker), None);
        wakeups.wake_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn slots_past_the_first_page_are_reached_and_reused() {
        let wakeups = Wakeups::new(&shortest(Duration::from_secs(1)));
        let ids: Vec<SlotId> = (0..PAGE + 2).map(|_| wakeups.insert()).collect();
        assert_eq!(ids[PAGE + 1].index as usize, PAGE + 1);
        let (count, waker) = waker();
        wakeups.register(ids[PAGE + 1], Some(&waker), None);
        wakeups.register(ids[3], Some(&waker), None);
        wakeups.wake_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        wakeups.remove(ids[PAGE]);
        assert_eq!(wakeups.insert().index as usize, PAGE);
        assert_eq!(wakeups.lock().pages.len(), 2, "a freed slot is reused");
    }

    #[test]
    fn a_deadline_is_never_due_early() {
        let wakeups = Wakeups::new(&shortest(Duration::from_secs(1)));
        let at = (wakeups.epoch + Duration::from_micros(1500)).into_std();
        assert_eq!(wakeups.deadline_ms(at), 2);
        assert!(!wakeups.is_due(2));
        wakeups.now_ms.store(2, Ordering::Release);
        assert!(wakeups.is_due(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_fires_deadlines_and_parks_without_any() {
        let wakeups = Arc::new(Wakeups::new(&shortest(Duration::from_millis(160))));
        assert_eq!(wakeups.tick, Duration::from_millis(10));
        let sweeper = tokio::spawn({
            let wakeups = wakeups.clone();
            async move { wakeups.sweep().await }
        });
        let id = wakeups.insert();
        let (count, waker) = waker();
        let at = wakeups.deadline_ms((Instant::now() + Duration::from_millis(100)).into_std());
        wakeups.register(id, Some(&waker), Some(at));
        tokio::time::sleep(Duration::from_millis(95)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "fired early");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "not fired within a tick");
        assert!(wakeups.is_due(at));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(wakeups.lock().parked, "still ticking without a deadline");
        // Parked, it wakes for a new deadline.
        let at = wakeups.deadline_ms((Instant::now() + Duration::from_millis(30)).into_std());
        wakeups.register(id, Some(&waker), Some(at));
        tokio::time::sleep(Duration::from_millis(45)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        sweeper.abort();
    }
}
