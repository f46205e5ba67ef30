//! The server `serve` listens with, as its options say: limits, compression, HTTP/2, the
//! health and metrics endpoints, and TLS.

use std::net::SocketAddr;

use switchboard::tls::ServerTls;
use switchboard::{Backpressure, DeflateConfig, Server};

use crate::config::{Policy, ServeOptions};

/// The server as `options` say, with `/healthz` and `/metrics`.
pub(super) fn builder(
    options: &ServeOptions,
    tls: Option<ServerTls>,
) -> switchboard::ServerBuilder {
    let mut builder = Server::builder()
        .health_endpoint("/healthz")
        .metrics_endpoint("/metrics");
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder = builder.http2(options.http2_enabled());
    if let Some(streams) = options.http2_max_streams {
        builder = builder.http2_max_concurrent_streams(streams);
    }
    builder = builder.h2c(options.h2c.unwrap_or(false));
    macro_rules! set {
        ($($field:ident),* $(,)?) => {
            $(if let Some(value) = options.$field {
                builder = builder.$field(value);
            })*
        };
    }
    set!(
        max_connections,
        max_handshakes,
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
    builder = builder
        .handshake_rate(options.handshake_rate)
        .max_connections_per_address(options.max_connections_per_ip)
        .trusted_proxies(options.trusted_proxies.iter().flatten().copied());
    if let Some(origins) = &options.allowed_origins {
        builder = builder.allowed_origins(origins.iter().cloned());
    }
    builder.deflate(options.deflate_enabled().then(|| {
        let defaults = DeflateConfig::default();
        DeflateConfig {
            level: options
                .deflate_level
                .map_or(defaults.level, |level| level.0),
            threshold: options.deflate_threshold.unwrap_or(defaults.threshold),
            // No compressor state kept per connection, and a broadcast is compressed once for
            // every recipient.
            server_no_context_takeover: true,
            ..defaults
        }
    }))
}

/// The TLS identity from `--tls-cert/--tls-key` or `--tls-self-signed`.
pub(super) fn tls(options: &ServeOptions, listen: SocketAddr) -> anyhow::Result<Option<ServerTls>> {
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
