//! What is known of the frame and the message being received, between reads.

use bytes::BytesMut;

use crate::frame::{FrameHeader, OpCode};

/// The frame whose payload is being received: what its header said (RSV2 and RSV3 were
/// clear, or the header was refused), without the reserved bits a whole header would carry.
#[derive(Clone, Copy, Debug)]
pub(super) struct InFrame {
    pub(super) len: u64,
    /// How many payload bytes at the front of the input buffer are already unmasked (and, for
    /// text, validated).
    pub(super) processed: usize,
    pub(super) mask: Option<[u8; 4]>,
    pub(super) opcode: OpCode,
    pub(super) fin: bool,
    pub(super) rsv1: bool,
}

impl InFrame {
    pub(super) fn header(&self) -> FrameHeader {
        FrameHeader {
            fin: self.fin,
            rsv1: self.rsv1,
            rsv2: false,
            rsv3: false,
            opcode: self.opcode,
            mask: self.mask,
            len: self.len,
        }
    }
}

/// A fragmented or compressed message being reassembled.
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) text: bool,
    /// The message is compressed: its bytes are inflated into `inflated`, not `data`.
    pub(super) compressed: bool,
    pub(super) data: BytesMut,
    pub(super) inflated: Vec<u8>,
    pub(super) fragments: usize,
}
