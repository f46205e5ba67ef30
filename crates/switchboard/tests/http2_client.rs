//! The client over HTTP/2 (RFC 8441): `connect_with` and `Http2Connection` against the server
//! over TLS, several WebSockets on one connection, the fallback to HTTP/1.1, refusals, and a
//! raw `h2` server that leaves out the setting or resets a stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard::http::{Response, StatusCode, Version};
use switchboard::tls::rustls::{self, pki_types};
use switchboard::tls::{ClientTls, ServerTls};
use switchboard::{
    ConnectOptions, DeflateConfig, Error, Http2Connection, MaybeTlsStream, Message, Metrics,
    Server, ServerBuilder, WebSocket,
};
use tokio::net::TcpListener;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// `builder` over TLS with a self-signed certificate, echoing every data message; a WebSocket
/// to `/reset` is dropped on its first message, without a Close.
async fn start(builder: ServerBuilder) -> (String, Metrics, ClientTls) {
    let tls = ServerTls::self_signed(["localhost"]).unwrap();
    let trust = ClientTls::from_ca_pem(tls.self_signed_pem().unwrap().as_bytes()).unwrap();
    let server = builder.tls(tls).bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://localhost:{}", server.local_addr().unwrap().port());
    let metrics = server.metrics().clone();
    tokio::spawn(server.serve(|mut ws, request| async move {
        while let Some(Ok(message)) = ws.recv().await {
            if request.uri().path() == "/reset" {
                return;
            }
            if message.is_data() && ws.send(message).await.is_err() {
                break;
            }
        }
    }));
    (url, metrics, trust)
}

fn options(trust: &ClientTls) -> ConnectOptions {
    ConnectOptions {
        tls: Some(trust.clone()),
        http2: true,
        timeout: WAIT,
        ..ConnectOptions::default()
    }
}

async fn echo(ws: &mut WebSocket<MaybeTlsStream>, message: Message) {
    ws.send(message.clone()).await.unwrap();
    let got = timeout(WAIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, message);
}

#[tokio::test]
async fn connect_with_http2_echoes_over_an_extended_connect_stream() {
    let builder = Server::builder()
        .protocols(["chat"])
        .deflate(Some(DeflateConfig::default()));
    let (url, metrics, trust) = start(builder).await;
    let options = ConnectOptions {
        protocols: vec!["other".into(), "chat".into()],
        deflate: Some(DeflateConfig::default()),
        ..options(&trust)
    };
    let (mut ws, response) = switchboard::connect_with(&format!("{url}/chat"), &options)
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert!(ws.get_ref().is_http2());
    assert_eq!(ws.protocol(), Some("chat"));
    assert!(ws.deflate().is_some(), "permessage-deflate agreed");

    echo(&mut ws, Message::text("hello over h2")).await;
    // Larger than the stream windows of both sides: flow control moves it on.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    echo(&mut ws, Message::binary(big)).await;
    ws.close(switchboard::CloseCode::NORMAL, "bye")
        .await
        .unwrap();
    assert!(timeout(WAIT, ws.recv()).await.unwrap().is_none());
    assert_eq!(metrics.websockets_total(Version::HTTP_2), 1);
    assert_eq!(metrics.websockets_total(Version::HTTP_11), 0);
}

