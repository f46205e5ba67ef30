//! The server HTTP API of `switchboard serve` over real HTTP (one keep-alive connection for
//! many requests), its refusals, and `switchboard publish`.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use support::Serve;
use switchboard::{MaybeTlsStream, Message, WebSocket};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Every wait is bounded by this.
const STEP: Duration = Duration::from_secs(10);

/// One HTTP/1.1 connection to the API, kept alive across requests.
struct Api {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Api {
    async fn open(url: &str) -> Self {
        let host = host(url);
        let tcp = TcpStream::connect(&host).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(connection);
        Self { sender, host }
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        // A closed connection fails here: every request of a test shares this one.
        let response = tokio::time::timeout(STEP, self.sender.send_request(request))
            .await
            .unwrap()
            .expect("the connection stays open");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (parts.status, parts.headers, value)
    }

    /// `POST /api/ENDPOINT` with `key` and a JSON body.
    async fn post(&mut self, endpoint: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let auth = format!("Bearer {key}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let path = format!("/api/{endpoint}");
        let (status, _, value) = self
            .send(Method::POST, &path, &headers, body.to_string().into_bytes())
            .await;
        (status, value)
    }
}

/// `127.0.0.1:PORT` of the server whose hub is at `url`.
fn host(url: &str) -> String {
    url.trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_owned()
}

/// A hub client subscribed to `channel`, past its `subscribed` reply.
async fn subscriber(url: &str, name: &str, channel: &str) -> WebSocket<MaybeTlsStream> {
    let url = format!("{url}?name={name}");
    let (mut ws, _) = switchboard::connect(&url).await.unwrap();
    let subscribe = json!({"op": "subscribe", "channel": channel, "id": 1});
    ws.send(Message::text(subscribe.to_string())).await.unwrap();
    loop {
        if next(&mut ws).await["type"] == "subscribed" {
            return ws;
        }
    }
}

/// The next JSON message the client receives.
async fn next(ws: &mut WebSocket<MaybeTlsStream>) -> Value {
    loop {
        let message = tokio::time::timeout(STEP, ws.recv()).await.unwrap();
        match message {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// The next `message` event (presence events skipped).
async fn next_message(ws: &mut WebSocket<MaybeTlsStream>) -> Value {
    loop {
        let event = next(ws).await;
        if event["type"] == "message" {
            return event;
        }
    }
}

#[tokio::test]
async fn every_endpoint_answers_over_one_kept_alive_connection() {
    let serve = Serve::start(&["--api-key", "key-1", "--api-key", "key-2"]);
    let url = serve.url();
    let mut alice = subscriber(&url, "alice", "lobby").await;
    let mut api = Api::open(&url).await;

    // A publish reaches the subscriber; either key is good.
    let data = json!({"text": "your order shipped"});
    let (status, first) = api
        .post(
            "publish",
            "key-1",
            json!({"channel": "lobby", "data": data}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["offset"], 1);
    let message = next_message(&mut alice).await;
    assert_eq!((&message["offset"], &message["data"]), (&json!(1), &data));

    // A retried publish with the same idempotency key gets the first answer and delivers
    // nothing: the next message alice sees is the one after it.
    let once = json!({"channel": "lobby", "data": {"n": 2}, "idempotency_key": "order-7"});
    let (_, answer) = api.post("publish", "key-2", once.clone()).await;
    let (status, retried) = api.post("publish", "key-1", once).await;
    assert_eq!((status, &retried), (StatusCode::OK, &answer));
    api.post(
        "publish",
        "key-1",
        json!({"channel": "lobby", "data": {"n": 3}}),
    )
    .await;
    assert_eq!(next_message(&mut alice).await["data"], json!({"n": 2}));
    assert_eq!(next_message(&mut alice).await["data"], json!({"n": 3}));

    let (status, answer) = api
        .post(
            "broadcast",
            "key-1",
            json!({"channels": ["lobby", "news"], "data": 4}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let channels: Vec<&Value> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["channel"])
        .collect();
    assert_eq!(channels, [&json!("lobby"), &json!("news")]);
    assert_eq!(next_message(&mut alice).await["data"], 4);

    let (status, history) = api
        .post("history", "key-1", json!({"channel": "lobby", "limit": 2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let offsets: Vec<&Value> = history["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["offset"])
        .collect();
    assert_eq!(offsets, [&json!(3), &json!(4)]);

    let (_, presence) = api
        .post("presence", "key-1", json!({"channel": "lobby"}))
        .await;
    assert_eq!(presence["clients"][0]["user"], "alice", "{presence}");
    let (_, channels) = api.post("channels", "key-1", json!({})).await;
    assert_eq!(channels["channels"][0]["channel"], "lobby", "{channels}");
    let (_, info) = api.post("info", "key-1", json!({})).await;
    assert_eq!(info["connections"], 1, "{info}");
    assert_eq!(info["nodes"].as_array().map(Vec::len), Some(1), "{info}");
    assert_eq!(info["nodes"][0]["connections"], 1, "{info}");

    // Server-side subscription: alice is subscribed to news and gets what is published there.
    let (status, answer) = api
        .post(
            "subscribe",
            "key-1",
            json!({"user": "alice", "channel": "news"}),
        )
        .await;
    assert_eq!(
        (status, &answer["connections"]),
        (StatusCode::OK, &json!(1))
    );
    api.post(
        "publish",
        "key-1",
        json!({"channel": "news", "data": "extra"}),
    )
    .await;
    let message = next_message(&mut alice).await;
    assert_eq!(
        (&message["channel"], &message["data"]),
        (&json!("news"), &json!("extra"))
    );
    let (status, _) = api
        .post(
            "unsubscribe",
            "key-1",
            json!({"user": "alice", "channel": "news"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Disconnect closes the user's connection with the code asked for.
    let (status, answer) = api
        .post(
            "disconnect",
            "key-1",
            json!({"user": "alice", "code": 4001, "reason": "banned"}),
        )
        .await;
    assert_eq!(
        (status, &answer["connections"]),
        (StatusCode::OK, &json!(1))
    );
    let closed = loop {
        match tokio::time::timeout(STEP, alice.recv()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(closed, Some(4001));

    // The server's /metrics counts the API's requests by endpoint and status.
    let mut tcp = TcpStream::connect(host(&url)).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut metrics = String::new();
    tcp.read_to_string(&mut metrics).await.unwrap();
    let line = "switchboard_api_requests_total{endpoint=\"publish\",status=\"200\"} 5\n";
    assert!(metrics.contains(line), "{metrics}");
}

#[tokio::test]
async fn each_refusal_has_its_status_and_a_json_error() {
    let serve = Serve::start(&["--api-key", "key-1", "--max-data-size", "64"]);
    let url = serve.url();
    let mut api = Api::open(&url).await;
    let json = [
        ("authorization", "Bearer key-1"),
        ("content-type", "application/json"),
    ];
    let code = |value: &Value| value["error"]["code"].as_str().unwrap_or("").to_owned();

    let (status, body) = api
        .post("publish", "key-1", json!({"channel": "lobby"}))
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("data: missing"))
    );
    let (status, _, body) = api
        .send(
            Method::POST,
            "/api/publish",
            &json,
            b"{\"channel\":".to_vec(),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "bad_request".into())
    );
    let (status, body) = api.post("info", "wrong-key", json!({})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    let (status, _, body) = api
        .send(
            Method::POST,
            "/api/info",
            &[("content-type", "application/json")],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    let (status, body) = api.post("nothing-here", "key-1", json!({})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    let (status, headers, body) = api.send(Method::GET, "/api/info", &json, Vec::new()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into())
    );
    assert_eq!(headers[header::ALLOW], "POST");
    let text = [
        ("authorization", "Bearer key-1"),
        ("content-type", "text/plain"),
    ];
    let (status, _, body) = api
        .send(Method::POST, "/api/info", &text, b"{}".to_vec())
        .await;
    assert_eq!(
        (status, code(&body)),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type".into()
        )
    );
    // Data over the hub's limit is the request's fault.
    let big = json!({"channel": "lobby", "data": "x".repeat(100)});
    let (status, body) = api.post("publish", "key-1", big).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A body over the server's limit: 413 as soon as its length is known, before it is read.
    let mut tcp = TcpStream::connect(host(&url)).await.unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key-1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(STEP, tcp.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        answer.contains(r#"{"error":{"code":"too_large","#),
        "{answer}"
    );

    // Without a key the API is off: 404, as for any path that is nothing.
    let open = Serve::start(&[]);
    let mut api = Api::open(&open.url()).await;
    let (status, _) = api.post("info", "key-1", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A `redis-server` of this test's own on a free loopback port, killed (by PID) when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let deadline = std::time::Instant::now() + STEP;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_publish_while_the_broker_is_down_is_503() {
    let mut redis = Redis::start();
    let broker = format!("redis://127.0.0.1:{}", redis.port);
    let serve = Serve::start(&["--api-key", "k", "--broker", &broker]);
    let mut api = Api::open(&serve.url()).await;
    let publish = json!({"channel": "lobby", "data": 1});
    let (status, body) = api.post("publish", "k", publish.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    let (status, body) = api.post("publish", "k", publish).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
}

/// `switchboard publish` with ARGS against `serve`: exit code, stdout, stderr.
fn publish(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let api = format!("http://{}", host(url));
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("publish")
        .args(["--api", &api])
        .args(args)
        .env_remove("SWITCHBOARD_API_KEY")
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        output.status.code(),
        text(output.stdout),
        text(output.stderr),
    )
}

#[tokio::test]
async fn the_publish_command_publishes_and_says_why_not() {
    let serve = Serve::start(&["--api-key", "key-1"]);
    let url = serve.url();
    let mut alice = subscriber(&url, "alice", "user:42").await;
    let (code, out, err) = publish(&url, &["--key", "key-1", "user:42", r#"{"text":"hi"}"#]);
    assert_eq!(code, Some(0), "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["offset"], 1);
    assert_eq!(
        next_message(&mut alice).await["data"],
        json!({"text": "hi"})
    );

    let (code, _, err) = publish(&url, &["--key", "nope", "user:42", "1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("401") && err.contains("unauthorized"), "{err}");
    let (code, _, err) = publish(&url, &["--key", "key-1", "user:42", "{not json"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not JSON"), "{err}");
}

/// docs/grafana-dashboard.json asks only for metrics that `serve` (hub, Redis broker, server
/// API) exposes, and groups only by labels they carry.
#[tokio::test]
async fn the_grafana_dashboard_uses_only_metrics_and_labels_that_exist() {
    let dashboard: Value =
        serde_json::from_str(include_str!("../../../docs/grafana-dashboard.json")).unwrap();
    let redis = Redis::start();
    let broker = format!("redis://127.0.0.1:{}", redis.port);
    let serve = Serve::start(&["--api-key", "k", "--broker", &broker]);
    let url = serve.url();
    // Traffic, so that the labelled families have samples: a delivery, an API request, a close.
    let mut ws = subscriber(&url, "ann", "room").await;
    let mut api = Api::open(&url).await;
    let (status, _) = api
        .post("publish", "k", json!({"channel": "room", "data": 1}))
        .await;
    assert_eq!(status, StatusCode::OK);
    next_message(&mut ws).await;
    ws.close(switchboard::CloseCode::NORMAL, "").await.unwrap();
    while ws.recv().await.is_some() {}
    let (status, _, _) = api.send(Method::GET, "/healthz", &[], Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    // The server counts the close when its side of it is done, which may be after the
    // client's: read /metrics until it has (bounded).
    let mut metrics = String::new();
    for _ in 0..250 {
        let mut http = TcpStream::connect(host(&url)).await.unwrap();
        http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        metrics.clear();
        http.read_to_string(&mut metrics).await.unwrap();
        if metrics.contains("switchboard_closes_total{") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The histograms counted what happened: the client's handshake, the delivery.
    let count = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        count("switchboard_handshake_duration_seconds_count ") >= 1,
        "{metrics}"
    );
    assert_eq!(
        count("switchboard_hub_publish_to_deliver_seconds_count "),
        1
    );

    // Families by their # TYPE line; a histogram's samples add _bucket, _sum and _count.
    let mut known = std::collections::HashSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            known.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    known.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        exprs.push(variable["definition"].as_str().unwrap().to_owned());
    }
    assert!(exprs.len() > 20, "{exprs:?}");
    for expr in &exprs {
        let names: Vec<&str> = expr
            .match_indices("switchboard_")
            .map(|(at, _)| {
                let rest = &expr[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in &names {
            assert!(
                known.contains(*name),
                "{name} (in {expr}) is not on /metrics"
            );
        }
        // Each label grouped by is on a sample of one of the expression's metrics
        // (`instance` is Prometheus's own, `le` every histogram's).
        for (at, _) in expr.match_indices("by (") {
            let labels = &expr[at + 4..at + 4 + expr[at + 4..].find(')').unwrap()];
            for label in labels.split(',').map(str::trim) {
                if label == "instance" || label == "le" {
                    continue;
                }
                let carried = metrics.lines().any(|line| {
                    names
                        .iter()
                        .any(|name| line.starts_with(&format!("{name}{{")))
                        && line.contains(&format!("{label}=\""))
                });
                assert!(carried, "no {label} label on {names:?} (in {expr})");
            }
        }
    }
}

/// Every line the server logs until it exits, each parsed as JSON (`--log-format json`).
fn json_lines(serve: &mut Serve) -> Vec<Value> {
    serve
        .lines_to_exit()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The request ids of the spans a JSON log line was written in.
fn request_ids(event: &Value) -> Vec<&str> {
    let spans = event["spans"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    spans
        .iter()
        .filter_map(|span| span["request_id"].as_str())
        .collect()
}

/// Whether a JSON log line was written in a span named `name`.
fn in_span(event: &Value, name: &str) -> bool {
    let spans = event["spans"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    spans.iter().any(|span| span["name"] == name)
}

#[tokio::test]
async fn a_request_id_follows_a_publish_to_its_delivery_in_the_logs() {
    let mut serve = Serve::start_logging(
        &["--log-format", "json", "--api-key", "k"],
        "info,switchboard_hub=debug",
    );
    let url = serve.url();
    let mut ann = subscriber(&url, "ann", "news").await;
    let mut api = Api::open(&url).await;
    let publish = || {
        json!({"channel": "news", "data": "hi"})
            .to_string()
            .into_bytes()
    };
    let auth = [
        ("authorization", "Bearer k"),
        ("content-type", "application/json"),
    ];
    let with_id = [auth[0], auth[1], ("x-request-id", "abc-123")];
    let (status, headers, _) = api
        .send(Method::POST, "/api/publish", &with_id, publish())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-request-id"], "abc-123");
    assert_eq!(next_message(&mut ann).await["data"], "hi");

    // Without one, the hub makes one; a bad one is refused, naming the header.
    let (status, headers, _) = api
        .send(Method::POST, "/api/publish", &auth, publish())
        .await;
    assert_eq!(status, StatusCode::OK);
    let made = headers["x-request-id"].to_str().unwrap();
    assert!(!made.is_empty() && made != "abc-123", "{made}");
    next_message(&mut ann).await;
    let long = "a".repeat(129);
    for bad in [long.as_str(), "tab\there"] {
        let headers = [auth[0], auth[1], ("x-request-id", bad)];
        let (status, _, body) = api
            .send(Method::POST, "/api/publish", &headers, publish())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("X-Request-Id: "), "{message}");
    }

    // A WebSocket publish gets one made by the hub.
    let op = json!({"op": "publish", "channel": "news", "data": "ws", "id": 2});
    ann.send(Message::text(op.to_string())).await.unwrap();
    assert_eq!(next_message(&mut ann).await["data"], "ws");

    drop((api, ann));
    serve.terminate();
    let events = json_lines(&mut serve);
    let with = |message: &str, id: &str| {
        events
            .iter()
            .any(|e| e["message"] == message && request_ids(e).contains(&id))
    };
    for message in ["published in process", "delivering", "answered"] {
        assert!(
            with(message, "abc-123"),
            "no {message:?} with abc-123: {events:#?}"
        );
    }
    let ws_ids: Vec<&str> = events
        .iter()
        .filter(|e| e["message"] == "delivering" && in_span(e, "publish"))
        .flat_map(request_ids)
        .collect();
    assert_eq!(ws_ids.len(), 1, "{events:#?}");
    assert!(with("published in process", ws_ids[0]));
    assert_ne!(ws_ids[0], "abc-123");
}

#[tokio::test]
async fn through_redis_the_request_id_is_on_the_broker_call_and_the_offset_joins_the_delivery() {
    let redis = Redis::start();
    let broker = format!("redis://127.0.0.1:{}", redis.port);
    let mut serve = Serve::start_logging(
        &[
            "--log-format",
            "json",
            "--api-key",
            "k",
            "--broker",
            &broker,
        ],
        "info,switchboard_hub=debug",
    );
    let url = serve.url();
    let mut ann = subscriber(&url, "ann", "news").await;
    let mut api = Api::open(&url).await;
    let headers = [
        ("authorization", "Bearer k"),
        ("content-type", "application/json"),
        ("x-request-id", "red-456"),
    ];
    let body = json!({"channel": "news", "data": "hi"})
        .to_string()
        .into_bytes();
    let (status, headers, body) = api.send(Method::POST, "/api/publish", &headers, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-request-id"], "red-456");
    let offset = body["offset"].as_u64().unwrap();
    assert_eq!(next_message(&mut ann).await["offset"], offset);

    drop((api, ann));
    serve.terminate();
    let events = json_lines(&mut serve);
    let at = |message: &str| {
        events
            .iter()
            .find(|e| e["message"] == message && e["channel"] == "news" && e["offset"] == offset)
            .unwrap_or_else(|| panic!("no {message:?} at offset {offset}: {events:#?}"))
    };
    assert_eq!(request_ids(at("published to redis")), ["red-456"]);
    // Delivered from the Pub/Sub message: no id, found by channel and offset.
    at("delivering");
    drop(redis);
}
