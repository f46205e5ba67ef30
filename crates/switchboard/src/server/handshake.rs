//! A connection's first request, from an admitted TCP stream: TLS, then the request head, read
//! by the server's own parser (at most `max_head_size`). An upgrade request takes the fast path:
//! the checks of [`upgrade::prepare`] and the `101`, written here with no HTTP stack involved.
//! Any other request is handed on with the bytes read so far, for hyper to serve
//! ([`plain`](super::plain)). A TLS connection that agreed on `h2` goes to
//! [`http2`](super::http2) before any request is read. All of it runs within the handshake
//! timeout; every failure is counted by reason.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request};
use proto::handshake::server;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Shared;
use super::respond::respond;
use super::upgrade::{self, Refusal};
use crate::error::Error;
use crate::head::read_head;
use crate::hook::PeerAddr;
use crate::metrics::HandshakeFailure;
use crate::stream::MaybeTlsStream;
use crate::tls::ALPN_H2;
use crate::websocket::WebSocket;

/// A first request that did not make it.
// Smaller than `First`, beside which it lives in the handshake's future: boxing saves nothing.
#[allow(clippy::large_enum_variant)]
enum Failure {
    /// Dropped without an answer.
    Dropped(HandshakeFailure, String),
    /// Refused: the answer still to write, to a request of that method.
    Refused(MaybeTlsStream, Method, Refusal),
}

/// Where a connection's first request leads.
// It lives only from the handshake to the handler, within the boxed start of the connection's
// task: boxing the WebSocket would cost an allocation per upgrade and save nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum First {
    /// A WebSocket, upgraded on the fast path.
    WebSocket(WebSocket<MaybeTlsStream>, Request<()>),
    /// A plain HTTP request: the stream, and what was read off it (the request's head first).
    Plain(MaybeTlsStream, Bytes),
    /// An HTTP/2 connection (ALPN `h2`, or h2c's preface): the stream, and what was read off
    /// it (nothing over TLS, the preface and what followed it over h2c).
    Http2(MaybeTlsStream, Bytes),
}

/// What opens an HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a clear-text connection opens with.
// Lives only while the head is read: boxing the request would cost an allocation per
// connection and save nothing.
#[allow(clippy::large_enum_variant)]
enum Opening {
    /// An HTTP/1.1 request head, of that length.
    Request(Request<()>, usize),
    /// The HTTP/2 preface (h2c on only).
    Preface,
}

/// The first request within the server's time limit; a failure is counted and logged.
pub(super) async fn first_request(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<First> {
    let metrics = shared.group.metrics();
    let deadline = Instant::now() + shared.options.handshake_timeout;
    match tokio::time::timeout_at(deadline, handshake(tcp, peer, shared)).await {
        Ok(Ok(first)) => return Some(first),
        Ok(Err(Failure::Dropped(reason, detail))) => {
            upgrade::failed(metrics, peer, reason, &detail)
        }
        Ok(Err(Failure::Refused(mut stream, method, refusal))) => {
            // Counted before the answer goes out: a client that has read it finds it counted.
            upgrade::failed(metrics, peer, refusal.reason, &refusal.detail);
            let answer = respond(&mut stream, &method, refusal.response);
            let _ = tokio::time::timeout_at(deadline, answer).await;
        }
        Err(_) => upgrade::failed(metrics, peer, HandshakeFailure::Timeout, "timed out"),
    }
    None
}

/// TLS, the request head, then either a plain request handed on or the checks and the `101`.
async fn handshake(tcp: TcpStream, peer: SocketAddr, shared: &Shared) -> Result<First, Failure> {
    let _ = tcp.set_nodelay(true);
    let mut stream = match &shared.tls {
        None => MaybeTlsStream::Plain(tcp),
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(tls) if tls.get_ref().1.alpn_protocol() == Some(ALPN_H2) => {
                let stream = MaybeTlsStream::Tls(Box::new(tls.into()));
                if shared.http2.is_none() {
                    // A configuration of the application's own offered h2 with HTTP/2 off.
                    let detail = "h2 agreed with http2 off".to_owned();
                    return Err(Failure::Dropped(HandshakeFailure::Tls, detail));
                }
                return Ok(First::Http2(stream, Bytes::new()));
            }
            Ok(tls) => MaybeTlsStream::Tls(Box::new(tls.into())),
            Err(e) => return Err(Failure::Dropped(HandshakeFailure::Tls, e.to_string())),
        },
    };
    let max_head = shared.options.max_head_size;
    // Only a clear-text connection: over TLS, HTTP/2 is agreed through ALPN (RFC 9113 §3.2).
    let h2c = shared.h2c && matches!(stream, MaybeTlsStream::Plain(_));
    // Consumes nothing (a length of 0), so that the head's bytes stay in the buffer for hyper
    // to read again when the request is a plain one, or the preface for HTTP/2.
    let parse = |buf: &[u8]| {
        if h2c && PREFACE.starts_with(&buf[..buf.len().min(PREFACE.len())]) {
            // The preface so far: wait for the rest of it, which tells it from HTTP/1.1.
            return Ok((buf.len() >= PREFACE.len()).then_some((Opening::Preface, 0)));
        }
        let head = server::parse_request(buf, max_head)?;
        Ok(head.map(|(request, len)| (Opening::Request(request, len), 0)))
    };
    let (opening, mut read) = match read_head(&mut stream, parse).await {
        Ok(head) => head,
        Err(Error::Handshake(e)) => {
            return Err(Failure::Refused(
                stream,
                Method::GET,
                Refusal::handshake(&e),
            ));
        }
        Err(e) => return Err(Failure::Dropped(HandshakeFailure::Io, e.to_string())),
    };
    let (mut request, head_len) = match opening {
        Opening::Request(request, len) => (request, len),
        Opening::Preface => return Ok(First::Http2(stream, read.freeze())),
    };
    if !server::is_upgrade_request(&request) {
        return Ok(First::Plain(stream, read.freeze()));
    }
    let read_buf = read.split_off(head_len);
    request.extensions_mut().insert(PeerAddr(peer));
    match upgrade::prepare(shared, &mut request).await {
        Ok(upgrade) => match upgrade.send(stream, read_buf).await {
            Ok(ws) => Ok(First::WebSocket(ws, request)),
            Err(e) => Err(Failure::Dropped(HandshakeFailure::Io, e.to_string())),
        },
        Err(refusal) => Err(Failure::Refused(stream, request.method().clone(), refusal)),
    }
}
