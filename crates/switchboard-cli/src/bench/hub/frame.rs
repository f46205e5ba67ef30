//! What a hub-mode subscriber reads of a frame: its type, channel and offset, and for a
//! publication of this run the stamp in its data (`{"p":PUBLISHER,"s":SEQUENCE,"t":SENT_US}`).
//!
//! The load generator reads every delivery of the run on one core, so what it spends per
//! frame caps what it can measure. A `message` frame in the shape the hub writes it (its
//! members in `switchboard_hub::protocol`'s order, no whitespace, no escapes in what is read,
//! an object as data) is read by [`read`] in one pass over its bytes, skipping what it does
//! not need (`time`, `from`, the data's other members) without parsing it. Any other frame, or
//! a `message` the scan is unsure of (another order, an escape, a duplicate, a number that is
//! not a plain `u64`), is parsed in full by serde_json: both ways give the same values for
//! valid JSON. The scan does not validate what it skips: the hub's frames are serde_json's
//! output.

use std::borrow::Cow;

use serde::Deserialize;

/// What a subscriber reads of a frame.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Frame<'a> {
    /// The frame's `type`.
    pub(super) kind: Cow<'a, str>,
    /// Empty when the frame has none.
    pub(super) channel: Cow<'a, str>,
    /// 0 when the frame has none.
    pub(super) offset: u64,
    /// A `message` that carries a publication of this run: its stamp.
    pub(super) stamp: Option<Stamped>,
    /// An `error`'s reason.
    pub(super) message: Option<Cow<'a, str>>,
    /// Whether the scan read it, rather than the full parse.
    pub(super) scanned: bool,
}

/// What a publication of this run carries.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub(super) struct Stamped {
    pub(super) p: usize,
    pub(super) s: u64,
    pub(super) t: u64,
}

/// Reads `text`: by the scan when it is a `message` of the hub's shape, else by the full
/// parse.
///
/// # Errors
///
/// When `text` is not a JSON object with a string `type`.
pub(super) fn read(text: &str) -> Result<Frame<'_>, serde_json::Error> {
    if let Some(frame) = scan(text) {
        return Ok(frame);
    }
    let full: Full<'_> = serde_json::from_str(text)?;
    Ok(Frame {
        stamp: full.data.and_then(|d| serde_json::from_str(d.get()).ok()),
        kind: full.kind,
        channel: full.channel.unwrap_or_default(),
        offset: full.offset,
        message: full.message,
        scanned: false,
    })
}

