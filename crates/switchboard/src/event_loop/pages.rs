//! [`Pages`]: the loop's connections by token, in pages that never move.
//!
//! A slab in one vector doubles and copies as connections arrive, and the allocator keeps the
//! pages of the buffers it outgrew (jemalloc returns dirty pages only after a delay): 10,000
//! idle connections held twice their size. Pages of a fixed size are allocated once and kept.
//!
//! Each slot has a generation, changed when its value is removed: a key and a generation name
//! one value for good, though the key is reused. Generations sit in an array beside each page,
//! so that a slot is no larger than its value.

/// Slots per page.
const PAGE: usize = 256;

#[derive(Debug)]
pub(super) struct Pages<T> {
    pages: Vec<Box<[Option<T>]>>,
    /// The generation of each slot of each page.
    generations: Vec<Box<[u32]>>,
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
            generations: Vec::new(),
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
                    self.generations.push(vec![0; PAGE].into_boxed_slice());
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

    /// The generation of slot `key`: of its value, or of the next value it takes.
    pub(super) fn generation(&self, key: usize) -> u32 {
        self.generations
            .get(key / PAGE)
            .map_or(0, |generations| generations[key % PAGE])
    }

    pub(super) fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.pages.get_mut(key / PAGE)?[key % PAGE].take()?;
        let generation = &mut self.generations[key / PAGE][key % PAGE];
        *generation = generation.wrapping_add(1);
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
        assert_eq!(pages.generation(5), 0);
        assert_eq!(pages.remove(5), Some(5));
        assert_eq!(pages.generation(5), 1);
        assert_eq!(pages.remove(5), None);
        assert_eq!(pages.generation(5), 1);
        assert_eq!(pages.get_mut(5), None);
        assert_eq!(pages.vacant_key(), 5);
        assert_eq!(pages.insert(99), 5);
        assert_eq!(pages.generation(5), 1);
        assert_eq!(pages.generation(10 * PAGE), 0);
        assert_eq!(pages.get_mut(PAGE + 2), Some(&mut (PAGE + 2)));
        assert_eq!(pages.get_mut(10 * PAGE), None);
        for key in 0..PAGE + 3 {
            pages.remove(key);
        }
        assert!(pages.is_empty());
    }
}
