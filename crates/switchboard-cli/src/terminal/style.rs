//! Colour in the interactive client, and when to use it.
//!
//! Colour marks who said what (the prompt, received messages, status lines) for a person at a
//! terminal. It is off when stdout is not a terminal, with `--no-color`, and when `NO_COLOR` is
//! set to anything but the empty string (<https://no-color.org>).

/// The prompt, bold green.
pub(crate) const PROMPT: &str = "\x1b[1;32m";
/// The marker of a received message, cyan.
pub(crate) const RECEIVED: &str = "\x1b[36m";
/// Status lines (connected, closed, errors), yellow.
pub(crate) const STATUS: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// Whether to colour the output, given stdout is a terminal and `--no-color`.
pub(crate) fn wanted(stdout_is_terminal: bool, no_color_flag: bool) -> bool {
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    stdout_is_terminal && !no_color_flag && !no_color_env
}

/// `text` in `style` when `color`, else as it is.
pub(crate) fn paint(color: bool, style: &str, text: &str) -> String {
    if color {
        format!("{style}{text}{RESET}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paint_wraps_only_when_asked() {
        assert_eq!(paint(false, STATUS, "closed"), "closed");
        assert_eq!(paint(true, STATUS, "closed"), "\x1b[33mclosed\x1b[0m");
    }

    #[test]
    fn no_colour_off_a_terminal_or_when_refused() {
        assert!(!wanted(false, false));
        assert!(!wanted(true, true));
    }
}
