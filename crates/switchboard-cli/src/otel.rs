//! `--otlp-endpoint URL` (the `otel` feature): the `tracing` spans of switchboard's crates
//! (handshake, API request, publish, broker call, proxy call, with the request id as an
//! attribute) exported as OpenTelemetry traces over OTLP/HTTP in protobuf, to `URL/v1/traces`,
//! as service `switchboard`.
//!
//! The export is sent by hyper on a runtime of its own, on the exporter's thread: the server's
//! runtime never waits for a collector, and no second HTTP stack or TLS library comes in
//! (the endpoint is plain HTTP, such as a collector beside the server).

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

/// The longest one export may take, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporter; dropping it sends the spans still queued.
pub(crate) struct Traces {
    provider: SdkTracerProvider,
}

impl Drop for Traces {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("error: exporting the last traces: {e}");
        }
    }
}

/// A layer that exports the spans of switchboard's crates to the collector at `endpoint`
/// (its base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` names it), at every level: what the logs
/// show is `RUST_LOG`'s business, not the traces'.
pub(crate) fn layer<S>(endpoint: &str) -> anyhow::Result<(impl Layer<S>, Traces)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    url.parse::<http::Uri>()
        .ok()
        .filter(|uri| uri.scheme_str() == Some("http") && uri.authority().is_some())
        .with_context(|| format!("--otlp-endpoint {endpoint:?}: give http://HOST:PORT"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the trace exporter's runtime")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Client { runtime })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .context("cannot build the trace exporter")?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("switchboard").build())
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("switchboard"))
        .with_filter(filter_fn(|meta| {
            meta.is_span() && meta.target().starts_with("switchboard")
        }));
    Ok((layer, Traces { provider }))
}

/// One HTTP/1.1 connection per export (a few a second at most).
#[derive(Debug)]
struct Client {
    runtime: tokio::runtime::Runtime,
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // The exporter calls this on its own thread, outside any runtime.
        self.runtime
            .block_on(async { tokio::time::timeout(EXPORT_TIMEOUT, send(request)).await })
            .map_err(|_| "the collector did not answer in time")?
    }
}

async fn send(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let authority = request
        .uri()
        .authority()
        .ok_or("the endpoint has no host")?
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&authority).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let (mut parts, body) = request.into_parts();
    // The origin form (`/v1/traces`) on a connection to the host itself.
    if let Some(path) = parts.uri.path_and_query() {
        parts.uri = http::Uri::from(path.clone());
    }
    parts
        .headers
        .entry(http::header::HOST)
        .or_insert(http::HeaderValue::from_str(&authority)?);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
