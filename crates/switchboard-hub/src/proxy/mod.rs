//! [`HttpProxy`]: [`Hooks`] that ask the application's backend over HTTP, Centrifugo-style:
//! a connect URL, and subscribe and publish URLs per channel namespace, each with a timeout.
//!
//! `wire.rs` holds the JSON, `client.rs` the HTTP call, `metrics.rs` the counts.

mod client;
mod metrics;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tracing::Instrument as _;

use self::client::{CallError, post};
pub use self::metrics::ProxyMetrics;
use self::metrics::{Outcome, Proxy};
use self::wire::{ChannelAnswer, ChannelCall, ConnectAnswer, ConnectCall};
use crate::broker::{BoxFuture, ClientInfo};
use crate::hooks::{
    ConnectDecision, ConnectRequest, Connection, Hooks, PublishDecision, Refusal, SubscribeDecision,
};
use crate::http_post::Backend;
use crate::rules::pattern_matches;

/// The close code of a client refused because the connect proxy gave no usable answer: 1013,
/// try again later.
const UNAVAILABLE: u16 = 1013;

/// Where a proxy's calls go and how long an answer may take.
#[derive(Clone, Debug)]
pub struct ProxyEndpoint {
    uri: Uri,
    timeout: Duration,
}

/// A proxy URL that is not `http://` or `https://` with a host.
#[derive(Debug, thiserror::Error)]
#[error("{0}: expected an http:// or https:// URL with a host")]
pub struct ProxyUrlError(String);

impl ProxyEndpoint {
    /// POSTs to `url`, waiting at most `timeout` for the answer.
    ///
    /// # Errors
    ///
    /// When `url` is not `http://` or `https://` with a host.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, ProxyUrlError> {
        let uri: Uri = url.parse().map_err(|_| ProxyUrlError(url.into()))?;
        let http = matches!(uri.scheme_str(), Some("http" | "https"));
        if !http || uri.host().is_none_or(str::is_empty) {
            return Err(ProxyUrlError(url.into()));
        }
        Ok(Self { uri, timeout })
    }
}

/// What the hub does when a proxy gives no usable answer (failure or timeout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Refuse the client: the connect is closed with 1013 (try again later), the subscribe or
    /// publish gets a `forbidden` error.
    #[default]
    Refuse,
    /// Let the client through: a connect goes on as without the proxy (token or name), the
    /// subscribe or publish as the channel rules allow it.
    Allow,
}

/// [`Hooks`] that ask the backend over HTTP. A channel's subscribe (or publish) goes to the
/// first namespace whose pattern (a channel name, or a prefix and `*`, as in
/// [`ChannelRule`](crate::ChannelRule)) matches it; a channel no namespace matches, or a
/// connect without a connect URL, is not asked about.
///
/// Each call is one POST of JSON, on a connection kept alive between calls; what is sent and
/// what the backend answers is in the README ("Proxies").
#[derive(Debug, Default)]
pub struct HttpProxy {
    connect: Option<ProxyEndpoint>,
    subscribe: Vec<(String, ProxyEndpoint)>,
    publish: Vec<(String, ProxyEndpoint)>,
    on_failure: OnFailure,
    metrics: Arc<ProxyMetrics>,
    backend: Backend,
}

impl HttpProxy {
    /// A proxy that asks about nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks `endpoint` who each connecting client is.
    #[must_use]
    pub fn connect(mut self, endpoint: ProxyEndpoint) -> Self {
        self.connect = Some(endpoint);
        self
    }

    /// Asks `endpoint` about subscribes to channels matching `pattern`.
    #[must_use]
    pub fn subscribe(mut self, pattern: impl Into<String>, endpoint: ProxyEndpoint) -> Self {
        self.subscribe.push((pattern.into(), endpoint));
        self
    }

    /// Asks `endpoint` about publishes on channels matching `pattern`.
    #[must_use]
    pub fn publish(mut self, pattern: impl Into<String>, endpoint: ProxyEndpoint) -> Self {
        self.publish.push((pattern.into(), endpoint));
        self
    }

    /// What happens when a call gets no usable answer (default: [`OnFailure::Refuse`]).
    #[must_use]
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// The counts of calls per proxy and outcome.
    pub fn metrics(&self) -> Arc<ProxyMetrics> {
        self.metrics.clone()
    }

    /// POSTs `body` to `endpoint` and reads the answer as `A`; `Err` counts the failure and
    /// says why.
    async fn call<A: DeserializeOwned>(
        &self,
        proxy: Proxy,
        endpoint: &ProxyEndpoint,
        body: Result<Vec<u8>, serde_json::Error>,
    ) -> Result<A, String> {
        let answer = match body {
            Ok(body) => {
                let span = tracing::debug_span!("proxy", proxy = proxy.as_str());
                post(&self.backend, &endpoint.uri, body, endpoint.timeout)
                    .instrument(span)
                    .await
            }
            Err(e) => Err(CallError::Failed(e.to_string())),
        };
        let answer = answer.and_then(|bytes| {
            serde_json::from_slice::<A>(&bytes)
                .map_err(|e| CallError::Failed(format!("the answer is not as documented: {e}")))
        });
        answer.map_err(|e| {
            // The client is told what kind of failure, never the backend's address or words.
            let (outcome, why, told) = match e {
                CallError::Failed(why) => (Outcome::Failed, why, "no usable answer"),
                CallError::Timeout => (Outcome::Timeout, String::new(), "no answer in time"),
            };
            self.metrics.count(proxy, outcome);
            tracing::warn!(proxy = proxy.as_str(), uri = %endpoint.uri, %why, told, "proxy call failed");
            format!("the {} proxy failed: {told}", proxy.as_str())
        })
    }

