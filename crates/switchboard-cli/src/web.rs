//! The chat page and the plain HTTP routes of hub mode: `/` (the page, from `web/`, embedded
//! at build time), `/healthz`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

const INDEX: &str = include_str!("../../../web/index.html");
const SCRIPT: &str = include_str!("../../../web/chat.js");
const STYLE: &str = include_str!("../../../web/chat.css");

/// The page may talk to its own origin only (the hub at `/ws` included), and nothing inline
/// runs: what a chat showing other people's text should promise.
const CSP: &str = "default-src 'self'; img-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Answers a plain HTTP request of hub mode.
pub(crate) fn respond(request: &Request<()>) -> Response<Bytes> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = match request.uri().path() {
        "/" | "/index.html" => asset(INDEX, "text/html; charset=utf-8"),
        "/chat.js" => asset(SCRIPT, "text/javascript; charset=utf-8"),
        "/chat.css" => asset(STYLE, "text/css; charset=utf-8"),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/ws" => text(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks websocket (the hub protocol)\n",
        ),
        _ => not_found(),
    };
    if request.method() == Method::HEAD {
        *response.body_mut() = Bytes::new();
    }
    response
}

/// 404, for any path that is neither a page nor the WebSocket endpoint.
pub(crate) fn not_found() -> Response<Bytes> {
    text(StatusCode::NOT_FOUND, "not found\n")
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(body.as_bytes()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page is built into the binary: revalidate so an upgraded server is picked up.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(body.as_bytes()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Response<Bytes> {
        respond(&Request::get(path).body(()).unwrap())
    }

    #[test]
    fn serves_the_page_its_assets_and_health() {
        let page = get("/");
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            std::str::from_utf8(page.body())
                .unwrap()
                .contains("chat.js")
        );
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(
            get("/chat.js").headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(get("/chat.css").status(), StatusCode::OK);
        assert_eq!(get("/healthz").body().as_ref(), b"ok\n");
        assert_eq!(get("/nope").status(), StatusCode::NOT_FOUND);
        assert_eq!(get("/ws").status(), StatusCode::UPGRADE_REQUIRED);
        let post = respond(&Request::post("/").body(()).unwrap());
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        let head = respond(&Request::head("/").body(()).unwrap());
        assert!(head.body().is_empty());
    }
}