#[tokio::test]
async fn websockets_opened_on_one_connection_share_it() {
    let (url, metrics, trust) = start(Server::builder()).await;
    let connection = Http2Connection::connect(&url, &options(&trust))
        .await
        .unwrap();
    let full = format!("{url}/c");
    let (a, b, c) = tokio::join!(
        connection.open("/a"),
        connection.open("/b?x=1"),
        connection.open(&full)
    );
    let mut sockets = vec![a.unwrap().0, b.unwrap().0, c.unwrap().0];
    for round in 0..3 {
        for (i, ws) in sockets.iter_mut().enumerate() {
            echo(ws, Message::text(format!("socket {i} round {round}"))).await;
        }
    }
    assert_eq!(metrics.websockets_total(Version::HTTP_2), 3);
    assert_eq!(
        metrics.http2_connections_total(),
        1,
        "one TCP+TLS connection"
    );
    assert_eq!(metrics.connections_total(), 3);

    // One closing leaves the others, and the connection takes new ones.
    let mut first = sockets.remove(0);
    first
        .close(switchboard::CloseCode::NORMAL, "")
        .await
        .unwrap();
    assert!(timeout(WAIT, first.recv()).await.unwrap().is_none());
    echo(&mut sockets[0], Message::text("still here")).await;
    let (mut more, _) = connection.open("/d").await.unwrap();
    echo(&mut more, Message::binary(vec![7; 100_000])).await;
    assert_eq!(metrics.http2_connections_total(), 1);

    // A path of another host is not one of this connection's.
    let err = connection.open("wss://elsewhere:1/").await.unwrap_err();
    assert!(matches!(err, Error::Url(_)), "{err}");
}

#[tokio::test]
async fn without_http2_on_the_server_the_client_falls_back_to_http1() {
    let (url, metrics, trust) = start(Server::builder().http2(false)).await;
    let (mut ws, response) = switchboard::connect_with(&format!("{url}/"), &options(&trust))
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(!ws.get_ref().is_http2());
    echo(&mut ws, Message::text("over http/1.1")).await;
    assert_eq!(metrics.websockets_total(Version::HTTP_11), 1);
    assert_eq!(metrics.http2_connections_total(), 0);

    let err = Http2Connection::connect(&url, &options(&trust))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http2Unavailable(_)), "{err}");
}

#[tokio::test]
async fn a_refusal_over_http2_is_refused_with_its_status() {
    let builder = Server::builder().check_upgrade(|request| {
        (request.uri().path() == "/private").then(|| {
            let mut response = Response::new(Bytes::from_static(b"no\n"));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
        })
    });
    let (url, metrics, trust) = start(builder).await;
    let err = switchboard::connect_with(&format!("{url}/private"), &options(&trust))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Refused(refusal) if refusal.status() == StatusCode::FORBIDDEN
        ),
        "{err}"
    );
    // The same as over HTTP/1.1.
    let http1 = ConnectOptions {
        http2: false,
        ..options(&trust)
    };
    let err1 = switchboard::connect_with(&format!("{url}/private"), &http1)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), err1.to_string());

    // A refused stream leaves its connection serving the others.
    let connection = Http2Connection::connect(&url, &options(&trust))
        .await
        .unwrap();
    let err = connection.open("/private").await.unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err}");
    let (mut ws, _) = connection.open("/public").await.unwrap();
    echo(&mut ws, Message::text("fine")).await;
    assert_eq!(metrics.http2_connections_total(), 2);
}

#[tokio::test]
async fn a_stream_the_server_drops_ends_that_websocket_only() {
    let (url, _metrics, trust) = start(Server::builder()).await;
    let connection = Http2Connection::connect(&url, &options(&trust))
        .await
        .unwrap();
    let (mut kept, _) = connection.open("/kept").await.unwrap();
    let (mut dropped, _) = connection.open("/reset").await.unwrap();
    dropped.send(Message::text("x")).await.unwrap();
    let end = timeout(WAIT, dropped.recv()).await.unwrap();
    assert!(
        matches!(end, Some(Err(Error::Io(_)))),
        "no Close: an abrupt end, {end:?}"
    );
    echo(&mut kept, Message::text("unaffected")).await;
}

