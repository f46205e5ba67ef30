//! `switchboard connect` typed at a terminal: run in a detached tmux session of a fixed size,
//! driven with `tmux send-keys` and read with `tmux capture-pane`, against `serve --mode
//! broadcast` (a second client here sends and sees what the terminal sends) or against a
//! server that never answers the Close.
//!
//! Needs tmux (`apt-get install tmux`).

mod support;

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::Serve;
use switchboard::{Message, WebSocket};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// Screens and messages are waited for this many times, `POLL` apart, before a test fails.
const TRIES: u32 = 600;
const POLL: Duration = Duration::from_millis(50);

/// A tmux server of its own with one session running `switchboard connect ARGS` (under `sh`,
/// which writes its exit status to a file): its pane is 100 x 30. On drop the tmux server is
/// killed, then `sh`'s process group (`connect` is in it) and the tmux server by PID.
struct Terminal {
    socket: String,
    config: PathBuf,
    status: PathBuf,
    /// tmux's socket, left behind by a server killed by PID.
    socket_path: PathBuf,
    pids: Vec<u32>,
}

impl Terminal {
    fn connect(args: &[&str], env: &[(&str, &str)]) -> Self {
        static SESSIONS: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "switchboard-test-{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, Ordering::Relaxed)
        );
        let config = std::env::temp_dir().join(format!("{socket}.conf"));
        std::fs::write(&config, "set -g status off\n").unwrap();
        let status = std::env::temp_dir().join(format!("{socket}.status"));
        let mut terminal = Self {
            socket,
            config,
            status,
            socket_path: PathBuf::new(),
            pids: Vec::new(),
        };
        let settings: Vec<String> = env.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let script = format!(
            // `sh` gets the terminal's Ctrl-C too: caught, it lives on to write the status (a
            // caught signal is back to its default in `connect`).
            "trap : INT; \"$0\" connect \"$@\"; echo $? > '{}'; exec sleep 600",
            terminal.status.display()
        );
        let mut command = vec!["new-session", "-d", "-s", "t", "-x", "100", "-y", "30"];
        for setting in &settings {
            command.extend(["-e", setting.as_str()]);
        }
        command.extend(["--", "sh", "-c", &script, BIN]);
        command.extend(args);
        terminal.tmux(&command);
        let found = terminal.tmux(&[
            "display-message",
            "-p",
            "-t",
            "t",
            "#{pane_pid} #{pid} #{socket_path}",
        ]);
        let found = String::from_utf8_lossy(&found.stdout);
        let mut found = found.split_whitespace();
        terminal.pids = found
            .by_ref()
            .take(2)
            .filter_map(|pid| pid.parse().ok())
            .collect();
        terminal.socket_path = found.next().unwrap_or_default().into();
        terminal
    }

    /// Runs a tmux command on this terminal's server.
    fn tmux(&self, args: &[&str]) -> Output {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "-f"])
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("tmux must be installed (apt-get install tmux): {e}"));
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Types `text` as it is.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
    }

    /// Presses keys, in tmux's names (`Enter`, `Up`, `C-c`).
    fn press(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", "t", keys]);
    }

    /// What the pane shows, one string a row, with colour as escape codes when `escapes`.
    fn screen(&self, escapes: bool) -> Vec<String> {
        let mut args = vec!["capture-pane", "-p", "-t", "t"];
        if escapes {
            args.push("-e");
        }
        let output = self.tmux(&args);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|row| row.trim_end().to_owned())
            .collect()
    }

    /// Waits for the screen to satisfy `wanted`, then returns it.
    async fn screen_until(&self, what: &str, wanted: impl Fn(&[String]) -> bool) -> Vec<String> {
        for _ in 0..TRIES {
            let screen = self.screen(false);
            if wanted(&screen) {
                return screen;
            }
            tokio::time::sleep(POLL).await;
        }
        panic!(
            "the screen never showed {what}:\n{}",
            self.screen(false).join("\n")
        );
    }

    /// Waits for a row equal to `row`.
    async fn shows(&self, row: &str) -> Vec<String> {
        self.screen_until(&format!("{row:?}"), |screen| {
            screen.iter().any(|r| r == row)
        })
        .await
    }

    /// Waits for `connect` to exit; its exit status.
    async fn exit_status(&self) -> i32 {
        for _ in 0..TRIES {
            let written = std::fs::read_to_string(&self.status).unwrap_or_default();
            if let Ok(status) = written.trim().parse() {
                return status;
            }
            tokio::time::sleep(POLL).await;
        }
        panic!(
            "switchboard connect did not exit:\n{}",
            self.screen(false).join("\n")
        );
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // The pane's `sh` leads the process group `connect` runs in: `-PID` kills both, before
        // the tmux server goes (its hangup would let `sh` write a status after the cleanup).
        for (pid, group) in self.pids.iter().zip(["-", ""]) {
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -KILL {group}{pid} 2>/dev/null")])
                .status();
        }
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
        for file in [&self.config, &self.status, &self.socket_path] {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The last row that is not blank: where the prompt is.
fn last_row(screen: &[String]) -> &str {
    screen
        .iter()
        .rev()
        .find(|row| !row.is_empty())
        .map_or("", String::as_str)
}

/// A client of the broadcast server: it sends to the terminal and sees what it sends.
struct Peer(WebSocket<switchboard::MaybeTlsStream>);

impl Peer {
    async fn join(url: &str) -> Self {
        let (ws, _) = switchboard::connect(url).await.unwrap();
        Self(ws)
    }

    async fn send(&mut self, text: &str) {
        self.0.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// The next text message, within the tests' bound.
    async fn next_text(&mut self) -> String {
        let next = bounded(async {
            loop {
                match self.0.recv().await {
                    Some(Ok(Message::Text(text))) => return text.to_string(),
                    Some(Ok(_)) => {}
                    other => panic!("the peer lost the connection: {other:?}"),
                }
            }
        });
        next.await
    }
}

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(POLL * TRIES, future)
        .await
        .expect("nothing came within the tests' bound")
}

/// A broadcast server, a peer on it, and `connect` to it in a terminal, connected.
async fn broadcast_session(args: &[&str], env: &[(&str, &str)]) -> (Serve, Peer, Terminal) {
    let serve = Serve::start(&["--mode", "broadcast"]);
    let url = serve.url();
    let peer = Peer::join(&url).await;
    let mut all = vec![url.as_str()];
    all.extend(args);
    let terminal = Terminal::connect(&all, env);
    terminal
        .screen_until("the connection", |screen| {
            screen.iter().any(|row| row.starts_with("connected to"))
        })
        .await;
    terminal.shows(">").await;
    (serve, peer, terminal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_typed_line_survives_a_message_and_is_sent_as_shown() {
    let (_serve, mut peer, terminal) = broadcast_session(&[], &[]).await;
    terminal.type_text("partial-typed");
    terminal.shows("> partial-typed").await;

    peer.send("incoming").await;
    let screen = terminal.shows("< incoming").await;
    assert_eq!(
        last_row(&screen),
        "> partial-typed",
        "the typed line is kept"
    );

    terminal.type_text("second");
    terminal.shows("> partial-typedsecond").await;
    terminal.press("Enter");
    assert_eq!(peer.next_text().await, "partial-typedsecond");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_recalls_the_last_line_sent() {
    let (_serve, mut peer, terminal) = broadcast_session(&[], &[]).await;
    terminal.type_text("first line");
    terminal.press("Enter");
    assert_eq!(peer.next_text().await, "first line");
    terminal.type_text("second line");
    terminal.press("Enter");
    assert_eq!(peer.next_text().await, "second line");

    terminal.press("Up");
    let screen = terminal
        .screen_until("the last line recalled", |screen| {
            last_row(screen) == "> second line"
        })
        .await;
    assert_eq!(last_row(&screen), "> second line");
    // Edited before sending: Left twice, then typed, lands before "ne".
    terminal.press("Left");
    terminal.press("Left");
    terminal.type_text("X");
    terminal.press("Enter");
    assert_eq!(peer.next_text().await, "second liXne");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_codes_received_are_shown_escaped() {
    let (_serve, mut peer, terminal) = broadcast_session(&[], &[]).await;
    peer.send("\x1b[31mred\x1b[0m and\rbell\x07").await;
    terminal
        .shows("< \\x1b[31mred\\x1b[0m and\\rbell\\x07")
        .await;
    // Nothing reached the terminal's state: the text shows uncoloured.
    let coloured = terminal.screen(true);
    assert!(
        !coloured.iter().any(|row| row.contains("\x1b[31m")),
        "{coloured:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_unless_no_color() {
    let (_serve, mut peer, terminal) = broadcast_session(&[], &[]).await;
    peer.send("hello").await;
    terminal.shows("< hello").await;
    let screen = terminal.screen(true).join("\n");
    assert!(screen.contains("\x1b[36m<"), "{screen:?}");

    for (args, env) in [
        (&["--no-color"][..], &[][..]),
        (&[][..], &[("NO_COLOR", "1")][..]),
    ] {
        let (_serve, mut peer, terminal) = broadcast_session(args, env).await;
        peer.send("hello").await;
        terminal.shows("< hello").await;
        let screen = terminal.screen(true).join("\n");
        assert!(!screen.contains("\x1b["), "{args:?} {env:?}: {screen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_clears_a_typed_line_then_closes() {
    let (mut serve, mut peer, terminal) = broadcast_session(&[], &[]).await;
    terminal.type_text("never sent");
    terminal.shows("> never sent").await;
    terminal.press("C-c");
    terminal
        .screen_until("the line cleared", |screen| last_row(screen) == ">")
        .await;
    terminal.type_text("sent");
    terminal.press("Enter");
    assert_eq!(peer.next_text().await, "sent");

    terminal.press("C-c");
    assert_eq!(terminal.exit_status().await, 0);
    terminal.shows("closed: 1000").await;
    drop(peer);
    serve.terminate();
    assert_eq!(serve.wait(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_d_on_an_empty_line_closes() {
    let (_serve, _peer, terminal) = broadcast_session(&[], &[]).await;
    terminal.press("C-d");
    assert_eq!(terminal.exit_status().await, 0);
    terminal.shows("closed: 1000").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_exits_at_once_when_the_server_never_closes() {
    // Accepts, then holds the connection without reading it: the Close is never answered.
    let (url, mut accepted, serving) = support::silent_server().await;
    let terminal = Terminal::connect(&[&url], &[]);
    let _connection = bounded(accepted.recv()).await;
    terminal.shows(">").await;

    terminal.press("C-c");
    terminal
        .shows("closing (Ctrl-C again to exit at once)")
        .await;
    terminal.press("C-c");
    assert_eq!(terminal.exit_status().await, 130);
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_mode_keeps_a_half_typed_command_across_events() {
    let serve = Serve::start(&[]);
    let url = serve.url();
    let terminal = Terminal::connect(&["--hub", "--name", "ann", &url], &[]);
    terminal.shows(">").await;
    terminal.type_text("subscribe lobby");
    terminal.press("Enter");
    terminal.shows("subscribed to lobby").await;

    terminal.type_text("publish lobby {\"text\":");
    terminal.shows("> publish lobby {\"text\":").await;
    let bob = tokio::process::Command::new(BIN)
        .args(["connect", "--hub", "--name", "bob", &url])
        .args(["-x", "publish lobby {\"text\":\"from bob\"}"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status();
    assert!(bounded(bob).await.unwrap().success());
    let screen = terminal
        .screen_until("bob's message", |screen| {
            screen.iter().any(|row| row.contains("from bob"))
        })
        .await;
    assert_eq!(last_row(&screen), "> publish lobby {\"text\":");

    terminal.type_text("\"from ann\"}");
    terminal.press("Enter");
    terminal
        .screen_until("ann's message", |screen| {
            screen
                .iter()
                .any(|row| row.contains("\"text\":\"from ann\""))
        })
        .await;
    terminal.press("C-d");
    assert_eq!(terminal.exit_status().await, 0);
}
