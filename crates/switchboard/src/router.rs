//! Plain HTTP on a WebSocket server's port: requests that do not ask for an upgrade are routed
//! by exact path to the application's handlers, or to a fallback (`426 Upgrade Required` unless
//! the application sets one).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

/// Answers one plain HTTP request.
pub(crate) type Handler = dyn Fn(&Request<()>) -> Response<Bytes> + Send + Sync;

/// Routes by exact path.
#[derive(Clone, Default)]
pub(crate) struct Router {
    routes: HashMap<String, Arc<Handler>>,
    fallback: Option<Arc<Handler>>,
}

impl Router {
    pub(crate) fn route(&mut self, path: &str, handler: Arc<Handler>) {
        self.routes.insert(path.to_owned(), handler);
    }

    pub(crate) fn fallback(&mut self, handler: Arc<Handler>) {
        self.fallback = Some(handler);
    }

    pub(crate) fn paths(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// The response to `request`; for `HEAD`, the handler's headers without the body.
    pub(crate) fn handle(&self, request: &Request<()>) -> Response<Bytes> {
        let handler = self
            .routes
            .get(request.uri().path())
            .or(self.fallback.as_ref());
        let mut response = match handler {
            Some(handler) => handler(request),
            None => upgrade_required(),
        };
        if request.method() == Method::HEAD {
            let len = response.body().len();
            response
                .headers_mut()
                .entry(header::CONTENT_LENGTH)
                .or_insert(len.into());
            *response.body_mut() = Bytes::new();
        }
        response
    }
}

/// A text response.
pub(crate) fn text(
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
pub(crate) fn only_get(request: &Request<()>) -> Option<Response<Bytes>> {
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
