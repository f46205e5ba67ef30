//! `connect` when stdin or stdout is not a terminal (or with `--execute`, `--binary`,
//! `--jsonl`): what scripts and pipelines rely on.
//!
//! - stdin is read as lines of UTF-8 (each line a text message), or with `--binary` as raw
//!   bytes, one binary message per read (at most [`CHUNK`] bytes; what a read returns depends
//!   on how the writer wrote), or with `--split-bytes N` one message per N bytes (the last may
//!   be shorter), whatever the reads. A line that is not UTF-8 ends the input with an error
//!   naming the line: nothing is dropped silently.
//! - stdout carries what was received, in one of three [`Format`]s.
//! - When stdout goes away (the reader of a pipe exited, as `| head -1` does), the connection
//!   is closed with 1001 (going away): noticed on the next write, or at once for a pipe or a
//!   socket on Unix, whose hangup is watched.

use std::io::{self, BufRead as _, IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use switchboard::{CloseCode, Message, Sender};
use tokio::sync::mpsc;

use super::jsonl::{self, Direction};
use super::show;
use crate::terminal::escape_controls;

/// The most bytes one read of stdin takes with `--binary`, so the most one message carries.
pub(super) const CHUNK: usize = 64 * 1024;

/// What stdin gave.
pub(super) enum Input {
    /// A line of text, without its line ending (`\n` or `\r\n`).
    Line(String),
    /// With `--binary`: the bytes of one read.
    Bytes(Bytes),
    /// The line with this number (from 1) is not UTF-8; nothing is read after it.
    NotUtf8 { line: u64 },
    /// Reading failed; nothing is read after it.
    Failed(io::Error),
}

/// How stdin is cut into messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Split {
    /// Lines of UTF-8 text.
    Lines,
    /// `--binary`: each read.
    Reads,
    /// `--split-bytes N`: every N bytes.
    Bytes(usize),
}

/// Reads stdin on a thread of its own (a blocking read must not keep the process alive once
/// the connection is over), cut as `split` says. The channel closes at the end of input or
/// after the first [`Input::NotUtf8`] or [`Input::Failed`].
pub(super) fn stdin(split: Split) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        if split != Split::Lines {
            let (size, whole) = match split {
                Split::Bytes(size) => (size.max(1), true),
                _ => (CHUNK, false),
            };
            let mut buf = vec![0; size];
            loop {
                let input = match fill(&mut stdin, &mut buf, whole) {
                    Ok(0) => return,
                    Ok(n) => Input::Bytes(Bytes::copy_from_slice(&buf[..n])),
                    Err(e) => Input::Failed(e),
                };
                let last = matches!(input, Input::Failed(_));
                if tx.blocking_send(input).is_err() || last {
                    return;
                }
            }
        }
        let mut line = Vec::new();
        for number in 1.. {
            line.clear();
            let input = match stdin.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    let end = line.strip_suffix(b"\n").unwrap_or(&line);
                    let end = end.strip_suffix(b"\r").unwrap_or(end);
                    match std::str::from_utf8(end) {
                        Ok(text) => Input::Line(text.to_owned()),
                        Err(_) => Input::NotUtf8 { line: number },
                    }
                }
                Err(e) => Input::Failed(e),
            };
            let last = !matches!(input, Input::Line(_));
            if tx.blocking_send(input).is_err() || last {
                return;
            }
        }
    });
    rx
}

/// Reads into `buf`: once, or with `whole` until it is full or the input ends; the bytes
/// read (0 at the end of input).
fn fill(input: &mut impl io::Read, buf: &mut [u8], whole: bool) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if !whole {
            break;
        }
    }
    Ok(filled)
}

/// How received messages are written to stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    /// One line per message: text as it is, binary as hex (see `show.rs`).
    Lines,
    /// `--binary`: the bytes of each data message as they are, with nothing added.
    Raw,
    /// `--jsonl`: one JSON object per message, in and out (see `jsonl.rs`).
    Jsonl,
}

/// Writes to stdout, shared by the tasks that send and the loop that receives. Once a write
/// fails, nothing more is written and the connection is closed with 1001.
#[derive(Clone)]
pub(super) struct Output {
    format: Format,
    ping_pong: bool,
    /// stdout is a terminal: control characters in lines are shown escaped, as at the prompt.
    escape: bool,
    sender: Sender,
    /// Why stdout stopped taking output, once it did.
    gone: Arc<Mutex<Option<io::ErrorKind>>>,
}

