//! [`ProxyError`]: why a proxy URL was refused or a connection through a proxy failed. No
//! message carries the proxy's password.

use std::io;

/// A proxy URL that cannot be used, or a proxy that could not be reached or refused to open
/// the tunnel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL is not `http://`, `socks5://` or `socks5h://` with a host (and a port
    /// that fits in 16 bits).
    #[error("invalid proxy url: {0}")]
    Url(String),
    /// A proxy URL read from the environment is invalid.
    #[error("invalid proxy url in {variable}: {why}")]
    Env {
        /// The variable (`https_proxy`, `ALL_PROXY`, ...).
        variable: String,
        /// What is wrong with it.
        why: String,
    },
    /// The TCP connection to the proxy failed.
    #[error("cannot reach proxy {proxy}: {}", brief(.source))]
    Unreachable {
        /// The proxy's `host:port`.
        proxy: String,
        /// The error connecting.
        source: io::Error,
    },
    /// The proxy went away or failed while setting up the tunnel.
    #[error("proxy {proxy} failed during its handshake: {}", brief(.source))]
    Io {
        /// The proxy's `host:port`.
        proxy: String,
        /// The error reading or writing.
        source: io::Error,
    },
    /// An HTTP proxy answered the CONNECT with a status other than 2xx.
    #[error("proxy answered {status} {reason}")]
    Status {
        /// The status code.
        status: u16,
        /// The proxy's reason phrase (or the standard one when it sent none).
        reason: String,
    },
    /// A SOCKS5 proxy refused the request (RFC 1928 §6); the reply code and its meaning.
    #[error("SOCKS5 proxy refused: {}", socks5_reply(*.0))]
    Socks5Refused(u8),
    /// A SOCKS5 proxy refused the username and password (RFC 1929).
    #[error("SOCKS5 proxy refused the username or password")]
    Socks5Auth,
    /// A SOCKS5 proxy accepts none of the authentication methods offered: "no
    /// authentication", and "username/password" when the proxy URL has credentials.
    #[error("SOCKS5 proxy accepts none of the offered authentication methods{}",
        if *.0 { "" } else { " (does it want a username and password?)" })]
    Socks5Methods(bool),
    /// The proxy answered something its protocol does not allow.
    #[error("proxy sent a malformed answer: {0}")]
    Malformed(String),
    /// With `socks5://` the target's name is resolved here, and it could not be.
    #[error("cannot resolve {host}: {}", brief(.source))]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
}

impl From<ProxyError> for io::Error {
    fn from(e: ProxyError) -> Self {
        let kind = match &e {
            ProxyError::Unreachable { source, .. } | ProxyError::Io { source, .. } => source.kind(),
            ProxyError::Url(_) | ProxyError::Env { .. } => io::ErrorKind::InvalidInput,
            ProxyError::Status { .. } | ProxyError::Socks5Refused(_) => {
                io::ErrorKind::ConnectionRefused
            }
            ProxyError::Socks5Auth | ProxyError::Socks5Methods(_) => {
                io::ErrorKind::PermissionDenied
            }
            _ => io::ErrorKind::InvalidData,
        };
        Self::new(kind, e)
    }
}

/// An I/O error as a short phrase: "connection refused", without the OS's error number.
fn brief(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => e.kind().to_string(),
    }
}

/// The meaning of a SOCKS5 reply code (RFC 1928 §6).
fn socks5_reply(code: u8) -> String {
    let meaning = match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => return format!("reply code {code}"),
    };
    meaning.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_refusal_plainly() {
        let refused = ProxyError::Unreachable {
            proxy: "127.0.0.1:3128".into(),
            source: io::Error::from_raw_os_error(111),
        };
        assert_eq!(
            refused.to_string(),
            "cannot reach proxy 127.0.0.1:3128: connection refused"
        );
        assert_eq!(
            ProxyError::Socks5Refused(2).to_string(),
            "SOCKS5 proxy refused: connection not allowed by ruleset"
        );
        assert_eq!(
            ProxyError::Socks5Refused(42).to_string(),
            "SOCKS5 proxy refused: reply code 42"
        );
        let status = ProxyError::Status {
            status: 407,
            reason: "Proxy Authentication Required".into(),
        };
        assert_eq!(
            status.to_string(),
            "proxy answered 407 Proxy Authentication Required"
        );
    }
}
