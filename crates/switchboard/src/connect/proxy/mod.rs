//! Connecting through a proxy: an HTTP proxy's tunnel (`CONNECT`, RFC 9110 §9.3.6, with Basic
//! authentication, RFC 7617) in `http_connect.rs`, a SOCKS5 proxy (RFC 1928, with
//! username/password, RFC 1929) in `socks5.rs`, and which proxy the environment names for a
//! URL, as curl reads it, in `env.rs`.
//!
//! A proxy yields a TCP stream to the target; TLS to the target (for `wss://`) and the
//! WebSocket handshake then run inside it unchanged, so the proxy sees neither. No error or
//! log line carries the proxy's password: [`Proxy`]'s `Display` and `Debug` leave it out.

mod env;
mod error;
mod http_connect;
mod socks5;

use std::fmt;
use std::str::FromStr;

use http::uri::Authority;
use percent_encoding::percent_decode_str;
use tokio::net::TcpStream;

pub use error::ProxyError;

/// Where curl sends a proxy URL that names no port, whatever its scheme.
const DEFAULT_PORT: u16 = 1080;

/// A proxy to connect through: `http://[user:pass@]host[:port]` (a `CONNECT` tunnel),
/// `socks5://[user:pass@]host[:port]` (SOCKS5, the target's name resolved here) or
/// `socks5h://...` (SOCKS5, the name resolved by the proxy). A URL without a scheme is
/// `http://`, and without a port uses 1080, as curl does. The username and password are
/// percent-decoded (`%40` for `@`).
///
/// ```
/// use switchboard::{ConnectOptions, Proxy};
///
/// let proxy: Proxy = "socks5h://ann:s%40cret@127.0.0.1:1080".parse()?;
/// assert_eq!(proxy.to_string(), "socks5h://ann:***@127.0.0.1:1080");
/// let options = ConnectOptions { proxy: Some(proxy), ..ConnectOptions::default() };
/// # Ok::<(), switchboard::ProxyError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: Kind,
    /// A name, an IPv4 address, or an IPv6 address without brackets.
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

/// The protocol spoken to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Http,
    Socks5,
    /// SOCKS5, the proxy resolving the target's name.
    Socks5h,
}

/// A username and password, decoded.
#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    username: String,
    password: String,
}

impl Proxy {
    /// Parses a proxy URL, as [`FromStr`] does.
    ///
    /// # Errors
    ///
    /// [`ProxyError::Url`] for another scheme (`https://` and `socks4://` are not supported),
    /// no host, a bad port, or a username or password that is not UTF-8 once decoded. The
    /// message does not repeat the URL, which may hold a password.
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let bad = |why: &str| ProxyError::Url(why.to_owned());
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => Kind::Http,
            "socks5" => Kind::Socks5,
            "socks5h" => Kind::Socks5h,
            "https" => return Err(bad("https:// proxies (TLS to the proxy) are not supported")),
            other => {
                return Err(ProxyError::Url(format!(
                    "scheme {other:?} is not supported (http, socks5, socks5h)"
                )));
            }
        };
        // Only a bare "/" may follow the authority: a proxy URL names a host, not a resource.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, host_port) = match rest.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, rest),
        };
        if host_port.contains(['/', '?', '#']) {
            return Err(bad("a proxy url has no path, query or fragment"));
        }
        let authority: Authority = host_port
            .parse()
            .map_err(|_| bad("expected host[:port] after the scheme"))?;
        let host = authority.host();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match authority.as_str()[authority.host().len()..].strip_prefix(':') {
            Some(port) => port
                .parse()
                .map_err(|_| bad("the port is not a number from 0 to 65535"))?,
            None => DEFAULT_PORT,
        };
        let credentials = userinfo
            .map(|userinfo| {
                let (username, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decode = |s: &str, what: &str| {
                    percent_decode_str(s)
                        .decode_utf8()
                        .map(|s| s.into_owned())
                        .map_err(|_| ProxyError::Url(format!("the {what} is not UTF-8")))
                };
                Ok::<_, ProxyError>(Credentials {
                    username: decode(username, "username")?,
                    password: decode(password, "password")?,
                })
            })
            .transpose()?;
        Ok(Self {
            kind,
            host: host.to_owned(),
            port,
            credentials,
        })
    }

    /// The proxy the environment names for `url` (a `ws://` or `wss://` URL), as curl reads
    /// it: for `ws://` `ws_proxy`, `WS_PROXY`, `http_proxy` (never `HTTP_PROXY`: a CGI
    /// program's environment holds the client's `Proxy:` header under that name); for
    /// `wss://` `wss_proxy`, `WSS_PROXY`, `https_proxy`, `HTTPS_PROXY`; then `all_proxy`,
    /// `ALL_PROXY`. The first variable set decides, and an empty one means no proxy. `None`
    /// as well when `no_proxy` (or `NO_PROXY`) matches the URL's host: `*` alone for every
    /// host, or a comma-separated list of names, each matching itself and its subdomains
    /// (`example.com` and `.example.com` both match `api.example.com`), and of IP addresses,
    /// with an optional prefix length (`10.0.0.0/8`, `::1`).
    ///
    /// # Errors
    ///
    /// [`ProxyError::Env`] when the variable that decides holds an invalid proxy URL;
    /// [`ProxyError::Url`] when `url` is not a URL with a host.
    pub fn from_env(url: &str) -> Result<Option<Self>, ProxyError> {
        env::for_url(url, |name| std::env::var(name).ok())
    }

    /// The proxy's host: a name, or an IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The username, if the URL had one.
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.username.as_str())
    }

    /// Opens a TCP connection to `host` (a name or an IP address, IPv6 with or without
    /// brackets) and `port` through the proxy. What is written to the stream then goes to
    /// the target.
    ///
    /// No timeout: the caller bounds it ([`connect_with`](crate::connect_with) within its
    /// [`timeout`](crate::ConnectOptions::timeout)).
    ///
    /// # Errors
    ///
    /// [`ProxyError::Unreachable`] when the proxy cannot be reached; [`ProxyError::Status`],
    /// [`ProxyError::Socks5Refused`], [`ProxyError::Socks5Auth`] and
    /// [`ProxyError::Socks5Methods`] when it refuses; [`ProxyError::Io`] or
    /// [`ProxyError::Malformed`] when it fails or breaks its protocol;
    /// [`ProxyError::Resolve`] when `socks5://` cannot resolve `host`.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, ProxyError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        tracing::debug!(proxy = %self, target = %host, port, "connecting through a proxy");
        let mut tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| ProxyError::Unreachable {
                proxy: self.address(),
                source,
            })?;
        // Small writes (the handshake's, then the WebSocket's frames) go out at once.
        tcp.set_nodelay(true)
            .map_err(|source| self.io_error(source))?;
        let credentials = self
            .credentials
            .as_ref()
            .map(|c| (c.username.as_str(), c.password.as_str()));
        match self.kind {
            Kind::Http => http_connect::tunnel(&mut tcp, host, port, credentials).await,
            Kind::Socks5 => {
                let target = socks5::Target::resolve(host, port).await?;
                socks5::handshake(&mut tcp, &target, credentials).await
            }
            Kind::Socks5h => {
                let target = socks5::Target::name(host, port);
                socks5::handshake(&mut tcp, &target, credentials).await
            }
        }
        .map_err(|e| match e {
            HandshakeFailure::Io(source) => self.io_error(source),
            HandshakeFailure::Proxy(e) => e,
        })?;
        Ok(tcp)
    }

    /// `host:port`, IPv6 in brackets.
    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn io_error(&self, source: std::io::Error) -> ProxyError {
        ProxyError::Io {
            proxy: self.address(),
            source,
        }
    }
}

