//! Moving bytes between the transport and the engine: reads into a scratch buffer that the
//! connections of a thread share, and writes of everything queued in one vectored call.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::WebSocket;
use super::cold::link;
use crate::link::Count;

/// How much free space a read asks for.
const READ_CHUNK: usize = 16 * 1024;
/// The most room made at once for the rest of a large frame.
const MAX_RESERVE: usize = 4 << 20;
/// The size of each block of a thread's scratch read buffer.
const SCRATCH_SIZE: usize = 64 * 1024;

thread_local! {
    /// The read buffer that the connections polled on this thread share while they hold no
    /// partial frame; see `WebSocket::poll_read`.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}
/// The most buffers handed to one vectored write.
const MAX_IOVECS: usize = 64;

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    pub(super) fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let result = if self.conn.read_buffer().is_empty() {
            // No partial frame: read into this thread's scratch buffer and hand the connection
            // the bytes read. An idle connection holds no read buffer at all, and received
            // payloads stay zero-copy slices of the scratch block, which is freed when the last
            // of them is dropped.
            *self.conn.read_buffer() = BytesMut::new();
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                if scratch.capacity() - scratch.len() < READ_CHUNK {
                    scratch.reserve(SCRATCH_SIZE);
                }
                let read = self.io.read_buf(&mut *scratch);
                tokio::pin!(read);
                let result = read.poll(cx);
                if let Poll::Ready(Ok(n)) = result
                    && n > 0
                {
                    *self.conn.read_buffer() = scratch.split();
                }
                result
            })
        } else {
            // The rest of a partial frame goes into the connection's own buffer; the first
            // reserve copies the partial frame out of the shared scratch block. Room for the
            // whole frame (its length was within the limits) is made at once, up to a bound,
            // so a large frame arrives in large reads without the buffer regrowing.
            let wanted = self.conn.frame_remaining().clamp(READ_CHUNK, MAX_RESERVE);
            let buf = self.conn.read_buffer();
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(wanted);
            }
            let read = self.io.read_buf(buf);
            tokio::pin!(read);
            read.poll(cx)
        };
        if let Poll::Ready(Ok(n)) = &result {
            self.conn.commit_read(*n);
        }
        if let (Some(link), Poll::Ready(Ok(n))) = (link(&mut self.cold), &result) {
            link.count(Count::BytesIn, *n);
            if *n > 0 {
                // The keepalive counts silence from here, not from its check after it.
                self.conn.input_at(link.clock());
            }
        }
        result
    }

    /// Writes everything queued, in as few system calls as the transport allows.
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count = self.conn.transmit_slices(&mut slices);
            let n = match count {
                0 => return Pin::new(&mut self.io).poll_flush(cx),
                1 => ready!(Pin::new(&mut self.io).poll_write(cx, &slices[0]))?,
                _ if !self.io.is_write_vectored() => {
                    ready!(Pin::new(&mut self.io).poll_write(cx, &slices[0]))?
                }
                _ => ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if let Some(link) = link(&mut self.cold) {
                link.count(Count::BytesOut, n);
            }
            self.conn.advance_transmit(n);
        }
    }
}
