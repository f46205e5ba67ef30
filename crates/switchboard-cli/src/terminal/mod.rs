//! The terminal side of `connect` (and the stop signals `serve` shares).
//!
//! - `display`: how received messages and status lines are shown, escaped and coloured;
//! - `editor`: the line editor (rustyline) that reads what is typed at a terminal;
//! - `stdin`: stdin as plain lines, where the line editor cannot run;
//! - `interrupt`: Ctrl-C and SIGTERM, first graceful, second at once;
//! - `escape`, `style`, `mode`: control characters made visible, colour, the terminal's mode.

mod display;
pub(crate) mod editor;
mod escape;
pub(crate) mod interrupt;
mod mode;
mod stdin;
mod style;

pub(crate) use display::Display;
pub(crate) use escape::escape_controls;
pub(crate) use stdin::stdin_lines;
