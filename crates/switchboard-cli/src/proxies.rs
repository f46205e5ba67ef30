//! `serve`'s proxies to the backend, as flags: `--subscribe-proxy`/`--publish-proxy` routes
//! (`PATTERN=URL`, as `--rule` writes a pattern) and `--proxy-failure`.

use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use serde::Deserialize;
use switchboard_hub::ProxyEndpoint;

/// How long a proxy call may take when `--proxy-timeout` does not say.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// Channels matching `pattern` are asked about at `url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) pattern: String,
    pub(crate) url: String,
}

impl FromStr for Route {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some((pattern, url)) = s.split_once('=') else {
            return Err(format!("{s:?}: expected PATTERN=URL"));
        };
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(format!("{s:?}: the pattern is empty"));
        }
        ProxyEndpoint::new(url.trim(), DEFAULT_TIMEOUT).map_err(|e| e.to_string())?;
        Ok(Self {
            pattern: pattern.to_owned(),
            url: url.trim().to_owned(),
        })
    }
}

impl<'de> Deserialize<'de> for Route {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `--proxy-failure`: what a proxy call that fails or times out does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Failure {
    /// Refuse the client (a connect closes with 1013; a subscribe or publish is forbidden).
    Refuse,
    /// Let the client through, as if no proxy were configured.
    Allow,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_pattern_and_an_http_url() {
        let route: Route = "chat:*=http://127.0.0.1:9000/publish".parse().unwrap();
        assert_eq!(route.pattern, "chat:*");
        assert_eq!(route.url, "http://127.0.0.1:9000/publish");
        assert!("chat:*".parse::<Route>().is_err());
        assert!("=http://127.0.0.1/x".parse::<Route>().is_err());
        assert!("chat:*=ftp://127.0.0.1/x".parse::<Route>().is_err());
    }
}
