//! The values of flags that are more than a number or a name: durations (`10s`, `500ms`),
//! listen addresses and compression levels, from the command line and from the TOML file
//! alike.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
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

/// A duration written `10s`, `1.5s`, `500ms`, `2m`, `1h`, or a bare number of seconds; in
/// TOML, a string or an integer. Every command's durations read this way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span(pub(crate) Duration);

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: expected e.g. 10s, 1.5s, 500ms, 2m"))?;
        let seconds = match unit.trim() {
            "" | "s" => number,
            "ms" => number / 1e3,
            "m" | "min" => number * 60.0,
            "h" => number * 3600.0,
            other => {
                return Err(format!(
                    "invalid duration unit {other:?} in {s:?}: use ms, s, m or h"
                ));
            }
        };
        Duration::try_from_secs_f64(seconds)
            .map(Self)
            .map_err(|_| format!("invalid duration {s:?}: too long"))
    }
}

/// A [`Span`] for a clap `value_parser`.
pub(crate) fn parse_span(s: &str) -> Result<Duration, String> {
    s.parse::<Span>().map(|span| span.0)
}

/// Where `serve` listens: `HOST:PORT` (a name is resolved, `localhost` to loopback),
/// `:PORT` (every interface) or `PORT` (loopback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Listen(pub(crate) SocketAddr);

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("invalid port {p:?} in {s:?}: expected 0 to 65535"))
        };
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self(addr));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
            return Ok(Self(SocketAddr::from(([127, 0, 0, 1], port(s)?))));
        }
        if let Some(p) = s.strip_prefix(':') {
            return Ok(Self(SocketAddr::from(([0, 0, 0, 0], port(p)?))));
        }
        let Some((host, p)) = s.rsplit_once(':') else {
            return Err(format!(
                "invalid address {s:?}: expected HOST:PORT, :PORT or PORT (e.g. 127.0.0.1:8080)"
            ));
        };
        let port = port(p)?;
        let mut addrs = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
        addrs
            .next()
            .map(Self)
            .ok_or_else(|| format!("{host:?} has no address"))
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
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
    fn listen_addresses_take_a_host_a_bare_port_or_a_port_alone() {
        let addr = |s: &str| s.parse::<Listen>().map(|l| l.0.to_string());
        assert_eq!(addr("127.0.0.1:9000"), Ok("127.0.0.1:9000".into()));
        assert_eq!(addr("[::1]:9000"), Ok("[::1]:9000".into()));
        assert_eq!(addr("9000"), Ok("127.0.0.1:9000".into()));
        assert_eq!(addr(":9000"), Ok("0.0.0.0:9000".into()));
        let local = addr("localhost:9000").unwrap();
        assert!(
            local == "127.0.0.1:9000" || local == "[::1]:9000",
            "{local}"
        );
        for bad in ["nowhere", "99999", ":x", "127.0.0.1:", "localhost:99999"] {
            assert!(bad.parse::<Listen>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        for (text, expected) in [
            ("10", Duration::from_secs(10)),
            ("10s", Duration::from_secs(10)),
            ("250ms", Duration::from_millis(250)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("1.5", Duration::from_millis(1500)),
            ("0.5m", Duration::from_secs(30)),
        ] {
            assert_eq!(text.parse::<Span>(), Ok(Span(expected)), "{text}");
        }
        for bad in ["ten", "5d", "-1s", "1..5s", "", "s", "1e999"] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }
}
