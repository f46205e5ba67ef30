//! One stream of a client's HTTP/2 connection (the `h2` crate) as a byte stream: what a
//! WebSocket opened with an extended CONNECT (RFC 8441) reads and writes. The connection's
//! task reads and writes the socket for every stream; this only moves bytes in and out of the
//! stream under its flow control.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The two halves of a client's stream, and what arrived and was not read yet.
pub(crate) struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    unread: Bytes,
}

impl H2Stream {
    pub(crate) fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        Self {
            send,
            recv,
            unread: Bytes::new(),
        }
    }
}

/// An `h2` error as I/O: a reset stream is a reset connection to the WebSocket over it.
pub(crate) fn io_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().unwrap_or_else(|| io::ErrorKind::Other.into());
    }
    let kind = match e.reason() {
        Some(Reason::NO_ERROR | Reason::CANCEL) if e.is_reset() => io::ErrorKind::ConnectionReset,
        Some(_) if e.is_reset() || e.is_go_away() => io::ErrorKind::ConnectionReset,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl AsyncRead for H2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.unread.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.unread = data,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                // END_STREAM: the end of the bytes, as a TCP FIN.
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread[..n]);
        this.unread.advance(n);
        // What the reader has taken opens the window again; what it has not is all the peer
        // may send ahead.
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl H2Stream {
    /// Sends as much of `bufs` as the stream's window allows, in one DATA frame.
    fn poll_send(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(total);
        let granted = loop {
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => {}
                Some(Ok(n)) => break n.min(total),
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => return Poll::Ready(Err(self.closed(cx))),
            }
        };
        let mut data = BytesMut::with_capacity(granted);
        for buf in bufs {
            let room = granted - data.len();
            if room == 0 {
                break;
            }
            data.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        match self.send.send_data(data.freeze(), false) {
            Ok(()) => Poll::Ready(Ok(granted)),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }

    /// Why the stream takes no more data: the peer's reset, if it sent one.
    fn closed(&mut self, cx: &mut Context<'_>) -> io::Error {
        match self.send.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("stream reset by the server: {reason}"),
            ),
            Poll::Ready(Err(e)) => io_error(e),
            Poll::Pending => io::ErrorKind::BrokenPipe.into(),
        }
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes what the streams sent.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // END_STREAM, as a TCP FIN; a stream already ended or reset has nothing to end.
        let _ = self.get_mut().send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
