//! `switchboard connect` in scripts and when connecting fails, against `switchboard serve`
//! started here: stdin that is not UTF-8, `--binary` bytes both ways, the `--jsonl` log, an
//! exit when stdout closes, the exit status of a close code the user chose, and handshake
//! failures told with a hint (TLS mix-ups, an unknown authority, a refusal shown with `-v`).

mod support;

use std::process::{Output, Stdio};

use serde_json::Value;
use support::{CONNECT_LIMIT, Serve, connect};
use tokio::io::{AsyncBufReadExt, BufReader};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn echo() -> (Serve, String) {
    let serve = Serve::start(&["--mode", "echo"]);
    let url = serve.url();
    (serve, url)
}

#[tokio::test]
async fn a_line_that_is_not_utf8_stops_the_input_with_its_number_and_exit_4() {
    let (_serve, url) = echo();
    let output = connect(&[&url], b"ok\n\xff\nafter\n").await;
    // The line before it went out (the echo came back), nothing after it did.
    assert_eq!(stdout(&output), "ok\n", "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("stdin line 2 is not UTF-8; use --binary to send bytes"),
        "{err}"
    );
    assert_eq!(output.status.code(), Some(4), "{err}");
}

#[tokio::test]
async fn in_hub_mode_too_a_line_that_is_not_utf8_ends_the_input_with_exit_4() {
    let serve = Serve::start(&[]);
    let url = serve.url();
    let output = connect(
        &["--hub", &url],
        b"subscribe lobby\n\xff\npublish lobby 1\n",
    )
    .await;
    let err = stderr(&output);
    assert!(err.contains("stdin line 2 is not UTF-8"), "{err}");
    // The command before it ran (status on stderr); the one after it did not.
    assert!(err.contains("subscribed to lobby"), "{err}");
    let out = stdout(&output);
    assert!(!out.contains("\"message\""), "{out}");
    assert_eq!(output.status.code(), Some(4), "{err}");
}

#[tokio::test]
async fn binary_sends_stdin_as_bytes_and_writes_received_bytes_raw() {
    let (_serve, url) = echo();
    // Every byte value, 0x00 and 0xff included, over more than one read of 64 KiB.
    let bytes: Vec<u8> = (0..200_000).map(|i| (i % 256) as u8).collect();
    let output = connect(&["--binary", &url], &bytes).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stdout == bytes, "{} bytes back", output.stdout.len());
}

