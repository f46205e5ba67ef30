//! The client side of the Autobahn|Testsuite: runs every case of a fuzzingserver (echoing what
//! it sends), then asks it to write its report.
//!
//! ```text
//! cargo run --release -p switchboard --example autobahn_client -- ws://127.0.0.1:9001
//! ```

use switchboard::{ConnectOptions, DeflateConfig, Error, Message, connect, connect_with};

const AGENT: &str = "switchboard";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let (mut ws, _) = connect(&format!("{base}/getCaseCount")).await?;
    let count: u32 = match ws.recv().await {
        Some(Ok(Message::Text(text))) => text.parse().map_err(|_| Error::Closed)?,
        other => panic!("expected the case count, got {other:?}"),
    };
    while ws.recv().await.is_some() {}
    for case in 1..=count {
        if let Err(e) = run_case(&base, case).await {
            eprintln!("case {case}: {e}");
        }
    }
    let (mut ws, _) = connect(&format!("{base}/updateReports?agent={AGENT}")).await?;
    while ws.recv().await.is_some() {}
    Ok(())
}

async fn run_case(base: &str, case: u32) -> Result<(), Error> {
    // Offer permessage-deflate (sections 12 and 13), and compress every echo, however short.
    let options = ConnectOptions {
        deflate: Some(DeflateConfig {
            threshold: 0,
            ..DeflateConfig::default()
        }),
        ..ConnectOptions::default()
    };
    let url = format!("{base}/runCase?case={case}&agent={AGENT}");
    let (mut ws, _) = connect_with(&url, &options).await?;
    while let Some(message) = ws.recv().await {
        let message = message?;
        if message.is_data() {
            // Queued now, written (with any others) before the next read.
            ws.feed(message)?;
        }
    }
    Ok(())
}
