//! [`Pages`]: the loop's connections by token, in pages that never move.
//!
//! A slab in one vector doubles and copies as connections arrive, and the allocator keeps the
//! pages of the buffers it outgrew (jemalloc returns dirty pages only after a delay): 10,000
//! idle connections held twice their size. Pages of a fixed size are allocated once and kept.

/// Slots per page.
const PAGE: usize = 256;

#[derive(Debug)]
pub(super) struct Pages<T> {
    pages: Vec<Box<[Option<T>]>>,
    /// Slots freed, reused last-in first-out.
    free: Vec<u32>,
    /// Slots ever used: the next new one.
    used: usize,
    len: usize,
}

impl<T> Default for Pages<T> {
    fn default() -> Self {
        Self {
            pages: Vec::new(),
            free: Vec::new(),
            used: 0,
            len: 0,
        }
    }
}

impl<T> Pages<T> {
    /// The key the next [`insert`](Self::insert) will use.
    pub(super) fn vacant_key(&self) -> usize {
        self.free.last().map_or(self.used, |&key| key as usize)
    }

    pub(super) fn insert(&mut self, value: T) -> usize {
        let key = match self.free.pop() {
            Some(key) => key as usize,
            None => {
                if self.used == self.pages.len() * PAGE {
                    self.pages.push((0..PAGE).map(|_| None).collect());
                }
                self.used += 1;
                self.used - 1
            }
        };
        self.pages[key / PAGE][key % PAGE] = Some(value);
        self.len += 1;
        key
    }

    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.pages.get_mut(key / PAGE)?[key % PAGE].as_mut()
    }

    pub(super) fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.pages.get_mut(key / PAGE)?[key % PAGE].take()?;
        self.free.push(key as u32);
        self.len -= 1;
        Some(value)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_reused() {
        let mut pages = Pages::default();
        let keys: Vec<usize> = (0..PAGE + 3).map(|i| pages.insert(i)).collect();
        assert_eq!(keys, (0..PAGE + 3).collect::<Vec<_>>());
        assert_eq!(pages.remove(5), Some(5));
        assert_eq!(pages.remove(5), None);
        assert_eq!(pages.get_mut(5), None);
        assert_eq!(pages.vacant_key(), 5);
        assert_eq!(pages.insert(99), 5);
        assert_eq!(pages.get_mut(PAGE + 2), Some(&mut (PAGE + 2)));
        assert_eq!(pages.get_mut(10 * PAGE), None);
        for key in 0..PAGE + 3 {
            pages.remove(key);
        }
        assert!(pages.is_empty());
    }
}
