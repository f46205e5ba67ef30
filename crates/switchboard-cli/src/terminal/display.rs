//! How `connect` shows what it receives and what happens.
//!
//! In a terminal (stdin and stdout both one) received messages are marked `< ` and printed
//! above the prompt; piped, stdout carries only what was received, one message per line, so
//! scripts can read it. Whenever stdout is a terminal, control characters in received text are
//! shown escaped (see `escape`). Status lines (connected, closed, errors) go to stderr, or above
//! the prompt while the line editor runs.

use std::borrow::Cow;
use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, OnceLock};

use crate::terminal::editor::Printer;
use crate::terminal::escape::escape_controls;
use crate::terminal::mode;
use crate::terminal::style::{self, paint};

/// How to print: with a prompt and markers in a terminal, bare when piped.
#[derive(Clone)]
pub(crate) struct Display {
    /// Typed at a terminal: a prompt, and markers on what was received.
    pub(crate) interactive: bool,
    color: bool,
    /// stdout is a terminal: received text is shown escaped.
    escape: bool,
    /// The line editor's printer, once it runs; shared by every clone.
    printer: Arc<OnceLock<Printer>>,
}

impl Display {
    /// A display for a session that is `interactive` or not, coloured unless `no_color` (or
    /// `NO_COLOR`) says otherwise.
    pub(crate) fn new(interactive: bool, no_color: bool) -> Self {
        Self {
            interactive,
            color: interactive && style::wanted(std::io::stdout().is_terminal(), no_color),
            escape: std::io::stdout().is_terminal(),
            printer: Arc::default(),
        }
    }

    /// Whether to colour what is shown.
    pub(crate) fn color(&self) -> bool {
        self.color
    }

    /// From now on, prints through the line editor, above its prompt.
    pub(crate) fn attach(&self, printer: Printer) {
        // Only one editor reads the terminal; a second attach would be a bug, and it is left
        // printing through the first.
        let _ = self.printer.set(printer);
    }

    /// Shows a message received.
    pub(crate) fn received(&self, line: &str) {
        let shown = if self.escape {
            escape_controls(line)
        } else {
            Cow::Borrowed(line)
        };
        let marker = paint(self.color, style::RECEIVED, "< ");
        if let Some(printer) = self.printer.get() {
            printer.print(format!("{marker}{shown}"));
            return;
        }
        let mut out = std::io::stdout().lock();
        // Printing fails only when stdout is closed: nothing left to show then.
        let _ = if self.interactive {
            // Clear the prompt line, print, and draw the prompt again.
            write!(out, "\r\x1b[2K{marker}{shown}\n{}", self.prompt_text())
        } else {
            writeln!(out, "{shown}")
        };
        let _ = out.flush();
    }

    /// Draws the prompt, when no line editor draws its own.
    pub(crate) fn prompt(&self) {
        if self.interactive && self.printer.get().is_none() {
            print!("{}", self.prompt_text());
            let _ = std::io::stdout().flush();
        }
    }

    /// Shows what happened to the connection (its text may come from the peer: escaped).
    pub(crate) fn status(&self, line: &str) {
        let line = escape_controls(line);
        if let Some(printer) = self.printer.get() {
            printer.print(paint(self.color, style::STATUS, &line));
            return;
        }
        if self.interactive {
            print!("\r\x1b[2K");
            let _ = std::io::stdout().flush();
        }
        eprintln!("{line}");
    }

    /// Once the session is over: gives the terminal back the mode it had before the line
    /// editor, whose read may still be waiting, and clears the prompt it left.
    pub(crate) fn finish(&self) {
        if self.printer.get().is_some() {
            mode::restore();
            print!("\r\x1b[2K");
            let _ = std::io::stdout().flush();
        }
    }

    fn prompt_text(&self) -> String {
        paint(self.color, style::PROMPT, "> ")
    }
}