    /// Asks the namespace of `channel` in `routes`; `None` when none matches.
    async fn channel_call(
        &self,
        proxy: Proxy,
        client: &ClientInfo,
        channel: &str,
        data: Option<&RawValue>,
    ) -> Option<Result<(Option<Box<RawValue>>, Option<String>), String>> {
        let routes = match proxy {
            Proxy::Publish => &self.publish,
            _ => &self.subscribe,
        };
        let (_, endpoint) = routes.iter().find(|(p, _)| pattern_matches(p, channel))?;
        let call = ChannelCall {
            client: &client.conn,
            user: &client.user,
            authenticated: client.authenticated,
            channel,
            data,
        };
        let body = serde_json::to_vec(&call);
        let answer = self.call::<ChannelAnswer>(proxy, endpoint, body).await;
        Some(
            answer.and_then(|answer| match (answer.result, answer.error) {
                (_, Some(error)) => {
                    self.metrics.count(proxy, Outcome::Refused);
                    Ok((None, Some(error.message)))
                }
                (Some(result), None) => {
                    self.metrics.count(proxy, Outcome::Allowed);
                    Ok((result.data, None))
                }
                (None, None) => {
                    self.metrics.count(proxy, Outcome::Failed);
                    tracing::warn!(
                        proxy = proxy.as_str(),
                        "an answer with neither result nor error"
                    );
                    Err(format!(
                        "the {} proxy failed: no usable answer",
                        proxy.as_str()
                    ))
                }
            }),
        )
    }
}

impl Hooks for HttpProxy {
    fn connect<'a>(&'a self, request: &'a ConnectRequest) -> BoxFuture<'a, ConnectDecision> {
        Box::pin(async move {
            let Some(endpoint) = &self.connect else {
                return ConnectDecision::Pass;
            };
            let body = serde_json::to_vec(&ConnectCall::of(request));
            let answer = self
                .call::<ConnectAnswer>(Proxy::Connect, endpoint, body)
                .await;
            let failed = |why: String| match self.on_failure {
                OnFailure::Refuse => ConnectDecision::Refuse(Refusal::new(UNAVAILABLE, why)),
                OnFailure::Allow => ConnectDecision::Pass,
            };
            match answer {
                Err(why) => failed(why),
                Ok(ConnectAnswer {
                    disconnect: Some(disconnect),
                    ..
                }) => {
                    self.metrics.count(Proxy::Connect, Outcome::Refused);
                    ConnectDecision::Refuse(disconnect.into())
                }
                Ok(ConnectAnswer {
                    result: Some(result),
                    ..
                }) => {
                    self.metrics.count(Proxy::Connect, Outcome::Allowed);
                    let mut connection = Connection::user(result.user);
                    connection.info = result.info;
                    connection.channels = result.channels;
                    ConnectDecision::Allow(connection)
                }
                Ok(_) => {
                    self.metrics.count(Proxy::Connect, Outcome::Failed);
                    tracing::warn!("a connect answer with neither result nor disconnect");
                    failed("the connect proxy failed: no usable answer".into())
                }
            }
        })
    }

    fn subscribe<'a>(
        &'a self,
        client: &'a ClientInfo,
        channel: &'a str,
    ) -> BoxFuture<'a, SubscribeDecision> {
        Box::pin(async move {
            match self
                .channel_call(Proxy::Subscribe, client, channel, None)
                .await
            {
                None | Some(Ok((_, None))) => SubscribeDecision::Allow,
                Some(Ok((_, Some(reason)))) => SubscribeDecision::Refuse(reason),
                Some(Err(why)) => match self.on_failure {
                    OnFailure::Refuse => SubscribeDecision::Refuse(why),
                    OnFailure::Allow => SubscribeDecision::Allow,
                },
            }
        })
    }

    fn publish<'a>(
        &'a self,
        client: &'a ClientInfo,
        channel: &'a str,
        data: &'a RawValue,
    ) -> BoxFuture<'a, PublishDecision> {
        Box::pin(async move {
            match self
                .channel_call(Proxy::Publish, client, channel, Some(data))
                .await
            {
                None | Some(Ok((None, None))) => PublishDecision::Allow,
                Some(Ok((Some(data), None))) => PublishDecision::Rewrite(data),
                Some(Ok((_, Some(reason)))) => PublishDecision::Refuse(reason),
                Some(Err(why)) => match self.on_failure {
                    OnFailure::Refuse => PublishDecision::Refuse(why),
                    OnFailure::Allow => PublishDecision::Allow,
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_urls_with_a_host() {
        let t = Duration::from_secs(1);
        assert!(ProxyEndpoint::new("http://127.0.0.1:9000/connect", t).is_ok());
        assert!(ProxyEndpoint::new("https://backend.example/sub", t).is_ok());
        assert!(ProxyEndpoint::new("ws://backend.example/sub", t).is_err());
        assert!(ProxyEndpoint::new("/connect", t).is_err());
        assert!(ProxyEndpoint::new("not a url", t).is_err());
    }
}
