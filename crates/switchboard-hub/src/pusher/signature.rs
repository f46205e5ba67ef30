//! Pusher's signatures, each an HMAC-SHA256 with the app's secret in lowercase hex:
//!
//! - a channel's auth, `KEY:HMAC("SOCKET_ID:CHANNEL")`, with `:CHANNEL_DATA` appended for a
//!   presence channel: what an app's auth endpoint answers and the client sends on subscribe;
//! - a user's sign-in, `KEY:HMAC("SOCKET_ID::user::USER_DATA")`;
//! - a server API request: `auth_signature`, the HMAC of `METHOD\nPATH\nQUERY` where QUERY is
//!   every other parameter, keys lowercased, sorted, `key=value` joined by `&` with the values
//!   decoded; with `auth_timestamp` within [`MAX_CLOCK_SKEW`] of the server's clock and, for a
//!   body, `body_md5` its MD5 in hex;
//! - a webhook's `X-Pusher-Signature`, the HMAC of the body.
//!
//! Every comparison runs in constant time (`hmac`'s `verify_slice`).

use std::time::Duration;

use hmac::{Hmac, Mac as _};
use md5::{Digest as _, Md5};
use sha2::Sha256;

use super::apps::{PusherApp, PusherApps};

/// How far `auth_timestamp` may be from the server's clock, either way (Pusher's 600 s).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(600);

