//! Reading an HTTP/1.1 head (a request on the server, the response on the client) off a
//! transport, with the bytes read past it: the first frames may share a read with the head.

use bytes::BytesMut;
use proto::handshake::HandshakeError;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::Error;

/// Reads until `parse` finds a complete head in what arrived (it returns the head and its
/// length, `None` for more, or an error for a malformed or oversized head); returns the head
/// and the bytes after it. No timeout: the caller bounds the whole handshake.
pub(crate) async fn read_head<S, T>(
    stream: &mut S,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, HandshakeError>,
) -> Result<(T, BytesMut), Error>
where
    S: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some((head, len)) = parse(&buf)? {
            let rest = buf.split_off(len);
            return Ok((head, rest));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}