#[tokio::test]
async fn split_bytes_cuts_stdin_into_messages_of_that_size() {
    let (_serve, url) = echo();
    let args = ["--binary", "--split-bytes", "4", "--jsonl", &url];
    let output = connect(&args, b"0123456789").await;
    let lines = records(&output);
    let sent: Vec<_> = lines
        .iter()
        .filter(|l| l["direction"] == "out" && l["type"] == "binary")
        .map(|l| l["payload"].as_str().unwrap())
        .collect();
    // base64 of "0123", "4567", "89"
    assert_eq!(sent, ["MDEyMw==", "NDU2Nw==", "ODk="], "{lines:?}");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// The lines of a `--jsonl` run, parsed.
fn records(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn jsonl_logs_every_message_in_and_out() {
    let (_serve, url) = echo();
    let output = connect(
        &["--jsonl", &url, "--ping-interval", "0.2", "-w", "0.5"],
        b"hi\n",
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines = records(&output);
    let find = |direction: &str, kind: &str| {
        lines
            .iter()
            .find(|l| l["direction"] == direction && l["type"] == kind)
            .unwrap_or_else(|| panic!("no {direction} {kind} in {lines:?}"))
    };
    assert_eq!(find("out", "text")["payload"], "hi");
    assert_eq!(find("in", "text")["payload"], "hi");
    assert_eq!(find("out", "ping")["payload"], "");
    assert_eq!(find("in", "pong")["payload"], "");
    assert_eq!(find("out", "close")["code"], 1000);
    assert_eq!(find("in", "close")["code"], 1000);
    assert!(
        lines.iter().all(|l| l["timestamp_ms"].is_u64()),
        "{lines:?}"
    );

    let output = connect(&["--jsonl", "--binary", &url], b"\x00\xff").await;
    let lines = records(&output);
    let binary: Vec<_> = lines.iter().filter(|l| l["type"] == "binary").collect();
    assert_eq!(binary.len(), 2, "{lines:?}");
    assert!(binary.iter().all(|l| l["payload"] == "AP8="), "{lines:?}");
}

/// `connect URL -w 60 | head -1`: once the reader of stdout is gone, the client closes with
/// 1001 and exits 0, without waiting out --wait (longer than the test's limit).
#[tokio::test]
async fn the_client_exits_when_the_reader_of_stdout_is_gone() {
    let (_serve, url) = echo();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["connect", &url, "-x", "one", "-w", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("one"));
    drop(lines); // as `head -1` exits
    let output = tokio::time::timeout(CONNECT_LIMIT, child.wait_with_output())
        .await
        .expect("the client did not exit after its stdout closed")
        .unwrap();
    let err = stderr(&output);
    assert!(err.contains("closed: 1001"), "{err}");
    assert_eq!(output.status.code(), Some(0), "{err}");
}

#[tokio::test]
async fn a_close_code_the_user_chose_exits_0_when_echoed() {
    let (_serve, url) = echo();
    let output = connect(&["--slash", &url], b"/close 4000 bye\n").await;
    let err = stderr(&output);
    assert!(err.contains("closed: 4000"), "{err}");
    assert_eq!(output.status.code(), Some(0), "{err}");
}

#[tokio::test]
async fn tls_to_a_plain_port_and_plain_to_a_tls_port_suggest_the_other_scheme() {
    let (_plain, url) = echo();
    let secure = url.replace("ws://", "wss://");
    let output = connect(&[&secure, "-x", "hi"], b"").await;
    let err = stderr(&output);
    assert!(err.contains("the server does not speak TLS there"), "{err}");
    assert!(err.contains(&format!("try {url}")), "{err}");
    assert_eq!(output.status.code(), Some(1));

    let tls = Serve::start(&["--mode", "echo", "--tls-self-signed"]);
    let secure = tls.url();
    let plain = secure.replace("wss://", "ws://");
    let output = connect(&[&plain, "-x", "hi"], b"").await;
    let err = stderr(&output);
    assert!(err.contains("the server answered with TLS"), "{err}");
    assert!(err.contains(&format!("try {secure}")), "{err}");
    assert_eq!(output.status.code(), Some(1));

    // The self-signed certificate is trusted by no authority: the hint names the ways out.
    let output = connect(&[&secure, "-x", "hi"], b"").await;
    let err = stderr(&output);
    assert!(
        err.contains("not signed by an authority trusted here"),
        "{err}"
    );
    assert!(
        err.contains("--ca FILE") && err.contains("--insecure"),
        "{err}"
    );
    assert_eq!(output.status.code(), Some(1));
    let output = connect(&[&secure, "--insecure", "-x", "hi"], b"").await;
    assert_eq!(stdout(&output), "hi\n", "{}", stderr(&output));
}

#[tokio::test]
async fn verbose_shows_the_status_headers_and_body_of_a_refusal() {
    let serve = Serve::start(&["--mode", "echo", "--allowed-origin", "http://good.example"]);
    let url = serve.url();
    let args = [
        url.as_str(),
        "-H",
        "Origin: http://evil.example",
        "-x",
        "hi",
    ];
    let output = connect(&args, b"").await;
    let err = stderr(&output);
    assert!(
        err.contains("the server refused the upgrade with 403 Forbidden (-v shows"),
        "{err}"
    );
    assert!(!err.contains("content-length"), "{err}");

    let output = connect(&[&args[..], &["-v"]].concat(), b"").await;
    let err = stderr(&output);
    assert!(err.contains("HTTP/1.1 403 Forbidden\n"), "{err}");
    assert!(err.contains("content-length: "), "{err}");
    assert!(err.contains("\norigin not allowed\n"), "{err}");
    assert_eq!(output.status.code(), Some(1));
}
