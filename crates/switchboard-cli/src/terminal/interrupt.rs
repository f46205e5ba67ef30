//! Ctrl-C and SIGTERM for `connect` and `serve`: the first asks to stop gracefully, the second
//! exits at once.
//!
//! A graceful stop can wait on a peer that never answers (a Close handshake, a drain). Someone
//! who presses Ctrl-C again has decided not to wait: the process exits at once with 128 + the
//! signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports a process the signal
//! ended, after giving the terminal back the mode it had before the line editor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinHandle;

use crate::terminal::mode;

/// A signal that asks the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGINT: Ctrl-C at the terminal.
    Interrupt,
    /// SIGTERM: `kill`, a service manager.
    Terminate,
}

impl Signal {
    fn exit_status(self) -> i32 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

/// The stop signals, as they come: one listening from its creation on, so that a signal sent
/// while the first is being handled is not missed.
pub(crate) struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Listens for SIGINT and (on Unix) SIGTERM. Call within the runtime.
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind, name: &str| {
                signal(kind)
                    .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for {name}"))
                    .ok()
            };
            Self {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Completes on the next stop signal; never, when none can be listened for (rather than
    /// at once, which would stop the process unasked).
    pub(crate) async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        {
            let interrupt = async {
                match &mut self.interrupt {
                    Some(interrupt) => interrupt.recv().await,
                    None => std::future::pending().await,
                }
            };
            let terminate = async {
                match &mut self.terminate {
                    Some(terminate) => terminate.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(()) = interrupt => Signal::Interrupt,
                Some(()) = terminate => Signal::Terminate,
                else => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            Signal::Interrupt
        }
    }
}

/// Exits at once for `signal`, the terminal's mode restored.
pub(crate) fn exit_now(signal: Signal) -> ! {
    mode::restore();
    std::process::exit(signal.exit_status())
}

/// `connect`'s stop: the first interrupt runs the graceful close; any later one exits at once.
#[derive(Clone)]
pub(crate) struct Interrupt {
    inner: Arc<Inner>,
}

struct Inner {
    interrupted: AtomicBool,
    close: Box<dyn Fn() + Send + Sync>,
}

impl Interrupt {
    /// `close` starts the graceful close; it must not wait for it.
    pub(crate) fn new(close: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new(Inner {
                interrupted: AtomicBool::new(false),
                close: Box::new(close),
            }),
        }
    }

    /// Closes gracefully the first time; exits at once after that.
    pub(crate) fn interrupt(&self, signal: Signal) {
        if self.inner.interrupted.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: exiting without waiting for the close");
            exit_now(signal);
        }
        (self.inner.close)();
    }

    /// Listens for stop signals until aborted, interrupting on each. Call before the line
    /// editor starts: each read of the editor puts its own SIGINT handler in place, then puts
    /// back the one it found, which must be this one.
    pub(crate) fn watch_signals(&self) -> JoinHandle<()> {
        let interrupt = self.clone();
        let mut signals = Signals::new();
        tokio::spawn(async move {
            loop {
                let signal = signals.recv().await;
                interrupt.interrupt(signal);
            }
        })
    }
}
