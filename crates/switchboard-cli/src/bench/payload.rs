//! Message payloads: distinct for every message and all along their length, valid as text.

use bytes::Bytes;

/// Payload bytes for message `index`: printable ASCII (valid text) from a generator seeded by
/// the index, so that messages differ from each other all along their length.
pub(crate) fn payload(index: u64, size: usize) -> Bytes {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let take = (size - out.len()).min(8);
        out.extend((0..take).map(|i| ALPHABET[((word >> (i * 6)) & 63) as usize]));
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_text_and_differ_all_along() {
        let a = payload(1, 4096);
        let b = payload(2, 4096);
        assert_eq!(a.len(), 4096);
        assert!(std::str::from_utf8(&a).is_ok());
        assert_eq!(a, payload(1, 4096));
        // Differ in every 64-byte stretch, not only at the start.
        for (x, y) in a.chunks(64).zip(b.chunks(64)) {
            assert_ne!(x, y);
        }
        assert!(payload(3, 0).is_empty());
    }
}
