//! `switchboard publish`: one message to a channel through a hub's server API
//! (`POST /api/publish`), for scripts and cron jobs.
//!
//! Prints the server's answer (`{"epoch":..,"offset":..}`) on standard output. Exit status: 0
//! published, 1 refused by the server or failed on the way, 2 bad arguments.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Args;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::value::RawValue;
use switchboard::MaybeTlsStream;

use crate::connect::parse_seconds;
use crate::trust::client_tls;

#[derive(Args, Debug)]
pub(crate) struct PublishArgs {
    /// The channel to publish on
    channel: String,
    /// The message, as JSON: `{"text":"hi"}`, `"hi"`, `42`; `-` reads it from standard input
    data: String,
    /// The server: its http:// or https:// URL (the API is under /api)
    #[arg(long, env = "SWITCHBOARD_API", default_value = "http://127.0.0.1:8080")]
    api: String,
    /// One of the server's API keys (`serve --api-key`)
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    key: String,
    /// Makes retrying safe: the server publishes a message with this key once within its
    /// idempotency window, and answers a repeat with the first result
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Give up after SECONDS
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_seconds)]
    timeout: f64,
    /// For https://, trust the certificates of this PEM file instead of the Mozilla roots
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// For https://, do not verify the server's certificate (development only)
    #[arg(short = 'k', long)]
    insecure: bool,
}

#[derive(Serialize)]
struct Publish<'a> {
    channel: &'a str,
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
}

pub(crate) async fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let text = if args.data == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the message from standard input")?;
        text
    } else {
        args.data.clone()
    };
    let data: Box<RawValue> = match serde_json::from_str(text.trim()) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("error: the message is not JSON ({e}); a string is written \"in quotes\"");
            return Ok(ExitCode::from(2));
        }
    };
    let uri = match endpoint(&args.api) {
        Ok(uri) => uri,
        Err(e) => {
            eprintln!("error: --api {}: {e:#}", args.api);
            return Ok(ExitCode::from(2));
        }
    };
    let body = serde_json::to_vec(&Publish {
        channel: &args.channel,
        data: &data,
        idempotency_key: args.idempotency_key.as_deref(),
    })?;
    let tls = client_tls(args.ca.as_deref(), args.insecure)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let request = post(&uri, &args.key, body)?;
    let (status, answer) = tokio::time::timeout(timeout, send(&uri, tls.as_ref(), request))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {uri} within {}s", args.timeout))??;
    let answer = String::from_utf8_lossy(&answer);
    if status == StatusCode::OK {
        println!("{}", answer.trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("error: {uri} answered {status}: {}", reason(&answer));
    Ok(ExitCode::FAILURE)
}

/// The publish endpoint under the server's URL (which may have a path, behind a proxy).
fn endpoint(api: &str) -> anyhow::Result<Uri> {
    let base: Uri = api.parse().context("not a URL")?;
    match base.scheme_str() {
        Some("http" | "https") => {}
        _ => bail!("expected an http:// or https:// URL"),
    }
    let Some(authority) = base.authority() else {
        bail!("no host");
    };
    let path = format!("{}/api/publish", base.path().trim_end_matches('/'));
    let uri = Uri::builder()
        .scheme(base.scheme_str().unwrap_or("http"))
        .authority(authority.as_str())
        .path_and_query(path)
        .build()?;
    Ok(uri)
}

fn post(uri: &Uri, key: &str, body: Vec<u8>) -> anyhow::Result<Request<Full<Bytes>>> {
    let host = uri.authority().map_or("", |a| a.as_str());
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri.path())
        .header(header::HOST, host)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("switchboard/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))
        .context("--key is not a valid header value")?;
    Ok(request)
}

/// Sends `request` over a connection of its own; the status and the whole body.
async fn send(
    uri: &Uri,
    tls: Option<&switchboard::tls::ClientTls>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    // The error says it all: its source, which `{:#}` would print again, is left out.
    let stream = MaybeTlsStream::connect(uri, tls)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {uri}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("starting HTTP")?;
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("POST {uri}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the answer")?
        .to_bytes();
    drop(sender);
    let _ = connection.await;
    Ok((status, body))
}

/// What a refusal says: the API's `{"error":{"code","message"}}`, else the body as it is.
fn reason(answer: &str) -> String {
    let error = serde_json::from_str::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v.get("error").cloned());
    match error {
        Some(error) => format!(
            "{} ({})",
            error["message"].as_str().unwrap_or("no message"),
            error["code"].as_str().unwrap_or("no code")
        ),
        None => answer.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_under_the_servers_url() {
        let uri = |api| endpoint(api).map(|uri| uri.to_string());
        assert_eq!(
            uri("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/api/publish"
        );
        assert_eq!(
            uri("https://hub.example/").unwrap(),
            "https://hub.example/api/publish"
        );
        assert_eq!(
            uri("https://example.com/hub/").unwrap(),
            "https://example.com/hub/api/publish"
        );
        assert!(uri("ws://127.0.0.1:8080").is_err());
        assert!(uri("127.0.0.1:8080").is_err());
    }

    #[test]
    fn a_refusal_reads_as_its_message_and_code() {
        let json = r#"{"error":{"code":"unauthorized","message":"bad API key"}}"#;
        assert_eq!(reason(json), "bad API key (unauthorized)");
        assert_eq!(reason("not found\n"), "not found");
    }
}
