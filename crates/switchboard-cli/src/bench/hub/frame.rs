//! What a hub-mode subscriber reads of a frame: its type, channel and offset, and for a
//! publication of this run the stamp in its data (`{"p":PUBLISHER,"s":SEQUENCE,"t":SENT_US}`).
//!
//! The load generator reads every delivery of the run on one core, so what it spends per
//! frame caps what it can measure. A `message` frame in the shape the hub writes it (its
//! members in `switchboard_hub::protocol`'s order, no whitespace, no escapes in what is read)
//! is read by [`read`] in one pass over its bytes, skipping the members it does not need
//! (`time`, `from`) without parsing them. Any other frame, or a `message` the scan is unsure
//! of (an escape, a duplicate member, a number that is not a plain `u64`), is parsed in full
//! by serde_json: both ways give the same values for valid JSON. The scan does not validate
//! what it skips: the hub's frames are serde_json's output.

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

/// A `message` frame read without parsing what it does not need; `None` when `text` is not
/// one in the hub's shape.
fn scan(text: &str) -> Option<Frame<'_>> {
    let (mut kind, mut channel, mut offset, mut data) = (None, None, None, None);
    for member in Members::of(text)? {
        let (key, value) = member?;
        let slot = match key {
            "type" => &mut kind,
            "channel" => &mut channel,
            "offset" => &mut offset,
            "data" => &mut data,
            // An error's reason: the full parse reads it.
            "message" => return None,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return None; // a duplicate: which one serde keeps is its business
        }
    }
    let (Some(Value::Str("message")), Some(Value::Str(channel))) = (kind, channel) else {
        return None;
    };
    let offset = match offset {
        Some(Value::Num(n)) => n,
        None => 0,
        Some(_) => return None,
    };
    let stamp = match data {
        Some(Value::Object(data)) => stamp(data)?,
        // serde reads a struct from an array too (`[p,s,t]`): the full parse decides.
        Some(Value::Other) => return None,
        Some(Value::Str(_) | Value::Num(_)) | None => None,
    };
    Some(Frame {
        kind: Cow::Borrowed("message"),
        channel: Cow::Borrowed(channel),
        offset,
        stamp,
        message: None,
        scanned: true,
    })
}

/// The stamp in a publication's data (`Some(None)`: none there, as the full parse would find
/// none); `None` when the scan cannot tell.
fn stamp(data: &str) -> Option<Option<Stamped>> {
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
    let number = |v: Option<Value<'_>>| match v {
        Some(Value::Num(n)) => Some(Some(n)),
        // Missing or of another type: no stamp, as the full parse would say.
        Some(Value::Str(_) | Value::Object(_)) | None => Some(None),
        Some(Value::Other) => None,
    };
    let (p, s, t) = (number(p)?, number(s)?, number(t)?);
    Some(match (p.and_then(|p| usize::try_from(p).ok()), s, t) {
        (Some(p), Some(s), Some(t)) => Some(Stamped { p, s, t }),
        _ => None,
    })
}

/// A member's value, as far as the scan reads it.
#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    /// A string without escapes: its text.
    Str(&'a str),
    /// A number that is a `u64`.
    Num(u64),
    /// An object: its JSON text, braces included.
    Object(&'a str),
    /// An array or literal, skipped.
    Other,
}

/// The members of a JSON object without whitespace, in order. An item is `None` where the
/// scan gives up: an escape in a key or a read string, a number that is not a plain `u64`, or
/// text that is not such an object. Arrays and literals are skipped, not checked.
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

    fn member(&mut self) -> Option<(&'a str, Value<'a>)> {
        let bytes = self.text.as_bytes();
        let key = self.string()?;
        if bytes.get(self.at) != Some(&b':') {
            return None;
        }
        self.at += 1;
        let start = self.at;
        let value = match *bytes.get(start)? {
            b'"' => Value::Str(self.string()?),
            b'0'..=b'9' => {
                let end = start
                    + bytes[start..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .unwrap_or(bytes.len() - start);
                let digits = &self.text[start..end];
                if digits.len() > 1 && digits.starts_with('0') {
                    return None;
                }
                self.at = end;
                Value::Num(digits.parse().ok()?)
            }
            b'{' => {
                self.at = skip_nested(bytes, start)?;
                Value::Object(&self.text[start..self.at])
            }
            b'[' => {
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
        let bytes = self.text.as_bytes();
        if bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let len = bytes[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        let end = start + len;
        if bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        Some(&self.text[start..end])
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = Option<(&'a str, Value<'a>)>;

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
        let frame = read(&text).unwrap();
        assert!(frame.scanned);
        assert_eq!((&*frame.channel, frame.offset), ("bench", 99));
    }

    #[test]
    fn data_that_is_no_stamp_is_read_as_none_either_way() {
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
            (r#""text""#, None),
            ("42", None),
            ("{}", None),
        ] {
            let text = hub_frame("c", 1, data);
            let (scanned, full) = both(&text);
            assert_eq!(scanned.as_ref(), Some(&full), "{data}");
            assert_eq!(full.stamp, expected, "{data}");
        }
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
            // Data that serde may read as a stamp in another way: an array.
            hub_frame("c", 1, "[0,1,2]"),
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
