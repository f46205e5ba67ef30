//! Progress bars on standard error, hidden when it is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar drawn with `template`.
pub(crate) fn progress_bar(template: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The bar for the measured window.
pub(crate) fn window_bar() -> ProgressBar {
    progress_bar("{elapsed:>4} [{bar:30}] {msg}")
}

/// The bar for opening connections.
pub(crate) fn connect_bar(n: usize) -> ProgressBar {
    let bar = progress_bar("connecting {pos}/{len} [{bar:30}] {per_sec}");
    bar.set_length(n as u64);
    bar
}
