//! The client side of SOCKS5 (RFC 1928) with username/password authentication (RFC 1929):
//! method negotiation, then a CONNECT request to an address (`socks5://`, resolved here) or
//! a name (`socks5h://`, resolved by the proxy), and the proxy's reply.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{HandshakeFailure, ProxyError};

const VERSION: u8 = 5;
const NO_AUTHENTICATION: u8 = 0;
const USERNAME_PASSWORD: u8 = 2;
const NO_ACCEPTABLE_METHODS: u8 = 0xff;
const CONNECT: u8 = 1;
const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// Where the proxy is asked to connect.
pub(super) enum Target {
    Address(SocketAddr),
    Name(String, u16),
}

impl Target {
    /// For `socks5://`: an address, the name resolved here.
    pub(super) async fn resolve(host: &str, port: u16) -> Result<Self, ProxyError> {
        let resolve_error = |source| ProxyError::Resolve {
            host: host.to_owned(),
            source,
        };
        let mut addresses = tokio::net::lookup_host((host, port))
            .await
            .map_err(resolve_error)?;
        let address = addresses.next().ok_or_else(|| {
            resolve_error(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address",
            ))
        })?;
        Ok(Self::Address(address))
    }

    /// For `socks5h://`: the name as it is, for the proxy to resolve (an IP address is sent
    /// as one).
    pub(super) fn name(host: &str, port: u16) -> Self {
        match host.parse::<IpAddr>() {
            Ok(ip) => Self::Address(SocketAddr::new(ip, port)),
            Err(_) => Self::Name(host.to_owned(), port),
        }
    }

    /// The request's `ATYP`, `DST.ADDR` and `DST.PORT`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProxyError> {
        let port = match self {
            Self::Address(SocketAddr::V4(a)) => {
                out.push(ATYP_IPV4);
                out.extend_from_slice(&a.ip().octets());
                a.port()
            }
            Self::Address(SocketAddr::V6(a)) => {
                out.push(ATYP_IPV6);
                out.extend_from_slice(&a.ip().octets());
                a.port()
            }
            Self::Name(name, port) => {
                // RFC 1928 §5: "the first octet of the address field contains the number of
                // octets of name that follow".
                let len = u8::try_from(name.len()).map_err(|_| {
                    ProxyError::Url(format!("a SOCKS5 host name is at most 255 bytes: {name}"))
                })?;
                out.push(ATYP_DOMAIN);
                out.push(len);
                out.extend_from_slice(name.as_bytes());
                *port
            }
        };
        out.extend_from_slice(&port.to_be_bytes());
        Ok(())
    }
}

/// Negotiates a method, authenticates when the proxy asks to, and has the proxy connect to
/// `target`; on success the stream carries the connection.
pub(super) async fn handshake(
    tcp: &mut TcpStream,
    target: &Target,
    credentials: Option<(&str, &str)>,
) -> Result<(), HandshakeFailure> {
    let mut request = Vec::with_capacity(64);
    target.encode(&mut request)?;
    // RFC 1928 §3: VER, NMETHODS, METHODS. Username/password is offered only with
    // credentials to give.
    if credentials.is_some() {
        tcp.write_all(&[VERSION, 2, NO_AUTHENTICATION, USERNAME_PASSWORD])
            .await?;
    } else {
        tcp.write_all(&[VERSION, 1, NO_AUTHENTICATION]).await?;
    }
    let mut choice = [0; 2];
    tcp.read_exact(&mut choice).await?;
    check_version(choice[0])?;
    match (choice[1], credentials) {
        (NO_AUTHENTICATION, _) => {}
        (USERNAME_PASSWORD, Some((username, password))) => {
            authenticate(tcp, username, password).await?;
        }
        (NO_ACCEPTABLE_METHODS, _) => {
            return Err(ProxyError::Socks5Methods(credentials.is_some()).into());
        }
        (method, _) => {
            return Err(ProxyError::Malformed(format!(
                "SOCKS5 method {method:#04x}, which was not offered"
            ))
            .into());
        }
    }
    // RFC 1928 §4: VER, CMD, RSV, then the address.
    let mut out = vec![VERSION, CONNECT, 0];
    out.extend_from_slice(&request);
    tcp.write_all(&out).await?;
    // RFC 1928 §6: VER, REP, RSV, ATYP, BND.ADDR, BND.PORT.
    let mut reply = [0; 4];
    tcp.read_exact(&mut reply).await?;
    check_version(reply[0])?;
    if reply[1] != 0 {
        return Err(ProxyError::Socks5Refused(reply[1]).into());
    }
    // The bound address is of no use to a client, but it precedes the tunnel's bytes.
    let skip = match reply[3] {
        ATYP_IPV4 => 4,
        ATYP_IPV6 => 16,
        ATYP_DOMAIN => usize::from(tcp.read_u8().await?),
        other => {
            return Err(ProxyError::Malformed(format!(
                "SOCKS5 address type {other:#04x} in its reply"
            ))
            .into());
        }
    };
    let mut bound = [0; 255 + 2];
    tcp.read_exact(&mut bound[..skip + 2]).await?;
    Ok(())
}

/// RFC 1929 §2: VER 1, ULEN, UNAME, PLEN, PASSWD; the answer's STATUS 0 is success.
async fn authenticate(
    tcp: &mut TcpStream,
    username: &str,
    password: &str,
) -> Result<(), HandshakeFailure> {
    let too_long = |what| ProxyError::Url(format!("a SOCKS5 {what} is at most 255 bytes"));
    let ulen = u8::try_from(username.len()).map_err(|_| too_long("username"))?;
    let plen = u8::try_from(password.len()).map_err(|_| too_long("password"))?;
    let mut out = Vec::with_capacity(3 + username.len() + password.len());
    out.push(1);
    out.push(ulen);
    out.extend_from_slice(username.as_bytes());
    out.push(plen);
    out.extend_from_slice(password.as_bytes());
    tcp.write_all(&out).await?;
    let mut status = [0; 2];
    tcp.read_exact(&mut status).await?;
    if status[1] != 0 {
        return Err(ProxyError::Socks5Auth.into());
    }
    Ok(())
}

fn check_version(version: u8) -> Result<(), ProxyError> {
    if version == VERSION {
        Ok(())
    } else {
        Err(ProxyError::Malformed(format!(
            "version {version} where SOCKS5 answers 5"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(target: &Target) -> Vec<u8> {
        let mut out = Vec::new();
        target.encode(&mut out).unwrap();
        out
    }

    #[test]
    fn targets_encode_as_rfc_1928_addresses() {
        assert_eq!(
            encoded(&Target::name("127.0.0.1", 8080)),
            [ATYP_IPV4, 127, 0, 0, 1, 0x1f, 0x90]
        );
        let mut v6 = vec![ATYP_IPV6];
        v6.extend_from_slice(&[0; 15]);
        v6.extend_from_slice(&[1, 0, 80]);
        assert_eq!(encoded(&Target::name("::1", 80)), v6);
        assert_eq!(
            encoded(&Target::name("ex.org", 443)),
            [&[ATYP_DOMAIN, 6][..], b"ex.org", &[1, 0xbb]].concat()
        );
        let long = "a".repeat(256);
        assert!(Target::name(&long, 1).encode(&mut Vec::new()).is_err());
    }
}
