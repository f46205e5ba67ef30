//! `switchboard serve` as a process: graceful drain on SIGTERM, wss:// with a self-signed
//! certificate, settings from a config file, compression, the Pusher protocol's route.

mod support;

use std::process::Command;
use std::time::Duration;

use support::Serve;
use switchboard::tls::ClientTls;
use switchboard::{CloseCode, ConnectOptions, DeflateConfig, Message};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Serves `mode`, connects clients, sends SIGTERM: every client gets its Close (the hub's
/// clients a restart hint first), and the server exits 0.
async fn sigterm_drains(mode: &str, extra: &[&str]) {
    let mut serve = Serve::start(&[&["--mode", mode], extra].concat());
    let url = serve.url();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (ws, _) = switchboard::connect(&url).await.unwrap();
        clients.push(ws);
    }
    // Each connection is up and served before the signal.
    if mode == "hub" {
        for ws in &mut clients {
            let Some(Ok(Message::Text(hello))) = ws.recv().await else {
                panic!("the hub greets first")
            };
            assert!(hello.as_str().contains("connected"), "{hello:?}");
        }
    } else if mode == "echo" {
        clients[0].send(Message::text("hello")).await.unwrap();
        assert_eq!(
            clients[0].recv().await.unwrap().unwrap(),
            Message::text("hello")
        );
    } else {
        until_the_others_hear(&mut clients).await;
    }
    serve.terminate();
    for mut ws in clients {
        let mut last = None;
        let message = tokio::time::timeout(Duration::from_secs(10), async {
            // Broadcasts sent before the signal may come first.
            loop {
                match ws.recv().await {
                    Some(Ok(m)) if m.is_data() => last = Some(m),
                    other => return other,
                }
            }
        })
        .await
        .expect("a close within 10 s");
        let Some(Ok(Message::Close(Some(frame)))) = message else {
            panic!("{mode}: expected a close, got {message:?}");
        };
        if mode == "hub" {
            // A restart: the hub's clients are told when to come back, 1 to 6 s from now.
            assert_eq!(frame.code, CloseCode::SERVICE_RESTART);
            let Some(Message::Text(hint)) = last else {
                panic!("no hint before the close: {last:?}");
            };
            let hint: serde_json::Value = serde_json::from_str(&hint).unwrap();
            assert_eq!(hint["type"], "disconnect", "{hint}");
            assert_eq!(hint["code"], 1012, "{hint}");
            let wait = hint["retry_after_ms"].as_u64().unwrap();
            assert!((1000..6000).contains(&wait), "{hint}");
        } else {
            assert_eq!(frame.code, CloseCode::GOING_AWAY, "{mode}");
        }
        assert!(ws.recv().await.is_none());
    }
    assert_eq!(serve.wait(), Some(0), "{mode}: exit status");
    serve.line("stopped");
}

#[tokio::test]
async fn sigterm_closes_every_client_with_1001_or_a_restart_hint_and_exits_0() {
    sigterm_drains("hub", &[]).await;
    sigterm_drains("echo", &[]).await;
    sigterm_drains("broadcast", &[]).await;
}

/// `--threads`: one listener per thread on one port; a broadcast reaches clients of every
/// thread, and SIGTERM drains them all.
#[tokio::test]
async fn thread_per_core_serves_every_mode_and_drains() {
    for mode in ["hub", "echo", "broadcast"] {
        sigterm_drains(mode, &["--threads", "3"]).await;
    }
}

/// `--event-loop`: connections served by callbacks from a loop per thread drain on SIGTERM as
/// tasks do (the hub's with its restart hint), alone and thread per core.
#[tokio::test]
async fn the_event_loop_serves_and_drains() {
    for mode in ["hub", "echo", "broadcast"] {
        sigterm_drains(mode, &["--event-loop"]).await;
        sigterm_drains(mode, &["--event-loop", "--threads", "2"]).await;
    }
}

