//! The admin dashboard of `switchboard serve` over real HTTP: off without a password, the
//! login and its cookie, and the refusals that keep it to the admin (no session: 401; another
//! site, or no CSRF token: 403; logged out: 401 again).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Serve;
use switchboard::http::HeaderValue;
use switchboard::{ConnectOptions, Message};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const PASSWORD: &str = "correct horse";

/// An answer: status, head (lower case) and body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The value of the session cookie it sets.
    fn cookie(&self) -> Option<String> {
        let line = self
            .head
            .lines()
            .find(|l| l.starts_with("set-cookie: switchboard_admin="))?;
        let value = line["set-cookie: switchboard_admin=".len()..]
            .split(';')
            .next()?;
        Some(value.to_owned())
    }
}

/// `method path` with `headers` (each `Name: value`) and `body`, on a new connection.
async fn ask(host: &str, method: &str, path: &str, headers: &[String], body: &str) -> Answer {
    let mut tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(host))
        .await
        .unwrap()
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn host(serve: &Serve) -> String {
    let url = serve.url();
    url.trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_owned()
}

async fn login(host: &str, password: &str) -> Answer {
    let json = "Content-Type: application/json".to_owned();
    let body = json!({ "password": password }).to_string();
    ask(host, "POST", "/admin/api/login", &[json], &body).await
}

#[tokio::test]
async fn the_dashboard_is_off_without_a_password() {
    let serve = Serve::start(&[]);
    let host = host(&serve);
    for path in ["/admin", "/admin/", "/admin/admin.js", "/admin/api/nodes"] {
        let answer = ask(&host, "GET", path, &[], "").await;
        assert_eq!(answer.status, 404, "{path}");
    }
    assert_eq!(login(&host, PASSWORD).await.status, 404);
    // The live socket is no endpoint either.
    let upgrade = [
        "Upgrade: websocket".to_owned(),
        "Connection: Upgrade".to_owned(),
        "Sec-WebSocket-Version: 13".to_owned(),
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_owned(),
    ];
    let answer = ask(&host, "GET", "/admin/live", &upgrade, "").await;
    assert_eq!(answer.status, 404);
}

#[tokio::test]
async fn only_a_session_reads_and_only_its_own_pages_act() {
    let serve = Serve::start(&["--admin-password", PASSWORD]);
    let host = host(&serve);
    let page = ask(&host, "GET", "/admin", &[], "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/admin/admin.js"));

    // Without a session: 401, for reads and actions alike.
    for path in [
        "/admin/api/nodes",
        "/admin/api/connections",
        "/admin/api/session",
    ] {
        assert_eq!(ask(&host, "GET", path, &[], "").await.status, 401, "{path}");
    }
    let wrong = login(&host, "wrong").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.cookie().is_none());

    let welcome = login(&host, PASSWORD).await;
    assert_eq!(welcome.status, 200, "{}", welcome.body);
    let cookie = welcome.cookie().expect("a session cookie");
    assert_eq!(cookie.len(), 32, "128 bits in hex");
    let set = welcome
        .head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap()
        .to_owned();
    for attribute in ["httponly", "samesite=strict", "path=/admin"] {
        assert!(set.contains(attribute), "{attribute} missing in {set}");
    }
    assert!(!set.contains("secure"), "no TLS, no Secure: {set}");
    let csrf = welcome.json()["csrf"].as_str().unwrap().to_owned();

    let with_cookie = format!("Cookie: switchboard_admin={cookie}");
    let nodes = ask(
        &host,
        "GET",
        "/admin/api/nodes",
        std::slice::from_ref(&with_cookie),
        "",
    )
    .await;
    assert_eq!(nodes.status, 200, "{}", nodes.body);
    assert_eq!(nodes.json()["nodes"].as_array().unwrap().len(), 1);
    let session = ask(
        &host,
        "GET",
        "/admin/api/session",
        std::slice::from_ref(&with_cookie),
        "",
    )
    .await;
    assert_eq!(session.json()["csrf"], csrf.as_str());

    // An action without the token, with a wrong one, or from another site: 403.
    let json = "Content-Type: application/json".to_owned();
    let token = format!("X-CSRF-Token: {csrf}");
    let publish = json!({"channel": "news", "data": {"n": 1}}).to_string();
    let post = |headers: Vec<String>| {
        let (host, publish) = (host.clone(), publish.clone());
        async move { ask(&host, "POST", "/admin/api/publish", &headers, &publish).await }
    };
    let no_token = post(vec![with_cookie.clone(), json.clone()]).await;
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let bad_token = "X-CSRF-Token: 00000000000000000000000000000000".to_owned();
    let wrong_token = post(vec![with_cookie.clone(), json.clone(), bad_token]).await;
    assert_eq!(wrong_token.status, 403);
    let evil = "Origin: http://evil.example".to_owned();
    let cross = post(vec![with_cookie.clone(), json.clone(), token.clone(), evil]).await;
    assert_eq!(cross.status, 403);
    let fetch_site = "Sec-Fetch-Site: cross-site".to_owned();
    let cross = post(vec![
        with_cookie.clone(),
        json.clone(),
        token.clone(),
        fetch_site,
    ])
    .await;
    assert_eq!(cross.status, 403);
    let own = format!("Origin: http://{host}");
    let done = post(vec![with_cookie.clone(), json.clone(), token.clone(), own]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["offset"], 1);

    // Logout ends the session: its cookie reads nothing any more.
    let out = [with_cookie.clone(), token.clone()];
    let logout = ask(&host, "POST", "/admin/api/logout", &out, "").await;
    assert_eq!(logout.status, 200, "{}", logout.body);
    assert!(logout.head.contains("max-age=0"), "{}", logout.head);
    let after = ask(&host, "GET", "/admin/api/nodes", &[with_cookie], "").await;
    assert_eq!(after.status, 401);
}

