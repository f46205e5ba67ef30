//! `switchboard serve`'s settings: every flag, also readable from a TOML file (`--config`)
//! under the same name (`--max-connections` is `max-connections = 10000`). A list's key is
//! the plural (`allowed-origins = [..]` for `--allowed-origin`, repeated) or, so that a user
//! need not remember which, the flag's own name (`allowed-origin = [..]`). A flag given on
//! the command line wins over the file; the file wins over the defaults. An unknown key or a
//! bad value in the file is an error that names it.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use switchboard::IpNet;
use switchboard_hub::pusher::{AppError, PusherApp};
use switchboard_hub::{ChannelRule, EventKind};

use crate::proxies::{Failure, Route};
use crate::units::{Level, Listen, Span};

mod file;

/// What the server does with messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// Channels with presence, history and recovery: the chat page at /, WebSocket at /ws.
    Hub,
    /// Send every message back to its sender (upgrades on any path).
    Echo,
    /// Send every message to every other client (upgrades on any path).
    Broadcast,
}

/// Every setting of `serve`, each optional: `None` is "not said here".
#[derive(Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ServeOptions {
    /// Address to listen on: HOST:PORT, :PORT (every interface) or PORT (loopback)
    /// [default: 127.0.0.1:8080]
    #[arg(long, short, value_name = "ADDR")]
    pub(crate) listen: Option<Listen>,
    /// What the server does with messages [default: hub]
    #[arg(long, value_enum)]
    pub(crate) mode: Option<Mode>,

    /// Certificate chain (PEM) for wss://; needs --tls-key
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Serve wss:// with a generated self-signed certificate (local development); its
    /// SHA-256 fingerprint is logged
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub(crate) tls_self_signed: Option<bool>,

    /// With TLS, offer HTTP/2 (ALPN h2, then http/1.1): browsers then open the page's
    /// WebSockets on its HTTP/2 connection (RFC 8441) [default: true]
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL",
        conflicts_with = "no_http2"
    )]
    pub(crate) http2: Option<bool>,
    /// HTTP/1.1 only, also over TLS: the same as --http2=false (in a file: `http2 = false`)
    #[arg(long)]
    #[serde(skip)]
    pub(crate) no_http2: bool,
    /// Most streams (requests and WebSockets) open at once on one HTTP/2 connection; more are
    /// refused (REFUSED_STREAM) [default: 100]
    #[arg(long, value_name = "N")]
    pub(crate) http2_max_streams: Option<u32>,
    /// Without TLS, also serve HTTP/2 with prior knowledge (h2c) on the same port, for clients
    /// behind a proxy that ends TLS; HTTP/1.1 goes on as before [default: false]
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL",
        conflicts_with = "no_http2"
    )]
    pub(crate) h2c: Option<bool>,

    /// Thread per core: N threads, each with a single-threaded runtime and a listener of its
    /// own on the address (SO_REUSEPORT), the kernel spreading connections among them; the
    /// connection limit is shared out. 0 or 1: one runtime on every core [default: 0]
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Serve the WebSockets of plain TCP connections from one event loop per thread, with
    /// callbacks and no task per connection (in hub mode, the hub's protocol: a session has a
    /// task only while it has work); TLS and HTTP/2 ones, and Pusher's, stay in tasks
    /// [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub(crate) event_loop: Option<bool>,
    /// Most connections at once; more get 503 [default: 25000]
    #[arg(long, value_name = "N")]
    pub(crate) max_connections: Option<usize>,
    /// Most opening handshakes (TLS, request, checks) under way at once; past it new clients
    /// wait in the listen backlog [default: 512]
    #[arg(long, value_name = "N", help_heading = "Abuse limits")]
    pub(crate) max_handshakes: Option<usize>,
    /// Most handshakes started per second; past it new clients wait in the listen backlog
    /// [default: no limit]
    #[arg(long, value_name = "N", help_heading = "Abuse limits")]
    pub(crate) handshake_rate: Option<u32>,
    /// Most connections from one client address (IPv6: one /64); more get 429
    /// [default: no limit]
    #[arg(long, value_name = "N", help_heading = "Abuse limits")]
    pub(crate) max_connections_per_ip: Option<usize>,
    /// A proxy (address or CIDR block) whose X-Forwarded-For/Forwarded gives the client's
    /// address; repeat for more [default: none]
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        value_parser = parse_net,
        help_heading = "Abuse limits"
    )]
    #[serde(default, deserialize_with = "nets")]
    #[serde(alias = "trusted-proxy")]
    pub(crate) trusted_proxies: Option<Vec<IpNet>>,
    /// Hub mode: most messages a second from one connection (bursts of twice that); past it
    /// messages are refused with `rate_limited`, and a client that goes on is closed with 1008
    /// [default: no limit]
    #[arg(long, value_name = "N", help_heading = "Abuse limits")]
    pub(crate) message_rate: Option<f64>,
    /// Hub mode: on SIGTERM, tell each client to wait 1 s plus a random part of this before
    /// reconnecting, so that a restart does not bring them all back at once; 0 sends no hint
    /// [default: 5s]
    #[arg(long, value_name = "DURATION", help_heading = "Abuse limits")]
    pub(crate) restart_spread: Option<Span>,
    /// Hub mode: most channels one connection may subscribe to [default: 100]
    #[arg(long, value_name = "N", help_heading = "Abuse limits")]
    pub(crate) max_subscriptions: Option<usize>,
    /// Largest message accepted, in bytes; larger ones close with 1009 [default: 16777216]
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_message_size: Option<usize>,
    /// Largest frame accepted, in bytes; larger ones close with 1009 [default: 16777216]
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_frame_size: Option<usize>,
    /// Most fragments per message; more close with 1008 [default: 131072]
    #[arg(long, value_name = "N")]
    pub(crate) max_fragments: Option<usize>,
    /// Longest request head, in bytes; longer ones get 431 [default: 8192]
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_head_size: Option<usize>,
    /// Time for the whole opening handshake, TLS included [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) handshake_timeout: Option<Span>,
    /// Ping a client silent for this long; 0 never pings [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) idle_timeout: Option<Span>,
    /// Close a pinged client (1011) that sends nothing for this long [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) pong_timeout: Option<Span>,
    /// Time for a closing handshake before the connection is dropped [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) close_timeout: Option<Span>,
    /// Bytes queued for one slow client before the backpressure policy applies
    /// [default: 1048576]
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_send_queue: Option<usize>,
    /// What happens to a message for a client whose queue is full [default: disconnect]
    #[arg(long, value_enum)]
    pub(crate) backpressure: Option<Policy>,
    /// Accept upgrades from browser pages of this origin only (repeat for more; default:
    /// any)
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    #[serde(alias = "allowed-origin")]
    pub(crate) allowed_origins: Option<Vec<String>>,
    /// On SIGINT/SIGTERM, how long to wait for clients to close after their Close (1001; in
    /// hub mode 1012 with a hint to come back in 1 to 6 s) [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) shutdown_grace: Option<Span>,

    /// Accept permessage-deflate (compression) from clients that offer it [default: true]
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL",
        conflicts_with = "no_deflate",
        help_heading = "Compression"
    )]
    pub(crate) deflate: Option<bool>,
    /// Do not accept permessage-deflate: the same as --deflate=false (in a file:
    /// `deflate = false`)
    #[arg(long, help_heading = "Compression")]
    #[serde(skip)]
    pub(crate) no_deflate: bool,
    /// zlib level, 0 (store) to 9 (smallest); 1 compresses fastest [default: 1]
    #[arg(long, value_name = "0-9", help_heading = "Compression")]
    pub(crate) deflate_level: Option<Level>,
    /// Send messages shorter than this uncompressed, in bytes [default: 128]
    #[arg(long, value_name = "BYTES", help_heading = "Compression")]
    pub(crate) deflate_threshold: Option<usize>,

    /// Messages kept per channel, for history and recovery after a reconnect (0: none)
    /// [default: 100]
    #[arg(long, value_name = "N", help_heading = "Hub mode")]
    pub(crate) history_size: Option<usize>,
    /// Drop messages older than this from history (0: keep until pushed out) [default: 0]
    #[arg(long, value_name = "DURATION", help_heading = "Hub mode")]
    pub(crate) history_ttl: Option<Span>,
    /// Largest `data` of a publish, in bytes of JSON [default: 65536]
    #[arg(long, value_name = "BYTES", help_heading = "Hub mode")]
    pub(crate) max_data_size: Option<usize>,
    /// Send every client `{"type":"heartbeat"}` this often, announced in `connected`, so that
    /// pages (which cannot see pings) detect a dead network; 0 sends none [default: 25s]
    #[arg(long, value_name = "DURATION", help_heading = "Hub mode")]
    pub(crate) heartbeat: Option<Span>,
    /// Secret that verifies HS256 tokens passed as ?token=JWT (`sub` becomes the user).
    /// Without it, clients are anonymous and tokens are refused
    #[arg(
        long,
        env = "SWITCHBOARD_JWT_SECRET",
        hide_env_values = true,
        help_heading = "Hub mode"
    )]
    pub(crate) jwt_secret: Option<String>,
    /// A key of the server HTTP API (POST /api/publish, /api/history, ...), which a backend
    /// sends as `Authorization: Bearer KEY`; repeat for several valid at once (rotation).
    /// Without one the API is off (404)
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "SWITCHBOARD_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        help_heading = "Hub mode"
    )]
    #[serde(alias = "api-key")]
    pub(crate) api_keys: Option<Vec<String>>,
    /// The password of the admin dashboard at /admin (who is connected, live figures, channels,
    /// nodes; disconnect, publish). Without one the dashboard is off (404)
    #[arg(
        long,
        env = "SWITCHBOARD_ADMIN_PASSWORD",
        hide_env_values = true,
        help_heading = "Hub mode"
    )]
    pub(crate) admin_password: Option<String>,
    /// How long the API remembers a publish's idempotency_key: a repeat within it returns the
    /// first result and delivers nothing [default: 5m]
    #[arg(long, value_name = "DURATION", help_heading = "Hub mode")]
    pub(crate) idempotency_window: Option<Span>,
    /// Channel rule PATTERN=POLICY, first match wins; POLICY is public, authenticated,
    /// public-read or personal ('user:*=personal': only the token user 42 reads user:42, and
    /// no client publishes there); PATTERN is a name or a prefix and '*'. Repeat for more rules
    #[arg(
        long = "rule",
        value_name = "PATTERN=POLICY",
        help_heading = "Hub mode"
    )]
    #[serde(default, deserialize_with = "parsed")]
    #[serde(alias = "rule")]
    pub(crate) rules: Option<Vec<ChannelRule>>,
    /// POST each WebSocket connection's headers (cookies included), query and address to
    /// this URL; the backend answers who the user is or refuses (README: "Proxies")
    #[arg(long, value_name = "URL", help_heading = "Proxies")]
    pub(crate) connect_proxy: Option<String>,
    /// Ask URL whether a client may subscribe to a channel matching PATTERN (a name or a
    /// prefix and '*'); repeat for more namespaces, first match wins
    #[arg(
        long = "subscribe-proxy",
        value_name = "PATTERN=URL",
        help_heading = "Proxies"
    )]
    #[serde(alias = "subscribe-proxy")]
    pub(crate) subscribe_proxies: Option<Vec<Route>>,
    /// Ask URL whether a client may publish on a channel matching PATTERN, and what is
    /// published; repeat for more namespaces, first match wins
    #[arg(
        long = "publish-proxy",
        value_name = "PATTERN=URL",
        help_heading = "Proxies"
    )]
    #[serde(alias = "publish-proxy")]
    pub(crate) publish_proxies: Option<Vec<Route>>,
    /// How long a proxy call may take [default: 1s]
    #[arg(long, value_name = "DURATION", help_heading = "Proxies")]
    pub(crate) proxy_timeout: Option<Span>,
    /// What a proxy call that fails or times out does [default: refuse]
    #[arg(long, value_enum, help_heading = "Proxies")]
    pub(crate) proxy_failure: Option<Failure>,
    /// Share channels, history and presence with other nodes through Redis
    /// (redis://HOST:PORT[/DB]); several URLs separated by commas shard channels over
    /// as many Redis servers (every node lists them in the same order); without it,
    /// channels live in this process
    #[arg(long, value_name = "URL", help_heading = "Hub mode")]
    pub(crate) broker: Option<String>,
    /// --broker's URLs are seeds of one Redis Cluster (Redis 7): channels go to the master
    /// that owns their slot, found from any seed that answers [default: false]
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL",
        help_heading = "Redis broker"
    )]
    pub(crate) broker_cluster: Option<bool>,
    /// CA certificates (PEM) that a rediss:// broker's certificate must chain to, instead of
    /// the Mozilla roots: for a Redis whose certificate a private CA signed
    #[arg(long, value_name = "PEM", help_heading = "Redis broker")]
    pub(crate) broker_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for a rediss:// broker that asks for one
    /// (tls-auth-clients); needs --broker-key
    #[arg(
        long,
        value_name = "PEM",
        requires = "broker_key",
        help_heading = "Redis broker"
    )]
    pub(crate) broker_cert: Option<PathBuf>,
    /// Private key (PEM) of --broker-cert
    #[arg(
        long,
        value_name = "PEM",
        requires = "broker_cert",
        help_heading = "Redis broker"
    )]
    pub(crate) broker_key: Option<PathBuf>,
    /// Password of the broker's Redis (of the URL's ACL user, or requirepass), instead of
    /// the URL's; from the environment, it stays out of the process list
    #[arg(
        long,
        env = "SWITCHBOARD_BROKER_PASSWORD",
        hide_env_values = true,
        help_heading = "Redis broker"
    )]
    pub(crate) broker_password: Option<String>,
    /// Time to open a connection to Redis: TCP, TLS handshake and authentication
    /// [default: 3s]
    #[arg(long, value_name = "DURATION", help_heading = "Redis broker")]
    pub(crate) broker_connect_timeout: Option<Span>,
    /// Time for Redis to answer a request; past it the request fails (a publish is not
    /// acknowledged) and /healthz answers 503 until Redis answers again [default: 3s]
    #[arg(long, value_name = "DURATION", help_heading = "Redis broker")]
    pub(crate) broker_response_timeout: Option<Span>,

    /// POST channel and presence events to this http:// or https:// URL; needs
    /// --webhook-secret
    #[arg(long, value_name = "URL", help_heading = "Webhooks")]
    pub(crate) webhook_url: Option<String>,
    /// Key of each webhook's HMAC-SHA256 signature (X-Switchboard-Signature)
    #[arg(
        long,
        env = "SWITCHBOARD_WEBHOOK_SECRET",
        hide_env_values = true,
        help_heading = "Webhooks"
    )]
    pub(crate) webhook_secret: Option<String>,
    /// The events posted, comma-separated: channel_occupied, channel_vacated, member_added,
    /// member_removed [default: all]
    #[arg(
        long,
        value_name = "EVENTS",
        value_delimiter = ',',
        help_heading = "Webhooks"
    )]
    #[serde(default, deserialize_with = "parsed")]
    pub(crate) webhook_events: Option<Vec<EventKind>>,
    /// Time for one webhook request before it counts as failed [default: 10s]
    #[arg(long, value_name = "DURATION", help_heading = "Webhooks")]
    pub(crate) webhook_timeout: Option<Span>,
    /// How long a failed webhook is retried, with backoff, before its events are dropped
    /// [default: 1m]
    #[arg(long, value_name = "DURATION", help_heading = "Webhooks")]
    pub(crate) webhook_retry: Option<Span>,

    /// Serve the Pusher Channels protocol on /app/KEY for the app ID:KEY:SECRET (pusher-js,
    /// Laravel Echo; README: "Coming from Pusher"); repeat for more apps
    #[arg(
        long = "pusher-app",
        value_name = "ID:KEY:SECRET",
        help_heading = "Pusher"
    )]
    #[serde(default, deserialize_with = "parsed", alias = "pusher-app")]
    pub(crate) pusher_apps: Option<Vec<PusherApp>>,
    /// Let the clients of the --pusher-app apps send client- events on private and presence
    /// channels [default: false]
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL",
        help_heading = "Pusher"
    )]
    pub(crate) pusher_client_events: Option<bool>,
    /// Post app ID's webhooks (channel_occupied, channel_vacated, member_added,
    /// member_removed, client_event) to URL in Pusher's format, signed with its secret;
    /// repeat for more apps
    #[arg(
        long = "pusher-webhook",
        value_name = "ID=URL",
        help_heading = "Pusher"
    )]
    #[serde(default, deserialize_with = "parsed", alias = "pusher-webhook")]
    pub(crate) pusher_webhooks: Option<Vec<String>>,
    /// The file's `[pusher]` section: `[[pusher.apps]]` with id, key, secret,
    /// client_events and webhook_url.
    #[arg(skip)]
    pub(crate) pusher: Option<PusherSection>,
}

