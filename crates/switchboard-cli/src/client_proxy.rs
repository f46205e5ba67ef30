//! `--proxy URL` and `--no-proxy`, shared by the client commands (`connect`, `bench`): which
//! proxy a connection goes through. The flag wins; without it the environment decides, read
//! as curl reads it ([`switchboard::Proxy::from_env`]).

use std::ffi::OsStr;

use clap::Args;
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use switchboard::{Proxy, ProxyError};

/// The proxy flags.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ProxyArgs {
    /// Connect through this proxy: http://[USER:PASS@]HOST[:PORT] (HTTP CONNECT),
    /// socks5://... (SOCKS5, names resolved here) or socks5h://... (resolved by the proxy);
    /// the port defaults to 1080. Without it: wss_proxy, https_proxy or HTTPS_PROXY for wss://,
    /// ws_proxy or http_proxy (not HTTP_PROXY) for ws://, then all_proxy or ALL_PROXY, except
    /// for hosts in no_proxy or NO_PROXY, as curl reads them
    #[arg(long, value_name = "URL", value_parser = ProxyParser, conflicts_with = "no_proxy")]
    pub(crate) proxy: Option<Proxy>,
    /// Connect directly, whatever the proxy environment variables say
    #[arg(long)]
    pub(crate) no_proxy: bool,
}

impl ProxyArgs {
    /// The proxy for `url`: `--proxy`, or the environment's unless `--no-proxy`.
    pub(crate) fn for_url(&self, url: &str) -> anyhow::Result<Option<Proxy>> {
        if let Some(proxy) = &self.proxy {
            return Ok(Some(proxy.clone()));
        }
        if self.no_proxy {
            return Ok(None);
        }
        Ok(Proxy::from_env(url)?)
    }
}

/// Parses `--proxy` without quoting the value back, as clap's own errors do: it may hold a
/// password.
#[derive(Clone)]
struct ProxyParser;

impl TypedValueParser for ProxyParser {
    type Value = Proxy;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Proxy, clap::Error> {
        let invalid =
            |kind, why: String| clap::Error::raw(kind, format!("--proxy: {why}\n")).with_cmd(cmd);
        let text = value
            .to_str()
            .ok_or_else(|| invalid(ErrorKind::InvalidUtf8, "the URL is not UTF-8".into()))?;
        text.parse()
            .map_err(|e: ProxyError| invalid(ErrorKind::ValueValidation, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        proxy: ProxyArgs,
    }

    #[test]
    fn the_flag_is_parsed_and_a_bad_one_is_refused_without_its_password() {
        let cli = Cli::try_parse_from(["x", "--proxy", "socks5h://ann:s3cret@127.0.0.1"]).unwrap();
        let proxy = cli.proxy.for_url("ws://example.com/").unwrap().unwrap();
        assert_eq!(proxy.to_string(), "socks5h://ann:***@127.0.0.1:1080");
        let err = Cli::try_parse_from(["x", "--proxy", "ftp://ann:s3cret@h"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid proxy url"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        assert!(Cli::try_parse_from(["x", "--proxy", "h:1", "--no-proxy"]).is_err());
    }
}
