//! A server and clients on 127.0.0.1, talking through real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use switchboard::{CloseCode, CloseFrame, Error, Message, ProtocolError, Server, Topics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Starts an echo server that also reports what each connection ended with.
async fn echo_server() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Option<Result<Message, Error>>>,
) {
    let server = Server::builder()
        .max_message_size(2 << 20)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws, _| {
        let tx = tx.clone();
        async move {
            loop {
                let next = ws.recv().await;
                match &next {
                    Some(Ok(m)) if m.is_data() => {
                        if ws.send(m.clone()).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        let _ = tx.send(next);
                        return;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }));
    (addr, rx)
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/echo")
}

/// A raw TCP connection that has completed the opening handshake.
async fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Reads one unmasked server frame: (first byte, payload).
async fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let b0 = stream.read_u8().await.unwrap();
    let len = match stream.read_u8().await.unwrap() {
        126 => u64::from(stream.read_u16().await.unwrap()),
        127 => stream.read_u64().await.unwrap(),
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload).await.unwrap();
    (b0, payload)
}

async fn expect_close(stream: &mut TcpStream, code: CloseCode) {
    let (b0, payload) = read_frame(stream).await;
    assert_eq!(b0, 0x88, "expected a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code.0);
    // Then the server ends the TCP connection.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

/// A masked (zero key) client frame.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![b0, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test]
async fn echoes_text_binary_and_large_messages() {
    let (addr, _) = echo_server().await;
    let (mut ws, response) = switchboard::connect(&url(addr)).await.unwrap();
    assert_eq!(response.status(), 101);
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let sent = [
        Message::text("héllo"),
        Message::binary(vec![1, 2, 3]),
        Message::binary(big),
    ];
    for m in &sent {
        ws.send(m.clone()).await.unwrap();
    }
    for m in &sent {
        assert_eq!(ws.recv().await.unwrap().unwrap(), *m);
    }
}

#[tokio::test]
async fn ping_is_answered_with_the_same_payload() {
    let (addr, _) = echo_server().await;
    let (mut ws, _) = switchboard::connect(&url(addr)).await.unwrap();
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    let pong = ws.recv().await.unwrap().unwrap();
    assert_eq!(pong, Message::Pong(Bytes::from_static(b"are you there")));
}

#[tokio::test]
async fn clean_close_from_the_client_ends_both_sides_without_error() {
    let (addr, mut ended) = echo_server().await;
    let (mut ws, _) = switchboard::connect(&url(addr)).await.unwrap();
    ws.close(CloseCode::NORMAL, "bye").await.unwrap();
    assert!(ws.recv().await.is_none());
    let server_saw = ended.recv().await.unwrap();
    let expected = Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")));
    assert_eq!(server_saw.unwrap().unwrap(), expected);
}

#[tokio::test]
async fn a_close_started_by_the_client_ends_the_server_side_without_waiting_for_its_fin() {
    let (addr, mut ended) = echo_server().await;
    let mut stream = raw_client(addr).await;
    stream
        .write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    // The reply, then the server's FIN; the client keeps its side open.
    expect_close(&mut stream, CloseCode::NORMAL).await;
    // Well within the close timeout (5 s) that a server reading to the end would wait for.
    let server_saw = tokio::time::timeout(Duration::from_secs(2), ended.recv())
        .await
        .expect("the server's connection ended while the client's side is open");
    let expected = Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")));
    assert_eq!(server_saw.unwrap().unwrap().unwrap(), expected);
    drop(stream);
}

#[tokio::test]
async fn close_from_the_server_is_reported_then_none() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(|mut ws, _| async move {
        let _ = ws.close(CloseCode::GOING_AWAY, "shutting down").await;
    }));
    let (mut ws, _) = switchboard::connect(&url(addr)).await.unwrap();
    let close = ws.recv().await.unwrap().unwrap();
    assert_eq!(
        close,
        Message::Close(Some(CloseFrame::new(
            CloseCode::GOING_AWAY,
            "shutting down"
        )))
    );
    assert!(ws.recv().await.is_none());
}

#[tokio::test]
async fn unmasked_client_frame_closes_with_1002() {
    let (addr, mut ended) = echo_server().await;
    let mut raw = raw_client(addr).await;
    raw.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    expect_close(&mut raw, CloseCode::PROTOCOL_ERROR).await;
    // The server waits (bounded) for our end of the TCP connection before it reports.
    drop(raw);
    let server_saw = ended.recv().await.unwrap();
    assert!(matches!(
        server_saw,
        Some(Err(Error::Protocol(ProtocolError::UnmaskedFrame)))
    ));
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let (addr, _) = echo_server().await;
    let mut raw = raw_client(addr).await;
    raw.write_all(&client_frame(0x81, &[b'o', b'k', 0xc0, 0xaf]))
        .await
        .unwrap();
    expect_close(&mut raw, CloseCode::INVALID_PAYLOAD).await;
}

#[tokio::test]
async fn frame_over_the_limit_is_refused_from_its_header_alone() {
    let (addr, _) = echo_server().await;
    let mut raw = raw_client(addr).await;
    // Announce 1 GiB and send none of it: the 1009 comes anyway.
    raw.write_all(&[0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    expect_close(&mut raw, CloseCode::MESSAGE_TOO_BIG).await;
}

#[tokio::test]
async fn a_reply_precedes_the_close_of_a_violation_in_the_same_read() {
    let (addr, _) = echo_server().await;
    let mut raw = raw_client(addr).await;
    let mut bytes = client_frame(0x81, b"first");
    bytes.extend_from_slice(&client_frame(0xa1, b"rsv2")); // RSV2 set
    raw.write_all(&bytes).await.unwrap();
    assert_eq!(read_frame(&mut raw).await, (0x81, b"first".to_vec()));
    expect_close(&mut raw, CloseCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn first_frame_may_share_the_read_with_the_handshake() {
    let (addr, _) = echo_server().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut bytes = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    bytes.extend_from_slice(&client_frame(0x81, b"early"));
    stream.write_all(&bytes).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    assert_eq!(read_frame(&mut stream).await, (0x81, b"early".to_vec()));
}

#[tokio::test]
async fn peer_vanishing_without_close_is_an_io_error() {
    let (addr, mut ended) = echo_server().await;
    let raw = raw_client(addr).await;
    drop(raw);
    let server_saw = ended.recv().await.unwrap();
    assert!(
        matches!(server_saw, Some(Err(Error::Io(_)))),
        "{server_saw:?}"
    );
}

#[tokio::test]
async fn split_driver_answers_pings_while_the_application_is_not_reading() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let (pong_tx, mut pong_rx) = mpsc::unbounded_channel();
    tokio::spawn(server.serve(move |mut ws, _| {
        let pong_tx = pong_tx.clone();
        async move {
            ws.send(Message::Ping(Bytes::from_static(b"alive?")))
                .await
                .unwrap();
            while let Some(Ok(m)) = ws.recv().await {
                let _ = pong_tx.send(m);
            }
        }
    }));
    let (ws, _) = switchboard::connect(&url(addr)).await.unwrap();
    let (sender, _receiver) = ws.split();
    // Nobody calls recv on the client; its driver answers anyway.
    let got = tokio::time::timeout(Duration::from_secs(10), pong_rx.recv())
        .await
        .unwrap();
    assert_eq!(got, Some(Message::Pong(Bytes::from_static(b"alive?"))));
    // And the senders work from any task.
    let s2 = sender.clone();
    tokio::spawn(async move { s2.send("from another task").await.unwrap() })
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), pong_rx.recv())
        .await
        .unwrap();
    assert_eq!(got, Some(Message::text("from another task")));
}

#[tokio::test]
async fn topics_deliver_to_every_subscriber_but_the_publisher() {
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let topics = Topics::new();
    let (joined_tx, mut joined) = mpsc::unbounded_channel();
    let t = topics.clone();
    tokio::spawn(server.serve(move |ws, _| {
        let (t, joined_tx) = (t.clone(), joined_tx.clone());
        async move {
            let (sender, mut receiver) = ws.split();
            let _subscription = t.subscribe("room", &sender);
            let _ = joined_tx.send(());
            while let Some(Ok(m)) = receiver.recv().await {
                t.publish("room", &m, Some(&sender));
            }
        }
    }));
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(switchboard::connect(&url(addr)).await.unwrap().0);
        joined.recv().await.unwrap();
    }
    assert_eq!(topics.subscriber_count("room"), 3);
    clients[0].send(Message::text("to the room")).await.unwrap();
    for ws in &mut clients[1..] {
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text("to the room")
        );
    }
    // The publisher got nothing: its next message is the echo of what it sends next.
    clients[1].send(Message::text("second")).await.unwrap();
    assert_eq!(
        clients[0].recv().await.unwrap().unwrap(),
        Message::text("second")
    );
}
