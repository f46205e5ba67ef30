//! The origin allow-list: which browser pages may open a WebSocket (RFC 6455 §10.2: "servers
//! that are not intended to process input from any web page but only for certain sites SHOULD
//! verify the |Origin| field is an origin they expect").
//!
//! Origins are compared as RFC 6454 serializes them: scheme, host and port, without regard to
//! case; surrounding whitespace and a trailing slash in the configured list are forgiven.

use http::{Request, header};

/// The origins allowed; empty allows any.
#[derive(Clone, Debug, Default)]
pub(super) struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    pub(super) fn new<I: IntoIterator<Item = S>, S: Into<String>>(origins: I) -> Self {
        Self(
            origins
                .into_iter()
                .map(|origin| normalize(&origin.into()))
                .collect(),
        )
    }

    pub(super) fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Whether `request` may upgrade: it names an allowed origin, or no origin at all (a
    /// client that is not a browser page).
    pub(super) fn allows<B>(&self, request: &Request<B>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        self.0.contains(&normalize(origin))
    }
}

fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(origin: Option<&str>) -> Request<()> {
        let mut request = Request::builder().uri("/ws");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        request.body(()).unwrap()
    }

    #[test]
    fn an_empty_list_allows_every_origin() {
        let any = AllowedOrigins::default();
        assert!(any.allows(&from(Some("https://evil.example"))));
    }

    #[test]
    fn origins_match_without_regard_to_case_or_a_trailing_slash() {
        let list = AllowedOrigins::new([" https://Chat.Example/ "]);
        assert!(list.allows(&from(Some("https://chat.example"))));
        assert!(list.allows(&from(Some("HTTPS://CHAT.EXAMPLE"))));
        assert!(!list.allows(&from(Some("https://chat.example:8443"))));
        assert!(!list.allows(&from(Some("http://chat.example"))));
        assert!(!list.allows(&from(Some("https://evil.example"))));
    }

    #[test]
    fn requests_without_an_origin_are_not_from_a_page_and_pass() {
        let list = AllowedOrigins::new(["https://chat.example"]);
        assert!(list.allows(&from(None)));
    }
}
