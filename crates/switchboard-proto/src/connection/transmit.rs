//! The bytes queued for the peer, in order: whole buffers (shared frames, large payloads), and
//! after them the frames encoded since, which leave as one buffer.
//!
//! Invariant: once everything is written, the connection keeps no output buffer and no queue
//! of whole buffers. The emptied
//! buffer, if at most [`RETAINED_OUTPUT`] bytes, becomes its thread's spare, which the next
//! connection on the thread to encode a frame takes: an idle connection holds no buffer, and
//! echoing small messages allocates none per reply.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// The largest emptied output buffer kept as a thread's spare: enough for a batch of small
/// frames.
const RETAINED_OUTPUT: usize = 512;

thread_local! {
    /// An empty output buffer, given up by a connection that wrote everything, for the next
    /// one on this thread that encodes a frame.
    static SPARE: Cell<BytesMut> = Cell::new(BytesMut::new());
}

#[derive(Debug, Default)]
pub(super) struct TransmitQueue {
    /// Made when a whole buffer is queued and freed once it is written: only shared frames and
    /// large payloads go there, so most connections (an idle one, an echo of small messages,
    /// a subscriber between publications) carry one empty pointer instead of the queue.
    queued: Option<Box<Queued>>,
    /// Frames encoded after the last entry of `queued`; leaves as one buffer.
    pending: BytesMut,
}

/// Whole buffers queued before `pending`.
#[derive(Debug, Default)]
struct Queued {
    buffers: VecDeque<Bytes>,
    /// Bytes in `buffers`.
    len: usize,
}

impl TransmitQueue {
    /// Where frames are encoded, after everything queued.
    pub(super) fn encode_buf(&mut self) -> &mut BytesMut {
        if self.pending.capacity() == 0 {
            // `try_with`: a connection may be driven while its thread ends.
            self.pending = SPARE.try_with(Cell::take).unwrap_or_default();
        }
        &mut self.pending
    }

    /// Queues `bytes` after everything encoded so far.
    pub(super) fn push(&mut self, bytes: Bytes) {
        let queued = self.queued.get_or_insert_default();
        if !self.pending.is_empty() {
            let head = self.pending.split().freeze();
            queued.len += head.len();
            queued.buffers.push_back(head);
        }
        queued.len += bytes.len();
        queued.buffers.push_back(bytes);
    }

    /// Takes the next buffer off the queue.
    pub(super) fn pop(&mut self) -> Option<Bytes> {
        if let Some(queued) = &mut self.queued
            && let Some(bytes) = queued.buffers.pop_front()
        {
            queued.len -= bytes.len();
            if queued.buffers.is_empty() {
                self.queued = None;
            }
            return Some(bytes);
        }
        if self.pending.is_empty() {
            None
        } else {
            Some(self.pending.split().freeze())
        }
    }

    /// Fills `slices` with the queued bytes, in order; returns how many it filled.
    pub(super) fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let pending = (!self.pending.is_empty()).then_some(&self.pending[..]);
        let queued = (self.queued.iter())
            .flat_map(|queued| queued.buffers.iter().map(|b| &b[..]))
            .chain(pending);
        let mut filled = 0;
        for (slot, bytes) in slices.iter_mut().zip(queued) {
            *slot = IoSlice::new(bytes);
            filled += 1;
        }
        filled
    }

    /// Takes the first `n` bytes off the queue.
    ///
    /// # Panics
    ///
    /// If `n` is more than [`len`](Self::len).
    pub(super) fn advance(&mut self, mut n: usize) {
        if let Some(queued) = &mut self.queued {
            while let Some(front) = queued.buffers.front_mut() {
                if n < front.len() {
                    front.advance(n);
                    queued.len -= n;
                    return;
                }
                n -= front.len();
                queued.len -= front.len();
                queued.buffers.pop_front();
            }
            self.queued = None;
        }
        assert!(n <= self.pending.len(), "advanced past the queued bytes");
        if n < self.pending.len() {
            self.pending.advance(n);
        } else {
            let mut emptied = std::mem::take(&mut self.pending);
            if (1..=RETAINED_OUTPUT).contains(&emptied.capacity()) {
                emptied.clear();
                let _ = SPARE.try_with(|spare| spare.set(emptied));
            }
        }
    }

    /// How many bytes are queued.
    pub(super) fn len(&self) -> usize {
        self.queued.as_ref().map_or(0, |queued| queued.len) + self.pending.len()
    }

    /// Discards everything queued.
    pub(super) fn clear(&mut self) {
        self.queued = None;
        self.pending.clear();
    }

    #[cfg(test)]
    pub(super) fn has_queue(&self) -> bool {
        self.queued.is_some()
    }

    #[cfg(test)]
    pub(super) fn pending_capacity(&self) -> usize {
        self.pending.capacity()
    }
}
