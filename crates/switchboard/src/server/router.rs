//! Plain HTTP on a server's port: a request that does not ask for an upgrade goes to the
//! handler of its path (an exact route, else the longest prefix route such as `/admin/*`), else
//! to the fallback (`426 Upgrade Required` unless the application sets one).
//!
//! A handler is async and gets the request with its body collected: at most `max_body_size`
//! bytes, `413 Content Too Large` beyond. A client that waits for `100 Continue` is refused
//! before it sends the body. One that sends its body straight away (as most HTTP libraries do)
//! gets the 413 at once, and the rest of its body is read and dropped before the connection
//! closes, up to [`DRAIN_EXTRA`] bytes and while it keeps coming: closing on unread data would
//! reset the connection, and the client would see a broken pipe instead of the 413. A `HEAD`
//! request goes to the same handler, and gets its headers and `Content-Length` without the
//! body.
//!
//! A route may ask for the router's own refusals of its requests (413, 408, 400) in JSON,
//! `{"error":{"code":"...","message":"..."}}`, as an API's clients expect every answer.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Body;

/// What a handler returns: the response, body and all.
pub(super) type Answer = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;

/// Answers one plain HTTP request whose body is collected.
pub(super) type Handler = dyn Fn(Request<Bytes>) -> Answer + Send + Sync;

/// The default limit on a request body: 1 MiB.
const DEFAULT_MAX_BODY_SIZE: usize = 1024 * 1024;

/// How much of a refused body is read past the limit, so that its client reads the 413.
const DRAIN_EXTRA: u64 = 16 * 1024 * 1024;

/// How long the drain of a refused body waits for more of it.
const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// A handler, and the form of the router's refusals of its requests.
#[derive(Clone)]
pub(super) struct Route {
    handler: Arc<Handler>,
    json: bool,
}

impl Route {
    /// Refusals in plain text.
    pub(super) fn text(handler: Arc<Handler>) -> Self {
        Self {
            handler,
            json: false,
        }
    }

    /// Refusals in JSON.
    pub(super) fn json(handler: Arc<Handler>) -> Self {
        Self {
            handler,
            json: true,
        }
    }
}

/// The routes of a server.
#[derive(Clone)]
pub(super) struct Router {
    exact: HashMap<String, Route>,
    /// Prefix routes, without their `*`, longest first: the most specific matches.
    prefixes: Vec<(String, Route)>,
    fallback: Option<Route>,
    max_body_size: usize,
}

impl Default for Router {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            prefixes: Vec::new(),
            fallback: None,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }
}

impl Router {
    /// Routes `path` to `handler`: exactly, or every path that starts with what comes before
    /// a final `*`. A second route for the same path replaces the first.
    pub(super) fn route(&mut self, path: &str, handler: Route) {
        let Some(prefix) = path.strip_suffix('*') else {
            self.exact.insert(path.to_owned(), handler);
            return;
        };
        self.prefixes.retain(|(p, _)| p != prefix);
        self.prefixes.push((prefix.to_owned(), handler));
        self.prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    }

    pub(super) fn fallback(&mut self, handler: Arc<Handler>) {
        self.fallback = Some(Route::text(handler));
    }

    pub(super) fn max_body_size(&mut self, bytes: usize) {
        self.max_body_size = bytes;
    }