/// A TLS server offering ALPN `h2` then `http/1.1`: over `h2`, a raw HTTP/2 server (with
/// extended CONNECT when `extended_connect`) that answers each CONNECT with 200 and each
/// chunk of data with a text frame `ok`, but resets a stream to `/reset` (INTERNAL_ERROR);
/// over `http/1.1`, an echo WebSocket. Returns its URL and the client's trust.
async fn raw_server(extended_connect: bool) -> (String, ClientTls) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://localhost:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = acceptor.accept(tcp).await.unwrap();
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    serve_h2(tls, extended_connect).await;
                } else {
                    let (mut ws, _) = switchboard::accept(tls).await.unwrap();
                    while let Some(Ok(message)) = ws.recv().await {
                        if message.is_data() && ws.send(message).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    let trust = ClientTls::from_ca_pem(cert.pem().as_bytes()).unwrap();
    (url, trust)
}

async fn serve_h2(tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, extended: bool) {
    let mut builder = h2::server::Builder::new();
    if extended {
        builder.enable_connect_protocol();
    }
    let Ok(mut connection) = builder.handshake::<_, Bytes>(tls).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        tokio::spawn(async move {
            let reset = request.uri().path() == "/reset";
            let mut body = request.into_body();
            let response = Response::builder().status(200).body(()).unwrap();
            let mut send = respond.send_response(response, false).unwrap();
            while let Some(Ok(data)) = body.data().await {
                let _ = body.flow_control().release_capacity(data.len());
                if reset {
                    send.send_reset(h2::Reason::INTERNAL_ERROR);
                    return;
                }
                let _ = send.send_data(Bytes::from_static(b"\x81\x02ok"), false);
            }
        });
    }
}

#[tokio::test]
async fn a_server_without_extended_connect_gets_http1_on_a_new_connection() {
    let (url, trust) = raw_server(false).await;
    let err = Http2Connection::connect(&url, &options(&trust))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("SETTINGS_ENABLE_CONNECT_PROTOCOL"),
        "{err}"
    );

    let (mut ws, response) = switchboard::connect_with(&format!("{url}/"), &options(&trust))
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_11);
    echo(&mut ws, Message::text("fell back")).await;
}

#[tokio::test]
async fn a_reset_stream_ends_its_websocket_and_no_other() {
    let (url, trust) = raw_server(true).await;
    let connection = Http2Connection::connect(&url, &options(&trust))
        .await
        .unwrap();
    let (mut kept, _) = connection.open("/kept").await.unwrap();
    let (mut reset, _) = connection.open("/reset").await.unwrap();
    let ok = Message::text("ok");
    kept.send(Message::text("a")).await.unwrap();
    assert_eq!(
        timeout(WAIT, kept.recv()).await.unwrap().unwrap().unwrap(),
        ok
    );

    reset.send(Message::text("b")).await.unwrap();
    let end = timeout(WAIT, reset.recv()).await.unwrap();
    let Some(Err(Error::Io(e))) = &end else {
        panic!("an I/O error, got {end:?}");
    };
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    assert!(reset.send(Message::text("c")).await.is_err());

    kept.send(Message::text("d")).await.unwrap();
    assert_eq!(
        timeout(WAIT, kept.recv()).await.unwrap().unwrap().unwrap(),
        ok
    );
}

#[tokio::test]
async fn open_raw_relays_the_offer_and_leaves_the_frames_to_the_caller() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let builder = Server::builder().deflate(Some(DeflateConfig::default()));
    let (url, _metrics, trust) = start(builder).await;
    let connection = Http2Connection::connect(&url, &options(&trust))
        .await
        .unwrap();
    let mut headers = switchboard::http::HeaderMap::new();
    headers.insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    // Not sent over HTTP/2: the bridge's own business.
    headers.insert(
        "sec-websocket-key",
        "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
    );
    let (response, mut stream) = connection.open_raw("/raw", &headers).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let agreed = response.headers()["sec-websocket-extensions"]
        .to_str()
        .unwrap();
    assert!(agreed.starts_with("permessage-deflate"), "{agreed}");
    assert!(stream.is_http2());

    // A masked, uncompressed text frame "hi"; the echo comes back unmasked.
    let key = [1, 2, 3, 4];
    let mut frame = vec![0x81, 0x82];
    frame.extend_from_slice(&key);
    frame.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    stream.write_all(&frame).await.unwrap();
    let mut head = [0; 2];
    timeout(WAIT, stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[0] & 0x0f, 0x1, "a text frame");
    assert_eq!(head[1] & 0x80, 0, "not masked");

    let err = connection
        .open_raw("/raw", &switchboard::http::HeaderMap::new())
        .await;
    assert!(err.is_ok(), "the version is added when missing");
}
