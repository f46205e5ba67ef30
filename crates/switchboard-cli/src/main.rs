//! `switchboard`: serve WebSockets, talk to a WebSocket server from the terminal.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use switchboard::{CloseCode, Message, Server};
use tokio::io::{AsyncBufReadExt, BufReader};

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
    Serve(ServeArgs),
    /// Connect to a WebSocket server: lines typed are sent, messages received are printed.
    Connect(ConnectArgs),
}

#[derive(Parser, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, short, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// What the server does with messages.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
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
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Send every message back to its sender.
    Echo,
    /// Send every message to every other client.
    Broadcast,
}

#[derive(Parser, Debug)]
struct ConnectArgs {
    /// The server's URL, e.g. ws://127.0.0.1:8080/ws
    url: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Connect(args) => connect(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let server = Server::builder()
        .max_message_size(args.max_message_size)
        .max_frame_size(args.max_frame_size)
        .max_fragments(args.max_fragments)
        .bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = server.local_addr()?;
    tracing::info!(mode = ?args.mode, "listening on ws://{addr}");
    match args.mode {
        Mode::Echo => server.serve(|ws, _| switchboard_hub::echo(ws)).await?,
        Mode::Broadcast => {
            let group = switchboard_hub::Broadcast::new();
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

async fn connect(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let (ws, _response) = switchboard::connect(&args.url)
        .await
        .with_context(|| format!("cannot connect to {}", args.url))?;
    eprintln!(
        "connected to {} (type lines to send; end input to close)",
        args.url
    );
    let (sender, mut receiver) = ws.split();
    let input = tokio::spawn({
        let sender = sender.clone();
        async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if sender.send(Message::text(line)).await.is_err() {
                    return;
                }
            }
            let _ = sender.close(CloseCode::NORMAL, "").await;
        }
    });
    let mut code = ExitCode::FAILURE;
    while let Some(message) = receiver.recv().await {
        match message {
            Ok(Message::Text(text)) => println!("{text}"),
            Ok(Message::Binary(data)) => println!("{}", hex(&data)),
            Ok(Message::Close(frame)) => {
                let normal = [CloseCode::NORMAL, CloseCode::GOING_AWAY];
                code = match &frame {
                    None => ExitCode::SUCCESS,
                    Some(f) if normal.contains(&f.code) => ExitCode::SUCCESS,
                    Some(_) => ExitCode::FAILURE,
                };
                match frame {
                    Some(f) => eprintln!("closed: {} {}", f.code, f.reason),
                    None => eprintln!("closed"),
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    input.abort();
    Ok(code)
}

fn hex(data: &[u8]) -> String {
    data.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
