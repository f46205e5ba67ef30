//! `switchboard serve`: run a WebSocket server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use switchboard::http::Request;
use switchboard::http::Uri;
use switchboard::tls::ServerTls;
use switchboard::{
    Backpressure, CloseCode, DeflateConfig, MaybeTlsStream, Metrics, Server, ServerBuilder,
    WebSocket,
};
use switchboard_hub::{
    Broker, HistoryConfig, HttpApi, HttpProxy, Hub, HubConfig, JwtKey, LocalBroker, MessageRate,
    OnFailure, ProxyEndpoint, RESTART_REASON, WebhookConfig, restart_hint,
};

use crate::admin::{self, Admin};
use crate::config::{Mode, Policy, ServeOptions};
use crate::terminal::interrupt::{self, Signals};
use crate::{proxies, web};

/// After a restart, the hub's clients wait at least this long before reconnecting...
const RESTART_FLOOR: Duration = Duration::from_secs(1);
/// ...and up to this much longer, at random (`--restart-spread`).
const RESTART_SPREAD: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
pub(crate) struct ServeArgs {
    /// Read settings from a TOML file (keys as the flags, without the dashes in front:
    /// `max-connections = 1000`); flags given here win
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    options: ServeOptions,
}

/// What the server runs, built from the mode before the listener binds.
enum Service {
    /// The hub, and its admin dashboard when there is a password.
    Hub(Hub, Option<Arc<Admin>>),
    Echo,
    Broadcast(switchboard_hub::Broadcast),
}

