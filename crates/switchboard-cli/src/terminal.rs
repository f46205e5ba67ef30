//! The terminal side of `connect`: how output is shown, and stdin as lines.

use std::io::Write;

use tokio::sync::mpsc;

/// How to print: with a prompt and markers in a terminal, bare when piped.
#[derive(Clone, Copy)]
pub(crate) struct Display {
    pub(crate) interactive: bool,
}

impl Display {
    pub(crate) fn received(self, line: &str) {
        let mut out = std::io::stdout().lock();
        // Printing fails only when stdout is closed: nothing left to show then.
        let _ = if self.interactive {
            // Clear the prompt line, print, and draw the prompt again.
            write!(out, "\r\x1b[2K< {line}\n> ")
        } else {
            writeln!(out, "{line}")
        };
        let _ = out.flush();
    }

    pub(crate) fn prompt(self) {
        if self.interactive {
            print!("> ");
            let _ = std::io::stdout().flush();
        }
    }

    pub(crate) fn status(self, line: &str) {
        if self.interactive {
            print!("\r\x1b[2K");
            let _ = std::io::stdout().flush();
        }
        eprintln!("{line}");
    }
}

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
