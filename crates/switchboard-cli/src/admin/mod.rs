//! The admin dashboard at `/admin`, on in hub mode when an admin password is set (else every
//! `/admin` path is 404): a page built into the binary (`web/admin/`: plain HTML, CSS and JS,
//! no build step), its JSON endpoints (`api.rs`), logging in and out (`login.rs`), and a
//! WebSocket of live figures (`live.rs`).
//!
//! Security: the password is compared in constant time and wrong ones are rate-limited
//! (`sessions.rs`); a login sets a random session cookie (`HttpOnly`, `SameSite=Strict`,
//! `Path=/admin`, `Secure` over TLS) held in memory with an expiry; every request needs it
//! (401 without), and every state-changing one also the session's CSRF token and an origin of
//! this server (`guard.rs`; 403).

mod api;
mod guard;
mod live;
mod login;
mod respond;
mod sessions;

use std::future::ready;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use switchboard::{MaybeTlsStream, Metrics, ServerBuilder, WebSocket};
use switchboard_hub::Hub;

use crate::web;
use sessions::Sessions;

/// The path of the live figures' WebSocket.
pub(crate) const LIVE: &str = "/admin/live";

const INDEX: &str = include_str!("../../../../web/admin/index.html");
const SCRIPT: &str = include_str!("../../../../web/admin/admin.js");
const STYLE: &str = include_str!("../../../../web/admin/admin.css");

/// The dashboard of one server. Shared by its routes and its WebSocket.
#[derive(Debug)]
pub(crate) struct Admin {
    hub: Hub,
    metrics: Metrics,
    sessions: Sessions,
    /// Whether the server speaks TLS: the cookie is then `Secure`.
    tls: bool,
}

impl Admin {
    pub(crate) fn new(hub: Hub, metrics: Metrics, password: &str, tls: bool) -> Arc<Self> {
        Arc::new(Self {
            hub,
            metrics,
            sessions: Sessions::new(password),
            tls,
        })
    }

    /// The checks of an upgrade to [`LIVE`]: `None` lets it through.
    pub(crate) fn check_live(&self, request: &Request<()>) -> Option<Response<Bytes>> {
        live::check(self, request)
    }

    /// Serves the live figures on an upgraded [`LIVE`] socket.
    pub(crate) async fn live(&self, ws: WebSocket<MaybeTlsStream>, request: &Request<()>) {
        live::serve(self, ws, request).await;
    }
}

/// Adds the dashboard's routes to `builder`.
pub(crate) fn routes(builder: ServerBuilder, admin: Arc<Admin>) -> ServerBuilder {
    let page = || web::get(|| web::asset(INDEX, "text/html; charset=utf-8"));
    builder
        .route("/admin", page())
        .route("/admin/", page())
        .route(
            "/admin/admin.js",
            web::get(|| web::asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/admin/admin.css",
            web::get(|| web::asset(STYLE, "text/css; charset=utf-8")),
        )
        .api_route("/admin/api/*", move |request: Request<Bytes>| {
            let admin = admin.clone();
            async move { api::handle(&admin, request).await }
        })
        .route("/admin/*", |_| ready(web::not_found()))
}
