//! A hub-mode publisher through the server API: `POST /api/publish` over one HTTP/1.1
//! keep-alive connection (hyper's client), one request in flight, as HTTP/1.1 without
//! pipelining has, and no more publications out than `-m` as a WebSocket publisher. A
//! publish counts as acknowledged when its answer is a 200.

use std::sync::atomic::Ordering;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

use super::flow::{Clock, Shared, data};

pub(crate) struct ApiPublisher {
    sender: SendRequest<Full<Bytes>>,
    connection: tokio::task::JoinHandle<()>,
    /// The request target: path and query.
    path: Uri,
    host: HeaderValue,
    authorization: HeaderValue,
}

impl ApiPublisher {
    /// Opens the connection to `url` (`http://HOST:PORT/api/publish`).
    pub(crate) async fn connect(url: &str, key: &str) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--api-publish {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--api-publish {url}: an http:// URL");
        }
        let Some(authority) = uri.authority() else {
            bail!("--api-publish {url}: no host");
        };
        let port = authority.port_u16().unwrap_or(80);
        let stream = TcpStream::connect((authority.host(), port))
            .await
            .with_context(|| format!("--api-publish {url}"))?;
        // As a WebSocket client does: a request goes out when written, not after Nagle's wait.
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            connection,
            path: uri.path_and_query().map_or("/", |p| p.as_str()).parse()?,
            host: HeaderValue::from_str(authority.as_str())?,
            authorization: HeaderValue::from_str(&format!("Bearer {key}"))?,
        })
    }

    /// Publisher `p`: publishes to `channel` until the window ends, as closed-loop flow
    /// control and `ticker` allow; counts the answers to publishes sent inside the window.
    /// Ends early if the connection fails.
    pub(crate) async fn run(
        mut self,
        p: usize,
        channel: &str,
        clock: Clock,
        mut ticker: Option<tokio::time::Interval>,
        pad: &str,
        shared: &Shared,
    ) {
        let mut seq = 0;
        while std::time::Instant::now() < clock.window.until {
            if let Err(e) = shared.room(p, seq).await {
                shared.error(format!("api publisher {p}: {e}"));
                break;
            }
            if let Some(ticker) = &mut ticker {
                ticker.tick().await;
            }
            let t = clock.stamp();
            let body = json!({"channel": channel, "data": data(p, seq, t, pad)}).to_string();
            seq += 1;
            let request = self.request(body);
            match exchange(&mut self.sender, request).await {
                Ok(StatusCode::OK) if clock.counts(t) => {
                    shared.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(StatusCode::OK) => {}
                Ok(status) => shared.error(format!("api publisher {p}: status {status}")),
                Err(e) => shared.error(format!("api publisher {p}: {e}")),
            }
            if self.sender.is_closed() {
                break;
            }
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
