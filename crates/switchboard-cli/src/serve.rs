//! `switchboard serve`: run a WebSocket server.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use switchboard::{DeflateConfig, Server};

#[derive(Parser, Debug)]
pub(crate) struct ServeArgs {
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
    /// Do not accept permessage-deflate (compression is on by default for clients that offer
    /// it).
    #[arg(long)]
    no_deflate: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Mode {
    /// Send every message back to its sender.
    Echo,
    /// Send every message to every other client.
    Broadcast,
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let server = Server::builder()
        .max_message_size(args.max_message_size)
        .max_frame_size(args.max_frame_size)
        .max_fragments(args.max_fragments)
        .deflate((!args.no_deflate).then(|| DeflateConfig {
            // No compressor per connection (about 28 KiB per connection instead of 340), and
            // a broadcast is compressed once for every recipient.
            server_no_context_takeover: true,
            ..DeflateConfig::default()
        }))
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
