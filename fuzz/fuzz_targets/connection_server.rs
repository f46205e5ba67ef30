//! Arbitrary bytes from a client, cut into arbitrary reads, against a server connection with
//! small limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_proto::{Connection, Role};

mod common;

fuzz_target!(|data: &[u8]| {
    common::drive(Connection::new(Role::Server, common::config()), data);
});
