//! A global allocator that forwards to the system allocator and counts: the allocations made,
//! and the bytes and blocks live. The tests and examples that measure heap use install it:
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;
//!
//! let before = alloc_count::snapshot();
//! let buffer = vec![0u8; 4096];
//! let grown = alloc_count::snapshot().since(&before);
//! assert!(grown.allocations >= 1 && grown.live_bytes >= 4096);
//! # drop(buffer);
//! ```
//!
//! The counters are process-wide (a program has one global allocator), so a measurement is
//! exact only while nothing else allocates: a single-threaded runtime, or a test binary of its
//! own. Sizes are those the layouts asked for: resident memory adds the allocator's own
//! overhead, which differs between the system allocator counted here and the jemalloc the
//! `switchboard` binary uses.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

/// The counting allocator: install it with `#[global_allocator]`, read it with [`snapshot`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Counting;

/// The counters at one moment, or the difference between two moments ([`Snapshot::since`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Calls that asked for memory: `alloc`, `alloc_zeroed` and `realloc` (a growing `Vec`
    /// counts once per reallocation). Never decreases.
    pub allocations: usize,
    /// Bytes requested and not yet freed (what the layouts asked for, without the allocator's
    /// own overhead).
    pub live_bytes: isize,
    /// Blocks allocated and not yet freed (a `realloc` keeps the count).
    pub live_blocks: isize,
}

impl Snapshot {
    /// What changed from `earlier` to `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            allocations: self.allocations - earlier.allocations,
            live_bytes: self.live_bytes - earlier.live_bytes,
            live_blocks: self.live_blocks - earlier.live_blocks,
        }
    }
}

/// The heap per connection of a server, for the idle-memory examples: made when no connection
/// is open, then asked with the connections open now and again.
#[derive(Debug)]
pub struct PerConnection {
    base: Snapshot,
    last: usize,
    /// Calls since `last` changed.
    steady: u32,
}

/// Calls with the same connections open after which the line is given once more: the first
/// line of a count is taken while the last connections still set up.
const SETTLED: u32 = 3;

impl PerConnection {
    /// Counts from here: the heap held with no connection open.
    pub fn start() -> Self {
        Self {
            base: snapshot(),
            last: 0,
            steady: 0,
        }
    }

    /// The live heap above the start per connection, as a line, when `open` changed since the
    /// last call, and once more when it has not for a few calls (and is not 0).
    pub fn report(&mut self, open: usize) -> Option<String> {
        let changed = open != std::mem::replace(&mut self.last, open);
        self.steady = if changed { 0 } else { self.steady + 1 };
        if open == 0 || !(changed || self.steady == SETTLED) {
            return None;
        }
        let held = snapshot().since(&self.base);
        Some(format!(
            "{open} connections: {:.0} bytes in {:.2} blocks per connection",
            held.live_bytes as f64 / open as f64,
            held.live_blocks as f64 / open as f64
        ))
    }
}

/// The counters now.
pub fn snapshot() -> Snapshot {
    Snapshot {
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
        live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
        live_blocks: LIVE_BLOCKS.load(Ordering::Relaxed),
    }
}

fn allocated(size: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    LIVE_BYTES.fetch_add(size as isize, Ordering::Relaxed);
    LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged
// and only updates counters besides, so the system allocator's guarantees carry over.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        allocated(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        allocated(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    // One test function: the counters are process-wide, and tests running side by side would
    // count each other's allocations.
    #[test]
    fn counts_allocations_and_live_bytes_and_blocks() {
        let start = snapshot();
        let mut buffer: Vec<u8> = Vec::with_capacity(1000);
        let one = snapshot().since(&start);
        assert_eq!(
            one,
            Snapshot {
                allocations: 1,
                live_bytes: 1000,
                live_blocks: 1
            }
        );

        // Room for 3000 more than its length (0): a realloc from 1000 to 3000 bytes.
        buffer.reserve_exact(3000);
        let grown = snapshot().since(&start);
        assert_eq!(grown.allocations, 2, "a realloc counts as an allocation");
        assert_eq!(grown.live_bytes, 3000);
        assert_eq!(grown.live_blocks, 1, "a realloc keeps the block count");

        let zeroed = vec![0u64; 16];
        assert_eq!(snapshot().since(&start).live_bytes, 3000 + 128);

        drop(std::hint::black_box(buffer));
        drop(std::hint::black_box(zeroed));
        let end = snapshot().since(&start);
        assert_eq!((end.live_bytes, end.live_blocks), (0, 0));
        assert_eq!(end.allocations, 3);
    }
}
