//! permessage-deflate between the runtime's server and client, over loopback TCP.

use std::time::Duration;

use switchboard::tls::{ClientTls, ServerTls};
use switchboard::{
    Accept, CloseCode, ConnectOptions, DeflateConfig, DeflateParams, Message, Server, Topics,
    connect_with,
};

const LIMIT: Duration = Duration::from_secs(20);

async fn echo_server(deflate: Option<DeflateConfig>) -> String {
    let server = Server::builder()
        .deflate(deflate)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    tokio::spawn(server.serve(|mut ws, _| async move {
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_data() && ws.send(message).await.is_err() {
                break;
            }
        }
    }));
    url
}

fn options(deflate: Option<DeflateConfig>) -> ConnectOptions {
    ConnectOptions {
        deflate,
        ..ConnectOptions::default()
    }
}

#[tokio::test]
async fn echo_with_deflate_text_binary_small_and_large() {
    tokio::time::timeout(LIMIT, async {
        let url = echo_server(Some(DeflateConfig::default())).await;
        let (mut ws, response) = connect_with(&url, &options(Some(DeflateConfig::default())))
            .await
            .unwrap();
        assert_eq!(
            response.headers()["sec-websocket-extensions"],
            "permessage-deflate"
        );
        assert_eq!(ws.deflate(), Some(&DeflateParams::default()));
        let large: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let messages = [
            Message::text("hi"),
            Message::text("{\"op\":\"publish\",\"data\":\"héllo\"}".repeat(64)),
            Message::binary(vec![7u8; 10]),
            Message::binary(large),
        ];
        for message in &messages {
            ws.send(message.clone()).await.unwrap();
            let echoed = ws.recv().await.unwrap().unwrap();
            assert_eq!(&echoed, message);
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn deflate_is_negotiated_only_when_both_want_it() {
    tokio::time::timeout(LIMIT, async {
        for (server, client) in [
            (None, Some(DeflateConfig::default())),
            (Some(DeflateConfig::default()), None),
        ] {
            let url = echo_server(server).await;
            let (mut ws, response) = connect_with(&url, &options(client)).await.unwrap();
            assert!(!response.headers().contains_key("sec-websocket-extensions"));
            assert_eq!(ws.deflate(), None);
            ws.send(Message::text("x".repeat(1000))).await.unwrap();
            assert_eq!(
                ws.recv().await.unwrap().unwrap(),
                Message::text("x".repeat(1000))
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn client_request_for_no_context_takeover_and_windows_is_honoured() {
    tokio::time::timeout(LIMIT, async {
        let url = echo_server(Some(DeflateConfig::default())).await;
        let client = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 9,
            client_max_window_bits: 10,
            threshold: 0,
            ..DeflateConfig::default()
        };
        let (mut ws, _) = connect_with(&url, &options(Some(client))).await.unwrap();
        let agreed = ws.deflate().copied().unwrap();
        assert_eq!(
            agreed,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: Some(9),
                client_max_window_bits: Some(10),
            }
        );
        for i in 0..20 {
            let message = Message::text(format!("message {i} ").repeat(i * 50 + 1));
            ws.send(message.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap().unwrap(), message);
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn broadcast_reaches_compressing_and_plain_subscribers() {
    tokio::time::timeout(LIMIT, async {
        let topics = Topics::new();
        let server_config = DeflateConfig {
            server_no_context_takeover: true,
            threshold: 0,
            ..DeflateConfig::default()
        };
        let server = Server::builder()
            .deflate(Some(server_config))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let url = format!("ws://{}/", server.local_addr().unwrap());
        let (joined_tx, mut joined) = tokio::sync::mpsc::unbounded_channel();
        let subscriptions = topics.clone();
        tokio::spawn(server.serve(move |ws, _| {
            let topics = subscriptions.clone();
            let joined = joined_tx.clone();
            async move {
                let (sender, mut receiver) = ws.split();
                let _subscription = topics.subscribe("news", &sender);
                let _ = joined.send(());
                while let Some(Ok(_)) = receiver.recv().await {}
            }
        }));
        let mut clients = Vec::new();
        for deflate in [
            Some(DeflateConfig::default()),
            Some(DeflateConfig::default()),
            None,
        ] {
            let (ws, _) = connect_with(&url, &options(deflate)).await.unwrap();
            joined.recv().await.unwrap();
            clients.push(ws);
        }
        assert!(clients[0].deflate().unwrap().server_no_context_takeover);
        let message = Message::text("{\"channel\":\"news\",\"n\":1}".repeat(40));
        assert_eq!(topics.publish("news", &message, None), 3);
        for ws in &mut clients {
            assert_eq!(ws.recv().await.unwrap().unwrap(), message);
        }
    })
    .await
    .unwrap();
}

#[derive(Clone, Debug, PartialEq)]
struct User(String);

#[tokio::test]
async fn wss_through_the_accept_hook_negotiates_and_compresses() {
    tokio::time::timeout(LIMIT, async {
        let tls = ServerTls::self_signed(["localhost"]).unwrap();
        let ca = tls.self_signed_pem().unwrap().to_owned();
        let server = Server::builder()
            .tls(tls)
            .protocols(["chat"])
            .deflate(Some(DeflateConfig {
                server_no_context_takeover: true,
                ..DeflateConfig::default()
            }))
            .on_upgrade(|request| {
                let user = request.uri().query().unwrap_or("").to_owned();
                async move { Ok(Accept::new().extension(User(user))) }
            })
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let url = format!(
            "wss://localhost:{}/?ada",
            server.local_addr().unwrap().port()
        );
        tokio::spawn(server.serve(|mut ws, request| async move {
            let user = request.extensions().get::<User>().cloned();
            while let Some(Ok(message)) = ws.recv().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let reply = format!("{user:?} tls={} {text}", ws.get_ref().is_tls());
                if ws.send(Message::text(reply)).await.is_err() {
                    break;
                }
            }
        }));
        let options = ConnectOptions {
            protocols: vec!["chat".into()],
            tls: Some(ClientTls::from_ca_pem(ca.as_bytes()).unwrap()),
            deflate: Some(DeflateConfig::default()),
            ..ConnectOptions::default()
        };
        let (mut ws, response) = connect_with(&url, &options).await.unwrap();
        assert_eq!(
            response.headers()["sec-websocket-extensions"],
            "permessage-deflate; server_no_context_takeover"
        );
        assert_eq!(ws.protocol(), Some("chat"));
        assert!(ws.deflate().unwrap().server_no_context_takeover);
        for n in [1, 100, 10_000] {
            let text = "compressible ".repeat(n);
            ws.send(Message::text(text.clone())).await.unwrap();
            let expected = format!("Some(User(\"ada\")) tls=true {text}");
            assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(expected));
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await
    .unwrap();
}
