//! What the integration tests of the `switchboard` binary share.
#![allow(dead_code, unreachable_pub)] // each test binary uses a part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;

/// Every run of `switchboard connect` is bounded by this.
pub const CONNECT_LIMIT: Duration = Duration::from_secs(20);

/// Runs `switchboard connect ARGS` with `stdin` as its input (then end of input); its output,
/// once it exited (killed if it takes longer than [`CONNECT_LIMIT`]).
pub async fn connect(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The client may exit before reading all of it (a refused connection).
    let _ = input.write_all(stdin).await;
    drop(input); // end of input
    tokio::time::timeout(CONNECT_LIMIT, child.wait_with_output())
        .await
        .expect("switchboard connect did not finish")
        .unwrap()
}

/// A running `switchboard serve`, killed (by PID) if the test ends before it exits.
pub struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Serve {
    pub fn start(args: &[&str]) -> Self {
        Self::start_logging(args, "info")
    }

    /// Starts with `RUST_LOG` set to `filter`.
    pub fn start_logging(args: &[&str], filter: &str) -> Self {
        Self::start_on("127.0.0.1:0", args, filter)
    }

    /// Starts listening on `listen`, with `RUST_LOG` set to `filter`.
    pub fn start_on(listen: &str, args: &[&str], filter: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .args(["--listen", listen])
            .args(args)
            .env("RUST_LOG", filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the switchboard binary runs");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line containing `needle`.
    pub fn line(&self, needle: &str) -> String {
        self.line_with(|line| line.contains(needle))
    }

    /// Waits for a log line that `wanted` accepts.
    fn line_with(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("no such log line: {e}"),
            }
        }
    }

    /// The WebSocket URL the server logs (`ws://ADDR` in echo and broadcast modes,
    /// `ws://ADDR/ws` in hub mode), with a path.
    pub fn url(&self) -> String {
        let line = self.line_with(|line| line.contains("ws://") || line.contains("wss://"));
        let start = line.find("wss://").or_else(|| line.find("ws://")).unwrap();
        let url: String = line[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || ":/.[]".contains(*c))
            .collect();
        if url.ends_with("/ws") {
            url
        } else {
            format!("{url}/")
        }
    }

    /// Every log line written until the process exits (at most 30 s from now).
    pub fn lines_to_exit(&mut self) -> Vec<String> {
        let code = self.wait();
        assert_eq!(code, Some(0), "switchboard serve exited with {code:?}");
        // The reader thread ends with the pipe; what it read is all there.
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        lines
    }

    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends SIGINT, as Ctrl-C at a terminal does.
    pub fn interrupt(&self) {
        self.signal("INT");
    }

    fn signal(&self, name: &str) {
        // The shell's built-in kill: no procps needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{name} {}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (at most 30 s) for the process to exit; its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("switchboard serve did not exit");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A WebSocket server on a free loopback port that accepts and then holds each connection
/// without reading it, so that a Close is never answered: its URL, the connections it holds
/// (as they come), and its task.
pub async fn silent_server() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<switchboard::WebSocket<switchboard::MaybeTlsStream>>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let server = switchboard::Server::builder()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let (held, accepted) = tokio::sync::mpsc::unbounded_channel();
    let serving = tokio::spawn(server.serve(move |ws, _| {
        let held = held.clone();
        async move {
            let _ = held.send(ws);
            std::future::pending::<()>().await;
        }
    }));
    (url, accepted, serving)
}

/// bench/peers/raw-echo, the floor of `bench/run.sh` (a WebSocket echo without the opening
/// handshake, for `bench --raw`), running on a free loopback port; killed (by PID) when dropped.
pub struct RawEcho {
    child: Child,
    /// Where it listens, `127.0.0.1:PORT`.
    pub addr: String,
}

impl RawEcho {
    pub fn start() -> Self {
        let mut child = Command::new(raw_echo_binary())
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("raw-echo runs");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let Some(addr) = line.trim_end().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("raw-echo did not start ({read:?}): {line:?}");
        };
        let addr = addr.to_owned();
        Self { child, addr }
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// raw-echo built from its source with cc (as bench/run.sh builds it), once per test process.
fn raw_echo_binary() -> &'static std::path::Path {
    static BINARY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../bench/peers/raw-echo/raw-echo.c");
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Built under a name of this process's own, then renamed into place: test processes
        // running at the same time never see a half-written binary.
        let building = dir.join(format!("raw-echo.{}", std::process::id()));
        let status = Command::new("cc")
            .args(["-O2", "-Wall", "-Wextra", "-o"])
            .arg(&building)
            .arg(&source)
            .status()
            .expect("cc runs");
        assert!(status.success(), "cc could not build {}", source.display());
        let binary = dir.join("raw-echo");
        std::fs::rename(&building, &binary).unwrap();
        binary
    })
}
