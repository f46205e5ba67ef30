//! `-H/--header`, `-s/--subprotocol` and `--origin`, shared by the client commands (`connect`,
//! `bench`): what the opening handshake sends besides the URL, spelled as curl and wscat spell
//! it, so that a flag means the same in every command.
//!
//! `--origin URL` and `-H 'Origin: …'` both set the one `Origin` header; given both, the
//! command stops with an error (exit status 2, as for any bad argument) rather than pick one
//! silently.

use clap::Args;
use clap::error::ErrorKind;
use http::{HeaderName, HeaderValue, header};
use switchboard::ConnectOptions;

/// The handshake flags.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct HandshakeArgs {
    /// Add a request header (repeat for more), e.g. -H 'Authorization: Bearer abc'
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Offer a subprotocol (repeat for more, in order of preference)
    #[arg(short = 's', long = "subprotocol", value_name = "PROTOCOL")]
    pub(crate) subprotocols: Vec<String>,
    /// Send this Origin header, as a page of that origin would, e.g. --origin
    /// https://chat.example (-H 'Origin: …' says the same; give one of them)
    #[arg(long, value_name = "URL", value_parser = parse_origin)]
    pub(crate) origin: Option<HeaderValue>,
}

impl HandshakeArgs {
    /// Puts the headers, the origin and the subprotocols into `options`.
    ///
    /// Exits with status 2 when `--origin` and `-H 'Origin: …'` are both given.
    pub(crate) fn apply(&self, options: &mut ConnectOptions) {
        if let Err(e) = self.check() {
            e.exit();
        }
        for (name, value) in &self.headers {
            options.headers.append(name.clone(), value.clone());
        }
        if let Some(origin) = &self.origin {
            options.headers.insert(header::ORIGIN, origin.clone());
        }
        options.protocols.extend(self.subprotocols.iter().cloned());
    }

    /// Refuses `--origin` beside `-H 'Origin: …'`.
    fn check(&self) -> Result<(), clap::Error> {
        let header_origin = self.headers.iter().any(|(name, _)| name == header::ORIGIN);
        if self.origin.is_some() && header_origin {
            return Err(clap::Error::raw(
                ErrorKind::ArgumentConflict,
                "--origin and -H 'Origin: …' both set the Origin header; give one of them\n",
            ));
        }
        Ok(())
    }
}

/// `Name: value`, as curl's `-H` reads it.
pub(crate) fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', got {s:?}"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|e| format!("header name: {e}"))?;
    let value = HeaderValue::try_from(value.trim()).map_err(|e| format!("header value: {e}"))?;
    Ok((name, value))
}

/// An origin as browsers send it: `scheme://host[:port]`, or `null`.
fn parse_origin(s: &str) -> Result<HeaderValue, String> {
    let valid = s == "null"
        || s.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty() && !rest.is_empty() && !rest.contains('/')
        });
    if !valid {
        return Err(format!(
            "expected scheme://host[:port] (no path), e.g. https://chat.example; got {s:?}"
        ));
    }
    HeaderValue::try_from(s).map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        handshake: HandshakeArgs,
    }

    #[test]
    fn headers_parse_as_curl_reads_them() {
        let (name, value) = parse_header("X-Trace:  abc ").unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("x-trace", "abc"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn the_origin_header_and_subprotocols_go_into_the_options() {
        let cli = Cli::try_parse_from([
            "x",
            "--origin",
            "https://chat.example",
            "-H",
            "X-A: 1",
            "-s",
            "chat",
            "--subprotocol",
            "v2",
        ])
        .unwrap();
        let mut options = ConnectOptions::default();
        cli.handshake.apply(&mut options);
        assert_eq!(options.headers[header::ORIGIN], "https://chat.example");
        assert_eq!(options.headers["x-a"], "1");
        assert_eq!(options.protocols, ["chat", "v2"]);
    }

    #[test]
    fn an_origin_must_be_scheme_host_and_port() {
        for good in ["https://chat.example", "http://127.0.0.1:8080", "null"] {
            assert!(parse_origin(good).is_ok(), "{good}");
        }
        for bad in ["chat.example", "https://chat.example/page", "https://"] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origin_twice_is_a_conflict() {
        let cli = Cli::try_parse_from([
            "x",
            "--origin",
            "https://a.example",
            "-H",
            "origin: https://b.example",
        ])
        .unwrap();
        let err = cli.handshake.check().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }
}
