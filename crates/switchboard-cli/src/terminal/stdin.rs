//! stdin as plain lines, for a terminal where the line editor cannot run (piped stdin goes
//! through `connect/pipe.rs`, which checks it is UTF-8).

use tokio::sync::mpsc;

/// Lines of stdin, read on a thread of their own: a blocking read must not keep the process
/// alive once the connection is over.
pub(crate) fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}
