//! `connect` typed at a terminal: the lines of the line editor, and what Ctrl-C and Ctrl-D do.
//!
//! Lines typed are handed on as piped lines are (sent, or run as /commands, by `connect`).
//! Ctrl-D on an empty line ends the input, as the end of a pipe does. Ctrl-C on an empty line
//! is an interrupt, as SIGINT is: the first closes gracefully, a second one exits at once.

use tokio::sync::mpsc;

use crate::terminal::Display;
use crate::terminal::editor::{self, Typed};
use crate::terminal::interrupt::{Interrupt, Signal};

/// Starts the line editor, has `display` print through it, and returns the lines typed.
///
/// # Errors
///
/// When the editor cannot start on this terminal.
pub(super) fn lines(
    display: &Display,
    interrupt: Interrupt,
) -> anyhow::Result<mpsc::Receiver<String>> {
    let (printer, mut typed) = editor::start(display.color())?;
    display.attach(printer);
    let (lines, received) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(next) = typed.recv().await {
            match next {
                Typed::Line(line) => {
                    if lines.send(line).await.is_err() {
                        return;
                    }
                }
                Typed::Interrupted => {
                    interrupt.interrupt(Signal::Interrupt);
                    return;
                }
                Typed::Ended => return,
            }
        }
    });
    Ok(received)
}
