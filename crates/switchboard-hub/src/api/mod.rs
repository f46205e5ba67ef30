//! [`HttpApi`]: the hub's server API as JSON over HTTP, for backends in any language. Each
//! endpoint is `POST /api/NAME` with a JSON body, authorized by `Authorization: Bearer KEY`,
//! and calls the [`Hub`] method of the same name. Mount it with
//! [`ServerBuilder::api_route`](switchboard::ServerBuilder::api_route) so that a body over the
//! limit also gets a JSON 413.

mod counters;
mod fields;
mod keys;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde::Serialize;
use serde_json::json;
use switchboard::CloseCode;
use tracing::Instrument as _;

use crate::hub::{Hub, HubError, Target};
use crate::request_id::{REQUEST_ID_HEADER, check_request_id, new_request_id};
use counters::Counters;
use fields::{Fields, Refusal};
use keys::ApiKeys;

/// The endpoints, after `/api/`.
const ENDPOINTS: [&str; 9] = [
    "publish",
    "broadcast",
    "history",
    "presence",
    "channels",
    "info",
    "disconnect",
    "subscribe",
    "unsubscribe",
];

/// The hub's HTTP API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpApi {
    hub: Hub,
    keys: ApiKeys,
    counters: Arc<Counters>,
}

impl HttpApi {
    /// The API of `hub`, open to any of `keys`; `None` without a key (the API is then off:
    /// never open without one).
    pub fn new(hub: Hub, keys: impl IntoIterator<Item = String>) -> Option<Self> {
        let keys = ApiKeys::new(keys)?;
        Some(Self {
            hub,
            keys,
            counters: Arc::default(),
        })
    }

    /// The answer to one request under `/api/`. It carries the request's id in
    /// `X-Request-Id`: the caller's, or one made here; the id is in the `api` span of every
    /// log line the request causes on this node.
    pub async fn handle(&self, request: Request<Bytes>) -> Response<Bytes> {
        let name = request.uri().path().strip_prefix("/api/");
        let endpoint = ENDPOINTS
            .iter()
            .find(|e| Some(**e) == name)
            .map_or("unknown", |e| *e);
        let id = match request.headers().get(REQUEST_ID_HEADER) {
            None => Ok(new_request_id()),
            Some(value) => check_request_id(value.as_bytes()).map(str::to_owned),
        };
        let mut response = match &id {
            Err(reason) => Refusal::field("X-Request-Id", reason).response(),
            Ok(id) => {
                let span = tracing::debug_span!("api", endpoint, request_id = %id);
                let response = match self.answer(&request).instrument(span.clone()).await {
                    Ok(body) => json_response(StatusCode::OK, &body),
                    Err(refusal) => refusal.response(),
                };
                let status = response.status().as_u16();
                span.in_scope(|| tracing::debug!(status, "answered"));
                response
            }
        };
        if let Ok(id) = &id
            && let Ok(value) = HeaderValue::from_str(id)
        {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        self.counters.count(endpoint, response.status());
        response
    }

    /// Writes the API's counters (requests by endpoint and status) as Prometheus text lines,
    /// for a server's `/metrics` (see `switchboard::Metrics::extend`).
    pub fn render_metrics(&self, out: &mut String) {
        self.counters.render(out);
    }

    async fn answer(&self, request: &Request<Bytes>) -> Result<serde_json::Value, Refusal> {
        let path = request.uri().path();
        let Some(endpoint) = path.strip_prefix("/api/").filter(|e| ENDPOINTS.contains(e)) else {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no endpoint {path}"),
            ));
        };
        if request.method() != Method::POST {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the API takes POST".into(),
            ));
        }
        if !self
            .keys
            .authorizes(request.headers().get(header::AUTHORIZATION))
        {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or unknown key; send Authorization: Bearer KEY".into(),
            ));
        }
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json && !request.body().is_empty() {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json".into(),
            ));
        }
        let mut fields = Fields::parse(request.body())?;
        self.call(endpoint, &mut fields).await
    }

    async fn call(&self, endpoint: &str, f: &mut Fields) -> Result<serde_json::Value, Refusal> {
        let hub = &self.hub;
        Ok(match endpoint {
            "publish" => {
                let (channel, data) = (f.required::<String>("channel")?, f.data()?);
                let key = f.optional::<String>("idempotency_key")?;
                let position = hub.publish(&channel, data, key.as_deref()).await;
                to_value(&position.map_err(refused)?)
            }
            "broadcast" => {
                let channels = f.required::<Vec<String>>("channels")?;
                let results = hub.broadcast(&channels, f.data()?).await.map_err(refused)?;
                let results = channels.iter().zip(results).map(|(channel, result)| match result {
                    Ok(p) => json!({"channel": channel, "epoch": p.epoch, "offset": p.offset}),
                    Err(e) => json!({"channel": channel, "error": error_body(e.code(), &e.to_string())}),
                });
                json!({ "results": results.collect::<Vec<_>>() })
            }
            "history" => {
                let channel = f.required::<String>("channel")?;
                let (limit, since) = (f.optional("limit")?, f.optional("since")?);
                let history = hub.history(&channel, limit, since).await.map_err(refused)?;
                json!({
                    "epoch": history.position.epoch,
                    "offset": history.position.offset,
                    "publications": history.publications,
                })
            }
            "presence" => {
                let channel = f.required::<String>("channel")?;
                let clients = hub.presence(&channel).await.map_err(refused)?;
                json!({ "clients": clients })
            }
            "channels" => {
                let pattern = f.optional::<String>("pattern")?;
                to_value(&hub.channels(pattern.as_deref()).await.map_err(refused)?)
            }
            "info" => to_value(&hub.info().await.map_err(refused)?),
            "disconnect" => {
                let (user, conn) = (f.optional::<String>("user")?, f.optional::<String>("conn")?);
                let target = match (&user, &conn) {
                    (Some(user), None) => Target::User(user),
                    (None, Some(conn)) => Target::Conn(conn),
                    _ => return Err(Refusal::field("user", "give user or conn, not both")),
                };
                let code = CloseCode::from(f.optional::<u16>("code")?.unwrap_or(4000));
                let reason = f.optional::<String>("reason")?.unwrap_or_default();
                let n = hub
                    .disconnect(target, code, &reason)
                    .await
                    .map_err(refused)?;
                json!({ "connections": n })
            }
            "subscribe" | "unsubscribe" => {
                let (user, channel) = (
                    f.required::<String>("user")?,
                    f.required::<String>("channel")?,
                );
                let n = if endpoint == "subscribe" {
                    hub.subscribe(&user, &channel).await
                } else {
                    hub.unsubscribe(&user, &channel).await
                };
                json!({ "connections": n.map_err(refused)? })
            }
            _ => {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    endpoint.into(),
                ));
            }
        })
    }
}

fn to_value(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

fn error_body(code: &str, message: &str) -> serde_json::Value {
    json!({"code": code, "message": message})
}

/// The answer to a hub call that failed.
fn refused(e: HubError) -> Refusal {
    let status = match e {
        HubError::Unavailable(_) | HubError::Partial { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    Refusal::new(status, e.code(), e.to_string())
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