/// The hub as `options` say; what it counts goes to the server's `metrics`.
async fn hub(options: &ServeOptions, metrics: &Metrics) -> anyhow::Result<Hub> {
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
    let uri: Uri = url
        .parse()
        .ok()
        .filter(|uri: &Uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
        })
        .with_context(|| format!("--webhook-url {url}: expected an http:// or https:// URL"))?;
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

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let options = match &args.config {
        Some(path) => args.options.or(ServeOptions::from_file(path)?),
        None => args.options,
    };
    options.check()?;
    let listen = options
        .listen
        .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)), |l| l.0);
    let mode = options.mode.unwrap_or(Mode::Hub);
    let tls = tls(&options, listen)?;
    let secure = tls.is_some();
    let (scheme, http) = if tls.is_some() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let mut builder = builder(&options, tls);
    let alpn = builder.alpn_protocols();
    if builder.serves_h2c() {
        tracing::info!("offering http/1.1 and h2c (HTTP/2 with prior knowledge, no TLS)");
    } else if alpn.is_empty() {
        tracing::info!("offering http/1.1 (no TLS: no HTTP/2; --h2c for prior knowledge)");
    } else {
        let alpn = alpn.join(", ");
        tracing::info!("offering {alpn} (TLS ALPN)");
        if options.h2c == Some(true) {
            tracing::warn!("h2c is for clear text: with TLS, HTTP/2 is agreed through ALPN");
        }
    }
    let service = match mode {
        Mode::Hub => {
            let hub = hub(&options, builder.metrics()).await?;
            // Healthy while the broker is: a node that cannot reach Redis cannot serve. With
            // one shard of several down, it still serves the others' channels: 200, degraded.
            let checked = hub.clone();
            builder = builder.health_report("/healthz", move || match checked.health() {
                Ok(()) => Ok(checked.degraded()),
                Err(e) => Err(e.to_string()),
            });
            // A restart sends every client a hint to come back in 1 to 6 s, spread so that
            // they do not all come back at once.
            builder = builder.shutdown_close(CloseCode::SERVICE_RESTART, RESTART_REASON);
            let spread = options.restart_spread.map_or(RESTART_SPREAD, |s| s.0);
            if !spread.is_zero() {
                builder = builder.shutdown_message(restart_hint(RESTART_FLOOR, spread));
            }
            let admin = options
                .admin_password
                .as_deref()
                .filter(|password| !password.is_empty())
                .map(|password| {
                    Admin::new(hub.clone(), builder.metrics().clone(), password, secure)
                });
            if let Some(admin) = &admin {
                builder = admin::routes(builder, admin.clone());
                tracing::info!("admin dashboard at /admin");
            }
            // The origin allow-list is the server's, checked after this.
            let checked = admin.clone();
            builder = web::routes(builder).check_upgrade(move |request| {
                match (request.uri().path(), &checked) {
                    ("/ws", _) => None,
                    (admin::LIVE, Some(admin)) => admin.check_live(request),
                    _ => Some(web::not_found()),
                }
            });
            let keys = options.api_keys.clone().unwrap_or_default();
            if let Some(api) = HttpApi::new(hub.clone(), keys) {
                let counted = api.clone();
                builder
                    .metrics()
                    .extend(move |out| counted.render_metrics(out));
                builder = builder.api_route("/api/*", move |request| {
                    let api = api.clone();
                    async move { api.handle(request).await }
                });
            }
            Service::Hub(hub, admin)
        }
        Mode::Echo => Service::Echo,
        Mode::Broadcast => Service::Broadcast(switchboard_hub::Broadcast::new()),
    };
    let threads = options.threads.unwrap_or(0);
    match service {
        Service::Hub(hub, admin) => {
            let handler = move |ws, request: Request<()>| {
                let hub = hub.clone();
                let admin = admin.clone();
                async move {
                    match admin {
                        Some(admin) if request.uri().path() == admin::LIVE => {
                            admin.live(ws, &request).await;
                        }
                        _ => hub.serve(ws, &request).await,
                    }
                }
            };
            serve(builder, listen, threads, handler, |addr| {
                tracing::info!("chat on {http}://{addr}/, hub protocol on {scheme}://{addr}/ws");
            })
            .await?;
        }
        Service::Echo => {
            let handler = |ws, _| switchboard_hub::echo(ws);
            serve(builder, listen, threads, handler, |addr| {
                tracing::info!(mode = "echo", "listening on {scheme}://{addr}");
            })
            .await?;
        }
        Service::Broadcast(group) => {
            let handler = move |ws, _| {
                let group = group.clone();
                async move { group.serve(ws).await }
            };
            serve(builder, listen, threads, handler, |addr| {
                tracing::info!(mode = "broadcast", "listening on {scheme}://{addr}");
            })
            .await?;
        }
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Serves `handler` on `listen` until SIGINT or SIGTERM, then drains: on this runtime, or with
/// `threads` > 1 thread per core, each thread with a runtime and a listener of its own on the
/// one address (`SO_REUSEPORT`). `listening` is told the address once every listener is bound.
async fn serve<H, F>(
    builder: ServerBuilder,
    listen: SocketAddr,
    threads: usize,
    handler: H,
    listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()>
where
    H: Fn(WebSocket<MaybeTlsStream>, Request<()>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    if threads <= 1 {
        let server = builder
            .bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        listening(server.local_addr()?);
        server
            .serve_with_shutdown(handler, shutdown_signal())
            .await?;
        return Ok(());
    }
    #[cfg(unix)]
    {
        // Each thread admits its share of the connection limit.
        let per_thread = builder.connection_limit().div_ceil(threads);
        // Claimed before binding, so that a second server never takes a connection; with
        // port 0, once the first listener has its port.
        let mut claim = match listen.port() {
            0 => None,
            _ => Some(crate::port_lock::claim(listen)?),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut addr = listen;
        let mut running = Vec::with_capacity(threads);
        for index in 0..threads {
            let (bound_tx, bound) = tokio::sync::oneshot::channel();
            let builder = builder.clone().max_connections(per_thread);
            let handler = handler.clone();
            let mut stopped = stopped.clone();
            let thread = std::thread::Builder::new()
                .name(format!("switchboard-{index}"))
                .spawn(move || -> std::io::Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async move {
                        let server = match builder.bind_reuse_port(addr).await {
                            Ok(server) => server,
                            Err(e) => {
                                let _ = bound_tx.send(Err(e));
                                return Ok(());
                            }
                        };
                        let _ = bound_tx.send(server.local_addr());
                        let stop = async move {
                            let _ = stopped.wait_for(|stop| *stop).await;
                        };
                        server.serve_with_shutdown(handler, stop).await
                    })
                })
                .context("cannot start a server thread")?;
            running.push(thread);
            // The first listener may have picked the port; the others take the same.
            addr = bound
                .await
                .context("a server thread ended early")?
                .with_context(|| format!("cannot listen on {addr}"))?;
            if claim.is_none() {
                claim = Some(crate::port_lock::claim(addr)?);
            }
        }
        tracing::info!(threads, "thread per core");
        listening(addr);
        shutdown_signal().await;
        let _ = stop.send(true);
        let joined = tokio::task::spawn_blocking(move || {
            running
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("a server thread panicked")))
                })
                .collect::<std::io::Result<Vec<()>>>()
        });
        joined.await??;
        drop(claim);
        Ok(())
    }
    #[cfg(not(unix))]
    anyhow::bail!("--threads needs SO_REUSEPORT (Unix)")
}

