//! What dashboard requests must show. Every one: the session cookie. A state-changing one
//! (a POST) also: an origin of this server, not another site's (the `Origin` header, and the
//! browser's `Sec-Fetch-Site`), and the session's CSRF token in `X-CSRF-Token`. The cookie is
//! `SameSite=Strict` already; the token also stands where a browser ignores that. The live
//! WebSocket is checked the same way at its upgrade, since browsers send cookies on
//! cross-site WebSocket handshakes and the same-origin policy does not cover them.

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Response, Uri};

use super::respond::{forbidden, unauthorized};
use super::sessions::{Session, Sessions, same};

/// The session cookie's name.
pub(super) const COOKIE: &str = "switchboard_admin";

/// The header a state-changing request carries its CSRF token in.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";

/// The value of the session cookie, if the request has one.
pub(super) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// Whether the request comes from this server's own pages: no browser said it is cross-site,
/// and its `Origin`, when it has one, names the host it was sent to. A request without
/// `Origin` is not from a browser's cross-site form or script (they send one on POST).
pub(super) fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|site| site.eq_ignore_ascii_case("cross-site")) {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(http::uri::Authority::as_str));
    let origin_host = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
    });
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// No session, or one that ended: 401.
    NoSession,
    /// Another site's request, or no CSRF token: 403, saying which.
    Forbidden(&'static str),
}

impl Refused {
    pub(super) fn response(self) -> Response<Bytes> {
        match self {
            Self::NoSession => unauthorized(),
            Self::Forbidden(why) => forbidden(why),
        }
    }
}

/// The request's session, or 401.
pub(super) fn session(sessions: &Sessions, headers: &HeaderMap) -> Result<Session, Refused> {
    cookie(headers)
        .and_then(|id| sessions.get(id))
        .ok_or(Refused::NoSession)
}

/// The session of a state-changing request: 403 for another site's, 401 without a session,
/// 403 without the session's CSRF token.
pub(super) fn change(
    sessions: &Sessions,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Session, Refused> {
    if !same_origin(headers, uri) {
        return Err(Refused::Forbidden("a request from another site"));
    }
    let session = session(sessions, headers)?;
    let token = headers
        .get(CSRF_HEADER)
        .map(http::HeaderValue::as_bytes)
        .unwrap_or_default();
    if !same(token, session.csrf.as_bytes()) {
        return Err(Refused::Forbidden("missing or wrong X-CSRF-Token"));
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; switchboard_admin=abc ; b=2")]);
        assert_eq!(cookie(&h), Some("abc"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "switchboard_admin=x")]);
        assert_eq!(cookie(&h), Some("x"));
        assert_eq!(
            cookie(&headers(&[("cookie", "switchboard_adminx=1")])),
            None
        );
        assert_eq!(cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn only_this_hosts_origin_is_same_origin() {
        let uri = Uri::from_static("/admin/api/publish");
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(&headers(&[host]), &uri));
        assert!(same_origin(
            &headers(&[host, ("origin", "http://127.0.0.1:8080")]),
            &uri
        ));
        assert!(same_origin(
            &headers(&[host, ("origin", "https://127.0.0.1:8080")]),
            &uri
        ));
        assert!(!same_origin(
            &headers(&[host, ("origin", "http://evil.example")]),
            &uri
        ));
        assert!(!same_origin(&headers(&[host, ("origin", "null")]), &uri));
        assert!(!same_origin(
            &headers(&[host, ("sec-fetch-site", "cross-site")]),
            &uri
        ));
        assert!(same_origin(
            &headers(&[host, ("sec-fetch-site", "same-origin")]),
            &uri
        ));
        // HTTP/2 names the host in :authority, which the request's URI holds.
        let h2 = Uri::from_static("https://127.0.0.1:8443/admin/api/publish");
        assert!(same_origin(
            &headers(&[("origin", "https://127.0.0.1:8443")]),
            &h2
        ));
        assert!(!same_origin(
            &headers(&[("origin", "https://other:8443")]),
            &h2
        ));
    }
}
