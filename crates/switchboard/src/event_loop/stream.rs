//! [`LoopStream`]: a socket of an event loop, seen by the engine's driver as an async
//! transport. Its readiness is what the loop's `epoll` last reported, so a read or a write that
//! would block returns `Pending` without a system call, and the loop polls the connection again
//! when the socket's next event arrives (mio registers sockets edge-triggered).

use std::io::{self, IoSlice, Write};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A TCP socket owned by an event loop.
#[derive(Debug)]
pub(crate) struct LoopStream {
    socket: mio::net::TcpStream,
    /// Whether input may be waiting: set by a readable event, cleared by a read that found
    /// less than it asked for (the kernel's buffer is then empty, and more input brings another
    /// event).
    readable: bool,
    /// Whether output may be accepted: set by a writable event, cleared by a short write.
    writable: bool,
    /// The peer's end (or an error) was reported: no event follows it, so reads go on until
    /// they return it.
    read_closed: bool,
}

impl LoopStream {
    pub(crate) fn new(socket: mio::net::TcpStream) -> Self {
        // Ready until told otherwise: the handshake may have left input in the kernel's buffer
        // whose edge came before the loop registered the socket.
        Self {
            socket,
            readable: true,
            writable: true,
            read_closed: false,
        }
    }

    pub(crate) fn socket_mut(&mut self) -> &mut mio::net::TcpStream {
        &mut self.socket
    }

    /// Takes in the readiness an event reported.
    pub(crate) fn ready(&mut self, event: &mio::event::Event) {
        if event.is_read_closed() || event.is_error() {
            self.read_closed = true;
        }
        if event.is_readable() || self.read_closed {
            self.readable = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.writable = true;
        }
    }
}

impl AsyncRead for LoopStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.readable {
            return Poll::Pending;
        }
        let wanted = buf.remaining();
        loop {
            // SAFETY: `recv` only writes bytes into the slice, never de-initializes any.
            let unfilled = unsafe { buf.unfilled_mut() };
            // Into uninitialized memory, as tokio's own sockets read: the read buffer is a
            // 64 KiB block that would otherwise be zeroed before every read.
            match SockRef::from(&self.socket).recv(unfilled) {
                Ok(n) => {
                    // SAFETY: `recv` initialized the first `n` bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    if n > 0 && n < wanted && !self.read_closed {
                        self.readable = false;
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Poll::Pending;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl LoopStream {
    fn poll_written(
        &mut self,
        wanted: usize,
        result: io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Ok(n) => {
                if n < wanted {
                    self.writable = false;
                }
                Poll::Ready(Ok(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for LoopStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.writable {
            return Poll::Pending;
        }
        let result = self.socket.write(buf);
        self.poll_written(buf.len(), result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.writable {
            return Poll::Pending;
        }
        let wanted = bufs.iter().map(|b| b.len()).sum();
        let result = self.socket.write_vectored(bufs);
        self.poll_written(wanted, result)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.socket.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}
