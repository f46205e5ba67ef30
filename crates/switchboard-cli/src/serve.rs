//! `switchboard serve`: run a WebSocket server.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, ValueEnum};
use switchboard::Server;
use switchboard_hub::{Broker, ChannelRule, HistoryConfig, Hub, HubConfig, JwtKey, LocalBroker};

use crate::web;

#[derive(Parser, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, short, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// What the server does with messages.
    #[arg(long, value_enum, default_value_t = Mode::Hub)]
    mode: Mode,
    /// Largest message accepted, in bytes (larger ones close with 1009).
    #[arg(long, default_value_t = 16 << 20)]
    max_message_size: usize,
    /// Largest frame accepted, in bytes (larger ones close with 1009).
    #[arg(long, default_value_t = 16 << 20)]
    max_frame_size: usize,
    /// Most fragments per message (more close with 1008).
    #[arg(long, default_value_t = 131_072)]
    max_fragments: usize,
    #[command(flatten)]
    hub: HubArgs,
}

/// Options of hub mode.
#[derive(Args, Debug)]
#[command(next_help_heading = "Hub mode")]
pub(crate) struct HubArgs {
    /// Messages kept per channel, for history and recovery after a reconnect (0: none).
    #[arg(long, default_value_t = 100, value_name = "N")]
    history_size: usize,
    /// Drop messages older than this from history, in seconds (0: keep until pushed out).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    history_ttl: u64,
    /// Largest `data` of a publish, in bytes of JSON.
    #[arg(long, default_value_t = 64 * 1024, value_name = "BYTES")]
    max_data_size: usize,
    /// Secret that verifies HS256 tokens passed as ?token=JWT (`sub` becomes the user).
    /// Without it, clients are anonymous and tokens are refused.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Channel rule PATTERN=POLICY, first match wins; POLICY is public, authenticated or
    /// public-read; PATTERN is a name or a prefix and '*'. Repeat for more rules.
    #[arg(long = "rule", value_name = "PATTERN=POLICY")]
    rules: Vec<ChannelRule>,
    /// Origin a browser may connect from (e.g. https://chat.example.com); repeat for more.
    /// Without any, every origin may.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Share channels, history and presence with other nodes through Redis
    /// (redis://HOST:PORT[/DB]); without it, channels live in this process.
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Mode {
    /// Channels with presence, history and recovery: the chat page at /, WebSocket at /ws.
    Hub,
    /// Send every message back to its sender (upgrades on any path).
    Echo,
    /// Send every message to every other client (upgrades on any path).
    Broadcast,
}

/// What the server runs, built from the mode before the listener binds.
enum Service {
    Hub(Hub),
    Echo,
    Broadcast(switchboard_hub::Broadcast),
}

impl HubArgs {
    async fn hub(self) -> anyhow::Result<Hub> {
        let history = HistoryConfig {
            size: self.history_size,
            ttl: (self.history_ttl > 0).then(|| Duration::from_secs(self.history_ttl)),
        };
        let mut config = HubConfig::default();
        config.max_data_size = self.max_data_size;
        config.jwt = self.jwt_secret.map(JwtKey::hs256);
        config.rules = self.rules;
        config.allowed_origins = self.allowed_origins;
        let broker: Arc<dyn Broker> = match &self.broker {
            None => Arc::new(LocalBroker::new(history)),
            Some(url) => redis_broker(url, history).await?,
        };
        Hub::new(broker, config)
            .await
            .context("cannot start the hub")
    }
}

#[cfg(feature = "redis")]
async fn redis_broker(url: &str, history: HistoryConfig) -> anyhow::Result<Arc<dyn Broker>> {
    let mut config = switchboard_hub::RedisConfig::new(url);
    config.history = history;
    let broker = switchboard_hub::RedisBroker::connect(config).await?;
    tracing::info!(
        broker = url,
        node = broker.node(),
        "channels shared through redis"
    );
    Ok(Arc::new(broker))
}

#[cfg(not(feature = "redis"))]
async fn redis_broker(_url: &str, _history: HistoryConfig) -> anyhow::Result<Arc<dyn Broker>> {
    anyhow::bail!("this build has no Redis broker (cargo feature `redis`)")
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut builder = Server::builder()
        .max_message_size(args.max_message_size)
        .max_frame_size(args.max_frame_size)
        .max_fragments(args.max_fragments);
    let service = match args.mode {
        Mode::Hub => {
            let hub = args.hub.hub().await?;
            let checker = hub.clone();
            builder = builder.http(web::respond).check_upgrade(move |request| {
                if request.uri().path() == "/ws" {
                    checker.check_origin(request)
                } else {
                    Some(web::not_found())
                }
            });
            Service::Hub(hub)
        }
        Mode::Echo => Service::Echo,
        Mode::Broadcast => Service::Broadcast(switchboard_hub::Broadcast::new()),
    };
    let server = builder
        .bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = server.local_addr()?;
    match service {
        Service::Hub(hub) => {
            tracing::info!("chat on http://{addr}/, hub protocol on ws://{addr}/ws");
            server
                .serve(move |ws, request| {
                    let hub = hub.clone();
                    async move { hub.serve(ws, &request).await }
                })
                .await?;
        }
        Service::Echo => {
            tracing::info!(mode = "echo", "listening on ws://{addr}");
            server.serve(|ws, _| switchboard_hub::echo(ws)).await?;
        }
        Service::Broadcast(group) => {
            tracing::info!(mode = "broadcast", "listening on ws://{addr}");
            server
                .serve(move |ws, _| {
                    let group = group.clone();
                    async move { group.serve(ws).await }
                })
                .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
