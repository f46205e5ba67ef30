//! Small probes the Redis tests share: a burst of futures started together, and a hub served
//! with its `/healthz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_hub::{BoxFuture, Broker, Hub, HubConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Polls every future once before any runs further, as a burst of clients asking at the same
/// moment does (and so that publishes are made in call order), and waits for all of them.
pub(crate) async fn all_at_once<T>(futures: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut results: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (future, result) in futures.iter_mut().zip(&mut results) {
            if let Some(f) = future
                && let std::task::Poll::Ready(value) = f.as_mut().poll(cx)
            {
                *result = Some(value);
                *future = None;
            }
        }
        if futures.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}

/// `GET /healthz`: the status and body (within 10 s).
pub(crate) async fn healthz(addr: SocketAddr) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// A hub on `broker`, served on a free loopback port with its `/healthz`: 200 (with the
/// broker's degraded note, if any) or 503 with the reason.
pub(crate) async fn hub_with_healthz(broker: impl Broker + 'static) -> (Hub, SocketAddr) {
    let hub = Hub::new(Arc::new(broker), HubConfig::default())
        .await
        .unwrap();
    let checked = hub.clone();
    let server = switchboard::Server::builder()
        .health_report("/healthz", move || match checked.health() {
            Ok(()) => Ok(checked.degraded()),
            Err(e) => Err(e.to_string()),
        })
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let serving = hub.clone();
    tokio::spawn(
        server.serve(move |ws, request| crate::serving::serve(serving.clone(), ws, request)),
    );
    (hub, addr)
}
