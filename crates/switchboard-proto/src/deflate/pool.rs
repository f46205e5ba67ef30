//! Compressors and decompressors kept per thread for connections without context takeover
//! (RFC 7692 §7.1.1): a message borrows one and returns it reset, so the state exists per
//! thread in use, not per connection.
//!
//! Invariant: a thread keeps at most [`POOL_SIZE`] idle compressors and as many
//! decompressors, whatever the number of connections.

use std::cell::RefCell;

use flate2::{Compress, Decompress};

/// The most idle compressors (and, apart, decompressors) a thread keeps.
const POOL_SIZE: usize = 4;

#[derive(Default)]
struct Pool {
    /// Level, window bits and the compressor, reset.
    compressors: Vec<(u32, u8, Box<Compress>)>,
    /// Window bits and the decompressor, reset.
    decompressors: Vec<(u8, Box<Decompress>)>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An idle compressor for `level` and `bits` from this thread's pool, if it has one.
pub(super) fn take_compressor(level: u32, bits: u8) -> Option<Box<Compress>> {
    POOL.with(|pool| {
        let compressors = &mut pool.borrow_mut().compressors;
        let i = compressors
            .iter()
            .position(|(l, b, _)| *l == level && *b == bits)?;
        Some(compressors.swap_remove(i).2)
    })
}

/// Returns a reset compressor to this thread's pool, dropping the oldest when it is full.
pub(super) fn put_compressor(level: u32, bits: u8, compress: Box<Compress>) {
    POOL.with(|pool| {
        let compressors = &mut pool.borrow_mut().compressors;
        if compressors.len() == POOL_SIZE {
            compressors.remove(0);
        }
        compressors.push((level, bits, compress));
    });
}

/// An idle decompressor for `bits` from this thread's pool, if it has one.
pub(super) fn take_decompressor(bits: u8) -> Option<Box<Decompress>> {
    POOL.with(|pool| {
        let decompressors = &mut pool.borrow_mut().decompressors;
        let i = decompressors.iter().position(|(b, _)| *b == bits)?;
        Some(decompressors.swap_remove(i).1)
    })
}

/// Returns a reset decompressor to this thread's pool, dropping the oldest when it is full.
pub(super) fn put_decompressor(bits: u8, decompress: Box<Decompress>) {
    POOL.with(|pool| {
        let decompressors = &mut pool.borrow_mut().decompressors;
        if decompressors.len() == POOL_SIZE {
            decompressors.remove(0);
        }
        decompressors.push((bits, decompress));
    });
}
