//! The client side of the Autobahn|Testsuite: runs every case of a fuzzingserver (echoing what
//! it sends), then asks it to write its report.
//!
//! ```text
//! cargo run --release -p switchboard --example autobahn_client -- ws://127.0.0.1:9001
//! ```
//!
//! With `--http2` before the URL, every case is a WebSocket over one HTTP/2 connection
//! (RFC 8441) to a `wss://` URL whose certificate is not checked: the fuzzingserver speaks
//! HTTP/1.1 only, so this goes through `h2_bridge from-h2` on loopback (`e2e/autobahn/run.sh
//! client-h2`).

use switchboard::tls::ClientTls;
use switchboard::{
    ConnectOptions, DeflateConfig, Error, Http2Connection, MaybeTlsStream, Message, WebSocket,
    connect_with,
};

const AGENT: &str = "switchboard";

/// Where the cases' WebSockets open: a connection of their own each, or streams of one
/// HTTP/2 connection.
enum Opener {
    Http1(String),
    Http2(Http2Connection),
}

impl Opener {
    async fn open(&self, path: &str) -> Result<WebSocket<MaybeTlsStream>, Error> {
        match self {
            Self::Http1(base) => Ok(connect_with(&format!("{base}{path}"), &options()).await?.0),
            Self::Http2(connection) => Ok(connection.open(path).await?.0),
        }
    }
}

/// Offer permessage-deflate (sections 12 and 13), and compress every echo, however short.
fn options() -> ConnectOptions {
    ConnectOptions {
        deflate: Some(DeflateConfig {
            threshold: 0,
            ..DeflateConfig::default()
        }),
        ..ConnectOptions::default()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let http2 = args.iter().any(|a| a == "--http2");
    let base = args
        .last()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let base = base.trim_end_matches('/').to_owned();
    let opener = if http2 {
        let options = ConnectOptions {
            tls: Some(ClientTls::dangerous_insecure()),
            ..options()
        };
        Opener::Http2(Http2Connection::connect(&base, &options).await?)
    } else {
        Opener::Http1(base)
    };
    let mut ws = opener.open("/getCaseCount").await?;
    let count: u32 = match ws.recv().await {
        Some(Ok(Message::Text(text))) => text.parse().map_err(|_| Error::Closed)?,
        other => panic!("expected the case count, got {other:?}"),
    };
    while ws.recv().await.is_some() {}
    for case in 1..=count {
        if let Err(e) = run_case(&opener, case).await {
            eprintln!("case {case}: {e}");
        }
    }
    let mut ws = opener
        .open(&format!("/updateReports?agent={AGENT}"))
        .await?;
    while ws.recv().await.is_some() {}
    Ok(())
}

async fn run_case(opener: &Opener, case: u32) -> Result<(), Error> {
    let mut ws = opener
        .open(&format!("/runCase?case={case}&agent={AGENT}"))
        .await?;
    while let Some(message) = ws.recv().await {
        let message = message?;
        if message.is_data() {
            // Queued now, written (with any others) before the next read.
            ws.feed(message)?;
        }
    }
    Ok(())
}