impl Output {
    /// Output in `format`, showing pings and pongs with `ping_pong` (always with `--jsonl`);
    /// `sender` is closed when stdout goes away.
    pub(super) fn new(format: Format, ping_pong: bool, sender: Sender) -> Self {
        Self {
            format,
            ping_pong,
            escape: io::stdout().is_terminal(),
            sender,
            gone: Arc::default(),
        }
    }

    /// Writes a received message as the format says.
    pub(super) fn received(&self, message: &Message) {
        let bytes = match self.format {
            Format::Lines => show::line(message, self.ping_pong).map(|line| {
                let line = if self.escape {
                    escape_controls(&line).into_owned()
                } else {
                    line
                };
                line + "\n"
            }),
            Format::Raw => match message {
                Message::Text(text) => Some(text.to_string()),
                Message::Binary(data) => return self.write(data),
                _ => show::line(message, self.ping_pong).map(|line| line + "\n"),
            },
            Format::Jsonl => return self.log(Direction::In, message),
        };
        if let Some(bytes) = bytes {
            self.write(bytes.as_bytes());
        }
    }

    /// Records a message sent (with `--jsonl`; nothing otherwise).
    pub(super) fn sent(&self, message: &Message) {
        if self.format == Format::Jsonl {
            self.log(Direction::Out, message);
        }
    }

    /// Why stdout went away, if it did.
    pub(super) fn gone(&self) -> Option<io::ErrorKind> {
        *self.gone.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches stdout: when it hangs up (the reader of the pipe is gone), acts as a failed
    /// write would. Runs until then; on a file or where hangups cannot be watched, forever.
    pub(super) async fn watch(self) {
        hangup().await;
        self.stop(io::ErrorKind::BrokenPipe);
    }

    fn log(&self, direction: Direction, message: &Message) {
        let mut line = jsonl::record(direction, message, SystemTime::now()).to_string();
        line.push('\n');
        self.write(line.as_bytes());
    }

    fn write(&self, bytes: &[u8]) {
        // Held across the write: lines from the sending and receiving sides do not interleave.
        let gone = self.gone.lock().unwrap_or_else(PoisonError::into_inner);
        if gone.is_some() {
            return;
        }
        let mut out = io::stdout().lock();
        let written = out.write_all(bytes).and_then(|()| out.flush());
        drop(gone);
        if let Err(e) = written {
            if e.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("error: cannot write to stdout: {e}");
            }
            self.stop(e.kind());
        }
    }

    fn stop(&self, why: io::ErrorKind) {
        let mut gone = self.gone.lock().unwrap_or_else(PoisonError::into_inner);
        if gone.is_none() {
            *gone = Some(why);
            let _ = self.sender.close(CloseCode::GOING_AWAY, "");
        }
    }
}

/// Resolves when stdout reports an error condition, which a pipe or a socket does once its
/// reader is gone (`EPOLLERR`); never for what epoll cannot watch (a file, `/dev/null`).
#[cfg(unix)]
async fn hangup() {
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    // The descriptor is registered as it is: its flags (blocking) are shared with the shell
    // and are not changed.
    // SAFETY: `Stdout` is always descriptor 1, which is open for the life of the process (the
    // Rust runtime opens /dev/null for it at start if it was closed) and which nothing here
    // closes or replaces.
    let registered = unsafe { AsyncFd::register_with_interest(io::stdout(), Interest::ERROR) };
    match registered {
        Ok(fd) => {
            if fd.ready(Interest::ERROR).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn hangup() {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most 3 bytes a read, as a pipe may.
    struct Trickle<'a>(&'a [u8]);

    impl io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn split_bytes_fills_each_message_whatever_the_reads() {
        let mut input = Trickle(b"0123456789");
        let mut buf = [0; 4];
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            let n = fill(&mut input, &mut buf, true).unwrap();
            (n > 0).then_some(n)
        })
        .collect();
        assert_eq!(sizes, [4, 4, 2]);
        let mut input = Trickle(b"0123456789");
        assert_eq!(fill(&mut input, &mut buf, false).unwrap(), 3, "one read");
    }
}
