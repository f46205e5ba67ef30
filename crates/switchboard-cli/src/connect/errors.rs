//! Why `connect` (or `bench`) could not open the WebSocket, told so that the next step is clear: the
//! usual mix-ups (TLS against a plain port and the reverse, an unknown certificate authority)
//! get a sentence and a hint instead of the TLS or HTTP parser's words, and a refused upgrade
//! can be shown in full (status line, headers, the start of the body) with `-v`.

use std::fmt::Write as _;

use switchboard::proto::handshake::HandshakeError;
use switchboard::tls::rustls;
use switchboard::{Error, Refusal};

/// The message for a failure to connect to `url`, with a hint when one helps; `verbose` when
/// the refusal, if it is one, was shown in full.
pub(crate) fn explain(url: &str, error: &Error, verbose: bool) -> String {
    let secure = url.starts_with("wss://") || url.starts_with("https://");
    match error {
        Error::Io(e) => match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::InvalidMessage(_)) if secure => format!(
                "the server does not speak TLS there (its answer is not TLS: {e}); \
                 try {}",
                other_scheme(url)
            ),
            Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
                format!(
                    "the server's certificate is not signed by an authority trusted here \
                     ({e}); trust it with --ca FILE (the PEM of the certificate or of the \
                     authority that signed it), or, for a development server such as \
                     `switchboard serve --tls-self-signed` (which logs its SHA-256 \
                     fingerprint), skip the check with --insecure (-k)"
                )
            }
            _ => error.to_string(),
        },
        Error::TlsAnswer => format!(
            "the server answered with TLS: it expects a secure connection; try {}",
            other_scheme(url)
        ),
        Error::Handshake(HandshakeError::MalformedHttp(why)) if !secure => format!(
            "the server's answer is not HTTP ({why}); if it serves TLS on this port, try {}",
            other_scheme(url)
        ),
        Error::Refused(refusal) if !verbose => format!(
            "the server refused the upgrade with {} (-v shows its headers and body)",
            refusal.status()
        ),
        Error::Refused(refusal) => {
            format!("the server refused the upgrade with {}", refusal.status())
        }
        _ => error.to_string(),
    }
}

/// With `-v`: a refused upgrade's status line, headers and body (as text, invalid UTF-8
/// replaced), as far as they were read.
pub(super) fn refusal(error: &Error) -> Option<String> {
    let Error::Refused(refusal) = error else {
        return None;
    };
    Some(describe(refusal))
}

fn describe(refusal: &Refusal) -> String {
    let mut text = format!("{:?} {}\n", refusal.version(), refusal.status());
    for (name, value) in refusal.headers() {
        let _ = writeln!(
            text,
            "{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    if !refusal.body().is_empty() {
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(refusal.body()));
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    if refusal.is_truncated() {
        text.push_str("[body cut short]\n");
    }
    text
}

/// `url` with the other scheme: `ws://` for `wss://`, `https://` for `http://`, and so on.
fn other_scheme(url: &str) -> String {
    for (from, to) in [
        ("wss://", "ws://"),
        ("https://", "http://"),
        ("ws://", "wss://"),
        ("http://", "https://"),
    ] {
        if let Some(rest) = url.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{Response, StatusCode};

    use super::*;

    #[test]
    fn the_other_scheme_is_suggested() {
        assert_eq!(other_scheme("wss://h:1/x"), "ws://h:1/x");
        assert_eq!(other_scheme("ws://h:1/x"), "wss://h:1/x");
        assert_eq!(other_scheme("https://h/"), "http://h/");
    }

    #[test]
    fn a_refusal_reads_as_its_head_and_body() {
        let response = Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header("content-type", "text/plain")
            .body(Bytes::from_static(b"origin not allowed"))
            .unwrap();
        let error = Error::Refused(Box::new(Refusal::new(response, false)));
        assert_eq!(
            refusal(&error).unwrap(),
            "HTTP/1.1 403 Forbidden\ncontent-type: text/plain\n\norigin not allowed\n"
        );
        assert!(explain("ws://h/", &error, false).contains("403 Forbidden (-v shows"));
        assert!(explain("ws://h/", &error, true).ends_with("403 Forbidden"));
    }
}
