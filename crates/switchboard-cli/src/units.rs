//! The values of `serve`'s flags that are more than a number or a name: durations (`10s`,
//! `500ms`) and compression levels, from the command line and from the TOML file alike.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// A zlib compression level, 0 to 9 (`--deflate-level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Level(pub(crate) u32);

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<u32>() {
            Ok(level) if level <= 9 => Ok(Self(level)),
            _ => Err(format!("invalid compression level {s:?}: expected 0 to 9")),
        }
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let level = u64::deserialize(deserializer)?;
        u32::try_from(level)
            .ok()
            .filter(|level| *level <= 9)
            .map(Self)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("compression level {level}: expected 0 to 9"))
            })
    }
}

/// A duration written `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds; in TOML, a
/// string or an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span(pub(crate) Duration);

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: expected e.g. 10s, 500ms, 2m"))?;
        let duration = match unit.trim() {
            "" | "s" => Duration::from_secs(number),
            "ms" => Duration::from_millis(number),
            "m" | "min" => Duration::from_secs(number * 60),
            "h" => Duration::from_secs(number * 3600),
            other => {
                return Err(format!(
                    "invalid duration unit {other:?} in {s:?}: use ms, s, m or h"
                ));
            }
        };
        Ok(Self(duration))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a duration such as \"10s\" or a number of seconds")
        })? {
            Raw::Seconds(s) => Ok(Self(Duration::from_secs(s))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        for (text, expected) in [
            ("10", Duration::from_secs(10)),
            ("10s", Duration::from_secs(10)),
            ("250ms", Duration::from_millis(250)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
        ] {
            assert_eq!(text.parse::<Span>(), Ok(Span(expected)), "{text}");
        }
        assert!("ten".parse::<Span>().is_err());
        assert!("5d".parse::<Span>().is_err());
    }
}