/// `--mode broadcast --event-loop`: what a client sends reaches every other client, and not
/// the sender.
#[tokio::test]
async fn a_broadcast_on_the_event_loop_reaches_the_others_not_the_sender() {
    for threads in ["0", "2"] {
        let serve = Serve::start(&["--mode", "broadcast", "--event-loop", "--threads", threads]);
        let url = serve.url();
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (ws, _) = switchboard::connect(&url).await.unwrap();
            clients.push(ws);
        }
        until_the_others_hear(&mut clients).await;
        // Skips the greetings that are still on their way.
        async fn next(ws: &mut Client) -> Message {
            loop {
                let message = tokio::time::timeout(Duration::from_secs(5), ws.recv())
                    .await
                    .expect("a message within 5 s");
                match message {
                    Some(Ok(Message::Text(t))) if t.as_str() == "hello" => {}
                    Some(Ok(m)) => return m,
                    other => panic!("{other:?}"),
                }
            }
        }
        clients[1]
            .send(Message::binary(&b"from 1"[..]))
            .await
            .unwrap();
        assert_eq!(next(&mut clients[0]).await, Message::binary(&b"from 1"[..]));
        assert_eq!(next(&mut clients[2]).await, Message::binary(&b"from 1"[..]));
        // Sent after "from 1" was delivered: had the sender been sent "from 1", it would come
        // first.
        clients[2].send(Message::text("from 2")).await.unwrap();
        assert_eq!(next(&mut clients[1]).await, Message::text("from 2"));
        assert_eq!(next(&mut clients[0]).await, Message::text("from 2"));
    }
}

type Client = switchboard::WebSocket<switchboard::MaybeTlsStream>;

/// The first client says "hello" until every other one has heard it: a client joins a
/// broadcast group shortly after its handshake, so one message may reach no one.
async fn until_the_others_hear(clients: &mut [Client]) {
    let (first, rest) = clients.split_at_mut(1);
    for ws in rest {
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries <= 50, "broadcast never arrived");
            first[0].send(Message::text("hello")).await.unwrap();
            match tokio::time::timeout(Duration::from_millis(200), ws.recv()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "hello" => break,
                Err(_) => {}
                other => panic!("{other:?}"),
            }
        }
    }
}

/// `--mode hub --event-loop`: the hub's protocol from the loops; a publication reaches every
/// subscriber, across the loops of 2 threads too, and the publisher has its ack.
#[tokio::test]
async fn the_hub_on_the_event_loop_delivers_to_every_subscriber() {
    /// The next frame, as JSON, past the joins of the clients that subscribe later.
    async fn next(ws: &mut Client) -> serde_json::Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), ws.recv())
                .await
                .expect("a frame within 5 s");
            let Some(Ok(Message::Text(text))) = message else {
                panic!("{message:?}");
            };
            let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
            if frame["type"] != "join" {
                return frame;
            }
        }
    }
    for threads in ["0", "2"] {
        let serve = Serve::start(&["--mode", "hub", "--event-loop", "--threads", threads]);
        let base = serve.url();
        let mut clients = Vec::new();
        for name in ["ann", "bob", "cy"] {
            let url = format!("{base}?name={name}");
            let (mut ws, _) = switchboard::connect(&url).await.unwrap();
            assert_eq!(next(&mut ws).await["type"], "connected");
            let subscribe = r#"{"op":"subscribe","channel":"lobby","id":1}"#;
            ws.send(Message::text(subscribe)).await.unwrap();
            let subscribed = next(&mut ws).await;
            assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
            clients.push(ws);
        }
        let publish = r#"{"op":"publish","channel":"lobby","data":"hi","id":2}"#;
        clients[1].send(Message::text(publish)).await.unwrap();
        for (i, ws) in clients.iter_mut().enumerate() {
            let mut frames = vec![next(ws).await];
            if i == 1 {
                // The ack and the message, in either order.
                frames.push(next(ws).await);
                assert!(frames.iter().any(|f| f["type"] == "ack" && f["id"] == 2));
            }
            let message = frames.iter().find(|f| f["type"] == "message");
            let message = message.unwrap_or_else(|| panic!("{frames:?}"));
            assert_eq!(message["data"], "hi", "{message}");
            assert_eq!(message["channel"], "lobby");
        }
    }
}

/// A second `serve --threads` on a port one serves does not share it silently: it exits
/// non-zero, naming the address.
#[tokio::test]
async fn a_second_thread_per_core_server_on_a_served_port_is_refused() {
    let first = Serve::start(&["--mode", "echo", "--threads", "2"]);
    let url = first.url();
    let addr = url.split('/').nth(2).unwrap().to_owned();
    let mut second = Serve::start_on(&addr, &["--mode", "echo", "--threads", "2"], "info");
    let line = second.line("address in use");
    assert!(line.contains(&addr), "{line}");
    assert_ne!(second.wait(), Some(0));
    // The first still serves.
    let (mut ws, _) = switchboard::connect(&url).await.unwrap();
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("still here")
    );
}

