//! [`ProxyMetrics`]: how the HTTP proxies' calls ended, per proxy.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which proxy a call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Proxy {
    Connect,
    Subscribe,
    Publish,
}

impl Proxy {
    const ALL: [Self; 3] = [Self::Connect, Self::Subscribe, Self::Publish];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Subscribe => "subscribe",
            Self::Publish => "publish",
        }
    }
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The backend let the client through (rewritten publishes included).
    Allowed,
    /// The backend refused.
    Refused,
    /// No usable answer: the connection failed, a status other than 2xx, or JSON not as
    /// documented.
    Failed,
    /// No answer within the proxy's timeout.
    Timeout,
}

impl Outcome {
    const ALL: [Self; 4] = [Self::Allowed, Self::Refused, Self::Failed, Self::Timeout];

    fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
        }
    }
}

/// Counts of the HTTP proxies' calls, per proxy and outcome.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    counts: [[AtomicU64; 4]; 3],
}

impl ProxyMetrics {
    pub(super) fn count(&self, proxy: Proxy, outcome: Outcome) {
        self.counts[proxy as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many calls to `proxy` (`connect`, `subscribe` or `publish`) ended with `outcome`
    /// (`allowed`, `refused`, `failed` or `timeout`); 0 for names it does not know.
    pub fn get(&self, proxy: &str, outcome: &str) -> u64 {
        let p = Proxy::ALL.iter().position(|p| p.as_str() == proxy);
        let o = Outcome::ALL.iter().position(|o| o.as_str() == outcome);
        match (p, o) {
            (Some(p), Some(o)) => self.counts[p][o].load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Writes the counts as Prometheus text: `switchboard_proxy_requests_total{proxy,outcome}`.
    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP switchboard_proxy_requests_total Calls to the backend's proxies, by outcome.\n\
             # TYPE switchboard_proxy_requests_total counter\n",
        );
        for proxy in Proxy::ALL {
            for outcome in Outcome::ALL {
                let n = self.counts[proxy as usize][outcome as usize].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "switchboard_proxy_requests_total{{proxy=\"{}\",outcome=\"{}\"}} {n}",
                    proxy.as_str(),
                    outcome.as_str()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_per_proxy_and_outcome() {
        let metrics = ProxyMetrics::default();
        metrics.count(Proxy::Publish, Outcome::Timeout);
        metrics.count(Proxy::Publish, Outcome::Timeout);
        metrics.count(Proxy::Connect, Outcome::Allowed);
        assert_eq!(metrics.get("publish", "timeout"), 2);
        assert_eq!(metrics.get("publish", "failed"), 0);
        assert_eq!(metrics.get("nope", "timeout"), 0);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains(
            "switchboard_proxy_requests_total{proxy=\"publish\",outcome=\"timeout\"} 2\n"
        ));
        assert!(out.contains(
            "switchboard_proxy_requests_total{proxy=\"connect\",outcome=\"allowed\"} 1\n"
        ));
        assert_eq!(out.lines().filter(|l| !l.starts_with('#')).count(), 12);
    }
}
