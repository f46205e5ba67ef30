//! The line editor of interactive `connect`: rustyline, reading keys on a thread of its own.
//!
//! What the prompt line shows is what Enter sends: a message received while a line is half
//! typed is printed above the prompt through rustyline's external printer, and the typed line
//! is drawn again under it, unchanged. The editor gives the keys of a shell (arrows, Home/End,
//! Ctrl-A/E/W/U/K/Y, Up/Down through this session's lines, Ctrl-R to search them). History is
//! kept in memory only: messages often carry tokens, which a history file would keep on disk.
//!
//! Keys that end the input:
//! - Ctrl-C on a typed line clears it (as in a shell); on an empty line it interrupts;
//! - Ctrl-D on an empty line ends the input.
//!
//! After either, the editor reads nothing more and gives the terminal back its mode, so a
//! further Ctrl-C reaches the process as SIGINT.

use std::sync::{Arc, Mutex};

use rustyline::error::ReadlineError;
use rustyline::history::MemHistory;
use rustyline::{
    Cmd, ColorMode, ConditionalEventHandler, Config, Editor, Event, EventContext, EventHandler,
    ExternalPrinter, KeyEvent, Movement, RepeatCount,
};
use tokio::sync::mpsc;

use crate::terminal::{mode, style};

/// Lines kept for Up/Down and Ctrl-R.
const HISTORY: usize = 1000;

/// What the person at the terminal did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Typed {
    /// A line, sent with Enter.
    Line(String),
    /// Ctrl-C on an empty line.
    Interrupted,
    /// Ctrl-D on an empty line, or the terminal went away.
    Ended,
}

/// Prints above the prompt, leaving the typed line as it is; once the editor has stopped,
/// prints straight to the terminal.
#[derive(Clone)]
pub(crate) struct Printer(Arc<Mutex<Box<dyn ExternalPrinter + Send>>>);

impl Printer {
    /// Prints `text` on lines of its own.
    pub(crate) fn print(&self, mut text: String) {
        // The editor ends a line the text leaves open, but once stopped it prints as given.
        if !text.ends_with('\n') {
            text.push('\n');
        }
        // Printing fails only when the terminal is gone: nothing left to show then.
        if let Ok(mut printer) = self.0.lock() {
            let _ = printer.print(text);
        }
    }
}

/// Starts the editor on stdin and stdout; what is typed comes on the receiver.
///
/// # Errors
///
/// When the terminal cannot be set up for editing or the thread cannot start.
pub(crate) fn start(color: bool) -> anyhow::Result<(Printer, mpsc::UnboundedReceiver<Typed>)> {
    let color_mode = if color {
        ColorMode::Enabled
    } else {
        ColorMode::Disabled
    };
    let config = Config::builder()
        .color_mode(color_mode)
        .max_history_size(HISTORY)?
        .history_ignore_dups(true)?
        .build();
    let mut editor: Editor<(), MemHistory> = Editor::with_history(config, MemHistory::new())?;
    // The unit helper draws the prompt's styled form; without a helper only the raw one shows.
    editor.set_helper(Some(()));
    editor.bind_sequence(
        KeyEvent::ctrl('C'),
        EventHandler::Conditional(Box::new(CtrlC)),
    );
    let printer = Printer(Arc::new(Mutex::new(Box::new(
        editor.create_external_printer()?,
    ))));
    mode::save();
    let (typed, received) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("line-editor".into())
        .spawn(move || read(editor, color, &typed))?;
    Ok((printer, received))
}

/// Reads lines until Ctrl-C or Ctrl-D on an empty line, or until nobody listens.
fn read(mut editor: Editor<(), MemHistory>, color: bool, typed: &mpsc::UnboundedSender<Typed>) {
    let prompt = ("> ", style::paint(color, style::PROMPT, "> "));
    loop {
        let next = match editor.readline(&prompt) {
            Ok(line) => {
                if !line.is_empty() {
                    // The in-memory history only fails on a zero-size history.
                    let _ = editor.add_history_entry(line.as_str());
                }
                Typed::Line(line)
            }
            Err(ReadlineError::Interrupted) => Typed::Interrupted,
            Err(_) => Typed::Ended,
        };
        let last = !matches!(next, Typed::Line(_));
        if typed.send(next).is_err() || last {
            return;
        }
    }
}

/// Ctrl-C clears a typed line, as shells do; on an empty line it interrupts.
struct CtrlC;

impl ConditionalEventHandler for CtrlC {
    fn handle(
        &self,
        _: &Event,
        _: RepeatCount,
        _: bool,
        context: &EventContext<'_>,
    ) -> Option<Cmd> {
        Some(if context.line().is_empty() {
            Cmd::Interrupt
        } else {
            Cmd::Kill(Movement::WholeBuffer)
        })
    }
}
