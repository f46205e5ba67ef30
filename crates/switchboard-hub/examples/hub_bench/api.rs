//! A publisher through the server API: `POST /api/publish` over one HTTP/1.1 keep-alive
//! connection (hyper's client), one request in flight, as HTTP/1.1 without pipelining has.
//! A publish counts as acknowledged when its answer is a 200; anything else is an error.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

use crate::{Counts, Window, data};

pub(crate) struct Publisher {
    sender: SendRequest<Full<Bytes>>,
    connection: tokio::task::JoinHandle<()>,
    /// The request target: path and query.
    path: Uri,
    host: HeaderValue,
    authorization: HeaderValue,
    channel: String,
}

impl Publisher {
    /// Opens the connection to `url` (`http://HOST:PORT/api/publish`).
    pub(crate) async fn connect(
        url: &str,
        key: &str,
        channel: &str,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let uri: Uri = url.parse()?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("--api-publish {url}: an http:// URL").into());
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--api-publish {url}: no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let stream = TcpStream::connect((authority.host(), port)).await?;
        // As a WebSocket client does: a request goes out when written, not after Nagle's wait.
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("api connection: {e}");
            }
        });
        Ok(Self {
            sender,
            connection,
            path: uri.path_and_query().map_or("/", |p| p.as_str()).parse()?,
            host: HeaderValue::from_str(authority.as_str())?,
            authorization: HeaderValue::from_str(&format!("Bearer {key}"))?,
            channel: channel.to_owned(),
        })
    }

    /// Publishes until the window ends, paced by `ticker` if given; counts answers to
    /// publishes sent inside the window. Ends early if the connection fails.
    pub(crate) async fn run(
        mut self,
        window: Window,
        mut ticker: Option<tokio::time::Interval>,
        pad: &str,
        counts: &Counts,
    ) {
        let mut first_failure = None;
        while Instant::now() < window.to {
            if let Some(ticker) = &mut ticker {
                ticker.tick().await;
            }
            let t = window.stamp();
            let body = json!({"channel": self.channel, "data": data(t, pad)}).to_string();
            let request = self.request(body);
            let answer = exchange(&mut self.sender, request).await;
            let failed = match answer {
                Ok(StatusCode::OK) => None,
                Ok(status) => Some(format!("status {status}")),
                Err(e) => Some(e),
            };
            let broken = failed.is_some() && self.sender.is_closed();
            if window.contains(t) {
                let counter = if failed.is_some() {
                    &counts.errors
                } else {
                    &counts.acked
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            if first_failure.is_none() {
                first_failure = failed;
            }
            if broken {
                break;
            }
        }
        if let Some(failure) = first_failure {
            eprintln!("api publisher: first failure: {failure}");
        }
        // Closing the sender ends the connection once it is idle.
        drop(self.sender);
        let _ = self.connection.await;
    }

    fn request(&self, body: String) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        headers.insert(header::AUTHORIZATION, self.authorization.clone());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        request
    }
}

/// One request and its whole answer (read to the end, so the connection can carry the next).
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<StatusCode, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(status)
}