    /// The routes' paths, prefix routes with their `*`.
    pub(super) fn paths(&self) -> impl Iterator<Item = String> + '_ {
        let exact = self.exact.keys().cloned();
        exact.chain(self.prefixes.iter().map(|(prefix, _)| format!("{prefix}*")))
    }

    fn find(&self, path: &str) -> Option<&Route> {
        self.exact
            .get(path)
            .or_else(|| {
                let mut prefixes = self.prefixes.iter();
                prefixes.find_map(|(prefix, handler)| path.starts_with(prefix).then_some(handler))
            })
            .or(self.fallback.as_ref())
    }

    /// The response to `request`, whose body must arrive within `read_timeout`.
    pub(super) async fn handle<B>(
        &self,
        request: Request<B>,
        read_timeout: Duration,
    ) -> Response<Bytes>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let head = request.method() == Method::HEAD;
        let mut response = match self.find(request.uri().path()) {
            None => upgrade_required(),
            Some(route) => {
                let (parts, mut body) = request.into_parts();
                let collected = tokio::time::timeout(read_timeout, self.collect(&mut body));
                let refusal = match collected.await {
                    Ok(Ok(collected)) => {
                        let request = Request::from_parts(parts, collected);
                        Ok((route.handler)(request).await)
                    }
                    Ok(Err(Refusal::TooLarge(limit))) => {
                        if !expects_continue(&parts.headers) {
                            tokio::spawn(drain(body, limit as u64 + DRAIN_EXTRA));
                        }
                        Err(Refusal::TooLarge(limit))
                    }
                    Ok(Err(refusal)) => Err(refusal),
                    Err(_) => Err(Refusal::Slow),
                };
                match refusal {
                    Ok(response) => response,
                    Err(refusal) => closing(refusal.response(route.json)),
                }
            }
        };
        // RFC 9110 §15.5.22: a 426 "MUST send an Upgrade header field", whoever answered it
        // (HTTP/2 drops the field again: it is connection-specific there).
        if response.status() == StatusCode::UPGRADE_REQUIRED {
            let headers = response.headers_mut();
            headers
                .entry(header::UPGRADE)
                .or_insert(HeaderValue::from_static("websocket"));
        }
        if head {
            let len = response.body().len();
            let headers = response.headers_mut();
            headers.entry(header::CONTENT_LENGTH).or_insert(len.into());
            *response.body_mut() = Bytes::new();
        }
        response
    }

    /// The whole body, or why it is refused (too large, or unreadable).
    async fn collect<B>(&self, body: &mut B) -> Result<Bytes, Refusal>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let limit = self.max_body_size;
        // A declared length over the limit is refused before anything is read, and before
        // hyper answers `Expect: 100-continue`.
        if body.size_hint().lower() > limit as u64 {
            return Err(Refusal::TooLarge(limit));
        }
        let mut collected = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                tracing::debug!("request body unreadable: {}", e.into());
                Refusal::Unreadable
            })?;
            if let Ok(data) = frame.into_data() {
                if collected.len() + data.len() > limit {
                    return Err(Refusal::TooLarge(limit));
                }
                collected.extend_from_slice(&data);
            }
        }
        Ok(collected.freeze())
    }
}

/// Whether the client waits for `100 Continue` before it sends the body.
fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads and drops what is left of a refused body: at most `max` bytes, while each part
/// comes within [`DRAIN_IDLE`].
async fn drain<B: Body<Data = Bytes> + Unpin>(mut body: B, max: u64) {
    let mut read = 0u64;
    while read <= max {
        match tokio::time::timeout(DRAIN_IDLE, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, |data| data.len() as u64);
            }
            _ => return,
        }
    }
}

/// Why the router answers a routed request itself.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// The body is over the limit (in bytes).
    TooLarge(usize),
    /// The body did not arrive within the read timeout.
    Slow,
    /// The body could not be read.
    Unreadable,
}

impl Refusal {
    fn response(self, json: bool) -> Response<Bytes> {
        let (status, code, message) = match self {
            Self::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body over the limit of {limit} bytes"),
            ),
            Self::Slow => (
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "request body too slow".to_owned(),
            ),
            Self::Unreadable => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "request body unreadable".to_owned(),
            ),
        };
        if json {
            // The messages hold no character JSON must escape.
            let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
            text(status, "application/json", body)
        } else {
            text(status, "text/plain; charset=utf-8", format!("{message}\n"))
        }
    }
}

/// A text response.
pub(super) fn text(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// For built-in endpoints: `GET` and `HEAD` only.
pub(super) fn only_get<B>(request: &Request<B>) -> Option<Response<Bytes>> {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return None;
    }
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        "method not allowed\n".into(),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(response)
}

