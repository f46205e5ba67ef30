//! Received text made safe to show on a terminal.
//!
//! A message is the peer's bytes: shown raw, an escape sequence in it could recolour the screen,
//! move the cursor, retitle the window or hide text. Control characters are shown as escapes
//! instead (`\x1b`, `\r`, `\u{202e}`), so what a message holds is what the screen shows.
//! Newlines and tabs stay: they lay text out and cannot reach the terminal's state. A backslash
//! is kept as it is, so a JSON message reads as sent; `\x1b` on screen may thus be either the
//! escape character or those four characters.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character (C0 but newline and tab, DEL, C1) and every bidi
/// control written as an escape.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c) {
            escaped.push(c);
            continue;
        }
        // Writing to a String cannot fail.
        let _ = match c {
            '\r' => write!(escaped, "\\r"),
            c if (c as u32) < 0x100 => write!(escaped, "\\x{:02x}", c as u32),
            c => write!(escaped, "\\u{{{:x}}}", c as u32),
        };
    }
    Cow::Owned(escaped)
}

fn needs_escape(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        // Bidi embeddings, overrides and isolates reorder what follows them on screen
        // (CVE-2021-42574, "Trojan Source").
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        c => c.is_control(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_shown_as_is() {
        assert!(matches!(
            escape_controls("héllo {\"a\":\"\\n\"}\n\tx"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_controls("\x1b[31mred\x1b[0m"),
            "\\x1b[31mred\\x1b[0m"
        );
        assert_eq!(
            escape_controls("a\rb\x07\x7f\u{9b}"),
            "a\\rb\\x07\\x7f\\x9b"
        );
        assert_eq!(escape_controls("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(escape_controls("\0"), "\\x00");
    }
}
