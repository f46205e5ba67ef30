//! Who gets in: a connection is admitted while the server is under its connection limit
//! (handshakes and plain HTTP count too); one beyond it is answered `503` with `Retry-After`
//! without reading its request.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use proto::handshake::server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::link::{Group, Member};
use crate::metrics::HandshakeFailure;

/// Admits `tcp` into `group`, or answers it `503` in a task of its own (bounded by its own
/// timeout) and counts the refusal.
pub(super) fn admit(
    group: &Arc<Group>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(Member, TcpStream)> {
    if let Some(member) = group.admit() {
        return Some((member, tcp));
    }
    group
        .metrics()
        .handshake_failed(HandshakeFailure::OverCapacity);
    tracing::debug!(%peer, "at the connection limit: 503");
    tokio::spawn(over_capacity(tcp));
    None
}

/// Answers a connection beyond the limit with 503 without reading its request, then reads
/// briefly what it sent, so that closing does not reset the connection before the client has
/// read the answer.
async fn over_capacity(mut tcp: TcpStream) {
    let body = "server at its connection limit, try again later\n";
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, body.len().into());
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let mut out = Vec::with_capacity(256);
    server::write_response(&response, body.as_bytes(), &mut out);
    let linger = async {
        tcp.write_all(&out).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < 64 * 1024 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => total += n,
            }
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), linger).await;
}

/// Whether a failed `accept` may succeed if tried again (a client that gave up, no file
/// descriptor free for a moment).
pub(super) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 23 || code == 24) // ENFILE, EMFILE
}
