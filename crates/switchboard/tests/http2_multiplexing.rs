//! Many WebSockets multiplexed on few HTTP/2 connections (h2c, with a raw `h2` client): 1,000
//! over 10 connections, all echoing, while one of them is a stalled reader whose server-side
//! send queue is full. HTTP/2's flow control is per stream, and the send queue and its
//! backpressure policy are per WebSocket: the stalled stream holds up no other.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use switchboard::http::{Method, Request, StatusCode, Version};
use switchboard::{Backpressure, Message, Metrics, Server};
use tokio::task::JoinSet;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);
const CONNECTIONS: usize = 10;
const STREAMS: usize = 100;
const ROUNDS: usize = 5;
/// What the stalled reader asks the server for: more than its send queue, its stream's window
/// and h2's send buffer together.
const FLOOD: usize = 256;
const FLOOD_MESSAGE: usize = 16 * 1024;

/// An echo server (h2c) whose handler queues with `try_send`, so the backpressure policy
/// applies: a full queue drops the message. `flood` asks for [`FLOOD`] large messages.
async fn start() -> (SocketAddr, Metrics) {
    let server = Server::builder()
        .h2c(true)
        .max_send_queue(256 * 1024)
        .backpressure(Backpressure::Drop)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics().clone();
    tokio::spawn(server.serve(|ws, _| async move {
        let (sender, mut receiver) = ws.split();
        while let Some(Ok(message)) = receiver.recv().await {
            if message == Message::text("flood") {
                for _ in 0..FLOOD {
                    let _ = sender.try_send(Message::binary(vec![7u8; FLOOD_MESSAGE]));
                }
            } else if message.is_data() {
                let _ = sender.try_send(message);
            }
        }
    }));
    (addr, metrics)
}

/// An HTTP/2 connection with prior knowledge, with windows as browsers have them: the
/// connection's far larger than a stream's, so that one unread stream does not use it up.
async fn connect(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(64 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .handshake(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let client = timeout(WAIT, client.ready()).await.unwrap().unwrap();
    let settings = async {
        while !client.is_extended_connect_protocol_enabled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(WAIT, settings)
        .await
        .expect("SETTINGS_ENABLE_CONNECT_PROTOCOL");
    client
}

/// Opens a WebSocket (extended CONNECT, RFC 8441).
async fn websocket(client: &mut SendRequest<Bytes>) -> Streams {
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri("http://localhost/")
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from("websocket"));
    *client = timeout(WAIT, client.clone().ready())
        .await
        .unwrap()
        .unwrap();
    let (response, send) = client.send_request(request, false).unwrap();
    let response = timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    (send, response.into_body())
}

/// A masked client text frame (RFC 6455 §5.3), payload under 126 bytes.
fn masked_text(payload: &[u8]) -> Bytes {
    let key = [0x5a, 0x01, 0xc3, 0x77];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    Bytes::from(frame)
}

/// The streams of a WebSocket.
type Streams = (SendStream<Bytes>, RecvStream);

/// [`ROUNDS`] echo round trips on one WebSocket; how many came back right, and its streams,
/// still open.
async fn echoes(name: String, (send, body): Streams) -> (usize, Streams) {
    let mut streams = (send, body);
    let done = rounds(&name, &mut streams).await;
    (done, streams)
}

async fn rounds(name: &str, (send, body): &mut Streams) -> usize {
    let mut received = BytesMut::new();
    let mut done = 0;
    for round in 0..ROUNDS {
        let text = format!("{name} round {round}");
        send.send_data(masked_text(text.as_bytes()), false).unwrap();
        let want = [&[0x81, text.len() as u8][..], text.as_bytes()].concat();
        while received.len() < want.len() {
            let Some(Ok(data)) = body.data().await else {
                return done;
            };
            let _ = body.flow_control().release_capacity(data.len());
            received.extend_from_slice(&data);
        }
        if received.split_to(want.len()) != want {
            return done;
        }
        done += 1;
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_websockets_on_ten_connections_echo_beside_a_stalled_reader() {
    let (addr, metrics) = start().await;
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut client = connect(addr).await;
        let mut sockets = Vec::new();
        for _ in 0..STREAMS {
            sockets.push(websocket(&mut client).await);
        }
        connections.push((client, sockets));
    }
    // Counted once the 200 is out, which the client may see first.
    let all = (CONNECTIONS * STREAMS) as u64;
    let counted = async {
        while metrics.websockets_total(Version::HTTP_2) != all {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(WAIT, counted)
        .await
        .expect("1,000 HTTP/2 WebSockets");
    assert_eq!(metrics.http2_connections_total(), CONNECTIONS as u64);

    // The stalled reader: asks for more than can reach it, and never reads.
    let (mut stalled_send, _stalled_unread) = connections[0].1.remove(0);
    stalled_send
        .send_data(masked_text(b"flood"), false)
        .unwrap();
    let full = async {
        while metrics.backpressure_drops() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(WAIT, full)
        .await
        .expect("the stalled reader's send queue fills");

    // The 999 others, on the stalled reader's connection too, all echo.
    let mut running = JoinSet::new();
    for (c, (_client, sockets)) in connections.iter_mut().enumerate() {
        for (s, streams) in sockets.drain(..).enumerate() {
            running.spawn(echoes(format!("connection {c} stream {s}"), streams));
        }
    }
    let all = async {
        let mut counts = Vec::new();
        let mut open = Vec::new();
        while let Some(done) = running.join_next().await {
            let (done, streams) = done.unwrap();
            counts.push(done);
            open.push(streams);
        }
        (counts, open)
    };
    let (counts, _open) = timeout(WAIT, all).await.expect("the echoes end");
    assert_eq!(counts.len(), CONNECTIONS * STREAMS - 1);
    let short = counts.iter().filter(|&&done| done != ROUNDS).count();
    assert_eq!(short, 0, "WebSockets that did not finish their echoes");

    // Meanwhile the stalled one stayed open, its messages dropped by its policy, not its
    // connection's.
    assert!(metrics.backpressure_drops() > 0);
    assert_eq!(metrics.connections_open(), (CONNECTIONS * STREAMS) as u64);
    assert_eq!(metrics.backpressure_disconnects(), 0);
}