/// The settings file's `[pusher]` section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PusherSection {
    /// The apps, each `{ id, key, secret, client_events }`.
    #[serde(default)]
    pub(crate) apps: Vec<PusherAppEntry>,
}

/// One app of the `[pusher]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PusherAppEntry {
    pub(crate) id: String,
    pub(crate) key: String,
    pub(crate) secret: String,
    /// Whether its clients may send client events [default: false]
    #[serde(default, alias = "client-events")]
    pub(crate) client_events: bool,
    /// Where its webhooks go, in Pusher's format [default: none]
    #[serde(default, alias = "webhook-url")]
    pub(crate) webhook_url: Option<String>,
}

impl PusherAppEntry {
    /// The app, its id, key and secret checked as `--pusher-app` checks them.
    pub(crate) fn app(&self) -> Result<PusherApp, AppError> {
        let app: PusherApp = format!("{}:{}:{}", self.id, self.key, self.secret).parse()?;
        Ok(app.with_client_events(self.client_events))
    }
}

/// A list of strings in a file, each read as its flag reads it: `rules =
/// ["team:*=authenticated"]`, `webhook-events = ["member_added"]`.
fn parsed<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr<Err: fmt::Display>,
{
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| t.parse().map_err(serde::de::Error::custom))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// A trusted proxy: a CIDR block, or one address (a block of one).
fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a CIDR block such as 10.0.0.0/8"))
}

