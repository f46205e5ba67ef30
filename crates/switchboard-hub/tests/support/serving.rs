//! How the tests' servers serve a hub client: in the connection's task (`Hub::serve`), or from
//! the event loop (`Hub::serve_on_event_loop`) when `SWITCHBOARD_TEST_EVENT_LOOP` is set. The
//! test script runs the hub's tests both ways.

use switchboard::http::Request;
use switchboard::{MaybeTlsStream, WebSocket};
use switchboard_hub::Hub;

/// Serves one client of the hub's protocol, the way this run of the tests asks.
pub(crate) async fn serve(hub: Hub, ws: WebSocket<MaybeTlsStream>, request: Request<()>) {
    if std::env::var_os("SWITCHBOARD_TEST_EVENT_LOOP").is_some() {
        hub.serve_on_event_loop(ws, request).await;
    } else {
        hub.serve(ws, request).await;
    }
}
