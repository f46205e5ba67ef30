//! The hub `serve` runs, as its options say: its broker (in process or Redis), the backend's
//! proxies and webhooks, JWT keys, limits and history.

use std::sync::Arc;

use anyhow::Context as _;
use switchboard::Metrics;
use switchboard::http::Uri;
use switchboard_hub::{
    Broker, HistoryConfig, HttpProxy, Hub, HubConfig, JwtKey, LocalBroker, MessageRate, OnFailure,
    ProxyEndpoint, WebhookConfig,
};

use switchboard_hub::pusher::{PusherApp, PusherApps};

use crate::config::ServeOptions;
use crate::proxies;

/// The hub as `options` say; what it counts goes to the server's `metrics`.
pub(super) async fn hub(options: &ServeOptions, metrics: &Metrics) -> anyhow::Result<Hub> {
    let history = HistoryConfig {
        size: options.history_size.unwrap_or(100),
        ttl: options
            .history_ttl
            .map(|ttl| ttl.0)
            .filter(|ttl| !ttl.is_zero()),
    };
    let mut config = HubConfig::default();
    if let Some(size) = options.max_data_size {
        config.max_data_size = size;
    }
    if let Some(heartbeat) = options.heartbeat {
        config.heartbeat = (!heartbeat.0.is_zero()).then_some(heartbeat.0);
    }
    if let Some(rate) = options.message_rate {
        anyhow::ensure!(
            rate > 0.0 && rate.is_finite(),
            "--message-rate {rate}: expected a number of messages a second above 0"
        );
        config.message_rate = Some(MessageRate::per_second(rate));
    }
    if let Some(max) = options.max_subscriptions {
        config.max_subscriptions = max;
    }
    config.jwt = options.jwt_secret.clone().map(JwtKey::hs256);
    config.rules = options.rules.clone().unwrap_or_default();
    if let Some(window) = options.idempotency_window {
        config.idempotency_window = window.0;
    }
    if let Some(proxy) = http_proxy(options)? {
        let counted = proxy.metrics();
        metrics.extend(move |out| counted.render(out));
        config.hooks = Some(Arc::new(proxy));
    }
    config.webhooks = webhooks(options)?;
    config.pusher = pusher_apps(options)?;
    // Timeouts have defaults (the example file states them); these do not.
    let broker_settings = [
        options.broker_ca.is_some(),
        options.broker_cert.is_some(),
        options.broker_key.is_some(),
        options.broker_password.is_some(),
    ];
    anyhow::ensure!(
        options.broker.is_some() || !broker_settings.contains(&true),
        "--broker-ca, --broker-cert, --broker-key and --broker-password need --broker"
    );
    let broker: Arc<dyn Broker> = match &options.broker {
        None => Arc::new(LocalBroker::new(history)),
        Some(url) => redis_broker(url, options, history).await?,
    };
    let hub = Hub::new(broker, config)
        .await
        .context("cannot start the hub")?;
    let counted = hub.clone();
    metrics.extend(move |out| {
        counted.render_metrics(out);
    });
    if hub.webhook_metrics().is_some() {
        let counted = hub.clone();
        metrics.extend(move |out| {
            if let Some(webhooks) = counted.webhook_metrics() {
                webhooks.render(out);
            }
        });
    }
    Ok(hub)
}

/// The Pusher apps of `--pusher-app` and of the file's `[pusher]` section.
fn pusher_apps(options: &ServeOptions) -> anyhow::Result<PusherApps> {
    let client_events = options.pusher_client_events.unwrap_or(false);
    let flags = options.pusher_apps.iter().flatten();
    let mut apps: Vec<PusherApp> = flags
        .map(|app| app.clone().with_client_events(client_events))
        .collect();
    let section = options.pusher.iter().flat_map(|section| &section.apps);
    for entry in section {
        let mut app = entry
            .app()
            .with_context(|| format!("in [[pusher.apps]] with id {:?}", entry.id))?;
        if let Some(url) = &entry.webhook_url {
            let what = format!("webhook_url {url} of the Pusher app {:?}", entry.id);
            app = app.with_webhook(http_url(url, &what)?);
        }
        apps.push(app);
    }
    for webhook in options.pusher_webhooks.iter().flatten() {
        let (id, url) = webhook
            .split_once('=')
            .with_context(|| format!("--pusher-webhook {webhook}: expected ID=URL"))?;
        let what = format!("--pusher-webhook {webhook}");
        let url = http_url(url, &what)?;
        let app = apps
            .iter_mut()
            .find(|app| app.id == id)
            .with_context(|| format!("{what}: no Pusher app has the id {id:?}"))?;
        *app = app.clone().with_webhook(url);
    }
    Ok(PusherApps::new(apps)?)
}

