//! Server memory per idle WebSocket over TLS: N WebSockets sharing one HTTP/2 connection
//! (extended CONNECT, RFC 8441, on a raw `h2` client) or N HTTP/1.1 connections, each with one
//! echo, then held; the server's RSS (`VmRSS` of `/proc/PID/status`) before and after, per
//! WebSocket. One WebSocket of the same kind is opened and closed first, so that what the
//! server sets up once (its first TLS handshake, hyper's HTTP/2 machinery) is not counted.
//! Run by `bench/h2-idle.sh`.
//!
//! ```text
//! h2_idle h2|h1 HOST:PORT CA.pem SERVER_PID [COUNT]     # prints one line of JSON
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use switchboard::http::{Method, Request, StatusCode};
use switchboard::tls::ClientTls;
use switchboard::tls::rustls::pki_types::pem::PemObject as _;
use switchboard::tls::rustls::{self, pki_types};
use switchboard::{ConnectOptions, MaybeTlsStream, Message, WebSocket};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a WebSocket's server side settles to once idle is read after this.
const SETTLE: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, addr, ca, pid, rest @ ..] = &args[..] else {
        return Err("usage: h2_idle h2|h1 HOST:PORT CA.pem SERVER_PID [COUNT]".into());
    };
    let count: usize = rest.first().map_or(Ok(100), |n| n.parse())?;
    let ca = std::fs::read(ca)?;
    let (before, after) = match mode.as_str() {
        "h2" => {
            drop(http2(addr, &ca, 1).await?);
            tokio::time::sleep(SETTLE).await;
            let before = rss_kib(pid)?;
            let held = http2(addr, &ca, count).await?;
            tokio::time::sleep(SETTLE).await;
            let after = rss_kib(pid)?;
            drop(held);
            (before, after)
        }
        "h1" => {
            drop(http1(addr, &ca, 1).await?);
            tokio::time::sleep(SETTLE).await;
            let before = rss_kib(pid)?;
            let held = http1(addr, &ca, count).await?;
            tokio::time::sleep(SETTLE).await;
            let after = rss_kib(pid)?;
            drop(held);
            (before, after)
        }
        other => return Err(format!("mode {other}: h2 or h1").into()),
    };
    let per = (after as f64 - before as f64) / count as f64;
    println!(
        "{{\"mode\":\"{mode}\",\"websockets\":{count},\"rss_before_kib\":{before},\
         \"rss_after_kib\":{after},\"kib_per_websocket\":{per:.2}}}"
    );
    Ok(())
}

/// `count` WebSockets over HTTP/1.1, each on a TLS connection of its own, one echo each.
async fn http1(
    addr: &str,
    ca: &[u8],
    count: usize,
) -> Result<Vec<WebSocket<MaybeTlsStream>>, Error> {
    let port = addr.rsplit(':').next().unwrap_or_default();
    let options = ConnectOptions {
        tls: Some(ClientTls::from_ca_pem(ca)?),
        ..ConnectOptions::default()
    };
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let url = format!("wss://localhost:{port}/");
        let (mut ws, _) = switchboard::connect_with(&url, &options).await?;
        let text = format!("idle {i}");
        ws.send(Message::text(text.clone())).await?;
        match ws.recv().await {
            Some(Ok(echo)) if echo == Message::text(text) => {}
            other => return Err(format!("no echo: {other:?}").into()),
        }
        held.push(ws);
    }
    Ok(held)
}

/// An HTTP/2 connection and its WebSockets' streams.
struct Http2 {
    _client: SendRequest<Bytes>,
    _streams: Vec<(SendStream<Bytes>, RecvStream)>,
}

/// `count` WebSockets on one HTTP/2 connection over TLS, one echo each.
async fn http2(addr: &str, ca: &[u8], count: usize) -> Result<Http2, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = pki_types::ServerName::try_from("localhost")?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err("the server did not agree on h2".into());
    }
    let (client, connection) = h2::client::handshake(tls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await?;
    while !client.is_extended_connect_protocol_enabled() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .uri("https://localhost/")
            .header("sec-websocket-version", "13")
            .body(())?;
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from("websocket"));
        client = client.ready().await?;
        let (response, mut send) = client.send_request(request, false)?;
        let response = response.await?;
        if response.status() != StatusCode::OK {
            return Err(format!("CONNECT answered {}", response.status()).into());
        }
        let mut body = response.into_body();
        let text = format!("idle {i}");
        send.send_data(masked_text(text.as_bytes()), false)?;
        let want = [&[0x81, text.len() as u8][..], text.as_bytes()].concat();
        let mut received = BytesMut::new();
        while received.len() < want.len() {
            let data = body.data().await.ok_or("the stream ended")??;
            let _ = body.flow_control().release_capacity(data.len());
            received.extend_from_slice(&data);
        }
        if received[..] != want[..] {
            return Err("a wrong echo".into());
        }
        streams.push((send, body));
    }
    Ok(Http2 {
        _client: client,
        _streams: streams,
    })
}

/// A masked client text frame (RFC 6455 §5.3), payload under 126 bytes.
fn masked_text(payload: &[u8]) -> Bytes {
    let key = [0x21, 0x43, 0x65, 0x87];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    Bytes::from(frame)
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: &str) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}
