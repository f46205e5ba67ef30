//! The cap on connections per client address: a count per address, and a ticket that holds one
//! of them until the connection is over.
//!
//! An IPv6 client is counted by its /64, the block one subscriber usually gets: counting single
//! addresses would let it open a connection from each of its 2^64. An IPv4 address mapped into
//! IPv6 counts as the IPv4 address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections counted per address, up to a cap.
#[derive(Debug)]
pub(crate) struct AddressLimit {
    max: usize,
    counts: Mutex<HashMap<Key, usize>>,
}

/// What an address is counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    /// The first 64 bits.
    V6(u64),
}

impl Key {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

impl AddressLimit {
    /// At most `max` connections per address.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more connection from `ip`, unless its address is at the cap.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<AddressTicket> {
        let key = Key::of(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressTicket {
            limit: self.clone(),
            key,
        })
    }

    /// Connections counted for `ip`'s address.
    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&Key::of(ip)).copied().unwrap_or(0)
    }

    /// Addresses with at least one connection.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One connection counted for its address, until dropped.
#[derive(Debug)]
pub(crate) struct AddressTicket {
    limit: Arc<AddressLimit>,
    key: Key,
}

impl Drop for AddressTicket {
    fn drop(&mut self) {
        let mut counts = self.limit.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                // Forgotten when idle, so that the map holds only addresses connected now.
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_past_the_cap_and_admits_again_when_one_leaves() {
        let limit = AddressLimit::new(2);
        let a = limit.acquire(ip("192.0.2.1")).unwrap();
        let _b = limit.acquire(ip("192.0.2.1")).unwrap();
        assert!(limit.acquire(ip("192.0.2.1")).is_none());
        // Another address has its own count.
        let _other = limit.acquire(ip("192.0.2.2")).unwrap();
        drop(a);
        assert_eq!(limit.count(ip("192.0.2.1")), 1);
        assert!(limit.acquire(ip("192.0.2.1")).is_some());
    }

    #[test]
    fn counts_ipv6_by_its_64_and_mapped_ipv4_as_ipv4() {
        let limit = AddressLimit::new(1);
        let _a = limit.acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(limit.acquire(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(limit.acquire(ip("2001:db8:1:3::1")).is_some());
        let _v4 = limit.acquire(ip("192.0.2.7")).unwrap();
        assert!(limit.acquire(ip("::ffff:192.0.2.7")).is_none());
    }

    #[test]
    fn forgets_an_address_with_no_connection_left() {
        let limit = AddressLimit::new(3);
        let tickets: Vec<_> = (0..3)
            .map(|_| limit.acquire(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(limit.addresses(), 1);
        drop(tickets);
        assert_eq!(limit.addresses(), 0);
    }
}
