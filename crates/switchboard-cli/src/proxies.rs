//! `serve`'s proxies to the backend: `--subscribe-proxy`/`--publish-proxy` routes
//! (`PATTERN=URL`, as `--rule` writes a pattern), `--proxy-failure`, and the
//! [`HttpProxy`] they make.

use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use serde::Deserialize;
use switchboard_hub::{HttpProxy, OnFailure, ProxyEndpoint};

use crate::config::ServeOptions;

/// How long a proxy call may take when `--proxy-timeout` does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// Channels matching `pattern` are asked about at `url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pattern: String,
    url: String,
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

/// The proxies the options configure; `None` when they configure none.
pub(crate) fn http_proxy(options: &ServeOptions) -> anyhow::Result<Option<HttpProxy>> {
    let subscribe = options.subscribe_proxies.as_deref().unwrap_or_default();
    let publish = options.publish_proxies.as_deref().unwrap_or_default();
    if options.connect_proxy.is_none() && subscribe.is_empty() && publish.is_empty() {
        return Ok(None);
    }
    let timeout = options.proxy_timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
    let endpoint = |url: &str| ProxyEndpoint::new(url, timeout);
    let mut proxy = HttpProxy::new().on_failure(match options.proxy_failure {
        Some(Failure::Allow) => OnFailure::Allow,
        Some(Failure::Refuse) | None => OnFailure::Refuse,
    });
    if let Some(url) = &options.connect_proxy {
        proxy = proxy.connect(endpoint(url)?);
    }
    for route in subscribe {
        proxy = proxy.subscribe(&*route.pattern, endpoint(&route.url)?);
    }
    for route in publish {
        proxy = proxy.publish(&*route.pattern, endpoint(&route.url)?);
    }
    Ok(Some(proxy))
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

    #[test]
    fn no_proxy_is_configured_unless_asked() {
        assert!(http_proxy(&ServeOptions::default()).unwrap().is_none());
        let options = ServeOptions::from_toml(
            r#"
            connect-proxy = "http://127.0.0.1:9000/connect"
            subscribe-proxies = ["secret:*=http://127.0.0.1:9000/subscribe"]
            proxy-timeout = "250ms"
            proxy-failure = "allow"
            "#,
        )
        .unwrap();
        assert_eq!(options.proxy_failure, Some(Failure::Allow));
        assert_eq!(
            options.proxy_timeout.map(|t| t.0),
            Some(Duration::from_millis(250))
        );
        assert!(http_proxy(&options).unwrap().is_some());
        assert!(
            ServeOptions::from_toml(r#"connect-proxy = "nope""#)
                .map_err(|e| e.to_string())
                .and_then(|o| http_proxy(&o).map_err(|e| e.to_string()))
                .is_err()
        );
    }
}
