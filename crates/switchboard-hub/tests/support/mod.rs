//! A hub served on loopback, for the tests that drive it over WebSocket.

use std::net::SocketAddr;
use std::sync::Arc;

use switchboard::Server;
use switchboard_hub::{Broker, Hub, HubConfig, LocalBroker};

pub(crate) mod serving;

/// A hub with `config` on a local broker, served on a free loopback port: its protocol on
/// every path, and Pusher's on `/app/{key}`.
#[allow(dead_code)] // for the tests of one node
pub(crate) async fn hub_and_addr(config: HubConfig) -> (Hub, SocketAddr) {
    hub_on(Arc::new(LocalBroker::default()), config).await
}

/// A hub with `config` on `broker`, served as [`hub_and_addr`] serves it.
pub(crate) async fn hub_on(broker: Arc<dyn Broker>, config: HubConfig) -> (Hub, SocketAddr) {
    let hub = Hub::new(broker, config).await.unwrap();
    let server = Server::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let serving = hub.clone();
    tokio::spawn(server.serve(move |ws, request| {
        let hub = serving.clone();
        async move {
            if request.uri().path().starts_with("/app/") {
                hub.serve_pusher(ws, request).await;
            } else {
                serving::serve(hub, ws, request).await;
            }
        }
    }));
    (hub, addr)
}