/// `trusted-proxy = ["10.0.0.0/8", "127.0.0.1"]` in a file.
fn nets<'de, D>(d: D) -> Result<Option<Vec<IpNet>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| parse_net(t).map_err(serde::de::Error::custom))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// `--backpressure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Policy {
    /// Drop the message; the client misses it.
    Drop,
    /// Close the client's connection with 1013 (try again later).
    Disconnect,
}

impl ServeOptions {
    /// Refuses sizes of 0, which would refuse every message or connection rather than mean
    /// "no limit".
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        let sizes = [
            ("max-message-size", self.max_message_size),
            ("max-frame-size", self.max_frame_size),
            ("max-fragments", self.max_fragments),
            ("max-head-size", self.max_head_size),
            ("max-send-queue", self.max_send_queue),
        ];
        for (name, value) in sizes {
            anyhow::ensure!(
                value != Some(0),
                "--{name} 0 would refuse every message: give at least 1"
            );
        }
        Ok(())
    }

    /// Whether permessage-deflate is accepted: yes unless `--no-deflate` or `deflate = false`.
    pub(crate) fn deflate_enabled(&self) -> bool {
        !self.no_deflate && self.deflate.unwrap_or(true)
    }

    /// Whether HTTP/2 is offered with TLS.
    pub(crate) fn http2_enabled(&self) -> bool {
        !self.no_http2 && self.http2.unwrap_or(true)
    }
}
