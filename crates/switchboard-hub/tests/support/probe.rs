//! Small probes the Redis tests share: a burst of futures started together, and `/healthz`.

use std::time::Duration;

use switchboard_hub::BoxFuture;
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
pub(crate) async fn healthz(addr: std::net::SocketAddr) -> (u16, String) {
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
