//! Redis Cluster's key-to-slot rule, and the hash tags that keep a channel's keys in one slot.
//!
//! A cluster splits keys into 16384 slots by the CRC16 (XMODEM) of the key, or of its hash
//! tag: the text between the first `{` and the first `}` after it, when that is not empty
//! (the Redis Cluster specification, "Hash tags"). Sharded Pub/Sub channel names follow the
//! same rule. [`hash_slot`] is that rule, bit for bit, so that the broker routes a request to
//! the master that Redis would send it to.
//!
//! Every key of a channel carries the channel as its hash tag, [`tag`]: `P:meta:{CH}`. The
//! channel is escaped first (`%` as `%25`, `}` as `%7D`), so the tag is never empty and never
//! ends early, whatever the channel name holds; escaping is one-to-one, so two channels never
//! share keys.

/// How many slots a cluster has.
pub(super) const SLOTS: usize = 16384;

/// CRC16 with the XMODEM parameters (polynomial 0x1021, initial value 0, not reflected),
/// the checksum Redis Cluster hashes keys with.
pub(super) fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0_u16, |crc, &byte| {
        let mut crc = crc ^ (u16::from(byte) << 8);
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
        crc
    })
}

/// The slot of `key`: the CRC16 of its hash tag when it has a non-empty one, else of the
/// whole key, modulo 16384.
pub(super) fn hash_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) & (SLOTS as u16 - 1)
}

/// `{CH}` with `CH` escaped: the part of a channel's keys that puts them all in one slot.
pub(super) fn tag(channel: &str) -> String {
    let mut tag = String::with_capacity(channel.len() + 2);
    tag.push('{');
    for c in channel.chars() {
        match c {
            '%' => tag.push_str("%25"),
            '}' => tag.push_str("%7D"),
            c => tag.push(c),
        }
    }
    tag.push('}');
    tag
}

/// The channel whose [`tag`] is `tag`; `None` for text no tag gives.
pub(super) fn untag(tag: &str) -> Option<String> {
    let inner = tag.strip_prefix('{')?.strip_suffix('}')?;
    let mut channel = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(at) = rest.find(['%', '}']) {
        channel.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        channel.push(match escape {
            "%25" => '%',
            "%7D" => '}',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    channel.push_str(rest);
    Some(channel)
}

/// A short hash tag in `slot`: for keys that must live on the master owning that slot. The
/// first decimal number that hashes there, so every node finds the same one.
pub(super) fn tag_in(slot: u16) -> String {
    (0_u32..)
        .map(|n| n.to_string())
        .find(|n| hash_slot(n.as_bytes()) == slot)
        .map(|n| format!("{{{n}}}"))
        // CRC16 of decimal numbers reaches every slot well before u32::MAX.
        .unwrap_or_default()
}

/// Which master owns each slot, by master index.
#[derive(Debug)]
pub(super) struct SlotMap {
    owners: Box<[u16]>,
}

impl SlotMap {
    /// The map where master `i` owns the slot ranges `ranges[i]` (inclusive); `Err` names
    /// the first slot nobody owns.
    pub(super) fn new(ranges: &[Vec<(u16, u16)>]) -> Result<Self, u16> {
        const NOBODY: u16 = u16::MAX;
        let mut owners = vec![NOBODY; SLOTS].into_boxed_slice();
        for (master, ranges) in ranges.iter().enumerate() {
            let master = u16::try_from(master).unwrap_or(NOBODY);
            for &(first, last) in ranges {
                for slot in first..=last.min(SLOTS as u16 - 1) {
                    owners[usize::from(slot)] = master;
                }
            }
        }
        match owners.iter().position(|&owner| owner == NOBODY) {
            Some(slot) => Err(slot as u16),
            None => Ok(Self { owners }),
        }
    }

    /// The master that owns `slot`'s keys.
    pub(super) fn owner(&self, slot: u16) -> usize {
        usize::from(self.owners[usize::from(slot) % SLOTS])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        // The check value of CRC-16/XMODEM, quoted in the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_follow_the_hash_tag_rule() {
        // Slots as `CLUSTER KEYSLOT` answers them (Redis 7.0).
        assert_eq!(hash_slot(b"a"), 15495);
        assert_eq!(hash_slot(b"b"), 3300);
        assert_eq!(hash_slot(b"123456789"), 0x31C3 & 0x3FFF);
        assert_eq!(
            hash_slot(b"{user1000}.following"),
            hash_slot(b"{user1000}.followers")
        );
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        // Only the first `{` counts, and the first `}` after it.
        assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
        assert_eq!(hash_slot(b"foo{bar}{zap}"), hash_slot(b"bar"));
        // An empty tag, or none closed, hashes the whole key.
        assert_eq!(hash_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") & 0x3FFF);
        assert_eq!(hash_slot(b"foo{bar"), crc16(b"foo{bar") & 0x3FFF);
    }

    #[test]
    fn a_channels_keys_share_its_slot_whatever_its_name() {
        for channel in [
            "room", "}", "}x", "a}b", "{", "{a}", "%7D", "%", "x{}y", "é}",
        ] {
            let tag = tag(channel);
            let slot = hash_slot(tag.as_bytes());
            for key in [
                format!("sb:meta:{tag}"),
                format!("sb:history:{tag}"),
                format!("sb:once:{tag} {{key}}"),
                format!("sb:channel:{tag}"),
            ] {
                assert_eq!(hash_slot(key.as_bytes()), slot, "{key}");
            }
            assert_eq!(untag(&tag).as_deref(), Some(channel));
        }
        assert_ne!(tag("}x"), tag("%7Dx"));
        assert_eq!(untag("{a%7D}"), Some("a}".into()));
        for bad in ["a", "{a", "{a%}", "{a%41}", "{a}b}"] {
            assert_eq!(untag(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_tag_in_a_slot_hashes_there() {
        for slot in [0, 1, 5460, 5461, 10922, 16383] {
            let tag = tag_in(slot);
            assert_eq!(hash_slot(format!("sb:nodes:{tag}").as_bytes()), slot);
        }
    }

    #[test]
    fn slots_route_to_their_owner_and_every_slot_needs_one() {
        let map =
            SlotMap::new(&[vec![(0, 5460)], vec![(5461, 10922)], vec![(10923, 16383)]]).unwrap();
        assert_eq!(map.owner(0), 0);
        assert_eq!(map.owner(5461), 1);
        assert_eq!(map.owner(16383), 2);
        assert_eq!(map.owner(hash_slot(b"a")), 2);
        let gap = SlotMap::new(&[vec![(0, 99), (101, 16383)]]).unwrap_err();
        assert_eq!(gap, 100);
    }
}
