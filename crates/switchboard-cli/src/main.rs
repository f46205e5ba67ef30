//! `switchboard`: serve WebSockets, talk to a WebSocket server from the terminal, publish to a
//! hub from scripts, measure a server.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

mod admin;
mod bench;
mod client_proxy;
mod config;
mod connect;
mod handshake_args;
mod hub_mode;
mod memory;
#[cfg(feature = "otel")]
mod otel;
mod port_lock;
mod proxies;
mod publish;
mod serve;
mod terminal;
mod trust;
mod units;
mod web;

#[derive(Parser, Debug)]
#[command(
    name = "switchboard",
    version,
    about = "WebSocket server, client and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written (to stderr): text for people, or json, one object a line
    /// with timestamp, level, target and the event's fields, for log shippers.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "SWITCHBOARD_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Export traces (handshake, publish, broker and proxy calls, with the request id) as
    /// OpenTelemetry spans over OTLP/HTTP to this collector, e.g. http://127.0.0.1:4318
    /// (they go to URL/v1/traces).
    #[cfg(feature = "otel")]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    otlp_endpoint: Option<String>,
    /// Without the feature the flag is refused with the reason (the environment variable is
    /// left to other programs).
    #[cfg(not(feature = "otel"))]
    #[arg(long, global = true, hide = true)]
    otlp_endpoint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a WebSocket server.
    Serve(Box<serve::ServeArgs>),
    /// Connect to a WebSocket server: lines typed are sent, messages received are printed.
    Connect(connect::ConnectArgs),
    /// Measure a WebSocket server: echo, broadcast, idle connections, handshakes.
    Bench(bench::BenchArgs),
    /// Publish a message on a channel of a hub, through its server API.
    Publish(publish::PublishArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour for a person at a terminal, not for a file or a pipe (or with NO_COLOR set).
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    let logs = match cli.log_format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs.with_filter(filter));
    #[cfg(not(feature = "otel"))]
    {
        if cli.otlp_endpoint.is_some() {
            eprintln!(
                "error: --otlp-endpoint: this switchboard was built without the otel feature \
                 (cargo build --release -p switchboard-cli --features otel)"
            );
            return ExitCode::FAILURE;
        }
        registry.init();
    }
    // Kept to the end of `main`: dropping it sends the spans still queued.
    #[cfg(feature = "otel")]
    let _traces = {
        let traces = cli.otlp_endpoint.as_deref().map(otel::layer).transpose();
        let (layer, traces) = match traces {
            Ok(traces) => traces.unzip(),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        registry.with(layer).init();
        traces
    };
    match cli.command {
        // The load generator sizes its own runtime.
        Command::Bench(args) => exit_code(bench::main(args)),
        Command::Serve(args) => block_on(serve::run(*args)),
        Command::Connect(args) => block_on(connect::run(args)),
        Command::Publish(args) => block_on(publish::run(args)),
    }
}

/// Runs a command on a multi-threaded runtime, as a task of its own: on the main thread it
/// would compete with the worker threads for the cores (a server's accept loop did, measured).
/// With one core to run on, a single-threaded runtime does the same work without the
/// scheduler's cross-thread bookkeeping.
fn block_on<F>(command: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<ExitCode>> + Send + 'static,
{
    // Counts the CPUs this process may run on (its affinity, its cgroup's quota).
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::spawn(command)
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the command's task failed: {e}")))
    });
    exit_code(result)
}

fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