/// `response`, after which the connection ends: what is left of the request body is not read.
fn closing(mut response: Response<Bytes>) -> Response<Bytes> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The fallback's answer; [`Router::handle`] adds its `Upgrade` field, as to every 426.
fn upgrade_required() -> Response<Bytes> {
    text(
        StatusCode::UPGRADE_REQUIRED,
        "text/plain; charset=utf-8",
        "this endpoint speaks websocket\n".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn answer(body: &'static str) -> Route {
        Route::text(Arc::new(move |_| {
            Box::pin(async move { Response::new(Bytes::from_static(body.as_bytes())) })
        }))
    }

    async fn call(
        router: &Router,
        method: Method,
        path: &str,
        body: &'static str,
    ) -> Response<Bytes> {
        let request = Request::builder().method(method).uri(path);
        let request = request.body(Full::new(Bytes::from_static(body.as_bytes())));
        router
            .handle(request.unwrap(), Duration::from_secs(1))
            .await
    }

    #[tokio::test]
    async fn exact_routes_win_then_the_longest_prefix_then_the_fallback() {
        let mut router = Router::default();
        router.route("/admin", answer("admin"));
        router.route("/admin/*", answer("admin/*"));
        router.route("/admin/users/*", answer("users/*"));
        assert_eq!(
            call(&router, Method::GET, "/admin", "").await.body(),
            "admin"
        );
        assert_eq!(
            call(&router, Method::GET, "/admin/x", "").await.body(),
            "admin/*"
        );
        assert_eq!(
            call(&router, Method::GET, "/admin/users/1", "")
                .await
                .body(),
            "users/*"
        );
        let unrouted = call(&router, Method::GET, "/administrator", "").await;
        assert_eq!(unrouted.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(unrouted.headers()[header::UPGRADE], "websocket");
        router.fallback(answer("fallback").handler);
        assert_eq!(
            call(&router, Method::GET, "/else", "").await.body(),
            "fallback"
        );
    }

    #[tokio::test]
    async fn a_handlers_426_carries_upgrade_as_the_fallbacks_does() {
        let mut router = Router::default();
        router.route(
            "/ws",
            Route::text(Arc::new(|_| {
                Box::pin(async {
                    let mut response = Response::new(Bytes::from_static(b"use a websocket"));
                    *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
                    response
                })
            })),
        );
        for path in ["/ws", "/elsewhere"] {
            let answer = call(&router, Method::GET, path, "").await;
            assert_eq!(answer.status(), StatusCode::UPGRADE_REQUIRED, "{path}");
            assert_eq!(answer.headers()[header::UPGRADE], "websocket", "{path}");
        }
    }

    #[tokio::test]
    async fn the_body_reaches_the_handler_up_to_the_limit() {
        let mut router = Router::default();
        let echo: Arc<Handler> = Arc::new(|request: Request<Bytes>| {
            Box::pin(async move { Response::new(request.into_body()) })
        });
        router.route("/echo", Route::text(echo.clone()));
        router.route("/json", Route::json(echo));
        router.max_body_size(5);
        assert_eq!(
            call(&router, Method::POST, "/echo", "hello").await.body(),
            "hello"
        );
        let over = call(&router, Method::POST, "/echo", "hello!").await;
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(over.headers()[header::CONNECTION], "close");
        assert_eq!(
            over.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let over = call(&router, Method::POST, "/json", "hello!").await;
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(over.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            over.body(),
            r#"{"error":{"code":"too_large","message":"request body over the limit of 5 bytes"}}"#
        );
    }

    #[tokio::test]
    async fn head_gets_the_length_without_the_body() {
        let mut router = Router::default();
        router.route("/", answer("four"));
        let head = call(&router, Method::HEAD, "/", "").await;
        assert_eq!(head.headers()[header::CONTENT_LENGTH], "4");
        assert!(head.body().is_empty());
    }
}
