//! Incremental UTF-8 validation (RFC 6455 §5.6, §8.1).
//!
//! A text message may arrive in many frames, and a frame in many reads. RFC 6455 §8.1 says that
//! when an endpoint finds invalid UTF-8 it MUST fail the connection, and failing as soon as the
//! invalid byte arrives (not when the message completes) lets a server refuse a bad stream without
//! buffering it. [`Utf8Validator`] is fed the payload in arbitrary pieces and reports an error at
//! the first piece that cannot be the prefix of valid UTF-8; a code point split across pieces is
//! carried over in at most 3 bytes of state.

/// The error returned when a byte sequence is not (the prefix of) valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid utf-8")]
pub struct Utf8Error;

/// Validates UTF-8 fed in pieces; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// The bytes of a code point that started in an earlier piece and is not complete yet.
    partial: [u8; 4],
    /// How many bytes of `partial` are in use (0 to 3).
    partial_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece of the text.
    ///
    /// # Errors
    ///
    /// [`Utf8Error`] when the text so far cannot be the prefix of valid UTF-8. After an error the
    /// validator's state is unspecified; call [`reset`](Self::reset) before reusing it.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), Utf8Error> {
        if self.partial_len > 0 {
            let have = usize::from(self.partial_len);
            let need = sequence_len(self.partial[0]) - have;
            let take = need.min(input.len());
            self.partial[have..have + take].copy_from_slice(&input[..take]);
            let len = have + take;
            match simdutf8::compat::from_utf8(&self.partial[..len]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; the piece was shorter than the code point.
                    self.partial_len = len as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error),
            }
            input = &input[take..];
        }
        match simdutf8::compat::from_utf8(input) {
            Ok(_) => Ok(()),
            // `error_len() == None` means the input ended inside a code point whose bytes so far
            // are valid: keep them for the next piece.
            Err(e) if e.error_len().is_none() => {
                let tail = &input[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }

    /// Checks that the text ends on a code point boundary, and resets the validator.
    ///
    /// # Errors
    ///
    /// [`Utf8Error`] when the text ended inside a code point.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.partial_len == 0;
        self.reset();
        if complete { Ok(()) } else { Err(Utf8Error) }
    }

    /// Forgets any partial code point, ready for a new text.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }
}

/// The length of the code point a lead byte starts; only called on the lead byte of a valid
/// prefix, so continuation bytes and invalid leads never reach it (they map to 1 for safety).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn validate_in_pieces(data: &[u8], cuts: &[usize]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts {
            let cut = cut.clamp(start, data.len());
            v.feed(&data[start..cut])?;
            start = cut;
        }
        v.feed(&data[start..])?;
        v.finish()
    }

    #[test]
    fn accepts_text_split_inside_code_points() {
        let text = "κόσμε €𝄞 hello".as_bytes();
        for a in 0..text.len() {
            for b in a..text.len() {
                assert_eq!(validate_in_pieces(text, &[a, b]), Ok(()), "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn fails_at_the_first_invalid_byte_not_at_the_end() {
        // Autobahn 6.4.1: "κόσμε" then 0xf4 0x90 (beyond U+10FFFF) then more text.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(v.feed(&[0xf4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(Utf8Error));
    }

    #[test]
    fn truncated_code_point_at_the_end_is_invalid() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xe2, 0x82]), Ok(()));
        assert_eq!(v.finish(), Err(Utf8Error));
    }

    #[test]
    fn rejects_surrogates_and_overlongs() {
        for bad in [
            &[0xed, 0xa0, 0x80][..],
            &[0xc0, 0xaf],
            &[0xe0, 0x80, 0xaf],
            &[0xff],
        ] {
            assert_eq!(validate_in_pieces(bad, &[]), Err(Utf8Error), "{bad:x?}");
            assert_eq!(
                validate_in_pieces(bad, &[1]),
                Err(Utf8Error),
                "{bad:x?} split"
            );
        }
    }

    proptest! {
        #[test]
        fn agrees_with_std_at_any_split(
            data in proptest::collection::vec(
                prop_oneof![any::<u8>(), 0x80u8..0xc0, 0xe0u8..0xf5], 0..40),
            cuts in proptest::collection::vec(0usize..40, 0..4),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let expected = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(validate_in_pieces(&data, &cuts).is_ok(), expected);
        }

        #[test]
        fn accepts_any_valid_string_at_any_split(s in "\\PC{0,20}", cut in 0usize..80) {
            prop_assert_eq!(validate_in_pieces(s.as_bytes(), &[cut]), Ok(()));
        }
    }
}