/// In every mode, `HEAD` answers the headers `GET` does (the length of the page included)
/// without the body, and every `426` says what to upgrade to.
#[tokio::test]
async fn head_answers_gets_headers_and_every_426_names_its_upgrade() {
    for mode in ["hub", "echo", "broadcast"] {
        let serve = Serve::start(&["--mode", mode]);
        let url = serve.url();
        let mut upgrades_required = 0;
        for path in ["/", "/ws", "/healthz"] {
            let get = http_request(&url, "GET", path).await;
            let head = http_request(&url, "HEAD", path).await;
            let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
            let (head_head, head_body) = head.split_once("\r\n\r\n").unwrap();
            let length = |head: &str| {
                head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
            };
            assert_eq!(
                length(head_head),
                Some(get_body.len().to_string()),
                "{mode} {path}: {head}"
            );
            assert_eq!(length(get_head), length(head_head), "{mode} {path}");
            assert_eq!(head_body, "", "{mode} {path}");
            for answer in [get_head, head_head] {
                if answer.starts_with("HTTP/1.1 426") {
                    upgrades_required += 1;
                    let lower = answer.to_ascii_lowercase();
                    assert!(
                        lower.contains("\r\nupgrade: websocket"),
                        "{mode} {path}: {answer}"
                    );
                }
            }
        }
        assert!(upgrades_required > 0, "{mode}: no 426 seen");
    }
}

#[tokio::test]
async fn serves_wss_with_a_self_signed_certificate_and_logs_its_fingerprint() {
    let serve = Serve::start(&["--tls-self-signed", "--mode", "echo"]);
    let line = serve.line("fingerprint");
    let fingerprint = line.rsplit(' ').next().unwrap();
    assert_eq!(fingerprint.len(), 95, "{line}");
    let url = serve.url();
    assert!(url.starts_with("wss://"), "{url}");
    // Not trusted by default...
    assert!(switchboard::connect(&url).await.is_err());
    // ...but usable for development.
    let options = ConnectOptions {
        tls: Some(ClientTls::dangerous_insecure()),
        ..ConnectOptions::default()
    };
    let (mut ws, _) = switchboard::connect_with(&url, &options).await.unwrap();
    ws.send(Message::text("secure echo")).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("secure echo")
    );
}