fn mac(secret: &str) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The hex HMAC-SHA256 of `text` with `secret`.
pub fn sign(secret: &str, text: &str) -> String {
    let mut mac = mac(secret);
    mac.update(text.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is the HMAC of `text` with `secret`.
fn verify(secret: &str, text: &str, signature: &str) -> bool {
    let Some(signature) = unhex(signature) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(text.as_bytes());
    mac.verify_slice(&signature).is_ok()
}

/// Why a client's auth or a sign-in was refused; the text is what the client is told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The auth is not `KEY:SIGNATURE`.
    #[error("invalid auth: expected key:signature")]
    Malformed,
    /// It names another app's key.
    #[error("invalid key in auth")]
    WrongKey,
    /// The signature does not match.
    #[error("invalid signature: expected HMAC SHA256 hex digest of {0}")]
    WrongSignature(String),
}

/// `KEY:SIGNATURE` of a channel subscription, as an app's auth endpoint makes it.
pub fn channel_auth(
    app: &PusherApp,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let text = channel_text(socket_id, channel, channel_data);
    format!("{}:{}", app.key, sign(&app.secret, &text))
}

fn channel_text(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// Checks the `auth` a client sent to subscribe to a private or presence channel.
///
/// # Errors
///
/// [`AuthError`] when the auth is malformed, for another app, or signed wrongly.
pub fn check_channel_auth(
    app: &PusherApp,
    auth: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> Result<(), AuthError> {
    let text = channel_text(socket_id, channel, channel_data);
    check_auth(app, auth, text)
}

/// `KEY:SIGNATURE` of a user's sign-in, as an app's user authentication endpoint makes it.
pub fn user_auth(app: &PusherApp, socket_id: &str, user_data: &str) -> String {
    let text = format!("{socket_id}::user::{user_data}");
    format!("{}:{}", app.key, sign(&app.secret, &text))
}

/// Checks the `auth` of a `pusher:signin`.
///
/// # Errors
///
/// [`AuthError`] when the auth is malformed, for another app, or signed wrongly.
pub fn check_user_auth(
    app: &PusherApp,
    auth: &str,
    socket_id: &str,
    user_data: &str,
) -> Result<(), AuthError> {
    check_auth(app, auth, format!("{socket_id}::user::{user_data}"))
}

fn check_auth(app: &PusherApp, auth: &str, text: String) -> Result<(), AuthError> {
    let (key, signature) = auth.split_once(':').ok_or(AuthError::Malformed)?;
    if key != app.key {
        return Err(AuthError::WrongKey);
    }
    if verify(&app.secret, &text, signature) {
        Ok(())
    } else {
        Err(AuthError::WrongSignature(text))
    }
}

/// `X-Pusher-Signature` of a webhook's body.
pub fn webhook_signature(app: &PusherApp, body: &[u8]) -> String {
    let mut mac = mac(&app.secret);
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// Why a server API request was refused: Pusher answers each with 401 and this text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestAuthError {
    /// A parameter the scheme needs is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// `auth_key` names no app, or another app than the path's.
    #[error("unknown auth_key")]
    UnknownKey,
    /// `auth_version` is not 1.0.
    #[error("unsupported auth_version: 1.0 expected")]
    Version,
    /// `auth_timestamp` is not a number, or too far from the server's clock.
    #[error("timestamp expired: given {given}, the server's is {now}, at most 600 seconds apart")]
    Timestamp {
        /// What the request gave.
        given: String,
        /// The server's time, in seconds since the Unix epoch.
        now: u64,
    },
    /// `body_md5` is not the MD5 of the body.
    #[error("body_md5 does not match the body")]
    BodyMd5,
    /// A body without `body_md5`.
    #[error("missing body_md5 for a request with a body")]
    NoBodyMd5,
    /// The signature does not match.
    #[error("invalid signature: expected HMAC SHA256 hex digest of {0:?}")]
    Signature(String),
}

/// A server API request, as its signature covers it.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The path, e.g. `/apps/1/events`.
    pub path: &'a str,
    /// The query string as sent (percent-encoded), without `?`.
    pub query: &'a str,
    /// The body (empty for none).
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    /// Checks the request's signature against the app its `auth_key` names, and that this
    /// is `app_id`'s (the path's) app; `now` is the server's clock in seconds since the epoch.
    ///
    /// # Errors
    ///
    /// [`RequestAuthError`] for every way the scheme can fail.
    pub fn check<'a>(
        &self,
        apps: &'a PusherApps,
        app_id: &str,
        now: u64,
    ) -> Result<&'a PusherApp, RequestAuthError> {
        let mut params: Vec<(String, String)> = form_urlencoded::parse(self.query.as_bytes())
            .map(|(k, v)| (k.to_lowercase(), v.into_owned()))
            .collect();
        let get = |name: &'static str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or(RequestAuthError::Missing(name))
        };
        let key = get("auth_key")?;
        let signature = get("auth_signature")?;
        let timestamp = get("auth_timestamp")?;
        let version = get("auth_version")?;
        let app = apps
            .by_key(&key)
            .filter(|app| app.id == app_id)
            .ok_or(RequestAuthError::UnknownKey)?;
        if version != "1.0" {
            return Err(RequestAuthError::Version);
        }
        let fresh = timestamp
            .parse::<u64>()
            .is_ok_and(|t| t.abs_diff(now) <= MAX_CLOCK_SKEW.as_secs());
        if !fresh {
            return Err(RequestAuthError::Timestamp {
                given: timestamp,
                now,
            });
        }
        match params.iter().find(|(k, _)| k == "body_md5") {
            Some((_, md5)) if *md5 != hex(&Md5::digest(self.body)) => {
                return Err(RequestAuthError::BodyMd5);
            }
            None if !self.body.is_empty() => return Err(RequestAuthError::NoBodyMd5),
            _ => {}
        }
        params.retain(|(k, _)| k != "auth_signature");
        params.sort();
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let text = format!("{}\n{}\n{}", self.method, self.path, query.join("&"));
        if verify(&app.secret, &text, &signature) {
            Ok(app)
        } else {
            Err(RequestAuthError::Signature(text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> PusherApp {
        // The app of Pusher's documentation examples.
        PusherApp::new("3", "278d425bdf160c739803", "7ad3773142a6692b25b8")
    }

    #[test]
    fn channel_auth_matches_pushers_documented_example() {
        // From Pusher's "Authorizing users" documentation.
        let auth = channel_auth(&app(), "1234.1234", "private-foobar", None);
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert_eq!(
            check_channel_auth(&app(), &auth, "1234.1234", "private-foobar", None),
            Ok(())
        );
    }

    #[test]
    fn presence_auth_covers_the_channel_data() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let auth = channel_auth(&app(), "1234.1234", "presence-foobar", Some(data));
        assert_eq!(
            auth,
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
        assert!(
            check_channel_auth(&app(), &auth, "1234.1234", "presence-foobar", Some(data)).is_ok()
        );
        let other = r#"{"user_id":11,"user_info":{"name":"Mr. Channels"}}"#;
        assert!(matches!(
            check_channel_auth(&app(), &auth, "1234.1234", "presence-foobar", Some(other)),
            Err(AuthError::WrongSignature(_))
        ));
    }

    #[test]
    fn a_bad_auth_is_refused_with_its_reason() {
        let check = |auth: &str| check_channel_auth(&app(), auth, "1.1", "private-a", None);
        assert_eq!(check("no-colon"), Err(AuthError::Malformed));
        assert_eq!(check("otherkey:00"), Err(AuthError::WrongKey));
        let good = channel_auth(&app(), "1.1", "private-a", None);
        assert!(check(&good).is_ok());
        // Another socket, another channel, a signature that is not hex.
        assert!(check_channel_auth(&app(), &good, "1.2", "private-a", None).is_err());
        assert!(check_channel_auth(&app(), &good, "1.1", "private-b", None).is_err());
        assert!(check("278d425bdf160c739803:zz").is_err());
    }

    #[test]
    fn user_auth_matches_the_node_librarys_authenticate_user() {
        // `authenticateUser("1234.1234", {id: "ann", user_info: {name: "Ann"}})` of the
        // Node `pusher` library 5.3.4, with the app of Pusher's examples.
        let data = r#"{"id":"ann","user_info":{"name":"Ann"}}"#;
        let auth = "278d425bdf160c739803:\
                    58839d16c16e15d91775a31c0325b65ae06815be1c0551bdb6c92565e741293f";
        assert_eq!(user_auth(&app(), "1234.1234", data), auth);
        assert_eq!(check_user_auth(&app(), auth, "1234.1234", data), Ok(()));
        assert!(matches!(
            check_user_auth(&app(), auth, "1234.1235", data),
            Err(AuthError::WrongSignature(_))
        ));
    }

    #[test]
    fn user_auth_signs_socket_and_user_data() {
        let data = r#"{"id":"ann"}"#;
        let auth = user_auth(&app(), "1.1", data);
        assert!(check_user_auth(&app(), &auth, "1.1", data).is_ok());
        assert!(check_user_auth(&app(), &auth, "1.1", r#"{"id":"bob"}"#).is_err());
    }

    fn request<'a>(
        method: &'a str,
        path: &'a str,
        query: &'a str,
        body: &'a [u8],
    ) -> SignedRequest<'a> {
        SignedRequest {
            method,
            path,
            query,
            body,
        }
    }

    /// A request signed as the official libraries sign one.
    fn signed(method: &str, path: &str, body: &[u8], timestamp: u64, extra: &str) -> String {
        let mut params = vec![
            ("auth_key".to_owned(), app().key.clone()),
            ("auth_timestamp".to_owned(), timestamp.to_string()),
            ("auth_version".to_owned(), "1.0".to_owned()),
        ];
        if !body.is_empty() {
            params.push(("body_md5".to_owned(), hex(&Md5::digest(body))));
        }
        for pair in extra.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            params.push((k.to_owned(), v.to_owned()));
        }
        params.sort();
        let text: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let signature = sign(
            &app().secret,
            &format!("{method}\n{path}\n{}", text.join("&")),
        );
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            query.append_pair(k, v);
        }
        query.append_pair("auth_signature", &signature);
        query.finish()
    }

    #[test]
    fn pushers_worked_example_of_a_signed_request_passes() {
        // From Pusher's HTTP API reference ("Worked authentication example").
        let apps = PusherApps::new(vec![app()]).unwrap();
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let query = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
                     &body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=\
                     da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
        let checked =
            request("POST", "/apps/3/events", query, body).check(&apps, "3", 1_353_088_179);
        assert_eq!(checked.map(|app| app.id.as_str()), Ok("3"));
    }

    #[test]
    fn a_signed_request_passes_and_every_tampering_fails() {
        let apps = PusherApps::new(vec![app()]).unwrap();
        let body = br#"{"name":"e","channels":["c"],"data":"{}"}"#;
        let now = 1_700_000_000;
        let query = signed("POST", "/apps/3/events", body, now, "");
        let ok = request("POST", "/apps/3/events", &query, body).check(&apps, "3", now);
        assert_eq!(ok.map(|app| app.id.as_str()), Ok("3"));

        // A value that needs encoding is signed decoded.
        let info = signed(
            "GET",
            "/apps/3/channels",
            b"",
            now,
            "filter_by_prefix=presence-&info=user_count,subscription_count",
        );
        let get = request("GET", "/apps/3/channels", &info, b"");
        assert!(
            get.check(&apps, "3", now).is_ok(),
            "{:?}",
            get.check(&apps, "3", now)
        );

        let other_body = br#"{"name":"f","channels":["c"],"data":"{}"}"#;
        let refused = |r: SignedRequest<'_>, at| r.check(&apps, "3", at).unwrap_err();
        assert_eq!(
            refused(request("POST", "/apps/3/events", &query, other_body), now),
            RequestAuthError::BodyMd5
        );
        assert!(matches!(
            refused(request("POST", "/apps/3/batch_events", &query, body), now),
            RequestAuthError::Signature(_)
        ));
        assert!(matches!(
            refused(request("POST", "/apps/3/events", &query, body), now + 601),
            RequestAuthError::Timestamp { .. }
        ));
        assert!(
            request("POST", "/apps/3/events", &query, body)
                .check(&apps, "3", now - 600)
                .is_ok()
        );
        assert_eq!(
            request("POST", "/apps/4/events", &query, body)
                .check(&apps, "4", now)
                .unwrap_err(),
            RequestAuthError::UnknownKey
        );
        let unsigned = query.split("&auth_signature").next().unwrap();
        assert_eq!(
            refused(request("POST", "/apps/3/events", unsigned, body), now),
            RequestAuthError::Missing("auth_signature")
        );
        let no_md5 = signed("POST", "/apps/3/events", b"", now, "");
        assert_eq!(
            refused(request("POST", "/apps/3/events", &no_md5, body), now),
            RequestAuthError::NoBodyMd5
        );
    }

    #[test]
    fn webhook_signature_is_the_hmac_of_the_body() {
        let body = br#"{"time_ms":1,"events":[]}"#;
        let signature = webhook_signature(&app(), body);
        assert_eq!(signature.len(), 64);
        assert!(verify(
            &app().secret,
            std::str::from_utf8(body).unwrap(),
            &signature
        ));
    }
}
