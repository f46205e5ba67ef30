//! `ServerBuilder::check_upgrade`: an upgrade request the check refuses gets the check's response
//! and never reaches the WebSocket handler.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use switchboard::{Error, Message, Server};

#[tokio::test]
async fn refused_upgrade_gets_the_checks_response_and_others_upgrade() {
    let server = Server::builder()
        .check_upgrade(|request| {
            (request.uri().path() != "/ws").then(|| {
                let mut response = Response::new(Bytes::from_static(b"not here\n"));
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            })
        })
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let serving = tokio::spawn(server.serve(|ws, _| switchboard_echo(ws)));

    let test = async {
        match switchboard::connect(&format!("ws://{addr}/elsewhere")).await {
            Err(Error::Refused(refusal)) => {
                assert_eq!(refusal.status(), StatusCode::NOT_FOUND);
                assert_eq!(&refusal.body()[..], b"not here\n");
            }
            other => panic!("expected a 404, got {other:?}"),
        }
        let (mut ws, _) = switchboard::connect(&format!("ws://{addr}/ws"))
            .await
            .unwrap();
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hi"));
    };
    tokio::time::timeout(Duration::from_secs(10), test)
        .await
        .unwrap();
    serving.abort();
}

async fn switchboard_echo(mut ws: switchboard::WebSocket<switchboard::MaybeTlsStream>) {
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_data() && ws.send(message).await.is_err() {
            break;
        }
    }
}
