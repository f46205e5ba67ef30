//! What the Pusher tests share: the app they serve, a Pusher protocol client over a real
//! WebSocket, requests to the HTTP API signed as the official server libraries sign them, and
//! an HTTP receiver of an app's webhooks.
#![allow(dead_code)] // each test file uses a part

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::{MaybeTlsStream, Message, WebSocket};
use switchboard_hub::PusherApi;
pub(crate) use switchboard_hub::pusher::signature::sign;
use switchboard_hub::pusher::signature::{channel_auth, user_auth};
use switchboard_hub::pusher::{PusherApp, PusherApps};

/// Every wait for a frame is bounded by this.
pub(crate) const STEP: Duration = Duration::from_secs(5);

pub(crate) fn app() -> PusherApp {
    PusherApp::new("1", "app-key", "app-secret").with_client_events(true)
}

pub(crate) fn apps() -> PusherApps {
    PusherApps::new(vec![app(), PusherApp::new("2", "quiet-key", "s2")]).unwrap()
}

pub(crate) struct Pusher {
    pub(crate) ws: WebSocket<MaybeTlsStream>,
    pub(crate) socket_id: String,
}

impl Pusher {
    /// A client of app `key`, past `connection_established`.
    pub(crate) async fn connect(addr: SocketAddr, key: &str) -> Self {
        let url = format!("ws://{addr}/app/{key}?protocol=7&client=test");
        let (ws, _) = switchboard::connect(&url).await.unwrap();
        let mut client = Self {
            ws,
            socket_id: String::new(),
        };
        let established = client.next().await;
        assert_eq!(established["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["activity_timeout"], 120);
        client.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        client
    }

    pub(crate) async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    /// The next frame, or `{"closed": code}`.
    pub(crate) async fn next(&mut self) -> Value {
        loop {
            match tokio::time::timeout(STEP, self.ws.recv()).await.unwrap() {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
                Some(Ok(Message::Close(close))) => {
                    return json!({"closed": close.map(|c| c.code.0)});
                }
                Some(Ok(_)) => {}
                other => return json!({"closed": format!("{other:?}")}),
            }
        }
    }

    /// Subscribes to `channel` (signed, when it needs it) and returns the answer.
    pub(crate) async fn subscribe(&mut self, channel: &str, channel_data: Option<&str>) -> Value {
        let auth = channel_auth(&app(), &self.socket_id, channel, channel_data);
        let mut data = json!({ "channel": channel, "auth": auth });
        if let Some(channel_data) = channel_data {
            data["channel_data"] = json!(channel_data);
        }
        self.send(json!({"event": "pusher:subscribe", "data": data}))
            .await;
        self.next().await
    }

    /// Signs in with `user_data`, signed by the app, and returns the answer.
    pub(crate) async fn signin(&mut self, user_data: &str) -> Value {
        let auth = user_auth(&app(), &self.socket_id, user_data);
        self.send(
            json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        )
        .await;
        self.next().await
    }

    /// Sends a ping and waits for its pong: every frame sent before the pong has arrived.
    pub(crate) async fn sync(&mut self) -> Vec<Value> {
        self.send(json!({"event": "pusher:ping", "data": {}})).await;
        let mut before = Vec::new();
        loop {
            let frame = self.next().await;
            if frame["event"] == "pusher:pong" {
                return before;
            }
            before.push(frame);
        }
    }
}

pub(crate) fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().unwrap()).unwrap()
}

/// A request to the Pusher HTTP API signed as the official libraries sign one, with
/// `secret`, at `timestamp`; `extra` are the endpoint's own query parameters.
pub(crate) fn api_request(
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
    secret: &str,
    timestamp: u64,
) -> http::Request<bytes::Bytes> {
    use md5::Digest as _;
    let mut params: Vec<(String, String)> = vec![
        ("auth_key".into(), "app-key".into()),
        ("auth_timestamp".into(), timestamp.to_string()),
        ("auth_version".into(), "1.0".into()),
    ];
    if !body.is_empty() {
        let md5 = md5::Md5::digest(body.as_bytes());
        let hex: String = md5.iter().map(|b| format!("{b:02x}")).collect();
        params.push(("body_md5".into(), hex));
    }
    params.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    params.sort();
    let text: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let signature = sign(secret, &format!("{method}\n{path}\n{}", text.join("&")));
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &params {
        query.append_pair(k, v);
    }
    query.append_pair("auth_signature", &signature);
    http::Request::builder()
        .method(method)
        .uri(format!("{path}?{}", query.finish()))
        .header("content-type", "application/json")
        .body(bytes::Bytes::from(body.to_owned()))
        .unwrap()
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Calls the API with a request signed with the app's secret, now.
pub(crate) async fn call(
    api: &PusherApi,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let request = api_request(method, path, extra, body, "app-secret", now());
    let response = api.handle(request).await;
    let status = response.status().as_u16();
    let body = serde_json::from_slice(response.body())
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(response.body())));
    (status, body)
}

/// An HTTP receiver on loopback for an app's webhooks: each request's events, after its
/// `X-Pusher-Key` and `X-Pusher-Signature` (the HMAC of the body with the app's secret) are
/// checked, and `time_ms` is there.
pub(crate) async fn hook_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use http_body_util::BodyExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/pusher", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let header =
                            |name: &str| request.headers()[name].to_str().unwrap().to_owned();
                        let (key, signature) =
                            (header("x-pusher-key"), header("x-pusher-signature"));
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let text = String::from_utf8(body.to_vec()).unwrap();
                        assert_eq!(key, "app-key");
                        assert_eq!(
                            signature,
                            sign("app-secret", &text),
                            "signed with the secret"
                        );
                        let body: Value = serde_json::from_str(&text).unwrap();
                        assert!(body["time_ms"].as_u64().unwrap() > 0);
                        for event in body["events"].as_array().unwrap() {
                            tx.send(event.clone()).unwrap();
                        }
                        let ok =
                            http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                        Ok::<_, std::convert::Infallible>(ok)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (url, rx)
}
