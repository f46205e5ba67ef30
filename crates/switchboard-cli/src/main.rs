//! `switchboard`: serve WebSockets, talk to a WebSocket server from the terminal, measure one.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod connect;
mod serve;

#[derive(Parser, Debug)]
#[command(
    name = "switchboard",
    version,
    about = "WebSocket server, client and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a WebSocket server.
    Serve(serve::ServeArgs),
    /// Connect to a WebSocket server: lines typed are sent, messages received are printed.
    Connect(connect::ConnectArgs),
    /// Measure a WebSocket server: echo, broadcast, idle connections, handshakes.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let command = match cli.command {
        // The load generator sizes its own runtime.
        Command::Bench(args) => return exit_code(bench::main(args)),
        command => command,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Serve(args) => serve::run(args).await,
            Command::Connect(args) => connect::run(args).await,
            Command::Bench(_) => unreachable!("run before the runtime starts"),
        }
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
