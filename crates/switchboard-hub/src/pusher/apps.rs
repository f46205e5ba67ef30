//! The Pusher apps a server hosts: each an id (in the server API's paths), a key (in the
//! client's URL and in signatures) and a secret (signs both), found by key or by id.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// One Pusher app.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PusherApp {
    /// Its id, as in `/apps/{id}/events`.
    pub id: String,
    /// Its key, as in `/app/{key}` and before the `:` of every auth.
    pub key: String,
    /// The secret its signatures are made with.
    pub secret: String,
    /// Whether clients may send `client-` events (on private and presence channels only).
    pub client_events: bool,
    /// Where the app's webhooks go (Pusher's format, signed with the secret); none without.
    pub webhook: Option<http::Uri>,
}

impl PusherApp {
    /// An app without client events.
    pub fn new(id: impl Into<String>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            client_events: false,
            webhook: None,
        }
    }

    /// The same app, with client events on or off.
    #[must_use]
    pub fn with_client_events(mut self, on: bool) -> Self {
        self.client_events = on;
        self
    }

    /// The same app, with its webhooks posted to `url`.
    #[must_use]
    pub fn with_webhook(mut self, url: http::Uri) -> Self {
        self.webhook = Some(url);
        self
    }
}

// The secret stays out of logs.
impl fmt::Debug for PusherApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PusherApp")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("client_events", &self.client_events)
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

/// Why an app's description was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// Not `ID:KEY:SECRET`.
    #[error("a Pusher app is ID:KEY:SECRET (got {0} parts)")]
    Parts(usize),
    /// An id, key or secret that is empty or has characters outside `[A-Za-z0-9_-]`.
    #[error("the app's {0} must be letters, digits, '-' or '_', not empty")]
    Characters(&'static str),
    /// Two apps share an id or a key.
    #[error("two Pusher apps have the {0} {1:?}")]
    Duplicate(&'static str, String),
}

/// `ID:KEY:SECRET`, the form `--pusher-app` takes.
impl FromStr for PusherApp {
    type Err = AppError;

    fn from_str(s: &str) -> Result<Self, AppError> {
        let parts: Vec<&str> = s.split(':').collect();
        let [id, key, secret] = parts[..] else {
            return Err(AppError::Parts(parts.len()));
        };
        for (what, value) in [("id", id), ("key", key), ("secret", secret)] {
            let fine = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if value.is_empty() || !value.chars().all(fine) {
                return Err(AppError::Characters(what));
            }
        }
        Ok(Self::new(id, key, secret))
    }
}

/// The apps a server hosts.
#[derive(Clone, Debug, Default)]
pub struct PusherApps {
    by_key: HashMap<String, Arc<PusherApp>>,
    by_id: HashMap<String, Arc<PusherApp>>,
}

impl PusherApps {
    /// The apps, each id and each key used once.
    ///
    /// # Errors
    ///
    /// [`AppError::Duplicate`] when two apps share an id or a key.
    pub fn new(apps: Vec<PusherApp>) -> Result<Self, AppError> {
        let mut all = Self::default();
        for app in apps {
            let app = Arc::new(app);
            if all.by_id.insert(app.id.clone(), app.clone()).is_some() {
                return Err(AppError::Duplicate("id", app.id.clone()));
            }
            if all.by_key.insert(app.key.clone(), app.clone()).is_some() {
                return Err(AppError::Duplicate("key", app.key.clone()));
            }
        }
        Ok(all)
    }

    /// The app whose key is `key`.
    pub fn by_key(&self, key: &str) -> Option<&PusherApp> {
        self.by_key.get(key).map(Arc::as_ref)
    }

    /// The app whose id is `id`.
    pub fn by_id(&self, id: &str) -> Option<&PusherApp> {
        self.by_id.get(id).map(Arc::as_ref)
    }

    /// Every app, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &PusherApp> {
        self.by_id.values().map(Arc::as_ref)
    }

    /// Whether no app is configured.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_is_id_key_secret() {
        let app: PusherApp = "1:app-key:s3cret_x".parse().unwrap();
        assert_eq!((app.id.as_str(), app.key.as_str()), ("1", "app-key"));
        assert!(!app.client_events);
        assert_eq!("1:k".parse::<PusherApp>(), Err(AppError::Parts(2)));
        assert_eq!("1:k:s:x".parse::<PusherApp>(), Err(AppError::Parts(4)));
        assert_eq!(
            "1::s".parse::<PusherApp>(),
            Err(AppError::Characters("key"))
        );
        assert_eq!(
            "1:k:s s".parse::<PusherApp>(),
            Err(AppError::Characters("secret"))
        );
        assert!(!format!("{app:?}").contains("s3cret"), "no secret in logs");
    }

    #[test]
    fn apps_are_found_by_key_and_id_and_never_share_either() {
        let apps = PusherApps::new(vec![
            PusherApp::new("1", "k1", "s1"),
            PusherApp::new("2", "k2", "s2"),
        ])
        .unwrap();
        assert_eq!(apps.by_key("k2").map(|a| a.id.as_str()), Some("2"));
        assert_eq!(apps.by_id("1").map(|a| a.key.as_str()), Some("k1"));
        assert!(apps.by_key("1").is_none() && apps.by_id("k1").is_none());
        let twice = |a, b| PusherApps::new(vec![a, b]).unwrap_err();
        assert_eq!(
            twice(PusherApp::new("1", "a", "s"), PusherApp::new("1", "b", "s")),
            AppError::Duplicate("id", "1".into())
        );
        assert_eq!(
            twice(PusherApp::new("1", "a", "s"), PusherApp::new("2", "a", "s")),
            AppError::Duplicate("key", "a".into())
        );
    }
}
