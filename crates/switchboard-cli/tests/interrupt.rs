//! Stopped by Ctrl-C (SIGINT): the first stops gracefully (`serve` drains, `connect` closes),
//! a second exits at once with 130, even while a peer that never answers the Close holds the
//! graceful stop. (At a terminal, `connect` is tested in interactive.rs.)

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::Serve;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Every wait here is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_a_second_ctrl_c_stops_the_drain_and_exits_with_130() {
    let mut serve = Serve::start(&["--mode", "echo", "--shutdown-grace", "60s"]);
    let url = serve.url();
    // Never read: the server's Close is never answered, and the drain would wait it out.
    let (_silent, _) = switchboard::connect(&url).await.unwrap();

    serve.interrupt();
    serve.line("shutdown requested");
    serve.interrupt();
    serve.line("exiting at once, without draining");
    assert_eq!(serve.wait(), Some(130));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_piped_a_second_ctrl_c_exits_with_130() {
    // Accepts, then holds the connection without reading it: the Close is never answered.
    let (url, mut accepted, serving) = support::silent_server().await;
    let mut connect = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["connect", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(connect.stderr.take().unwrap()).lines();
    let _connection = tokio::time::timeout(LIMIT, accepted.recv()).await.unwrap();
    let pid = connect.id().unwrap();
    let interrupt = || {
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -INT {pid}")])
            .status()
            .unwrap();
        assert!(status.success());
    };

    // Signals are listened for once `connect` says it is connected.
    let mut said = async |what: &str| {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains(what) {
                return;
            }
        }
        panic!("connect ended before it said {what:?}");
    };
    tokio::time::timeout(LIMIT, said("connected to"))
        .await
        .unwrap();
    interrupt();
    tokio::time::timeout(LIMIT, said("closing (Ctrl-C again to exit at once)"))
        .await
        .unwrap();
    interrupt();
    let status = tokio::time::timeout(LIMIT, connect.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));
    serving.abort();
}
