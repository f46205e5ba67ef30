//! `switchboard`: serve WebSockets, talk to a WebSocket server from the terminal, publish to a
//! hub from scripts, measure a server.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// See the `jemalloc` feature: a server's memory is mostly many small blocks per connection.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod admin;
mod bench;
mod client_proxy;
mod config;
mod connect;
mod hub_mode;
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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
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
