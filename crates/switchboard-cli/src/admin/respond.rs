//! The dashboard's JSON answers: a body, or an error as the server API writes one
//! (`{"error":{"code":"...","message":"..."}}`), never cached.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Value, json};

/// `body` as JSON with `status`.
pub(super) fn json(status: StatusCode, body: &Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // What the dashboard shows is live and private.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// An error with a stable `code` and a message for people.
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response<Bytes> {
    json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// 401: no session, or one that ended.
pub(super) fn unauthorized() -> Response<Bytes> {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "log in first: no session, or it has ended",
    )
}

/// 403 with `why`.
pub(super) fn forbidden(why: &str) -> Response<Bytes> {
    error(StatusCode::FORBIDDEN, "forbidden", why)
}
