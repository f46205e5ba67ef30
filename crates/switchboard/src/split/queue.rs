//! [`Queue`]: the FIFO behind each direction of a split connection, which holds no memory while
//! it is empty.
//!
//! A connection's queues are empty nearly all its life (the driver writes what senders queue
//! at its next wake, and a receiver that keeps up finds one message at a time), so a buffer
//! kept for them would be what an idle connection costs. The buffer is allocated on the
//! first item and given back as soon as the queue drains ([`pop`](Queue::pop) of the last
//! item, or [`take`](Queue::take) of all of them): an idle connection holds none, and a busy
//! one allocates once per burst (the items queued between two wakes of the side that empties
//! it), not once per item. Keeping the buffer a while after it drains would spare a busy
//! connection that allocation, but telling idle from a pause needs a timer per connection
//! (memory again) or a later wake, which an idle connection never gets.

use std::collections::VecDeque;

/// A first-in, first-out queue that allocates only while it holds items.
#[derive(Debug)]
pub(super) struct Queue<T> {
    items: VecDeque<T>,
}

impl<T> Queue<T> {
    pub(super) const fn new() -> Self {
        Self {
            items: VecDeque::new(),
        }
    }

    pub(super) fn push(&mut self, item: T) {
        self.items.push_back(item);
    }

    /// The oldest item; the buffer goes back to the allocator when this was the last one.
    pub(super) fn pop(&mut self) -> Option<T> {
        let item = self.items.pop_front();
        if self.items.is_empty() && self.items.capacity() > 0 {
            self.items = VecDeque::new();
        }
        item
    }

    /// Every item, oldest first, with the buffer they are in: the queue is left holding
    /// nothing, so the buffer is freed when the caller is done with them.
    pub(super) fn take(&mut self) -> VecDeque<T> {
        std::mem::take(&mut self.items)
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items the buffer has room for: 0 when nothing is allocated.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.items.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::Queue;

    #[test]
    fn a_queue_that_grew_and_drained_gives_its_buffer_back() {
        let mut queue = Queue::new();
        assert_eq!(queue.capacity(), 0);
        for i in 0..100 {
            queue.push(i);
        }
        assert!(queue.capacity() >= 100);
        for i in 0..100 {
            assert_eq!(queue.pop(), Some(i));
        }
        assert_eq!(queue.capacity(), 0);
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn taking_every_item_leaves_no_buffer() {
        let mut queue = Queue::new();
        queue.push("a");
        queue.push("b");
        let taken = queue.take();
        assert_eq!(Vec::from(taken), ["a", "b"]);
        assert_eq!(queue.capacity(), 0);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_queue_keeps_its_buffer_while_it_holds_items() {
        let mut queue = Queue::new();
        queue.push(1);
        queue.push(2);
        let capacity = queue.capacity();
        assert_eq!(queue.pop(), Some(1));
        assert_eq!(queue.capacity(), capacity);
        assert_eq!(queue.len(), 1);
    }
}
