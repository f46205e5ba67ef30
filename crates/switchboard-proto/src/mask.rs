//! Payload masking (RFC 6455 §5.3).
//!
//! Masking XORs the payload with a 4-byte key, cycling through the key by the byte's position in
//! the payload. The same operation masks and unmasks. The hot loop works on whole 64-bit words
//! (safe `chunks_exact_mut(8)` compiles to wide loads and stores), never byte by byte.

/// XORs `buf` in place with `key`, where `buf[0]` sits at position `offset` of the frame payload.
///
/// `offset` lets a payload that arrives in pieces be unmasked piece by piece: unmasking
/// `p[..a]` at offset 0 and then `p[a..]` at offset `a` equals unmasking `p` at once.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    let mut chunks = buf.chunks_exact_mut(8);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    for chunk in &mut chunks {
        // Invariant: chunks_exact_mut(8) yields slices of exactly 8 bytes.
        let word: &mut [u8; 8] = chunk.try_into().expect("chunk of 8 bytes");
        *word = (u64::from_ne_bytes(*word) ^ wide).to_ne_bytes();
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The key as seen from position `offset` of the payload.
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut k = key;
    k.rotate_left(offset & 3);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) & 3];
        }
    }

    #[test]
    fn rfc_6455_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, key, 0);
        assert_eq!(&payload, b"Hello");
    }

    proptest! {
        #[test]
        fn fast_mask_equals_bytewise_at_every_offset(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            key in any::<[u8; 4]>(),
            offset in 0usize..16,
        ) {
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask(&mut fast, key, offset);
            bytewise(&mut slow, key, offset);
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn masking_twice_is_identity(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            key in any::<[u8; 4]>(),
        ) {
            let mut buf = data.clone();
            apply_mask(&mut buf, key, 0);
            apply_mask(&mut buf, key, 0);
            prop_assert_eq!(buf, data);
        }

        #[test]
        fn masking_in_pieces_equals_masking_at_once(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            key in any::<[u8; 4]>(),
            split in any::<prop::sample::Index>(),
        ) {
            let mut whole = data.clone();
            apply_mask(&mut whole, key, 0);
            let mut pieces = data.clone();
            let at = split.index(pieces.len() + 1);
            let (a, b) = pieces.split_at_mut(at);
            apply_mask(a, key, 0);
            apply_mask(b, key, at);
            prop_assert_eq!(whole, pieces);
        }
    }
}
