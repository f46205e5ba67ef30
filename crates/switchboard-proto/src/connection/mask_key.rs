//! Masking keys for the frames a client sends (RFC 6455 §5.3): "The masking key is a new 32-bit
//! value chosen at random [...] MUST be derived from a strong source of entropy".

/// Masking keys: from the operating system in batches, or from a seed in tests. Made on first
/// use, so servers (which never mask) carry one empty pointer.
#[derive(Debug, Default)]
pub(super) struct MaskRng(Option<Box<KeySource>>);

#[derive(Debug)]
enum KeySource {
    Os { bytes: [u8; 64], used: usize },
    Seeded(u64),
}

impl MaskRng {
    /// Whether no key was drawn yet (a server's never is).
    pub(super) fn is_unused(&self) -> bool {
        self.0.is_none()
    }

    pub(super) fn next_key(&mut self, seed: Option<u64>) -> [u8; 4] {
        let source = self.0.get_or_insert_with(|| {
            Box::new(match seed {
                Some(seed) => KeySource::Seeded(seed),
                None => KeySource::Os {
                    bytes: [0; 64],
                    used: 64,
                },
            })
        });
        match &mut **source {
            KeySource::Os { bytes, used } => {
                if *used + 4 > bytes.len() {
                    if getrandom::fill(bytes).is_err() {
                        // No OS randomness (practically never): fall back to std's randomly
                        // keyed hasher so that keys stay unpredictable to the peer.
                        fill_from_hasher(bytes);
                    }
                    *used = 0;
                }
                let at = *used;
                *used += 4;
                [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
            }
            KeySource::Seeded(state) => {
                // splitmix64: deterministic and well mixed, for tests only.
                *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = *state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                let z = z ^ (z >> 31);
                (z as u32).to_le_bytes()
            }
        }
    }
}

fn fill_from_hasher(buf: &mut [u8]) {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        let word = h.finish().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}
