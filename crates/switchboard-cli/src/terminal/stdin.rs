//! stdin as lines, when it is not a terminal (or the line editor cannot run).

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
