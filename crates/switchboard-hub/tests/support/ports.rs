//! Loopback ports for the `redis-server`s tests start, never the same one twice in a process.
//!
//! A port the kernel calls free may be one a test's server left moments ago, which a node of
//! that test still dials: handed to another test's server, it would answer for it (a Redis
//! Cluster master of another test owns the same slots, and takes the writes).

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{LazyLock, Mutex};

static HANDED_OUT: LazyLock<Mutex<HashSet<u16>>> = LazyLock::new(Mutex::default);

/// A free loopback port that no earlier call in this process returned.
pub(crate) fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}
