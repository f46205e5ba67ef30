//! `switchboard serve --otlp-endpoint` (the `otel` feature) exports its spans to a collector
//! on loopback: an OTLP/HTTP protobuf POST to `/v1/traces` with the spans' names and the
//! request id in it, among them the span of a call to a backend proxy.
#![cfg(feature = "otel")]

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use support::Serve;
use switchboard::Message;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One POST the collector received: path, content type, body.
type Export = (String, String, Bytes);

/// A collector on loopback that answers 200 to anything and passes on what it got.
async fn collector() -> (String, mpsc::UnboundedReceiver<Export>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    let path = request.uri().path().to_owned();
                    let content_type = request
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    // Anything but an export is a proxy call, which this allows.
                    let answer = if path == "/v1/traces" {
                        Bytes::new()
                    } else {
                        Bytes::from_static(br#"{"result":{}}"#)
                    };
                    let _ = tx.send((path, content_type, body));
                    Ok::<_, Infallible>(Response::new(Full::new(answer)))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    (url, rx)
}

/// A span named `proxy`: field 5 (the name) of a span, 5 bytes long.
const PROXY: &[u8] = b"\x2a\x05proxy";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// The collector answers on a worker thread while this one waits for the process to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_with_the_request_id_reach_the_collector() {
    let (endpoint, mut exports) = collector().await;
    // The default log level: traces do not depend on RUST_LOG.
    // The collector is also the backend the subscribe proxy asks.
    let proxy = format!("news={endpoint}/subscribe");
    let mut serve = Serve::start(&[
        "--api-key",
        "k",
        "--otlp-endpoint",
        &endpoint,
        "--subscribe-proxy",
        &proxy,
    ]);
    let url = serve.url();
    let (mut ann, _) = switchboard::connect(&format!("{url}?name=ann"))
        .await
        .unwrap();
    let subscribe = json!({"op": "subscribe", "channel": "news", "id": 1});
    ann.send(Message::text(subscribe.to_string()))
        .await
        .unwrap();
    // Subscribed once the proxy allowed it.
    let reply = loop {
        match ann.recv().await {
            Some(Ok(Message::Text(text))) if text.contains("\"id\":1") => break text,
            Some(Ok(_)) => {}
            other => panic!("no reply to the subscribe: {other:?}"),
        }
    };
    assert!(reply.contains("\"subscribed\""), "{reply}");
    let host = url.trim_start_matches("ws://").trim_end_matches("/ws");
    let body = r#"{"channel":"news","data":"hi"}"#;
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\
         Content-Type: application/json\r\nX-Request-Id: abc-123\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut api = tokio::net::TcpStream::connect(host).await.unwrap();
    api.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    api.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    drop(ann);
    // Spans still queued are sent on the way out.
    serve.terminate();
    let lines = serve.lines_to_exit();
    // Exported, not given up on.
    assert!(
        !lines
            .iter()
            .any(|line| line.to_lowercase().contains("error")),
        "{lines:#?}"
    );

    let mut all = Vec::new();
    let mut proxy_calls = 0;
    while let Ok(Some((path, content_type, body))) =
        tokio::time::timeout(Duration::from_secs(5), exports.recv()).await
    {
        if path == "/subscribe" {
            proxy_calls += 1;
            continue;
        }
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
        all.extend_from_slice(&body);
        if contains(&all, b"abc-123") && contains(&all, b"handshake") && contains(&all, PROXY) {
            break;
        }
    }
    assert_eq!(proxy_calls, 1, "the subscribe proxy was asked once");
    // Protobuf strings are their bytes: span names, attribute values, the service's name.
    for needle in [
        &b"switchboard"[..],
        b"handshake",
        b"api",
        b"broker",
        PROXY,
        b"request_id",
        b"abc-123",
    ] {
        assert!(
            contains(&all, needle),
            "no {:?} in the export",
            String::from_utf8_lossy(needle)
        );
    }
}
