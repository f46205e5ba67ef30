//! The chat page of hub mode, as routes of the server: `/` (the page, from `web/`, embedded at
//! build time) and its assets, the JavaScript client at `/switchboard.js` (from `clients/js/`),
//! a hint at `/ws` for plain requests, and 404 for the rest.

use std::future::{Ready, ready};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use switchboard::ServerBuilder;

const INDEX: &str = include_str!("../../../web/index.html");
const SCRIPT: &str = include_str!("../../../web/chat.js");
const STYLE: &str = include_str!("../../../web/chat.css");
const CLIENT: &str = include_str!("../../../clients/js/switchboard.js");

/// The client's entity tag: a hash of its text, so that it changes with the file.
const CLIENT_ETAG: &str = match std::str::from_utf8(&etag(CLIENT.as_bytes())) {
    Ok(tag) => tag,
    Err(_) => panic!("an entity tag is ASCII"),
};

/// `"<16 hex digits>"`: FNV-1a (64 bits) of `bytes`, computed at build time.
const fn etag(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    let mut tag = *b"\"0000000000000000\"";
    let mut n = 0;
    while n < 16 {
        tag[16 - n] = HEX[((hash >> (4 * n)) & 0xf) as usize];
        n += 1;
    }
    tag
}

/// The page may talk to its own origin only (the hub at `/ws` included), and nothing inline
/// runs: what a chat showing other people's text should promise.
const CSP: &str = "default-src 'self'; img-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Adds the page's routes to `builder`; any other plain request gets 404.
pub(crate) fn routes(builder: ServerBuilder) -> ServerBuilder {
    let page = || get(|| asset(INDEX, "text/html; charset=utf-8"));
    builder
        .route("/", page())
        .route("/index.html", page())
        .route(
            "/chat.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route("/chat.css", get(|| asset(STYLE, "text/css; charset=utf-8")))
        .route("/switchboard.js", client)
        .route(
            "/ws",
            get(|| {
                text(
                    StatusCode::UPGRADE_REQUIRED,
                    "this endpoint speaks websocket (the hub protocol)\n",
                )
            }),
        )
        // A path that is nothing here is 404 whatever the method: 405 would say it exists.
        .http(|_| ready(not_found()))
}

/// A handler answering `GET` and `HEAD` with `respond()`, other methods with 405.
pub(crate) fn get(
    respond: fn() -> Response<Bytes>,
) -> impl Fn(Request<Bytes>) -> Ready<Response<Bytes>> + Send + Sync + 'static {
    move |request| {
        if request.method() == Method::GET || request.method() == Method::HEAD {
            return ready(respond());
        }
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        ready(response)
    }
}

/// 404, for any path that is neither a page nor the WebSocket endpoint.
pub(crate) fn not_found() -> Response<Bytes> {
    text(StatusCode::NOT_FOUND, "not found\n")
}

pub(crate) fn asset(body: &'static str, content_type: &'static str) -> Response<Bytes> {
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

/// The JavaScript client, for pages of any origin (`<script type="module" src=..>` of another
/// site, so no CSP of the chat page). `no-cache` with an `ETag` rather than a `max-age`: the
/// URL carries no version and the module must match the server it talks to, so a page
/// revalidates on each load, and a `304` without the body is what that costs while the
/// server is unchanged.
fn client(request: Request<Bytes>) -> Ready<Response<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return get(not_found)(request);
    }
    let fresh = request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == CLIENT_ETAG
        });
    let mut response = if fresh {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(Bytes::from_static(CLIENT.as_bytes()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        );
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_static(CLIENT_ETAG));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A module script of another origin loads only with CORS.
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    ready(response)
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
    use std::net::SocketAddr;

    use switchboard::Server;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// The answer to `method path` on a server with the page's routes, head and body.
    async fn ask(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
        ask_with(addr, method, path, "").await
    }

    /// The same, with `headers` (each line ending in CRLF) added to the request.
    async fn ask_with(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &str,
    ) -> (String, String) {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        (head.to_ascii_lowercase(), body.to_owned())
    }

    #[tokio::test]
    async fn serves_the_page_and_its_assets_and_404_elsewhere() {
        let server = routes(Server::builder()).bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.serve(|ws, _| async move { drop(ws) }));

        let (head, body) = ask(addr, "GET", "/").await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(body.contains("chat.js"));
        for line in [
            "content-type: text/html; charset=utf-8",
            "cache-control: no-cache",
            "x-content-type-options: nosniff",
            "content-security-policy: default-src 'self'",
        ] {
            assert!(head.contains(line), "{line} missing in {head}");
        }
        let (head, _) = ask(addr, "GET", "/chat.js").await;
        assert!(
            head.contains("content-type: text/javascript; charset=utf-8"),
            "{head}"
        );
        let (head, _) = ask(addr, "GET", "/chat.css").await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let (head, body) = ask(addr, "GET", "/nope").await;
        assert!(head.starts_with("http/1.1 404"), "{head}");
        assert_eq!(body, "not found\n");
        let (head, _) = ask(addr, "GET", "/ws").await;
        assert!(head.starts_with("http/1.1 426"), "{head}");
        assert!(head.contains("upgrade: websocket"), "{head}");
        let (head, _) = ask(addr, "POST", "/").await;
        assert!(head.starts_with("http/1.1 405"), "{head}");
        assert!(head.contains("allow: get, head"), "{head}");
        // A path that does not exist does not exist for any method.
        let (head, _) = ask(addr, "POST", "/nope").await;
        assert!(head.starts_with("http/1.1 404"), "{head}");
        let (head, body) = ask(addr, "HEAD", "/").await;
        let length = format!("content-length: {}", INDEX.len());
        assert!(head.contains(&length), "{head}");
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn serves_the_client_as_javascript_revalidated_by_its_etag() {
        let server = routes(Server::builder()).bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.serve(|ws, _| async move { drop(ws) }));

        let (head, body) = ask(addr, "GET", "/switchboard.js").await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, CLIENT);
        assert!(body.contains("export class Switchboard"));
        let etag = format!("etag: {CLIENT_ETAG}");
        for line in [
            "content-type: text/javascript; charset=utf-8",
            "cache-control: no-cache",
            "x-content-type-options: nosniff",
            "access-control-allow-origin: *",
            &etag,
        ] {
            assert!(head.contains(line), "{line} missing in {head}");
        }
        assert_eq!(CLIENT_ETAG.len(), 18);
        assert!(
            CLIENT_ETAG
                .trim_matches('"')
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );

        // The tag the browser kept: 304 without the body; another tag: the file.
        let kept = format!("If-None-Match: {CLIENT_ETAG}\r\n");
        let (head, body) = ask_with(addr, "GET", "/switchboard.js", &kept).await;
        assert!(head.starts_with("http/1.1 304"), "{head}");
        assert!(head.contains(&etag), "{head}");
        assert!(body.is_empty());
        let other = "If-None-Match: \"0123\", W/\"4567\"\r\n";
        let (head, body) = ask_with(addr, "GET", "/switchboard.js", other).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body.len(), CLIENT.len());
        let (head, _) = ask(addr, "POST", "/switchboard.js").await;
        assert!(head.starts_with("http/1.1 405"), "{head}");
    }
}