/// `url` as an `http://` or `https://` URL with a host; `what` names it in the error.
fn http_url(url: &str, what: &str) -> anyhow::Result<Uri> {
    url.parse()
        .ok()
        .filter(|uri: &Uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
        })
        .with_context(|| format!("{what}: expected an http:// or https:// URL"))
}

/// The proxies the options configure; `None` when they configure none.
fn http_proxy(options: &ServeOptions) -> anyhow::Result<Option<HttpProxy>> {
    let subscribe = options.subscribe_proxies.as_deref().unwrap_or_default();
    let publish = options.publish_proxies.as_deref().unwrap_or_default();
    if options.connect_proxy.is_none() && subscribe.is_empty() && publish.is_empty() {
        return Ok(None);
    }
    let timeout = options
        .proxy_timeout
        .map_or(proxies::DEFAULT_TIMEOUT, |t| t.0);
    let endpoint = |url: &str| ProxyEndpoint::new(url, timeout);
    let mut proxy = HttpProxy::new().on_failure(match options.proxy_failure {
        Some(proxies::Failure::Allow) => OnFailure::Allow,
        Some(proxies::Failure::Refuse) | None => OnFailure::Refuse,
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

/// Webhooks as `options` say: none without a URL, which needs a secret.
fn webhooks(options: &ServeOptions) -> anyhow::Result<Option<WebhookConfig>> {
    let Some(url) = &options.webhook_url else {
        anyhow::ensure!(
            options.webhook_secret.is_none(),
            "--webhook-secret needs --webhook-url"
        );
        return Ok(None);
    };
    let Some(secret) = &options.webhook_secret else {
        anyhow::bail!("--webhook-url needs --webhook-secret (or SWITCHBOARD_WEBHOOK_SECRET)");
    };
    let uri = http_url(url, &format!("--webhook-url {url}"))?;
    let mut config = WebhookConfig::new(uri, secret.clone());
    if let Some(events) = &options.webhook_events {
        config.events = events.iter().copied().collect();
    }
    if let Some(timeout) = options.webhook_timeout {
        config.timeout = timeout.0;
    }
    if let Some(retry) = options.webhook_retry {
        config.retry_for = retry.0;
    }
    tracing::info!(url = %config.url, "webhooks on");
    Ok(Some(config))
}

#[cfg(feature = "redis")]
async fn redis_broker(
    url: &str,
    options: &ServeOptions,
    history: HistoryConfig,
) -> anyhow::Result<Arc<dyn Broker>> {
    let mut config = switchboard_hub::RedisConfig::new(url);
    config.cluster = options.broker_cluster.unwrap_or(false);
    config.history = history;
    config.connect = redis_connect(options)?;
    if let Some(timeout) = options.broker_response_timeout {
        anyhow::ensure!(
            !timeout.0.is_zero(),
            "--broker-response-timeout must be more than 0"
        );
        config.timeout = timeout.0;
    }
    let cluster = config.cluster;
    let broker = switchboard_hub::RedisBroker::connect(config).await?;
    tracing::info!(
        broker = %without_password(url),
        shards = broker.shards(),
        cluster,
        node = broker.node(),
        "channels shared through redis"
    );
    Ok(Arc::new(broker))
}

/// How the broker connects to Redis: the `--broker-*` files read, and the timeouts.
#[cfg(feature = "redis")]
fn redis_connect(options: &ServeOptions) -> anyhow::Result<switchboard_hub::RedisConnectOptions> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("--{flag} {}: cannot read", path.display()))
    };
    let mut connect = switchboard_hub::RedisConnectOptions::default();
    if let Some(path) = &options.broker_ca {
        connect.ca_pem = Some(read("broker-ca", path)?);
    }
    match (&options.broker_cert, &options.broker_key) {
        (Some(cert), Some(key)) => {
            connect.client_cert_pem = Some((read("broker-cert", cert)?, read("broker-key", key)?));
        }
        (None, None) => {}
        _ => anyhow::bail!("--broker-cert and --broker-key go together"),
    }
    connect.password.clone_from(&options.broker_password);
    if let Some(timeout) = options.broker_connect_timeout {
        anyhow::ensure!(
            !timeout.0.is_zero(),
            "--broker-connect-timeout must be more than 0"
        );
        connect.connect_timeout = timeout.0;
    }
    Ok(connect)
}

