//! Plain HTTP on a server's port: a request that does not ask for an upgrade goes to the
//! handler of its path (an exact route, else the longest prefix route such as `/admin/*`), else
//! to the fallback (`426 Upgrade Required` unless the application sets one).
//!
//! A handler is async and gets the request with its body collected: at most `max_body_size`
//! bytes, `413 Content Too Large` beyond, and the rest is not read. A `HEAD` request goes to the
//! same handler, and gets its headers and `Content-Length` without the body.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body;

/// What a handler returns: the response, body and all.
pub(super) type Answer = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;

/// Answers one plain HTTP request whose body is collected.
pub(super) type Handler = dyn Fn(Request<Bytes>) -> Answer + Send + Sync;

/// The default limit on a request body: 1 MiB.
const DEFAULT_MAX_BODY_SIZE: usize = 1024 * 1024;

/// The routes of a server.
#[derive(Clone)]
pub(super) struct Router {
    exact: HashMap<String, Arc<Handler>>,
    /// Prefix routes, without their `*`, longest first: the most specific matches.
    prefixes: Vec<(String, Arc<Handler>)>,
    fallback: Option<Arc<Handler>>,
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
    pub(super) fn route(&mut self, path: &str, handler: Arc<Handler>) {
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
        self.fallback = Some(handler);
    }

    pub(super) fn max_body_size(&mut self, bytes: usize) {
        self.max_body_size = bytes;
    }

    /// The routes' paths, prefix routes with their `*`.
    pub(super) fn paths(&self) -> impl Iterator<Item = String> + '_ {
        let exact = self.exact.keys().cloned();
        exact.chain(self.prefixes.iter().map(|(prefix, _)| format!("{prefix}*")))
    }

    fn find(&self, path: &str) -> Option<&Arc<Handler>> {
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
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let head = request.method() == Method::HEAD;
        let mut response = match self.find(request.uri().path()) {
            None => upgrade_required(),
            Some(handler) => {
                let (parts, body) = request.into_parts();
                match tokio::time::timeout(read_timeout, self.collect(body)).await {
                    Ok(Ok(body)) => handler(Request::from_parts(parts, body)).await,
                    Ok(Err(refusal)) => refusal,
                    Err(_) => closing(text(
                        StatusCode::REQUEST_TIMEOUT,
                        "text/plain; charset=utf-8",
                        "request body too slow\n".into(),
                    )),
                }
            }
        };
        if head {
            let len = response.body().len();
            let headers = response.headers_mut();
            headers.entry(header::CONTENT_LENGTH).or_insert(len.into());
            *response.body_mut() = Bytes::new();
        }
        response
    }

    /// The whole body, or the response that refuses it (too large, or unreadable).
    async fn collect<B>(&self, body: B) -> Result<Bytes, Response<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let limit = self.max_body_size;
        // A declared length over the limit is refused before anything is read, and before
        // hyper answers `Expect: 100-continue`.
        if body.size_hint().lower() > limit as u64 {
            return Err(too_large(limit));
        }
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => Err(too_large(limit)),
            Err(e) => {
                tracing::debug!("request body unreadable: {e}");
                Err(closing(text(
                    StatusCode::BAD_REQUEST,
                    "text/plain; charset=utf-8",
                    "request body unreadable\n".into(),
                )))
            }
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

fn too_large(limit: usize) -> Response<Bytes> {
    closing(text(
        StatusCode::PAYLOAD_TOO_LARGE,
        "text/plain; charset=utf-8",
        format!("request body over the limit of {limit} bytes\n"),
    ))
}

fn upgrade_required() -> Response<Bytes> {
    let mut response = text(
        StatusCode::UPGRADE_REQUIRED,
        "text/plain; charset=utf-8",
        "this endpoint speaks websocket\n".into(),
    );
    // RFC 9110 §15.5.22: a 426 "MUST send an Upgrade header field".
    response
        .headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn answer(body: &'static str) -> Arc<Handler> {
        Arc::new(move |_| {
            Box::pin(async move { Response::new(Bytes::from_static(body.as_bytes())) })
        })
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
        router.fallback(answer("fallback"));
        assert_eq!(
            call(&router, Method::GET, "/else", "").await.body(),
            "fallback"
        );
    }

    #[tokio::test]
    async fn the_body_reaches_the_handler_up_to_the_limit() {
        let mut router = Router::default();
        let echo: Arc<Handler> = Arc::new(|request: Request<Bytes>| {
            Box::pin(async move { Response::new(request.into_body()) })
        });
        router.route("/echo", echo);
        router.max_body_size(5);
        assert_eq!(
            call(&router, Method::POST, "/echo", "hello").await.body(),
            "hello"
        );
        let over = call(&router, Method::POST, "/echo", "hello!").await;
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(over.headers()[header::CONNECTION], "close");
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