/// `/admin/live` with `headers` (name, value).
async fn live(
    host: &str,
    headers: &[(&'static str, String)],
) -> Result<switchboard::WebSocket<switchboard::MaybeTlsStream>, switchboard::Error> {
    let mut options = ConnectOptions::default();
    for (name, value) in headers {
        options
            .headers
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    let url = format!("ws://{host}/admin/live");
    let connected = switchboard::connect_with(&url, &options);
    let connected = tokio::time::timeout(Duration::from_secs(10), connected).await;
    connected.unwrap().map(|(ws, _)| ws)
}

#[tokio::test]
async fn the_live_socket_needs_the_session_and_ends_with_it() {
    let serve = Serve::start(&["--admin-password", PASSWORD]);
    let host = host(&serve);
    let Err(e) = live(&host, &[]).await else {
        panic!("no session, no socket");
    };
    assert!(e.to_string().contains("401"), "{e}");
    let welcome = login(&host, PASSWORD).await;
    let cookie = (
        "cookie",
        format!("switchboard_admin={}", welcome.cookie().unwrap()),
    );
    let evil = ("origin", "http://evil.example".to_owned());
    let Err(e) = live(&host, &[cookie.clone(), evil]).await else {
        panic!("another site's");
    };
    assert!(e.to_string().contains("403"), "{e}");

    let own = ("origin", format!("http://{host}"));
    let mut ws = live(&host, &[cookie.clone(), own]).await.unwrap();
    let next = async |ws: &mut switchboard::WebSocket<_>| {
        tokio::time::timeout(Duration::from_secs(10), ws.recv())
            .await
            .expect("a frame a second")
    };
    let Some(Ok(Message::Text(text))) = next(&mut ws).await else {
        panic!("a JSON frame");
    };
    let tick: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(tick["type"], "tick", "{tick}");
    assert!(
        tick["connections"].as_u64().unwrap() >= 1,
        "this socket: {tick}"
    );
    assert_eq!(tick["nodes"].as_array().unwrap().len(), 1);
    for field in [
        "messages_in",
        "messages_out",
        "bytes_in",
        "bytes_out",
        "broker_ms",
    ] {
        assert!(tick[field].is_number(), "{field} in {tick}");
    }
    assert!(tick["handshake_failures"]["origin"].is_number(), "{tick}");

    // Logging out closes the socket with 4001 within a frame's time.
    let csrf = welcome.json()["csrf"].as_str().unwrap().to_owned();
    let out = [
        format!("Cookie: {}", cookie.1),
        format!("X-CSRF-Token: {csrf}"),
    ];
    assert_eq!(
        ask(&host, "POST", "/admin/api/logout", &out, "")
            .await
            .status,
        200
    );
    loop {
        match next(&mut ws).await {
            Some(Ok(Message::Text(_))) => {}
            Some(Ok(Message::Close(Some(close)))) => {
                assert_eq!(close.code.0, 4001);
                break;
            }
            other => panic!("expected the close, got {other:?}"),
        }
    }
}