/// What a handshake with a proxy ends in when it fails: an I/O error, which the caller tags
/// with the proxy's address, or the proxy's refusal.
enum HandshakeFailure {
    Io(std::io::Error),
    Proxy(ProxyError),
}

impl From<std::io::Error> for HandshakeFailure {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<ProxyError> for HandshakeFailure {
    fn from(e: ProxyError) -> Self {
        Self::Proxy(e)
    }
}

impl FromStr for Proxy {
    type Err = ProxyError;

    fn from_str(s: &str) -> Result<Self, ProxyError> {
        Self::parse(s)
    }
}

/// The URL with `***` for the password.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            Kind::Http => "http",
            Kind::Socks5 => "socks5",
            Kind::Socks5h => "socks5h",
        };
        write!(f, "{scheme}://")?;
        if let Some(credentials) = &self.credentials {
            write!(f, "{}:***@", credentials.username)?;
        }
        write!(f, "{}", self.address())
    }
}

/// As `Display`: without the password.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Proxy {
        Proxy::parse(url).unwrap()
    }

    #[test]
    fn urls_parse_with_curls_defaults() {
        let proxy = parse("127.0.0.1:3128");
        assert_eq!(
            (proxy.kind, proxy.host(), proxy.port()),
            (Kind::Http, "127.0.0.1", 3128)
        );
        let proxy = parse("socks5h://proxy.example");
        assert_eq!((proxy.kind, proxy.port()), (Kind::Socks5h, 1080));
        let proxy = parse("SOCKS5://[::1]:9050/");
        assert_eq!(
            (proxy.kind, proxy.host(), proxy.port()),
            (Kind::Socks5, "::1", 9050)
        );
        assert_eq!(proxy.to_string(), "socks5://[::1]:9050");
    }

    #[test]
    fn credentials_are_percent_decoded_and_never_shown() {
        let proxy = parse("http://ann%20b:p%40ss:w%3Ard@proxy:8080");
        let credentials = proxy.credentials.as_ref().unwrap();
        assert_eq!(credentials.username, "ann b");
        assert_eq!(credentials.password, "p@ss:w:rd");
        assert_eq!(proxy.to_string(), "http://ann b:***@proxy:8080");
        assert!(!format!("{proxy:?}").contains("p@ss"));
        // A password holding an unencoded '@' still leaves the last '@' as the separator.
        let proxy = parse("http://ann:a@b@proxy:8080");
        assert_eq!(proxy.credentials.as_ref().unwrap().password, "a@b");
        assert_eq!(proxy.host(), "proxy");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in [
            "https://u:secret@proxy:443",
            "socks4://u:secret@proxy",
            "http://u:secret@proxy:99999",
            "http://u:secret@",
            "http://u:secret@proxy:",
            "http://u:secret@proxy/path",
            "http://u:%ff@proxy",
        ] {
            let e = Proxy::parse(url).expect_err(url).to_string();
            assert!(!e.contains("secret"), "{url}: {e}");
            assert!(e.starts_with("invalid proxy url: "), "{url}: {e}");
        }
    }
}
