//! `switchboard connect`: a terminal WebSocket client.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use switchboard::tls::ClientTls;
use switchboard::{CloseCode, ConnectOptions, Message};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser, Debug)]
pub(crate) struct ConnectArgs {
    /// The server's URL, e.g. ws://127.0.0.1:8080/ws or wss://example.com/ws
    url: String,
    /// Trust the certificates of this PEM file (instead of the Mozilla roots) for wss://
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Do not verify the server's certificate (development only: anyone on the path can
    /// impersonate the server)
    #[arg(long, short = 'k')]
    insecure: bool,
}

pub(crate) async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let mut options = ConnectOptions::default();
    if args.insecure {
        options.tls = Some(ClientTls::dangerous_insecure());
    } else if let Some(ca) = &args.ca {
        options.tls = Some(ClientTls::from_ca_file(ca)?);
    }
    let (ws, _response) = switchboard::connect_with(&args.url, &options)
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