/// `url` (or a comma-separated list of URLs) with each password replaced by `***`, for logs.
#[cfg(feature = "redis")]
fn without_password(url: &str) -> String {
    let one = |one: &str| {
        let (scheme, rest) = one.split_once("://")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (userinfo, host) = authority.rsplit_once('@')?;
        let (user, _password) = userinfo.split_once(':')?;
        let tail = &rest[authority.len()..];
        Some(format!("{scheme}://{user}:***@{host}{tail}"))
    };
    url.split(',')
        .map(|url| one(url).unwrap_or_else(|| url.to_owned()))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(not(feature = "redis"))]
async fn redis_broker(
    _url: &str,
    _options: &ServeOptions,
    _history: HistoryConfig,
) -> anyhow::Result<Arc<dyn Broker>> {
    anyhow::bail!("this build has no Redis broker (cargo feature `redis`)")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;
    use switchboard_hub::EventKind;

    use super::*;

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
        assert_eq!(options.proxy_failure, Some(proxies::Failure::Allow));
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

    #[test]
    fn pusher_webhooks_come_from_the_apps_section_and_the_flag() {
        let file = ServeOptions::from_toml(
            r#"
            pusher-webhook = ["2=http://127.0.0.1:9/two"]
            [[pusher.apps]]
            id = "1"
            key = "key-1"
            secret = "secret-1"
            webhook_url = "https://hooks.example/one"
            [[pusher.apps]]
            id = "2"
            key = "key-2"
            secret = "secret-2"
            "#,
        )
        .unwrap();
        let apps = pusher_apps(&file).unwrap();
        let url = |id| {
            apps.by_id(id)
                .unwrap()
                .webhook
                .as_ref()
                .map(ToString::to_string)
        };
        assert_eq!(url("1").as_deref(), Some("https://hooks.example/one"));
        assert_eq!(url("2").as_deref(), Some("http://127.0.0.1:9/two"));
        let refused = |webhook: &str| {
            let options = ServeOptions {
                pusher_apps: Some(vec!["1:k:s".parse().unwrap()]),
                pusher_webhooks: Some(vec![webhook.to_owned()]),
                ..ServeOptions::default()
            };
            pusher_apps(&options).unwrap_err().to_string()
        };
        assert!(refused("9=http://a/").contains("no Pusher app"));
        assert!(refused("1=ftp://a/").contains("http://"));
        assert!(refused("http://a/").contains("ID=URL"));
    }

    #[test]
    fn pusher_apps_come_from_the_flags_and_the_files_section() {
        assert!(pusher_apps(&ServeOptions::default()).unwrap().is_empty());
        let file = ServeOptions::from_toml(
            r#"
            pusher-app = ["1:key-1:secret-1"]
            pusher-client-events = true

            [[pusher.apps]]
            id = "2"
            key = "key-2"
            secret = "secret-2"

            [[pusher.apps]]
            id = "3"
            key = "key-3"
            secret = "secret-3"
            client_events = true
            "#,
        )
        .unwrap();
        let flags = ServeOptions {
            pusher_apps: Some(vec!["4:key-4:secret-4".parse().unwrap()]),
            ..ServeOptions::default()
        };
        let apps = pusher_apps(&flags.or(file)).unwrap();
        assert!(
            apps.by_key("key-1").is_none(),
            "the flag's apps replace the file's"
        );
        assert!(apps.by_key("key-4").unwrap().client_events);
        assert!(!apps.by_id("2").unwrap().client_events);
        assert_eq!(apps.by_id("3").map(|app| app.key.as_str()), Some("key-3"));

        let twice = ServeOptions::from_toml(
            r#"
            pusher-apps = ["1:k:s"]
            [[pusher.apps]]
            id = "1"
            key = "other"
            secret = "s"
            "#,
        )
        .unwrap();
        let e = pusher_apps(&twice).unwrap_err().to_string();
        assert!(e.contains("two Pusher apps have the id"), "{e}");
        let bad =
            ServeOptions::from_toml("[[pusher.apps]]\nid = \"1\"\nkey = \"a b\"\nsecret = \"s\"");
        let e = format!("{:#}", pusher_apps(&bad.unwrap()).unwrap_err());
        assert!(e.contains("key must be letters"), "{e}");
        assert!(
            ServeOptions::from_toml("[pusher]\nkey = 1").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn webhooks_need_an_http_url_and_a_secret() {
        let options = |url: Option<&str>, secret: Option<&str>| ServeOptions {
            webhook_url: url.map(str::to_owned),
            webhook_secret: secret.map(str::to_owned),
            ..ServeOptions::default()
        };
        assert!(webhooks(&options(None, None)).unwrap().is_none());
        assert!(webhooks(&options(Some("http://127.0.0.1:9000/"), None)).is_err());
        assert!(webhooks(&options(None, Some("s"))).is_err());
        assert!(webhooks(&options(Some("ftp://example.com/"), Some("s"))).is_err());
        assert!(webhooks(&options(Some("/events"), Some("s"))).is_err());

        let mut chosen = options(Some("https://example.com/events"), Some("s"));
        chosen.webhook_events = Some(vec![EventKind::MemberAdded]);
        chosen.webhook_retry = Some(crate::units::Span(std::time::Duration::from_secs(5)));
        let config = webhooks(&chosen).unwrap().unwrap();
        assert_eq!(config.url, "https://example.com/events");
        assert_eq!(
            config.events,
            [EventKind::MemberAdded].into_iter().collect()
        );
        assert_eq!(config.retry_for, std::time::Duration::from_secs(5));
    }

    #[cfg(feature = "redis")]
    #[test]
    fn logged_broker_urls_hide_passwords() {
        assert_eq!(
            without_password("rediss://alice:s3cret@redis.internal:6380/2,redis://:pw@b"),
            "rediss://alice:***@redis.internal:6380/2,redis://:***@b"
        );
        for kept in ["redis://127.0.0.1:6379", "redis://alice@host", "nonsense"] {
            assert_eq!(without_password(kept), kept);
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn broker_connections_take_files_password_and_timeouts() {
        let options = ServeOptions::from_toml(
            r#"
            broker = "rediss://alice@127.0.0.1:6380"
            broker-password = "s3cret"
            broker-connect-timeout = "500ms"
            "#,
        )
        .unwrap();
        let connect = redis_connect(&options).unwrap();
        assert_eq!(connect.password.as_deref(), Some("s3cret"));
        assert_eq!(connect.connect_timeout, Duration::from_millis(500));
        assert!(connect.ca_pem.is_none());
        let missing = ServeOptions {
            broker_ca: Some("/nonexistent/ca.pem".into()),
            ..ServeOptions::default()
        };
        let e = redis_connect(&missing).unwrap_err().to_string();
        assert!(e.contains("--broker-ca /nonexistent/ca.pem"), "{e}");
        let half = ServeOptions {
            broker_cert: Some("/nonexistent/cert.pem".into()),
            ..ServeOptions::default()
        };
        assert!(redis_connect(&half).is_err());
    }
}
