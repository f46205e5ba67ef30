//! The bytes queued for the peer, in order: whole buffers (shared frames, large payloads), and
//! after them the frames encoded since, which leave as one buffer.
//!
//! Invariant: once everything is written, at most [`RETAINED_OUTPUT`] bytes of buffer stay.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// The most output buffer a connection keeps once everything is written: enough for a batch of
/// small frames, so that echoing them allocates nothing, while idle connections stay small.
pub(crate) const RETAINED_OUTPUT: usize = 512;

#[derive(Debug, Default)]
pub(super) struct TransmitQueue {
    queued: VecDeque<Bytes>,
    /// Bytes in `queued`.
    queued_len: usize,
    /// Frames encoded after the last entry of `queued`; leaves as one buffer.
    pending: BytesMut,
}

impl TransmitQueue {
    /// Where frames are encoded, after everything queued.
    pub(super) fn encode_buf(&mut self) -> &mut BytesMut {
        &mut self.pending
    }

    /// Queues `bytes` after everything encoded so far.
    pub(super) fn push(&mut self, bytes: Bytes) {
        if !self.pending.is_empty() {
            let head = self.pending.split().freeze();
            self.queued_len += head.len();
            self.queued.push_back(head);
        }
        self.queued_len += bytes.len();
        self.queued.push_back(bytes);
    }

    /// Takes the next buffer off the queue.
    pub(super) fn pop(&mut self) -> Option<Bytes> {
        if let Some(bytes) = self.queued.pop_front() {
            self.queued_len -= bytes.len();
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
        let queued = self.queued.iter().map(|b| &b[..]).chain(pending);
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
        while let Some(front) = self.queued.front_mut() {
            if n < front.len() {
                front.advance(n);
                self.queued_len -= n;
                return;
            }
            n -= front.len();
            self.queued_len -= front.len();
            self.queued.pop_front();
        }
        assert!(n <= self.pending.len(), "advanced past the queued bytes");
        if n < self.pending.len() {
            self.pending.advance(n);
        } else if self.pending.capacity() > RETAINED_OUTPUT {
            // All written: a connection keeps a small buffer for its next frames, not the
            // largest batch it ever sent.
            self.pending = BytesMut::new();
        } else {
            self.pending.clear();
        }
    }

    /// How many bytes are queued.
    pub(super) fn len(&self) -> usize {
        self.queued_len + self.pending.len()
    }

    /// Discards everything queued.
    pub(super) fn clear(&mut self) {
        self.queued.clear();
        self.queued_len = 0;
        self.pending.clear();
    }

    #[cfg(test)]
    pub(super) fn pending_capacity(&self) -> usize {
        self.pending.capacity()
    }
}
