//! The terminal's mode, saved before the line editor puts it in raw mode.
//!
//! The editor reads keys on a thread of its own and restores the mode when a read returns. The
//! process can end while a read is still waiting (the server closed, a second Ctrl-C, SIGTERM);
//! the mode saved here is then put back, so the shell is not left without echo or line editing.

#[cfg(unix)]
use std::sync::Mutex;

#[cfg(unix)]
use nix::sys::termios::{SetArg, Termios, tcgetattr, tcsetattr};

#[cfg(unix)]
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Saves stdin's terminal mode, for [`restore`].
pub(crate) fn save() {
    #[cfg(unix)]
    if let Ok(mode) = tcgetattr(std::io::stdin())
        && let Ok(mut saved) = SAVED.lock()
    {
        *saved = Some(mode);
    }
}

/// Puts back the mode [`save`] saw, if it saw one.
pub(crate) fn restore() {
    #[cfg(unix)]
    if let Ok(saved) = SAVED.lock()
        && let Some(mode) = saved.as_ref()
    {
        // Nothing more can be done for a terminal that refuses its own former mode.
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, mode);
    }
}