/// The full parse's view of a frame.
#[derive(Deserialize)]
struct Full<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(default)]
    offset: u64,
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// A `message` frame in the hub's shape, read without parsing what it does not need; `None`
/// when `text` is not one.
fn scan(text: &str) -> Option<Frame<'_>> {
    // The members in the order serde writes `Reply::Message` (`switchboard_hub::protocol`):
    // the envelope, then the publication's.
    let rest = text.strip_prefix(r#"{"type":"message","channel":""#)?;
    let (channel, rest) = plain_string(rest)?;
    let (offset, rest) = number(rest.strip_prefix(r#","offset":"#)?)?;
    let (_time, rest) = number(rest.strip_prefix(r#","time":"#)?)?;
    let rest = rest.strip_prefix(r#","from":"#)?;
    if !rest.starts_with('{') {
        return None;
    }
    let from = skip_nested(rest.as_bytes(), 0)?;
    // `data` is the last member: the rest up to the closing brace is its value.
    let data = rest[from..]
        .strip_prefix(r#","data":"#)?
        .strip_suffix('}')?;
    // Other data (a string, an array serde would read as a stamp too) goes to the full parse.
    let stamp = stamp(data.starts_with('{').then_some(data)?)?;
    Some(Frame {
        kind: Cow::Borrowed("message"),
        channel: Cow::Borrowed(channel),
        offset,
        stamp,
        message: None,
        scanned: true,
    })
}

/// The string that `text` starts with, after its opening quote, when it has no escape and no
/// control character; and what follows its closing quote.
fn plain_string(text: &str) -> Option<(&str, &str)> {
    let end = text
        .bytes()
        .position(|b| b == b'"' || b == b'\\' || b < 0x20)?;
    (text.as_bytes()[end] == b'"').then(|| (&text[..end], &text[end + 1..]))
}

/// The `u64` that `text` starts with, as JSON writes it (no sign, fraction, exponent or leading
/// zero), and what follows it.
fn number(text: &str) -> Option<(u64, &str)> {
    let bytes = text.as_bytes();
    let end = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len());
    if end == 0
        || (end > 1 && bytes[0] == b'0')
        || matches!(bytes.get(end), Some(b'.' | b'e' | b'E'))
    {
        return None;
    }
    let mut n = 0u64;
    for &digit in &bytes[..end] {
        n = n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
    }
    Some((n, &text[end..]))
}

/// The stamp in a publication's data (`Some(None)`: none there, as the full parse would find
/// none); `None` when the scan cannot tell.
fn stamp(data: &str) -> Option<Option<Stamped>> {
    if let Some(stamp) = own(data) {
        return Some(Some(stamp));
    }
    let (mut p, mut s, mut t) = (None, None, None);
    for member in Members::of(data)? {
        let (key, value) = member?;
        let slot = match key {
            "p" => &mut p,
            "s" => &mut s,
            "t" => &mut t,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    // Missing or not a `u64`: no stamp, as the full parse would say.
    Some(match (p, s, t) {
        (Some(Value::Num(p)), Some(Value::Num(s)), Some(Value::Num(t))) => {
            usize::try_from(p).ok().map(|p| Stamped { p, s, t })
        }
        _ => None,
    })
}

/// The stamp of data exactly as this run's publishers write it ([`data`](super::flow::data),
/// its keys in serde_json's order): four members, read in order.
fn own(data: &str) -> Option<Stamped> {
    let (p, rest) = number(data.strip_prefix(r#"{"p":"#)?)?;
    let (_pad, rest) = plain_string(rest.strip_prefix(r#","pad":""#)?)?;
    let (s, rest) = number(rest.strip_prefix(r#","s":"#)?)?;
    let (t, rest) = number(rest.strip_prefix(r#","t":"#)?)?;
    (rest == "}").then_some(Stamped {
        p: usize::try_from(p).ok()?,
        s,
        t,
    })
}

/// A member's value, as far as the scan reads it.
#[derive(Clone, Copy, Debug)]
enum Value {
    /// A number that is a `u64`.
    Num(u64),
    /// A string, object, array or literal, skipped.
    Other,
}

/// The members of a JSON object without whitespace, in order. An item is `None` where the
/// scan gives up: an escape in a key or a string value, a number that is not a plain `u64`, or
/// text that is not such an object. Nested objects and arrays are skipped, not checked.
struct Members<'a> {
    text: &'a str,
    at: usize,
    done: bool,
}

impl<'a> Members<'a> {
    fn of(text: &'a str) -> Option<Self> {
        (text.len() >= 2 && text.starts_with('{') && text.ends_with('}')).then_some(Self {
            text,
            at: 1,
            done: text == "{}",
        })
    }

    fn member(&mut self) -> Option<(&'a str, Value)> {
        let bytes = self.text.as_bytes();
        let key = self.string()?;
        if bytes.get(self.at) != Some(&b':') {
            return None;
        }
        self.at += 1;
        let start = self.at;
        let value = match *bytes.get(start)? {
            b'"' => {
                self.string()?;
                Value::Other
            }
            b'0'..=b'9' => {
                let (n, rest) = number(&self.text[start..])?;
                self.at = self.text.len() - rest.len();
                Value::Num(n)
            }
            b'{' | b'[' => {
                self.at = skip_nested(bytes, start)?;
                Value::Other
            }
            _ => {
                let end = start
                    + bytes[start..]
                        .iter()
                        .position(|&b| b == b',' || b == b'}')?;
                if !matches!(&self.text[start..end], "true" | "false" | "null") {
                    return None; // a negative or fractional number, or not JSON
                }
                self.at = end;
                Value::Other
            }
        };
        match bytes.get(self.at) {
            Some(b',') => self.at += 1,
            Some(b'}') if self.at + 1 == bytes.len() => self.done = true,
            _ => return None,
        }
        Some((key, value))
    }

    /// The string at `at` (its opening quote), when it has no escape and no control
    /// character; moves past its closing quote.
    fn string(&mut self) -> Option<&'a str> {
        let (string, rest) = plain_string(self.text[self.at..].strip_prefix('"')?)?;
        self.at = self.text.len() - rest.len();
        Some(string)
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = Option<(&'a str, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let member = self.member();
        // Once the scan gives up, there is nothing more to read.
        self.done |= member.is_none();
        Some(member)
    }
}

/// Past the object or array that opens at `start`: the index after its closing bracket.
fn skip_nested(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'"' => {
                // To the closing quote: a backslash escapes the byte after it.
                i += 1;
                while *bytes.get(i)? != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::flow::data;

    /// A `message` frame as `serve`'s hub writes it (captured from one), with `data` as this
    /// run's publishers send it.
    fn hub_frame(channel: &str, offset: u64, data: &str) -> String {
        format!(
            r#"{{"type":"message","channel":"{channel}","offset":{offset},"time":1796623086113,"from":{{"user":"bench-pub","conn":"53f808581"}},"data":{data}}}"#
        )
    }

    /// Both ways of reading `text`, the scan's first.
    fn both(text: &str) -> (Option<Frame<'_>>, Frame<'_>) {
        let full: Full<'_> = serde_json::from_str(text).unwrap();
        let full = Frame {
            stamp: full.data.and_then(|d| serde_json::from_str(d.get()).ok()),
            kind: full.kind,
            channel: full.channel.unwrap_or_default(),
            offset: full.offset,
            message: full.message,
            scanned: true,
        };
        (scan(text), full)
    }

    #[test]
    fn the_scan_reads_what_the_full_parse_does_from_the_hubs_message() {
        let stamped = data(3, 1234, 567_890, "xxxxxxxxxxxxxxxx").to_string();
        let text = hub_frame("bench", 99, &stamped);
        let (scanned, full) = both(&text);
        assert_eq!(scanned.as_ref(), Some(&full));
        let stamp = Stamped {
            p: 3,
            s: 1234,
            t: 567_890,
        };
        assert_eq!(full.stamp, Some(stamp));
        assert_eq!(
            own(&stamped),
            Some(stamp),
            "{stamped}: not in the order read first"
        );
        let frame = read(&text).unwrap();
        assert!(frame.scanned);
        assert_eq!((&*frame.channel, frame.offset), ("bench", 99));
    }

    #[test]
    fn the_scan_and_the_full_parse_agree_whatever_the_data_and_sender() {
        let stamp = Some(Stamped { p: 1, s: 2, t: 3 });
        for (data, expected) in [
            (r#"{"t":3,"s":2,"p":1}"#, stamp),
            (
                r#"{"p":1,"s":2,"t":3,"more":{"in":["a",{"b":"}\"]"}]},"ok":true}"#,
                stamp,
            ),
            (r#"{"hello":"world"}"#, None),
            (r#"{"p":1,"s":2}"#, None),
            (r#"{"p":"1","s":2,"t":3}"#, None),
            (r#"{"p":[1],"s":{"t":3},"t":null}"#, None),
            ("{}", None),
        ] {
            let text = hub_frame("c", 1, data);
            let (scanned, full) = both(&text);
            assert_eq!(scanned.as_ref(), Some(&full), "{data}");
            assert_eq!(full.stamp, expected, "{data}");
        }
        // A sender with more to say (a verified user, the connect hook's info) is skipped too.
        let text = hub_frame("c", 1, r#"{"p":1,"s":2,"t":3}"#).replace(
            r#""conn":"53f808581"}"#,
            r#""conn":"53f808581","authenticated":true,"info":{"data":{"p":9},"x":"\"}"}}"#,
        );
        let (scanned, full) = both(&text);
        assert_eq!(scanned.as_ref(), Some(&full));
        assert_eq!(full.stamp, stamp);
    }

    #[test]
    fn what_the_scan_is_unsure_of_goes_to_the_full_parse() {
        let stamped = r#"{"p":0,"s":1,"t":2}"#;
        for text in [
            // An escape in the channel, a duplicate offset, an offset past u64, one with a
            // leading zero, a negative or fractional number in the stamp, whitespace.
            hub_frame(r"a\u0062", 1, stamped),
            hub_frame("c", 1, stamped).replace(r#""time""#, r#""offset":2,"time""#),
            hub_frame("c", 1, stamped).replace(":1,", ":18446744073709551616,"),
            hub_frame("c", 1, stamped).replace(":1,", ":01,"),
            hub_frame("c", 1, r#"{"p":0,"s":-1,"t":2}"#),
            hub_frame("c", 1, r#"{"p":0,"s":1.5,"t":2}"#),
            hub_frame("c", 1, stamped).replace(r#""channel":"#, r#""channel": "#),
            // Members in another order; data that is no object (serde may read an array as a
            // stamp); an escape in the data's strings.
            hub_frame("c", 1, stamped).replace(
                r#""offset":1,"time":1796623086113"#,
                r#""time":1796623086113,"offset":1"#,
            ),
            hub_frame("c", 1, "[0,1,2]"),
            hub_frame("c", 1, r#""text""#),
            hub_frame("c", 1, r#"{"p":0,"s":1,"t":2,"q":"\""}"#),
        ] {
            assert!(scan(&text).is_none(), "{text}");
        }
        // An escape in the channel: read by the full parse, which unescapes it.
        let text = hub_frame(r"a\u0062", 5, stamped);
        let frame = read(&text).unwrap();
        assert!(!frame.scanned);
        assert_eq!((&*frame.channel, frame.offset), ("ab", 5));
        assert_eq!(frame.stamp, Some(Stamped { p: 0, s: 1, t: 2 }));
        let text = hub_frame("c", 5, "[0,1,2]");
        assert_eq!(
            read(&text).unwrap().stamp,
            Some(Stamped { p: 0, s: 1, t: 2 })
        );
    }

    #[test]
    fn other_frames_are_parsed_in_full_and_non_frames_are_errors() {
        let frame = read(r#"{"type":"subscribed","id":0,"channel":"c","offset":7}"#).unwrap();
        assert_eq!(
            (&*frame.kind, &*frame.channel, frame.offset),
            ("subscribed", "c", 7)
        );
        assert!(!frame.scanned);
        let frame = read(r#"{"type":"error","code":"bad_request","message":"no"}"#).unwrap();
        assert_eq!(
            (&*frame.kind, frame.message.as_deref()),
            ("error", Some("no"))
        );
        for text in [
            "",
            "{",
            "[]",
            r#"{"channel":"c"}"#,
            r#"{"type":"message""#,
            "{}x",
        ] {
            assert!(read(text).is_err(), "{text}");
        }
    }
}
