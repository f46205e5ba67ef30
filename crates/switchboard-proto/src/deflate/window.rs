//! LZ77 window sizes (RFC 7692 §7.1.2): the range a peer may name, how a parameter's value is
//! written, and the window zlib is given.
//!
//! Invariant: windows of 9 to 15 bits are used as negotiated. zlib cannot deflate with an 8-bit
//! window, so a limit of 8 is met by deflating with a 9-bit window: zlib never looks back
//! further than the window size minus 262 bytes, 250 for a 512-byte window, so every
//! back-reference fits in the 256-byte window the peer asked for (tested in `codec` with an
//! 8-bit inflater).

/// Largest and default LZ77 window, as the base-2 logarithm of its size (§7.1.2).
pub(super) const MAX_WINDOW_BITS: u8 = 15;
/// Smallest window a peer may ask for (§7.1.2).
const MIN_WINDOW_BITS: u8 = 8;
/// Smallest window zlib's raw deflate takes.
const MIN_ZLIB_BITS: u8 = 9;

/// A window size parameter: "a decimal integer value without leading zeroes between 8 to 15,
/// inclusive" (§7.1.2.1).
pub(super) fn parse_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.is_empty() || value.len() > 2 {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
        .contains(&bits)
        .then_some(bits)
}

/// A configured window, brought into the range a peer may name.
pub(super) fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// The window zlib is given for a negotiated one; see the module docs for 8.
pub(super) fn zlib_bits(bits: u8) -> u8 {
    bits.clamp(MIN_ZLIB_BITS, MAX_WINDOW_BITS)
}
