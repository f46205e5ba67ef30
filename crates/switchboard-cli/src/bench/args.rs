//! The command line of `switchboard bench`.

use std::time::Duration;

use clap::{Args, Parser, ValueEnum};
use serde::Serialize;

use crate::units::parse_span;

#[derive(Parser, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// The server's URL, e.g. ws://127.0.0.1:8080/ (with --raw: the host and port of a raw echo).
    pub(crate) url: String,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub(crate) mode: Mode,
    /// Connections (echo, idle), subscribers (broadcast, hub) or concurrent workers
    /// (handshakes).
    #[arg(long, short, default_value_t = 100)]
    pub(crate) connections: usize,
    /// Message payload size in bytes; in hub mode, what a publication's data is padded to
    /// (no short flag: -s is --subprotocol, as in connect).
    #[arg(long, default_value_t = 16)]
    pub(crate) size: usize,
    /// Send binary messages instead of text.
    #[arg(long)]
    pub(crate) binary: bool,
    /// Messages in flight per connection (1: wait for each echo; more: pipelined). In broadcast
    /// and hub modes, messages each publisher may have out that not every subscriber has
    /// received.
    /// (-m as h2load's --max-concurrent-streams; -k is --insecure, as in connect and curl)
    #[arg(long, short = 'm', default_value_t = 1)]
    pub(crate) in_flight: usize,
    /// The measured window, e.g. 10s, 500ms, 1m.
    #[arg(long, short, default_value = "10s", value_parser = parse_span)]
    pub(crate) duration: Duration,
    /// Load applied before the measured window, not counted.
    #[arg(long, default_value = "2s", value_parser = parse_span)]
    pub(crate) warmup: Duration,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub(crate) json: bool,
    /// The target is a raw echo (bench/peers/raw-echo): a WebSocket server without the opening
    /// handshake, which answers each frame with its payload unmasked. The connections speak
    /// to it as to a WebSocket server after the handshake, so this load generator's cost per
    /// message is the same, and the server's is the least a WebSocket can cost (the floor).
    /// In handshakes mode a cycle is TCP connect and the closing handshake.
    #[arg(long, conflicts_with_all = ["headers", "subprotocols", "origin"])]
    pub(crate) raw: bool,
    /// The server's process id: its CPU time over the window (and in idle mode its resident
    /// memory) is read from /proc and reported.
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Threads of the load generator (1: a single-threaded runtime, best when it has one core).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// For wss://, trust the certificates in this PEM file instead of the public roots
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub(crate) ca: Option<std::path::PathBuf>,
    /// For wss://, do not verify the server's certificate (development only)
    #[arg(short = 'k', long)]
    pub(crate) insecure: bool,
    /// Connections being opened at any one time during setup.
    #[arg(long, default_value_t = 64)]
    pub(crate) connect_concurrency: usize,
    /// Idle mode: open the connections without exchanging a message on each first.
    #[arg(long)]
    pub(crate) no_echo: bool,
    /// Offer permessage-deflate, as browsers do; the report says how many connections the
    /// server agreed it on.
    #[arg(long, conflicts_with = "raw")]
    pub(crate) deflate: bool,
    /// For wss://, open the WebSockets over HTTP/2 (RFC 8441), --streams-per-connection on
    /// each connection; over HTTP/1.1 (with a note) when the server does not take them.
    #[arg(long, conflicts_with = "raw")]
    pub(crate) http2: bool,
    #[command(flatten)]
    pub(crate) handshake: crate::handshake_args::HandshakeArgs,
    #[command(flatten)]
    pub(crate) proxy: crate::client_proxy::ProxyArgs,
    #[command(flatten)]
    pub(crate) hub: HubArgs,
    /// With --http2: WebSockets sharing one HTTP/2 connection.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "http2")]
    pub(crate) streams_per_connection: usize,
}

/// The options of hub mode.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Hub mode")]
pub(crate) struct HubArgs {
    /// WebSocket publishers, each on a connection of its own
    #[arg(long, value_name = "P", default_value_t = 1)]
    pub(crate) publishers: usize,
    /// Publishers connect here, in turn (repeat for several nodes; default: the server's URL)
    #[arg(long, value_name = "URL")]
    pub(crate) publish: Vec<String>,
    /// A publisher through the server API: `POST` to this URL (e.g.
    /// http://127.0.0.1:8080/api/publish) over one keep-alive connection (repeat for more)
    #[arg(long, value_name = "URL", requires = "api_key")]
    pub(crate) api_publish: Vec<String>,
    /// The key the API publishers send (`serve --api-key`)
    #[arg(long, value_name = "KEY")]
    pub(crate) api_key: Option<String>,
    /// Subscribers connect here, in turn (repeat for several nodes; default: the server's URL)
    #[arg(long, value_name = "URL")]
    pub(crate) subscribe: Vec<String>,
    /// A channel (repeat for more: publishers take them in turn, every subscriber follows all)
    #[arg(long, value_name = "NAME", default_value = "bench")]
    pub(crate) channel: Vec<String>,
    /// Publications per second over all publishers; 0: as fast as deliveries allow
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) rate: u64,
    /// A process of the deployment (node, Redis) whose CPU time over the window is reported
    /// per delivery (repeat for each)
    #[arg(long, value_name = "PID")]
    pub(crate) cpu_pid: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Echoes on N connections, K in flight on each.
    Echo,
    /// One publisher, N subscribers, against a server that broadcasts.
    Broadcast,
    /// Open N connections and hold them.
    Idle,
    /// Connect, upgrade and close, with N workers.
    Handshakes,
    /// Publishers and N subscribers over the hub protocol (`serve --mode hub`, URL
    /// ws://HOST:PORT/ws), on one node or several, every delivery checked.
    Hub,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short flags `connect` shares mean the same here; those of bench's own are others.
    #[test]
    fn short_flags_mean_what_they_mean_to_connect() {
        let args = BenchArgs::try_parse_from([
            "bench",
            "wss://127.0.0.1:9/",
            "-k",
            "-H",
            "X-A: 1",
            "-s",
            "chat",
            "--origin",
            "https://chat.example",
            "-m",
            "8",
            "-c",
            "3",
            "--size",
            "64",
        ])
        .unwrap();
        assert!(args.insecure);
        assert_eq!(args.handshake.headers.len(), 1);
        assert_eq!(args.handshake.subprotocols, ["chat"]);
        assert!(args.handshake.origin.is_some());
        assert_eq!((args.in_flight, args.connections, args.size), (8, 3, 64));
        // Nothing of the handshake applies to a raw echo.
        let raw = BenchArgs::try_parse_from(["bench", "127.0.0.1:9", "--raw", "-s", "chat"]);
        assert!(raw.is_err());
    }
}
