//! h2c: HTTP/2 with prior knowledge in clear text, beside HTTP/1.1 on the same port, seen by a
//! raw HTTP/2 client (the `h2` crate); and the answer to the HTTP/2 preface with h2c off.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use switchboard::http::{Method, Request, StatusCode, Version};
use switchboard::tls::ServerTls;
use switchboard::{Message, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

mod support;

const WAIT: Duration = Duration::from_secs(5);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 connection with prior knowledge whose SETTINGS (extended CONNECT on) have arrived.
async fn connect(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = timeout(WAIT, client.ready()).await.unwrap().unwrap();
    let settings = async {
        while !client.is_extended_connect_protocol_enabled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(WAIT, settings)
        .await
        .expect("SETTINGS_ENABLE_CONNECT_PROTOCOL");
    client = timeout(WAIT, client.ready()).await.unwrap().unwrap();
    client
}

/// A masked client text frame (RFC 6455 §5.3), payload under 126 bytes.
fn masked_text(payload: &[u8]) -> Bytes {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    Bytes::from(frame)
}

#[tokio::test]
async fn h2c_serves_websockets_beside_http1_on_one_port() {
    let builder = Server::builder().health_endpoint("/healthz").h2c(true);
    assert!(builder.serves_h2c());
    let (addr, metrics) = support::echo_server(builder).await;

    // A WebSocket over h2c: extended CONNECT, 200, echoes on the stream.
    let mut client = connect(addr).await;
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}/chat"))
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from("websocket"));
    let (response, mut send) = client.send_request(request, false).unwrap();
    let response = timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key("sec-websocket-accept"));
    let mut body = response.into_body();
    let mut received = BytesMut::new();
    for text in ["over h2c", "and again"] {
        send.send_data(masked_text(text.as_bytes()), false).unwrap();
        let want = [&[0x81, text.len() as u8][..], text.as_bytes()].concat();
        while received.len() < want.len() {
            let data = timeout(WAIT, body.data()).await.unwrap().unwrap().unwrap();
            let _ = body.flow_control().release_capacity(data.len());
            received.extend_from_slice(&data);
        }
        assert_eq!(received.split_to(want.len()), want);
    }

    // A plain request on the same HTTP/2 connection.
    let healthz = Request::get(format!("http://{addr}/healthz"))
        .body(())
        .unwrap();
    let mut client = timeout(WAIT, client.ready()).await.unwrap().unwrap();
    let (response, _) = client.send_request(healthz, true).unwrap();
    let response = timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // HTTP/1.1 on the same port: a WebSocket, then a plain request.
    let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send(Message::text("over http/1.1")).await.unwrap();
    let echoed = timeout(WAIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::text("over http/1.1"));
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    timeout(WAIT, tcp.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    assert_eq!(metrics.websockets_total(Version::HTTP_2), 1);
    assert_eq!(metrics.websockets_total(Version::HTTP_11), 1);
    assert_eq!(metrics.http2_connections_total(), 1);
}

#[tokio::test]
async fn a_preface_in_pieces_is_waited_for() {
    let (addr, metrics) = support::echo_server(Server::builder().h2c(true)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // "PRI * HTTP/2.0\r\n\r\n" alone would parse as a (bad) HTTP/1.1 head.
    tcp.write_all(&PREFACE[..18]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tcp.write_all(&PREFACE[18..]).await.unwrap();
    tcp.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).await.unwrap(); // SETTINGS
    // The server's first frame is its SETTINGS (RFC 9113 §3.4).
    let mut head = [0u8; 9];
    timeout(WAIT, tcp.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[3], 0x4, "SETTINGS, not {head:?}");
    let counted = async {
        while metrics.http2_connections_total() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(WAIT, counted).await.expect("an HTTP/2 connection");
}

#[tokio::test]
async fn h2c_is_off_by_default_and_the_preface_gets_400() {
    let builder = Server::builder();
    assert!(!builder.serves_h2c());
    // Not in clear text with HTTP/2 off, nor over TLS, where ALPN agrees on HTTP/2.
    assert!(!Server::builder().h2c(true).http2(false).serves_h2c());
    let tls = ServerTls::self_signed(["localhost"]).unwrap();
    assert!(!Server::builder().h2c(true).tls(tls).serves_h2c());

    let (addr, metrics) = support::echo_server(builder).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(PREFACE).await.unwrap();
    tcp.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut answer = Vec::new();
    // The server answers and closes.
    timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(metrics.http2_connections_total(), 0);
    // The server serves on.
    let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send(Message::text("still serving")).await.unwrap();
    let echoed = timeout(WAIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::text("still serving"));
}