/// The server as `options` say, with `/healthz` and `/metrics`.
fn builder(options: &ServeOptions, tls: Option<ServerTls>) -> switchboard::ServerBuilder {
    let mut builder = Server::builder()
        .health_endpoint("/healthz")
        .metrics_endpoint("/metrics");
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder = builder.http2(options.http2_enabled());
    if let Some(streams) = options.http2_max_streams {
        builder = builder.http2_max_concurrent_streams(streams);
    }
    builder = builder.h2c(options.h2c.unwrap_or(false));
    macro_rules! set {
        ($($field:ident),* $(,)?) => {
            $(if let Some(value) = options.$field {
                builder = builder.$field(value);
            })*
        };
    }
    set!(
        max_connections,
        max_handshakes,
        max_message_size,
        max_frame_size,
        max_fragments,
        max_head_size,
        max_send_queue,
    );
    macro_rules! set_span {
        ($($field:ident),* $(,)?) => {
            $(if let Some(value) = options.$field {
                builder = builder.$field(value.0);
            })*
        };
    }
    set_span!(
        handshake_timeout,
        pong_timeout,
        close_timeout,
        shutdown_grace
    );
    if let Some(idle) = options.idle_timeout {
        builder = builder.idle_timeout((!idle.0.is_zero()).then_some(idle.0));
    }
    if let Some(policy) = options.backpressure {
        builder = builder.backpressure(match policy {
            Policy::Drop => Backpressure::Drop,
            Policy::Disconnect => Backpressure::Disconnect,
        });
    }
    builder = builder
        .handshake_rate(options.handshake_rate)
        .max_connections_per_address(options.max_connections_per_ip)
        .trusted_proxies(options.trusted_proxies.iter().flatten().copied());
    if let Some(origins) = &options.allowed_origins {
        builder = builder.allowed_origins(origins.iter().cloned());
    }
    builder.deflate(options.deflate_enabled().then(|| {
        let defaults = DeflateConfig::default();
        DeflateConfig {
            level: options
                .deflate_level
                .map_or(defaults.level, |level| level.0),
            threshold: options.deflate_threshold.unwrap_or(defaults.threshold),
            // No compressor state kept per connection, and a broadcast is compressed once for
            // every recipient.
            server_no_context_takeover: true,
            ..defaults
        }
    }))
}

/// The TLS identity from `--tls-cert/--tls-key` or `--tls-self-signed`.
fn tls(options: &ServeOptions, listen: SocketAddr) -> anyhow::Result<Option<ServerTls>> {
    let self_signed = options.tls_self_signed.unwrap_or(false);
    match (&options.tls_cert, &options.tls_key) {
        (Some(_), Some(_)) if self_signed => {
            anyhow::bail!("--tls-self-signed and --tls-cert/--tls-key exclude each other")
        }
        (Some(cert), Some(key)) => Ok(Some(ServerTls::from_pem_files(cert, key)?)),
        (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key"),
        (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert"),
        (None, None) if self_signed => {
            let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
            if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
                names.push(listen.ip().to_string());
            }
            let tls = ServerTls::self_signed(names.clone())?;
            let fingerprint = tls.fingerprint().unwrap_or_default();
            let names = names.join(", ");
            tracing::info!(
                "self-signed certificate for {names}: SHA-256 fingerprint {fingerprint}"
            );
            Ok(Some(tls))
        }
        (None, None) => Ok(None),
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM, and from then on exits at once on a second one:
/// the drain can wait on clients that never answer, and whoever sends it again won't wait.
async fn shutdown_signal() {
    let mut signals = Signals::new();
    signals.recv().await;
    tracing::info!("shutdown requested (Ctrl-C again to exit at once)");
    tokio::spawn(async move {
        let signal = signals.recv().await;
        tracing::warn!("second stop signal: exiting at once, without draining");
        interrupt::exit_now(signal);
    });
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