#[tokio::test]
async fn settings_come_from_the_config_file_and_flags_win() {
    let dir = std::env::temp_dir().join(format!("switchboard-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.toml");
    std::fs::write(&path, "max-connections = 1\nmode = \"broadcast\"\n").unwrap();
    let config = path.to_str().unwrap();

    // The file's limit of one connection applies.
    let serve = Serve::start(&["--config", config, "--mode", "echo"]);
    let url = serve.url();
    let (mut ws, _) = switchboard::connect(&url).await.unwrap();
    let err = switchboard::connect(&url).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    // The flag's mode wins over the file's.
    ws.send(Message::text("echoed")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("echoed"));
    drop(serve);

    // A mistake in the file stops the server with a message that names the key.
    std::fs::write(&path, "max-conections = 1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config", config])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("max-conections"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn pusher_apps_from_the_config_file_are_served_on_app_key_and_only_then() {
    let off = Serve::start(&[]);
    let base = off.url().trim_end_matches("/ws").to_owned();
    let err = switchboard::connect(&format!("{base}/app/app-key?protocol=7"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    drop(off);

    let dir = std::env::temp_dir().join(format!("switchboard-pusher-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.toml");
    let app = "[[pusher.apps]]\nid = \"1\"\nkey = \"app-key\"\nsecret = \"s\"\n";
    std::fs::write(&path, app).unwrap();
    let on = Serve::start(&["--config", path.to_str().unwrap()]);
    let base = on.url().trim_end_matches("/ws").to_owned();
    on.line("Pusher protocol on");
    let first = async |path: &str| {
        let (mut ws, _) = switchboard::connect(&format!("{base}{path}"))
            .await
            .unwrap();
        let Some(Ok(Message::Text(text))) = ws.recv().await else {
            panic!("no frame on {path}");
        };
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    let established = first("/app/app-key?protocol=7").await;
    assert_eq!(established["event"], "pusher:connection_established");
    let refused = first("/app/other?protocol=7").await;
    assert_eq!(refused["data"]["code"], 4001, "{refused}");
    assert_eq!(
        first("/ws").await["type"],
        "connected",
        "the hub's own protocol"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connects offering permessage-deflate; the parameters agreed, after a message went both
/// ways.
async fn agreed_deflate(url: &str) -> Option<String> {
    let options = ConnectOptions {
        deflate: Some(DeflateConfig::default()),
        tls: Some(ClientTls::dangerous_insecure()),
        ..ConnectOptions::default()
    };
    let (mut ws, response) = switchboard::connect_with(url, &options).await.unwrap();
    let agreed = response
        .headers()
        .get("sec-websocket-extensions")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(agreed.is_some(), ws.deflate().is_some());
    // Long enough to be compressed both ways.
    let long = "compress me ".repeat(50);
    if url.ends_with("/ws") {
        let subscribe = r#"{"op":"subscribe","channel":"lobby","id":1}"#;
        ws.send(Message::text(subscribe)).await.unwrap();
        let publish = format!(r#"{{"op":"publish","channel":"lobby","data":"{long}","id":2}}"#);
        ws.send(Message::text(publish)).await.unwrap();
        // The greeting, the subscription, then the message as published.
        loop {
            let Message::Text(text) = ws.recv().await.unwrap().unwrap() else {
                panic!("the hub speaks text")
            };
            if text.as_str().contains(r#""type":"message""#) {
                assert!(text.as_str().contains(&long), "{text}");
                break;
            }
        }
    } else {
        ws.send(Message::text(long.clone())).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(long));
    }
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    agreed
}

#[tokio::test]
async fn compression_is_on_in_every_mode_and_over_wss_unless_turned_off() {
    let expected = Some("permessage-deflate; server_no_context_takeover".to_owned());
    for args in [
        &["--mode", "hub"][..],
        &["--mode", "echo", "--tls-self-signed"],
    ] {
        let serve = Serve::start(args);
        assert_eq!(agreed_deflate(&serve.url()).await, expected, "{args:?}");
    }
    let serve = Serve::start(&["--mode", "echo", "--no-deflate"]);
    assert_eq!(agreed_deflate(&serve.url()).await, None);
    drop(serve);

    let dir = std::env::temp_dir().join(format!("switchboard-deflate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.toml");
    std::fs::write(
        &path,
        "mode = \"echo\"\ndeflate = false\ndeflate-level = 9\n",
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let serve = Serve::start(&["--config", config]);
    assert_eq!(agreed_deflate(&serve.url()).await, None);
    drop(serve);
    // The flag wins over the file.
    let serve = Serve::start(&["--config", config, "--deflate"]);
    assert_eq!(agreed_deflate(&serve.url()).await, expected);
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A plain `GET` of `path` on the server behind `url`: the response, head and body.
async fn http_get(url: &str, path: &str) -> String {
    http_request(url, "GET", path).await
}

/// A plain request with `method` for `path` on the server behind `url`: the response, head
/// and body.
async fn http_request(url: &str, method: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = url.split('/').nth(2).unwrap();
    let mut tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn a_page_of_another_origin_gets_403_and_is_counted_as_an_origin_refusal() {
    let serve = Serve::start(&["--allowed-origin", "https://chat.example"]);
    let url = serve.url();
    let from = |origin: &'static str| {
        let mut options = ConnectOptions::default();
        options.headers.insert(
            switchboard::http::header::ORIGIN,
            switchboard::http::HeaderValue::from_static(origin),
        );
        options
    };
    let err = switchboard::connect_with(&url, &from("https://evil.example"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // The allowed origin, in another case, and a client that is not a page get in.
    switchboard::connect_with(&url, &from("HTTPS://CHAT.EXAMPLE"))
        .await
        .unwrap();
    switchboard::connect(&url).await.unwrap();

    let metrics = http_get(&url, "/metrics").await;
    assert!(
        metrics.contains("switchboard_handshake_failures_total{reason=\"origin\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_handshake_failures_total{reason=\"rejected\"} 0\n"),
        "{metrics}"
    );
}

/// `--log-format json`: every line on stderr is one JSON object with the event's fields as
/// keys, for log shippers; a refused handshake shows with its reason and the peer.
#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_fields_as_keys() {
    let mut serve = Serve::start(&[
        "--log-format",
        "json",
        "--max-connections-per-ip",
        "2",
        "--api-key",
        "k",
    ]);
    let url = serve.url();
    let (mut ann, _) = switchboard::connect(&format!("{url}?name=ann"))
        .await
        .unwrap();
    // Registered once greeted: the server side can address her from then on.
    let Message::Text(greeting) = ann.recv().await.unwrap().unwrap() else {
        panic!("the hub speaks text")
    };
    assert!(
        greeting.as_str().contains(r#""type":"connected""#),
        "{greeting}"
    );
    let (mut second, _) = switchboard::connect(&url).await.unwrap();
    let refused = switchboard::connect(&url).await.unwrap_err();
    assert!(refused.to_string().contains("429"), "{refused}");
    second.close(CloseCode::NORMAL, "").await.unwrap();
    while second.recv().await.is_some() {}
    // The server closes ann through its API: the close is logged with its code and reason.
    let host = url.trim_start_matches("ws://").trim_end_matches("/ws");
    let body = r#"{"user":"ann","code":4001,"reason":"account closed"}"#;
    let request = format!(
        "POST /api/disconnect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // The second connection's place is free once its task has ended: until then, 429.
    let mut response = String::new();
    for _ in 0..100 {
        let mut api = tokio::net::TcpStream::connect(host).await.unwrap();
        api.write_all(request.as_bytes()).await.unwrap();
        response.clear();
        api.read_to_string(&mut response).await.unwrap();
        if !response.starts_with("HTTP/1.1 429") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ann.recv())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.unwrap().code, CloseCode(4001));
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    // A handshake refused for its version (426), once the API connection's place is free.
    let mut head = [0u8; 12];
    for _ in 0..100 {
        let mut old = tokio::net::TcpStream::connect(host).await.unwrap();
        old.write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n\r\n",
        )
        .await
        .unwrap();
        old.read_exact(&mut head).await.unwrap();
        if &head != b"HTTP/1.1 429" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(&head, b"HTTP/1.1 426");
    drop(ann);
    serve.terminate();
    let lines = serve.lines_to_exit();
    let (mut seen_refusal, mut seen_close, mut seen_failure) = (false, false, false);
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(event[key].is_string(), "no {key} in {line}");
        }
        if event["message"] == "address at its connection limit: 429" {
            assert_eq!(event["level"], "INFO", "{line}");
            assert!(
                event["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
                "{line}"
            );
            assert_eq!(event["suppressed"], 0, "{line}");
            seen_refusal = true;
        }
        if event["message"] == "closing a client" {
            assert_eq!(
                (&event["code"], &event["reason"], &event["user"]),
                (&4001.into(), &"account closed".into(), &"ann".into()),
                "{line}"
            );
            assert!(event["conn"].is_string(), "{line}");
            seen_close = true;
        }
        if event["reason"] == "unsupported_version" {
            assert!(
                event["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("handshake failed"),
                "{line}"
            );
            seen_failure = true;
        }
    }
    assert!(seen_refusal && seen_close && seen_failure, "{lines:#?}");
    assert!(
        lines.iter().any(|line| line.contains("stopped")),
        "{lines:#?}"
    );
}

/// Logs written to a pipe or a file carry no colour codes, NO_COLOR or not; and a size of 0,
/// which would refuse every message, is refused before the server starts.
#[test]
fn logs_to_a_pipe_have_no_colour_and_a_zero_size_is_refused() {
    use std::io::{BufRead as _, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("INFO"), "{line:?}");
    assert!(!line.contains('\u{1b}'), "{line:?}");

    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-message-size",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-message-size 0"), "{stderr}");
}

/// An OS error is said once, after what could not be done.
#[test]
fn a_missing_certificate_is_named_with_its_os_error_once() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args([
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read /nonexistent/cert.pem"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

#[cfg(not(feature = "otel"))]
#[test]
fn without_the_otel_feature_the_otlp_flag_is_refused_with_the_reason() {
    // Refused before anything is bound: the process exits at once.
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--otlp-endpoint", "http://127.0.0.1:4318"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("built without the otel feature"),
        "{stderr}"
    );
}

/// A connection the engine closes for the peer's fault (here a message over the limit) is
/// logged with the close code and why.
#[tokio::test]
async fn a_close_for_a_peers_fault_is_logged_with_its_code() {
    let mut serve = Serve::start(&[
        "--mode",
        "echo",
        "--max-message-size",
        "16",
        "--log-format",
        "json",
    ]);
    let url = serve.url();
    let (mut ws, _) = switchboard::connect(&url).await.unwrap();
    ws.send(Message::text("x".repeat(100))).await.unwrap();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.recv())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::MESSAGE_TOO_BIG));
    drop(ws);
    serve.terminate();
    let lines = serve.lines_to_exit();
    let logged = lines.iter().any(|line| {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        event["message"] == "closing a connection" && event["code"] == 1009
    });
    assert!(logged, "{lines:#?}");
}

/// The JSON log lines (`--log-format json`) whose message is `message`.
fn events(lines: &[String], message: &str) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["message"] == message)
        .collect()
}

/// A connection refused at the connection limit is logged (at info, held to a line a second
/// like the other refusals), with the peer.
#[tokio::test]
async fn a_refusal_at_the_connection_limit_is_logged() {
    let mut serve = Serve::start(&[
        "--mode",
        "echo",
        "--max-connections",
        "1",
        "--log-format",
        "json",
    ]);
    let url = serve.url();
    let (ws, _) = switchboard::connect(&url).await.unwrap();
    let err = switchboard::connect(&url).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    drop(ws);
    serve.terminate();
    let lines = serve.lines_to_exit();
    let refused = events(&lines, "at the connection limit: 503");
    let [event] = &refused[..] else {
        panic!("{lines:#?}")
    };
    assert_eq!(event["level"], "INFO");
    assert!(event["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(event["suppressed"], 0);
}

/// At debug level each connection is logged as it opens, with an id and the client's address
/// (the one a trusted proxy forwarded when it came through one), and as it closes, with the
/// id and the close code.
#[tokio::test]
async fn each_connection_is_logged_at_debug_with_its_address_id_and_close_code() {
    let mut serve = Serve::start_logging(
        &[
            "--mode",
            "echo",
            "--trusted-proxy",
            "127.0.0.1",
            "--log-format",
            "json",
        ],
        "info,switchboard=debug",
    );
    let url = serve.url();
    let mut proxied = ConnectOptions::default();
    proxied.headers.insert(
        "x-forwarded-for",
        switchboard::http::HeaderValue::from_static("203.0.113.7"),
    );
    for (options, code) in [
        (ConnectOptions::default(), CloseCode::NORMAL),
        (proxied, CloseCode::from(4000)),
    ] {
        let (mut ws, _) = switchboard::connect_with(&url, &options).await.unwrap();
        ws.close(code, "bye").await.unwrap();
        while let Some(Ok(_)) = ws.recv().await {}
    }
    serve.terminate();
    let lines = serve.lines_to_exit();
    let opened = events(&lines, "connection opened");
    let closed = events(&lines, "connection closed");
    assert_eq!((opened.len(), closed.len()), (2, 2), "{lines:#?}");
    let remote = |event: &serde_json::Value| event["remote"].as_str().unwrap().to_owned();
    assert!(
        remote(&opened[0]).starts_with("127.0.0.1:"),
        "{:?}",
        opened[0]
    );
    assert!(opened[0].get("via").is_none(), "{:?}", opened[0]);
    assert_eq!(remote(&opened[1]), "203.0.113.7");
    assert!(opened[1]["via"].as_str().unwrap().starts_with("127.0.0.1:"));
    for (open, code) in opened.iter().zip([1000, 4000]) {
        let close = closed.iter().find(|c| c["conn"] == open["conn"]).unwrap();
        assert_eq!(close["code"], code, "{close:?}");
        assert_eq!(close["level"], "DEBUG");
    }
    assert_ne!(opened[0]["conn"], opened[1]["conn"]);
}

/// The mode `serve --help` names as the default is the one a server started without `--mode`
/// runs.
#[test]
fn the_default_mode_in_the_help_is_the_one_that_runs() {
    let help = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let mode = help
        .split("--mode <MODE>")
        .nth(1)
        .and_then(|rest| rest.split("[default: ").nth(1))
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no default for --mode in:\n{help}"));
    assert_eq!(mode, "hub", "{help}");
    // A hub serves its protocol at /ws and the chat at /.
    let serve = Serve::start(&[]);
    assert!(serve.url().ends_with("/ws"), "{}", serve.url());
}
