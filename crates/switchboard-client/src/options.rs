//! How a [`HubClient`](crate::HubClient) connects, retries and waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use switchboard::ConnectOptions;

/// Where fresh tokens come from: called before the current token expires and after the hub
/// refuses one. `Err` stops the client with that reason.
pub type TokenSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// How a client connects, retries and waits. `ClientOptions::default()` then the setters:
///
/// ```
/// use std::time::Duration;
/// use switchboard_client::ClientOptions;
///
/// let options = ClientOptions::default()
///     .name("ann")
///     .request_timeout(Duration::from_secs(5));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    pub(crate) name: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) get_token: Option<TokenSource>,
    pub(crate) request_timeout: Duration,
    pub(crate) queue_limit: usize,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) connect: ConnectOptions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            name: None,
            token: None,
            get_token: None,
            request_timeout: Duration::from_secs(10),
            queue_limit: 1000,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            connect: ConnectOptions::default(),
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("get_token", &self.get_token.as_ref().map(|_| "…"))
            .field("request_timeout", &self.request_timeout)
            .field("queue_limit", &self.queue_limit)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("ping_interval", &self.ping_interval)
            .finish_non_exhaustive()
    }
}

impl ClientOptions {
    /// The name an anonymous client goes by (the hub's `name` query parameter).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The JWT to connect with (the hub's `token` query parameter).
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Where fresh tokens come from (see [`TokenSource`]); without a token, it gives the
    /// first one too.
    #[must_use]
    pub fn get_token<F, Fut>(mut self, source: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        self.get_token = Some(Arc::new(move || Box::pin(source())));
        self
    }

    /// How long a request waits for its answer, a connection included when offline
    /// (default 10 s).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The most requests that wait for a connection while offline (default 1000).
    #[must_use]
    pub fn queue_limit(mut self, limit: usize) -> Self {
        self.queue_limit = limit;
        self
    }

    /// The pause before reconnecting: random up to `min`, doubling per failed attempt up to
    /// `max` (defaults 200 ms and 10 s).
    #[must_use]
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// A connection quiet for this long is pinged; one that does not answer within half of it
    /// is taken as dead and replaced (default 10 s).
    #[must_use]
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Options of the WebSocket connection itself: TLS trust, headers, limits.
    #[must_use]
    pub fn connect_options(mut self, options: ConnectOptions) -> Self {
        self.connect = options;
        self
    }
}

/// How one subscription is made: `SubscribeOptions::default()` then the setters, for
/// [`HubClient::subscribe_with`](crate::HubClient::subscribe_with).
///
/// ```
/// use switchboard_client::SubscribeOptions;
///
/// // A feed's many readers need its messages, not each other's comings and goings.
/// let options = SubscribeOptions::default().join_leave(false);
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct SubscribeOptions {
    pub(crate) join_leave: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self { join_leave: true }
    }
}

impl SubscribeOptions {
    /// Whether the channel's [`Event::Join`](crate::Event::Join) and
    /// [`Event::Leave`](crate::Event::Leave) are sent (default `true`). Declined, the
    /// connection still counts in the channel's presence; across reconnects the choice
    /// holds.
    #[must_use]
    pub fn join_leave(mut self, join_leave: bool) -> Self {
        self.join_leave = join_leave;
        self
    }
}
