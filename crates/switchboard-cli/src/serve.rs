//! `switchboard serve`: run a WebSocket server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use serde::Deserialize;
use switchboard::tls::ServerTls;
use switchboard::{Backpressure, Server};

use crate::config::{Policy, ServeOptions};

#[derive(Parser, Debug)]
pub(crate) struct ServeArgs {
    /// Read settings from a TOML file (keys as the flags, without the dashes in front:
    /// `max-connections = 1000`); flags given here win
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    options: ServeOptions,
}

#[derive(Clone, Copy, Debug, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// Send every message back to its sender.
    Echo,
    /// Send every message to every other client.
    Broadcast,
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let options = match &args.config {
        Some(path) => args.options.or(ServeOptions::from_file(path)?),
        None => args.options,
    };
    let listen = options
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let mode = options.mode.unwrap_or(Mode::Echo);
    let tls = tls(&options, listen)?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let server = builder(&options, tls)
        .bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = server.local_addr()?;
    tracing::info!(?mode, "listening on {scheme}://{addr}");
    match mode {
        Mode::Echo => {
            server
                .serve_with_shutdown(|ws, _| switchboard_hub::echo(ws), shutdown_signal())
                .await?;
        }
        Mode::Broadcast => {
            let group = switchboard_hub::Broadcast::new();
            server
                .serve_with_shutdown(
                    move |ws, _| {
                        let group = group.clone();
                        async move { group.serve(ws).await }
                    },
                    shutdown_signal(),
                )
                .await?;
        }
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The server as `options` say, with `/healthz` and `/metrics`.
fn builder(options: &ServeOptions, tls: Option<ServerTls>) -> switchboard::ServerBuilder {
    let mut builder = Server::builder()
        .health_endpoint("/healthz")
        .metrics_endpoint("/metrics");
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    macro_rules! set {
        ($($field:ident),* $(,)?) => {
            $(if let Some(value) = options.$field {
                builder = builder.$field(value);
            })*
        };
    }
    set!(
        max_connections,
        max_message_size,
        max_frame_size,
        max_fragments,
        max_head_size,
        max_send_queue,
    );
    macro_rules! set_span {
        ($($field:ident),* $(,)?) => {
            $(if let Some(value) = options.$field {
                builder = builder.$field(value.0);
            })*
        };
    }
    set_span!(
        handshake_timeout,
        pong_timeout,
        close_timeout,
        shutdown_grace
    );
    if let Some(idle) = options.idle_timeout {
        builder = builder.idle_timeout((!idle.0.is_zero()).then_some(idle.0));
    }
    if let Some(policy) = options.backpressure {
        builder = builder.backpressure(match policy {
            Policy::Drop => Backpressure::Drop,
            Policy::Disconnect => Backpressure::Disconnect,
        });
    }
    if let Some(origins) = &options.allowed_origins {
        builder = builder.allowed_origins(origins.iter().cloned());
    }
    builder
}

/// The TLS identity from `--tls-cert/--tls-key` or `--tls-self-signed`.
fn tls(options: &ServeOptions, listen: SocketAddr) -> anyhow::Result<Option<ServerTls>> {
    let self_signed = options.tls_self_signed.unwrap_or(false);
    match (&options.tls_cert, &options.tls_key) {
        (Some(_), Some(_)) if self_signed => {
            anyhow::bail!("--tls-self-signed and --tls-cert/--tls-key exclude each other")
        }
        (Some(cert), Some(key)) => Ok(Some(ServerTls::from_pem_files(cert, key)?)),
        (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key"),
        (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert"),
        (None, None) if self_signed => {
            let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
            if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
                names.push(listen.ip().to_string());
            }
            let tls = ServerTls::self_signed(names.clone())?;
            let fingerprint = tls.fingerprint().unwrap_or_default();
            let names = names.join(", ");
            tracing::info!(
                "self-signed certificate for {names}: SHA-256 fingerprint {fingerprint}"
            );
            Ok(Some(tls))
        }
        (None, None) => Ok(None),
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested");
}
