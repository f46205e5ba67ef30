//! `switchboard connect`, the built binary, against servers started here: piped stdin,
//! --execute and --wait, headers, subprotocols, binary as hex, pings, compression, exit codes,
//! and the hub mode.

mod support;

use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use switchboard::{CloseCode, DeflateConfig, Message, Server};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// Every run of the binary is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

/// What the test server saw.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<Request<()>>>,
    protocols: Mutex<Vec<Option<String>>>,
    binary: AtomicUsize,
    pings: AtomicUsize,
}

/// A server whose behaviour depends on the path: `/echo` echoes, `/later` also sends "later"
/// 300 ms after the first message, `/close4001` closes with 4001 after the first message.
async fn server() -> (
    String,
    Arc<Seen>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let seen = Arc::new(Seen::default());
    let server = Server::builder()
        .protocols(["chat.v2", "chat"])
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = format!("ws://{}", server.local_addr().unwrap());
    let record = seen.clone();
    let task = tokio::spawn(server.serve(move |mut ws, request| {
        let seen = record.clone();
        async move {
            let path = request.uri().path().to_owned();
            seen.protocols
                .lock()
                .unwrap()
                .push(ws.protocol().map(str::to_owned));
            seen.requests.lock().unwrap().push(request);
            while let Some(Ok(message)) = ws.recv().await {
                match &message {
                    Message::Ping(_) => {
                        seen.pings.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Message::Binary(_) => {
                        seen.binary.fetch_add(1, Ordering::Relaxed);
                    }
                    Message::Text(_) => {}
                    _ => continue,
                }
                if path == "/close4001" {
                    let _ = ws.close(CloseCode(4001), "go away").await;
                    return;
                }
                if ws.send(message).await.is_err() {
                    return;
                }
                if path == "/later" {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = ws.send(Message::text("later")).await;
                }
            }
        }
    }));
    (url, seen, task)
}

async fn run(args: &[&str], stdin: &str) -> Output {
    support::connect(args, stdin.as_bytes()).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn piped_lines_are_sent_and_replies_printed_and_a_normal_close_exits_0() {
    let (url, seen, _server) = server().await;
    let output = run(&[&format!("{url}/echo")], "hello\nsecond line\n").await;
    assert_eq!(
        stdout(&output),
        "hello\nsecond line\n",
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("connected to"));
    assert_eq!(seen.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn execute_sends_with_headers_and_subprotocol_and_wait_keeps_receiving() {
    let (url, seen, _server) = server().await;
    let output = run(
        &[
            &format!("{url}/later"),
            "-H",
            "X-Trace: abc-123",
            "--header",
            "Authorization: Bearer t0k3n",
            "-s",
            "chat",
            "-x",
            "one",
            "--wait",
            "1.5",
            "--verbose",
        ],
        "ignored: stdin is not read with --execute\n",
    )
    .await;
    assert_eq!(stdout(&output), "one\nlater\n", "{}", stderr(&output));
    assert_eq!(output.status.code(), Some(0));
    let request = seen.requests.lock().unwrap().pop().unwrap();
    assert_eq!(request.headers()["x-trace"], "abc-123");
    assert_eq!(request.headers()["authorization"], "Bearer t0k3n");
    assert_eq!(seen.protocols.lock().unwrap()[0].as_deref(), Some("chat"));
    let err = stderr(&output);
    assert!(err.contains("subprotocol chat"), "{err}");
    assert!(err.contains("101 Switching Protocols"), "{err}");
}

#[tokio::test]
async fn binary_is_sent_with_the_flag_and_written_raw() {
    let (url, seen, _server) = server().await;
    let output = run(&[&format!("{url}/echo"), "--binary", "-x", "hi!"], "").await;
    assert_eq!(stdout(&output), "hi!", "raw with --binary");
    assert_eq!(seen.binary.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn pings_go_out_at_the_interval_and_pongs_can_be_shown() {
    let (url, seen, _server) = server().await;
    let output = run(
        &[
            &format!("{url}/echo"),
            "--ping-interval",
            "0.2",
            "--show-ping-pong",
            "-x",
            "x",
            "-w",
            "1.1",
        ],
        "",
    )
    .await;
    let pings = seen.pings.load(Ordering::Relaxed);
    assert!((3..=6).contains(&pings), "{pings} pings in 1.1 s at 0.2 s");
    let out = stdout(&output);
    assert!(out.starts_with("x\n[pong]\n"), "{out}");
    assert_eq!(out.matches("[pong]").count(), pings, "{out}");
}

#[tokio::test]
async fn slash_commands_ping_and_close_with_a_code() {
    let (url, seen, _server) = server().await;
    let output = run(
        &[&format!("{url}/echo"), "--slash", "--show-ping-pong"],
        "/ping abc\n/nonsense\n/close 4000 done here\nnot sent\n",
    )
    .await;
    assert_eq!(stdout(&output), "[pong] 61 62 63\n");
    assert!(stderr(&output).contains("unknown command /nonsense"));
    assert!(
        stderr(&output).contains("closed: 4000"),
        "{}",
        stderr(&output)
    );
    assert_eq!(seen.pings.load(Ordering::Relaxed), 1);
    // The server echoed the code the user chose: what was asked for.
    assert_eq!(output.status.code(), Some(0));
}

#[tokio::test]
async fn the_exit_code_follows_the_servers_close_code() {
    let (url, _seen, _server) = server().await;
    let output = run(&[&format!("{url}/close4001")], "bye\n").await;
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("closed: 4001 go away"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn failures_to_connect_exit_1_and_bad_arguments_exit_2() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let output = run(&[&format!("ws://{addr}/")], "").await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot connect"),
        "{}",
        stderr(&output)
    );

    let output = run(&["not a url"], "").await;
    assert_eq!(output.status.code(), Some(1));
    let output = run(&["ws://127.0.0.1:1/", "-H", "no colon"], "").await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("Name: value"));
}

/// `switchboard serve` in hub mode on a free port, and its WebSocket URL.
async fn serve_hub() -> (tokio::process::Child, String) {
    let mut serve = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(serve.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(LIMIT, async {
        while let Some(line) = log.next_line().await.unwrap() {
            if let Some(at) = line.find("ws://") {
                return line[at..].split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("serve exited without listening");
    })
    .await
    .unwrap();
    (serve, addr)
}

/// The client against the real hub: `switchboard serve` in hub mode, started here.
#[tokio::test]
async fn talks_to_the_hub_of_switchboard_serve() {
    let (mut serve, addr) = serve_hub().await;
    let output = run(
        &[
            &format!("{addr}?name=terminal"),
            "-x",
            r#"{"op":"subscribe","channel":"lobby","id":1}"#,
            "-x",
            r#"{"op":"publish","channel":"lobby","data":{"text":"from the terminal"},"id":2}"#,
            "-x",
            r#"{"op":"shout"}"#,
            "-w",
            "0.5",
        ],
        "",
    )
    .await;
    let frames: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    for expected in ["connected", "subscribed", "join", "message", "ack", "error"] {
        assert!(
            types.contains(&expected),
            "{expected} missing from {types:?}"
        );
    }
    let message = frames.iter().find(|f| f["type"] == "message").unwrap();
    assert_eq!(message["data"]["text"], "from the terminal");
    assert_eq!(message["from"]["user"], "terminal");
    assert_eq!(output.status.code(), Some(0));
    serve.kill().await.unwrap();
}

#[tokio::test]
async fn deflate_is_offered_with_the_flag_and_the_agreement_shown() {
    for server_deflate in [true, false] {
        let server = Server::builder()
            .deflate(server_deflate.then(DeflateConfig::default))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let url = format!("ws://{}/", server.local_addr().unwrap());
        let task = tokio::spawn(server.serve(|mut ws, _| async move {
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_data() && ws.send(message).await.is_err() {
                    return;
                }
            }
        }));
        let long = "squeeze ".repeat(100);
        let output = run(&["--deflate", &url, "-x", &long], "").await;
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert_eq!(stdout(&output), format!("{long}\n"));
        let expected = if server_deflate {
            "compression: permessage-deflate\n"
        } else {
            "compression: declined by the server\n"
        };
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
        task.abort();
    }
}

/// `--hub`: commands in, one JSON object per event out, errors on stderr.
#[tokio::test]
async fn the_hub_mode_takes_commands_and_prints_events_as_json_lines() {
    let (mut serve, addr) = serve_hub().await;
    let output = run(
        &[
            "--hub",
            "--name",
            "term",
            &addr,
            "-x",
            "subscribe lobby",
            "-x",
            r#"publish lobby {"text":"hi"}"#,
            "-x",
            "publish lobby not json",
            "-x",
            "subscrbe lobby",
            "-x",
            "history lobby 5",
            "-x",
            "presence lobby",
            "-w",
            "0.5",
        ],
        "",
    )
    .await;
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let of = |kind: &str| {
        lines
            .iter()
            .filter(|l| l["type"] == kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("ack")[0]["offset"], 1, "{lines:?}");
    let messages = of("message");
    assert_eq!(messages.len(), 2, "live and from history: {lines:?}");
    assert_eq!(messages[0]["data"]["text"], "hi");
    assert_eq!(messages[0]["from"]["user"], "term");
    assert_eq!(of("history")[0]["offset"], 1);
    assert_eq!(of("presence")[0]["clients"][0]["user"], "term");
    let errors = stderr(&output);
    assert!(errors.contains("the data is not JSON"), "{errors}");
    assert!(errors.contains(r#"unknown command "subscrbe""#), "{errors}");
    assert_eq!(output.status.code(), Some(0), "{errors}");

    let refused = run(
        &["--hub", "ws://127.0.0.1:1/ws", "-x", "subscribe lobby"],
        "",
    )
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("cannot connect"));
    serve.kill().await.unwrap();
}

/// An echo server over TLS (self-signed), with HTTP/2 on or off; its `wss://` URL.
async fn tls_echo(http2: bool) -> String {
    let tls = switchboard::tls::ServerTls::self_signed(["localhost"]).unwrap();
    let server = Server::builder()
        .tls(tls)
        .http2(http2)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = format!("wss://localhost:{}", server.local_addr().unwrap().port());
    tokio::spawn(server.serve(|mut ws, _| async move {
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_data() && ws.send(message).await.is_err() {
                return;
            }
        }
    }));
    url
}

#[tokio::test]
async fn http2_is_used_when_the_server_takes_it_and_falls_back_with_a_note() {
    let url = tls_echo(true).await;
    let args = ["--http2", "-v", "--insecure", "-x", "over h2"];
    let output = run(&[&args[..], &[&format!("{url}/echo")]].concat(), "").await;
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("HTTP/2.0 200 OK"), "{err}");
    assert!(!err.contains("note:"), "{err}");
    assert_eq!(stdout(&output), "over h2\n");

    let url = tls_echo(false).await;
    let output = run(&[&args[..], &[&format!("{url}/echo")]].concat(), "").await;
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        err.contains(
            "note: the server does not take WebSockets over HTTP/2; connected over HTTP/1.1"
        ),
        "{err}"
    );
    assert!(err.contains("HTTP/1.1 101 Switching Protocols"), "{err}");
    assert_eq!(stdout(&output), "over h2\n");
}
