//! The syntax of the header fields the handshake reads: tokens (RFC 9110 §5.6.2),
//! comma-separated lists (RFC 9110 §5.6.1) and the extension list of
//! `Sec-WebSocket-Extensions` (RFC 6455 §9.1), whose parameter values may be quoted strings.
//!
//! One token rule serves every header: a subprotocol a client offers, the names of extensions
//! and of their parameters. What the values mean is for the handshake and permessage-deflate to
//! decide; this module only says what is well formed.
//!
//! Invariants: parsing never panics and never allocates beyond the elements it returns; a value
//! that is not UTF-8 is never a valid extension list.

use http::header::{HeaderMap, HeaderName};

/// Whether `c` is a `tchar` (RFC 9110 §5.6.2): the visible ASCII characters other than the
/// delimiters `"(),/:;<=>?@[\]{}`.
pub(crate) fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Whether `s` is a `token` (RFC 9110 §5.6.2): one or more `tchar`s.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Whether any `name` header holds `token` in its comma-separated list, ignoring ASCII case
/// (used by `Connection` and `Upgrade`).
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    list_items(headers, name).any(|item| item.eq_ignore_ascii_case(token.as_bytes()))
}

/// The trimmed, non-empty items of every `name` header's comma-separated list, in order
/// (RFC 9110 §5.6.1: empty elements are skipped). For lists of tokens, which hold no quoted
/// commas.
///
/// Works on bytes, so a value with obs-text (not UTF-8) is still split rather than skipped.
pub(crate) fn list_items<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
}

/// One element of an extension list: a name and its parameters, values unquoted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Extension<'a> {
    pub(crate) name: &'a str,
    pub(crate) params: Vec<(&'a str, Option<String>)>,
}

/// The value of a header that is not a valid extension list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Parses a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1):
/// `extension-list = 1#extension`, `extension = token *( ";" param )`,
/// `param = token [ "=" (token | quoted-string) ]`, with optional whitespace around the
/// separators. Empty list elements are skipped (RFC 9110 §5.6.1).
pub(crate) fn parse_extensions(value: &[u8]) -> Result<Vec<Extension<'_>>, Malformed> {
    let text = std::str::from_utf8(value).map_err(|_| Malformed)?;
    let mut parser = Parser { text, at: 0 };
    let mut extensions = Vec::new();
    loop {
        parser.skip_space();
        match parser.peek() {
            None => return Ok(extensions),
            Some(b',') => {
                parser.at += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = parser.token()?;
        let mut params = Vec::new();
        loop {
            parser.skip_space();
            match parser.peek() {
                None | Some(b',') => break,
                Some(b';') => parser.at += 1,
                Some(_) => return Err(Malformed),
            }
            parser.skip_space();
            let param = parser.token()?;
            parser.skip_space();
            let value = if parser.peek() == Some(b'=') {
                parser.at += 1;
                parser.skip_space();
                let value = if parser.peek() == Some(b'"') {
                    parser.quoted()?
                } else {
                    parser.token()?.to_owned()
                };
                Some(value)
            } else {
                None
            };
            params.push((param, value));
        }
        extensions.push(Extension { name, params });
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> Result<&'a str, Malformed> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        if self.at == start {
            return Err(Malformed);
        }
        Ok(&self.text[start..self.at])
    }

    /// A quoted-string (RFC 9110 §5.6.4), unquoted. RFC 6455 §9.1: its value "MUST conform to
    /// the 'token' ABNF" once unquoted, which callers check as they interpret it.
    fn quoted(&mut self) -> Result<String, Malformed> {
        self.at += 1; // the opening quote
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(Malformed),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let c = self.peek().ok_or(Malformed)?;
                    out.push(char::from(c));
                    self.at += 1;
                }
                Some(c) if c.is_ascii() && c != 0x7f && (c >= 0x20 || c == b'\t') => {
                    out.push(char::from(c));
                    self.at += 1;
                }
                Some(_) => return Err(Malformed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn tokens_are_visible_ascii_without_delimiters() {
        for good in ["chat", "v2.json", "!#$%&'*+-.^_`|~", "A9"] {
            assert!(is_token(good), "{good}");
        }
        for bad in [
            "", "a b", "a,b", "a;b", "\"a\"", "a/b", "a=b", "{a}", "é", "a\tb",
        ] {
            assert!(!is_token(bad), "{bad}");
        }
        // tchar is the visible ASCII range minus the delimiters, nothing else.
        let delimiters = b"\"(),/:;<=>?@[\\]{}";
        for c in 0..=255u8 {
            let visible = (0x21..=0x7e).contains(&c);
            assert_eq!(is_tchar(c), visible && !delimiters.contains(&c), "{c:#x}");
        }
    }

    #[test]
    fn list_items_split_commas_across_repeated_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            "connection",
            HeaderValue::from_static("keep-alive, , Upgrade"),
        );
        headers.append("connection", HeaderValue::from_static("close"));
        let items: Vec<&[u8]> = list_items(&headers, &http::header::CONNECTION).collect();
        assert_eq!(items, [&b"keep-alive"[..], b"Upgrade", b"close"]);
        assert!(has_token(&headers, &http::header::CONNECTION, "upgrade"));
        assert!(!has_token(&headers, &http::header::CONNECTION, "upgrad"));
    }

    #[test]
    fn extension_lists_parse_names_params_and_quoted_values() {
        let parsed = parse_extensions(b" , foo ;a ; b = 1,bar;c=\"x\\\"y, z\"\t, ,baz").unwrap();
        assert_eq!(
            parsed,
            [
                Extension {
                    name: "foo",
                    params: vec![("a", None), ("b", Some("1".into()))],
                },
                Extension {
                    name: "bar",
                    params: vec![("c", Some("x\"y, z".into()))],
                },
                Extension {
                    name: "baz",
                    params: vec![],
                },
            ]
        );
        assert_eq!(parse_extensions(b""), Ok(vec![]));
    }

    #[test]
    fn malformed_extension_lists_are_refused() {
        for bad in [
            &b"foo; a=\"unterminated"[..],
            b"foo bar",
            b"foo; =1",
            b"foo;",
            b"foo; a=",
            b"f\xc3\xa9",
            b"foo; a=\"\x01\"",
            b"foo; a=\"x\\",
        ] {
            assert_eq!(parse_extensions(bad), Err(Malformed), "{bad:?}");
        }
    }
}
