//! `switchboard connect`: a terminal WebSocket client.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use switchboard::{CloseCode, ConnectOptions, DeflateConfig, Message};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser, Debug)]
pub(crate) struct ConnectArgs {
    /// The server's URL, e.g. ws://127.0.0.1:8080/ws
    url: String,
    /// Offer permessage-deflate (compression), as browsers do.
    #[arg(long)]
    deflate: bool,
}

pub(crate) async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let options = ConnectOptions {
        deflate: args.deflate.then(DeflateConfig::default),
        ..ConnectOptions::default()
    };
    let (ws, _response) = switchboard::connect_with(&args.url, &options)
        .await
        .with_context(|| format!("cannot connect to {}", args.url))?;
    eprintln!(
        "connected to {} (type lines to send; end input to close)",
        args.url
    );
    if let Some(params) = ws.deflate() {
        let agreed = params.to_header();
        eprintln!("compression: {}", agreed.to_str().unwrap_or_default());
    }
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
