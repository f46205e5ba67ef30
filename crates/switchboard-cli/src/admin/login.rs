//! Logging in and out: `POST /admin/api/login` with the password sets the session cookie
//! (`HttpOnly`, `SameSite=Strict`, `Path=/admin`, `Secure` over TLS) and answers the CSRF token;
//! `GET /admin/api/session` gives a reloaded page its token again; `POST /admin/api/logout`
//! ends the session and clears the cookie.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::Admin;
use super::guard::{self, COOKIE};
use super::respond::{error, forbidden, json};
use super::sessions::{Login, SESSION_TTL};

/// `POST /admin/api/login`: the password as JSON (`{"password":"..."}`) or as a form
/// (`password=...`).
pub(super) fn login(admin: &Admin, request: &Request<Bytes>) -> Response<Bytes> {
    // A login from another site's page would log the browser into the attacker's session.
    if !guard::same_origin(request.headers(), request.uri()) {
        return forbidden("a login from another site");
    }
    let Some(password) = password(request) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "send {\"password\":\"...\"} as JSON, or password=... as a form",
        );
    };
    match admin.sessions.login(&password) {
        Login::Welcome(session) => {
            tracing::info!(session = %session.tag, "admin logged in");
            let mut response = json(
                StatusCode::OK,
                &json!({"csrf": session.csrf, "expires_in": SESSION_TTL.as_secs()}),
            );
            let cookie = format!(
                "{COOKIE}={}; Path=/admin; Max-Age={}; HttpOnly; SameSite=Strict{}",
                session.id,
                SESSION_TTL.as_secs(),
                if admin.tls { "; Secure" } else { "" },
            );
            if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Login::Wrong => {
            tracing::info!("admin login refused: wrong password");
            error(StatusCode::UNAUTHORIZED, "wrong_password", "wrong password")
        }
        Login::Throttled(wait) => {
            let secs = wait.as_secs() + 1;
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                &format!("too many wrong passwords; try again in {secs} s"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
        Login::NoRandomness => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no randomness from the operating system for a session id",
        ),
    }
}

/// The password of a login request, by its content type.
fn password(request: &Request<Bytes>) -> Option<String> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match content_type.as_deref() {
        Some("application/json") => {
            let body: Value = serde_json::from_slice(request.body()).ok()?;
            body.get("password")?.as_str().map(str::to_owned)
        }
        Some("application/x-www-form-urlencoded") => form_urlencoded::parse(request.body())
            .find(|(key, _)| key == "password")
            .map(|(_, value)| value.into_owned()),
        _ => None,
    }
}

/// `GET /admin/api/session`: the session's CSRF token, for a page loaded while logged in.
pub(super) fn current(admin: &Admin, request: &Request<Bytes>) -> Response<Bytes> {
    match guard::session(&admin.sessions, request.headers()) {
        Ok(session) => {
            let left = session
                .expires
                .saturating_duration_since(tokio::time::Instant::now());
            json(
                StatusCode::OK,
                &json!({"csrf": session.csrf, "expires_in": left.as_secs()}),
            )
        }
        Err(refused) => refused.response(),
    }
}

/// `POST /admin/api/logout`: ends the session and clears the cookie.
pub(super) fn logout(admin: &Admin, request: &Request<Bytes>) -> Response<Bytes> {
    let session = match guard::change(&admin.sessions, request.headers(), request.uri()) {
        Ok(session) => session,
        Err(refused) => return refused.response(),
    };
    admin.sessions.logout(&session.id);
    tracing::info!(session = %session.tag, "admin logged out");
    let mut response = json(StatusCode::OK, &json!({"logged_out": true}));
    let clear = format!(
        "{COOKIE}=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if admin.tls { "; Secure" } else { "" },
    );
    if let Ok(clear) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, clear);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use switchboard::Metrics;
    use switchboard_hub::{Hub, HubConfig, LocalBroker};

    use super::*;

    /// The cookie a right login sets on a server with or without TLS.
    async fn cookie(tls: bool) -> String {
        let hub = Hub::new(Arc::new(LocalBroker::default()), HubConfig::default())
            .await
            .unwrap();
        let admin = Admin::new(hub, Metrics::new(), "pw", tls);
        let request = Request::post("/admin/api/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Bytes::from_static(b"password=pw"))
            .unwrap();
        let response = login(&admin, &request);
        assert_eq!(response.status(), StatusCode::OK);
        let cookie = response.headers().get(header::SET_COOKIE).unwrap();
        cookie.to_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn the_cookie_is_secure_over_tls_only() {
        let plain = cookie(false).await;
        assert!(plain.contains("; HttpOnly; SameSite=Strict"), "{plain}");
        assert!(!plain.contains("Secure"), "{plain}");
        let tls = cookie(true).await;
        assert!(
            tls.ends_with("; HttpOnly; SameSite=Strict; Secure"),
            "{tls}"
        );
    }
}
