//! HTTP requests to the application's backend, as the proxies and the webhooks make them:
//! hyper-util's HTTP/1.1 client, which keeps connections to each backend alive between calls,
//! over a [`MaybeTlsStream`] (`https://` trusts the Mozilla roots).

use std::error::Error as _;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use switchboard::MaybeTlsStream;

/// How long an idle connection to the backend is kept: shorter than common servers' own
/// keep-alive timeouts (Node's is 5 s), so that the backend seldom closes one just as it is
/// reused.
const IDLE: Duration = Duration::from_secs(4);

/// Idle connections kept per backend host.
const MAX_IDLE: usize = 32;

/// A client of the application's backend. Clones share its connections.
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    client: Client<Connector, Full<Bytes>>,
}

impl Default for Backend {
    fn default() -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE)
            .pool_max_idle_per_host(MAX_IDLE)
            .build(Connector);
        Self { client }
    }
}

/// The start of every request to the backend: a POST of JSON to `uri`, saying who sends it.
pub(crate) fn json_post(uri: &Uri) -> http::request::Builder {
    Request::builder()
        .method(http::Method::POST)
        .uri(uri.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("switchboard/", env!("CARGO_PKG_VERSION")),
        )
}

impl Backend {
    /// Sends `request` (its URI absolute); the answer's status and body (at most
    /// `max_answer` bytes). `Err` says what failed: connecting, HTTP, or reading the answer.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
        max_answer: usize,
    ) -> Result<(StatusCode, Bytes), String> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        // Read to the end, so that the connection may carry the next request.
        let body = Limited::new(response.into_body(), max_answer)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok((status, body.to_bytes()))
    }
}

/// An error and its causes, as one line.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut words = e.to_string();
    let mut cause = e.source();
    while let Some(e) = cause {
        words.push_str(": ");
        words.push_str(&e.to_string());
        cause = e.source();
    }
    words
}

/// Opens the client's connections: plain or TLS, as the URI's scheme says.
#[derive(Clone, Copy, Debug)]
struct Connector;

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let stream = MaybeTlsStream::connect(&uri, None)
                .await
                .map_err(|e| io::Error::other(format!("connecting to {uri}: {e}")))?;
            Ok(Stream(TokioIo::new(stream)))
        })
    }
}

/// A connection to the backend, as the client reads and writes it.
struct Stream(TokioIo<MaybeTlsStream>);

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
