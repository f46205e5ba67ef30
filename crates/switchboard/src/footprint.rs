//! The sizes an idle connection's memory is made of, asserted in one place.
//!
//! A server's idle connection is its task (the handler's future, which holds the socket), the
//! socket's out-of-line part, tokio's I/O registration and a slot in the server's wake-up
//! slab; bench/REPORT.md breaks the 0.86 KiB per idle connection down this way. tokio stores a
//! task in a cell of the future's size plus 104 bytes, rounded up to a multiple of 128: a
//! future of up to 280 bytes takes 384. These tests keep each part within its budget, so that a
//! field added in passing shows up here rather than as a step in the idle-memory benchmark.
//! (The hub's `Echo`, a handler of another crate, is bounded by the socket's size beside it.)
//! A connection served by an event loop (`event_loop/`) has no task and no I/O registration.
#![cfg(all(test, target_pointer_width = "64"))]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;
use crate::websocket::cold::Cold;

/// The largest future that fits tokio's 384-byte task cell.
const SMALL_CELL_FUTURE: usize = 384 - 104;

/// A handler that holds the socket and nothing else, as `switchboard_hub::echo` does.
struct Holder(#[allow(dead_code)] WebSocket<MaybeTlsStream>);

impl Future for Holder {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
}

/// The handshake runs boxed and is freed before the handler runs: the task keeps no room for
/// it, nor for anything else beside the handler's future.
#[tokio::test]
async fn a_connection_task_is_its_handler_and_not_a_byte_more() {
    let task = crate::server::sample_task(|ws, _request| Holder(ws)).await;
    assert_eq!(size_of_val(&task), size_of::<Holder>());
}

#[test]
fn a_server_socket_fits_the_small_task_cell() {
    let socket = size_of::<WebSocket<MaybeTlsStream>>();
    assert!(socket <= SMALL_CELL_FUTURE, "{socket} bytes");
}

/// What an idle connection needs of the engine inline: its configuration, the read buffer
/// and the frame being read, the UTF-8 state, the output buffer, the deadlines; the rest
/// (whole buffers queued, a fragmented message, permessage-deflate, a client's masking keys)
/// is boxed when first used.
#[test]
fn the_engine_state_is_at_most_160_bytes() {
    let conn = size_of::<proto::Connection>();
    assert!(conn <= 160, "{conn} bytes");
}

/// The group link (membership, counts since they were last published, the code of the first
/// Close, the waker and deadline last given to the wake-up slot) and three pointers: one of
/// jemalloc's 80-byte size classes.
#[test]
fn the_out_of_line_part_is_one_80_byte_block() {
    let cold = size_of::<Cold>();
    assert!(cold <= 80, "{cold} bytes");
}

#[test]
fn a_wakeup_slot_is_40_bytes() {
    let slot = size_of::<crate::wakeups::Slot>();
    assert!(slot <= 40, "{slot} bytes");
}

/// An event loop's connection is its slot in the loop's pages: the engine's driver over the
/// socket's descriptor and its readiness, and the handler's state (none for an echo). 184 bytes
/// in release builds; mio keeps a selector id beside the descriptor in debug builds.
#[test]
fn an_event_loop_connection_is_at_most_184_bytes() {
    use crate::event_loop::{driver::Driven, stream::LoopStream};
    let slot = size_of::<Option<Driven<LoopStream, ()>>>();
    let limit = if cfg!(debug_assertions) { 200 } else { 184 };
    assert!(slot <= limit, "{slot} bytes");
}
