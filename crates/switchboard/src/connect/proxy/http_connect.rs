//! A tunnel through an HTTP proxy: `CONNECT host:port` (RFC 9110 §9.3.6), with Basic
//! credentials in `Proxy-Authorization` (RFC 7617), and the proxy's answer read with
//! `httparse`. The answer's head is bounded in size; the caller bounds the time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::BytesMut;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{HandshakeFailure, ProxyError};

/// The longest answer head accepted from a proxy.
const MAX_HEAD: usize = 16 * 1024;

/// The most header lines accepted in the answer.
const MAX_HEADERS: usize = 64;

/// Asks the proxy on `tcp` for a tunnel to `host:port`; on success the stream carries the
/// tunnel.
pub(super) async fn tunnel(
    tcp: &mut TcpStream,
    host: &str,
    port: u16,
    credentials: Option<(&str, &str)>,
) -> Result<(), HandshakeFailure> {
    tcp.write_all(&request(host, port, credentials)).await?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some((status, reason, len)) = parse(&buf)? {
            if !(200..300).contains(&status) {
                return Err(ProxyError::Status { status, reason }.into());
            }
            // RFC 9110 §9.3.6: "A server MUST NOT send any Transfer-Encoding or
            // Content-Length header fields in a 2xx (Successful) response to CONNECT", and
            // the target cannot have spoken yet: the client speaks first on a WebSocket
            // and in TLS. Bytes here would be lost from the tunnel.
            if buf.len() > len {
                return Err(ProxyError::Malformed(format!(
                    "{} bytes after its {status} answer to CONNECT",
                    buf.len() - len
                ))
                .into());
            }
            return Ok(());
        }
        if buf.len() >= MAX_HEAD {
            return Err(ProxyError::Malformed(format!(
                "its answer's head is longer than {MAX_HEAD} bytes"
            ))
            .into());
        }
        // Never read past the limit, so that a proxy cannot make the buffer grow.
        let mut limited = (&mut *tcp).take((MAX_HEAD - buf.len()) as u64);
        if limited.read_buf(&mut buf).await? == 0 {
            return Err(ProxyError::Malformed(if buf.is_empty() {
                "it closed the connection without answering the CONNECT".to_owned()
            } else {
                "it closed the connection within its answer".to_owned()
            })
            .into());
        }
    }
}

/// The CONNECT request.
fn request(host: &str, port: u16, credentials: Option<(&str, &str)>) -> Vec<u8> {
    // RFC 9110 §9.3.6: the request target is "only the host and port number of the tunnel
    // destination, separated by a colon"; an IPv6 address in brackets (RFC 3986 §3.2.2).
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut out = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((username, password)) = credentials {
        let token = STANDARD.encode(format!("{username}:{password}"));
        out.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The status, reason phrase and head length of a complete answer head in `buf`; `None`
/// when more is needed.
fn parse(buf: &[u8]) -> Result<Option<(u16, String, usize)>, ProxyError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            let status = response.code.unwrap_or_default();
            let reason = match response.reason {
                Some(reason) if !reason.is_empty() => reason.to_owned(),
                _ => StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("")
                    .to_owned(),
            };
            Ok(Some((status, reason, len)))
        }
        Err(e) => Err(ProxyError::Malformed(format!("not an HTTP answer ({e})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_target_and_carries_basic_credentials() {
        let out = String::from_utf8(request("::1", 443, Some(("Aladdin", "open sesame"))));
        assert_eq!(
            out.unwrap(),
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\
             Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
        let out = String::from_utf8(request("example.com", 80, None)).unwrap();
        assert_eq!(
            out,
            "CONNECT example.com:80 HTTP/1.1\r\nHost: example.com:80\r\n\r\n"
        );
    }

    #[test]
    fn answers_parse_in_pieces_with_the_standard_reason_as_fallback() {
        let answer = b"HTTP/1.1 407 \r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n";
        for cut in 0..answer.len() {
            assert_eq!(parse(&answer[..cut]).unwrap(), None);
        }
        let (status, reason, len) = parse(answer).unwrap().unwrap();
        assert_eq!(
            (status, reason.as_str(), len),
            (407, "Proxy Authentication Required", answer.len())
        );
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
