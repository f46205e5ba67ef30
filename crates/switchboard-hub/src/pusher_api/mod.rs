//! [`PusherApi`]: Pusher's HTTP API under `/apps/{app_id}/`, what the official server
//! libraries (`pusher` for Node, Python, PHP and the others) call, so that an app's backend
//! written for Pusher triggers events and reads channels here unchanged:
//!
//! - `POST events` and `POST batch_events`: events published through the hub's broker to
//!   the hub channels `pusher:ID:NAME` (see [`hub_channel`]), as client events are, so
//!   they reach the Pusher subscribers of every node, except the connection of `socket_id`;
//! - `GET channels`, `GET channels/{name}`, `GET channels/{name}/users`: from the hub's
//!   channel lists and presence, across nodes;
//! - `POST users/{user_id}/terminate_connections`: the hub's `disconnect` of the user a
//!   Pusher connection's presence member names (see [`hub_user`](crate::pusher::hub_user)),
//!   on every node; also served as `/users/{user_id}/terminate_connections`, with no
//!   `/apps/{app_id}` prefix, the app named by `auth_key`, where the Python library posts it.
//!
//! Every request is signed with the app's secret ([`SignedRequest`]); a refusal is a status
//! and a plain text reason, as Pusher answers (`refusal.rs`).

mod channels;
mod events;
mod names;
mod refusal;
mod route;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use switchboard::CloseCode;

use crate::hub::{Hub, Target};
use crate::pusher::{ChannelKind, PusherCode, SignedRequest, hub_channel, hub_user};
use events::Trigger;
use names::{Info, check_channel};
use refusal::Refusal;
use route::{Endpoint, Route, route};

/// The longest user id `terminate_connections` takes, in bytes (Pusher's limit).
const MAX_USER_ID: usize = 128;

/// Pusher's HTTP API for the apps a hub serves. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PusherApi {
    hub: Hub,
}

impl PusherApi {
    /// The API of `hub`'s Pusher apps (see [`HubConfig::pusher`](crate::HubConfig::pusher));
    /// `None` when it serves none.
    pub fn new(hub: Hub) -> Option<Self> {
        (!hub.pusher_apps().is_empty()).then_some(Self { hub })
    }

    /// The answer to one request under `/apps/` (or to `/users/{user_id}/terminate_connections`,
    /// see the module's docs): 200 with JSON, or the refusal's status
    /// with a plain text reason (401 for a signature, 400 for a body or parameter, 404 for
    /// an unknown app, 413 for data over the limit).
    pub async fn handle(&self, request: Request<Bytes>) -> Response<Bytes> {
        match self.answer(&request).await {
            Ok(body) => {
                let mut response = Response::new(Bytes::from(body.to_string()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Err(refusal) => {
                tracing::debug!(path = %request.uri().path(), status = %refusal.status, reason = %refusal.reason, "Pusher API request refused");
                refusal.response()
            }
        }
    }

    async fn answer(&self, request: &Request<Bytes>) -> Result<Value, Refusal> {
        let path = request.uri().path();
        let Route { app_id, endpoint } = route(request.method(), path)?;
        let apps = self.hub.pusher_apps();
        let query = request.uri().query().unwrap_or("");
        let param = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let app_id = match app_id {
            Some(id) => id,
            None => {
                let key = param("auth_key").unwrap_or_default();
                let app = apps
                    .by_key(&key)
                    .ok_or_else(|| Refusal::new(StatusCode::UNAUTHORIZED, "unknown auth_key"))?;
                app.id.as_str()
            }
        };
        if apps.by_id(app_id).is_none() {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!("unknown app id {app_id}"),
            ));
        }
        let signed = SignedRequest {
            method: request.method().as_str(),
            path,
            query,
            body: request.body(),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        signed
            .check(apps, app_id, now)
            .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
        let hub = &self.hub;
        match endpoint {
            Endpoint::Events => {
                let event = events::parse_event(request.body())?;
                let channels = self.trigger(app_id, &event).await?;
                Ok(if event.info.any() {
                    json!({ "channels": channels })
                } else {
                    json!({})
                })
            }
            Endpoint::BatchEvents => {
                let events = events::parse_batch(request.body())?;
                let mut batch = Vec::with_capacity(events.len());
                for event in &events {
                    let channels = self.trigger(app_id, event).await?;
                    batch.push(channels.into_iter().next().map_or(json!({}), |(_, a)| a));
                }
                Ok(if events.iter().any(|event| event.info.any()) {
                    json!({ "batch": batch })
                } else {
                    json!({})
                })
            }
            Endpoint::Channels => {
                let prefix = param("filter_by_prefix").unwrap_or_default();
                if !prefix.is_empty() {
                    check_channel(&prefix)?;
                }
                let info = Info::parse(param("info").as_deref())?;
                if info.users && !prefix.starts_with("presence-") {
                    let reason = "user_count needs filter_by_prefix=presence-";
                    return Err(Refusal::bad(reason));
                }
                let mut channels = Map::new();
                for (name, subscribers) in channels::occupied(hub, app_id, &prefix).await? {
                    let attributes =
                        channels::attributes(hub, app_id, &name, subscribers, info).await?;
                    channels.insert(name, Value::Object(attributes));
                }
                Ok(json!({ "channels": channels }))
            }
            Endpoint::Channel(name) => {
                check_channel(name)?;
                let info = Info::parse(param("info").as_deref())?;
                info.check_for(name)?;
                let subscribers = channels::subscriptions(hub, app_id, name).await?;
                let mut answer = channels::attributes(hub, app_id, name, subscribers, info).await?;
                answer.insert("occupied".into(), json!(subscribers > 0));
                Ok(Value::Object(answer))
            }
            Endpoint::Users(name) => {
                check_channel(name)?;
                if ChannelKind::of(name) != ChannelKind::Presence {
                    let reason = format!("users are listed for presence channels, not {name:?}");
                    return Err(Refusal::bad(reason));
                }
                let users = channels::users(hub, app_id, name).await?;
                let users: Vec<Value> = users.into_iter().map(|id| json!({ "id": id })).collect();
                Ok(json!({ "users": users }))
            }
            Endpoint::Terminate(user) => {
                if user.len() > MAX_USER_ID {
                    let reason = format!("a user id is at most {MAX_USER_ID} bytes");
                    return Err(Refusal::bad(reason));
                }
                let user = hub_user(app_id, user);
                // 4009 tells pusher-js not to reconnect, as for a refused sign-in.
                let code = CloseCode::from(PusherCode::Unauthorized.code());
                hub.disconnect(
                    Target::User(&user),
                    code,
                    "Connections terminated by the app",
                )
                .await?;
                Ok(json!({}))
            }
        }
    }

    /// Publishes `event` to each of its channels of app `app_id`; the attributes its `info`
    /// asks of each channel, by name.
    async fn trigger(&self, app_id: &str, event: &Trigger) -> Result<Map<String, Value>, Refusal> {
        let mut envelope = json!({ "event": event.name, "data": event.data });
        if let Some(socket_id) = &event.socket_id {
            envelope["socket_id"] = json!(socket_id);
        }
        let data =
            serde_json::value::to_raw_value(&envelope).map_err(|e| Refusal::bad(e.to_string()))?;
        let targets: Vec<String> = (event.channels.iter())
            .map(|name| hub_channel(app_id, name))
            .collect();
        for result in self.hub.broadcast(&targets, data).await? {
            result?;
        }
        let mut channels = Map::new();
        if event.info.any() {
            for name in &event.channels {
                let subscribers = channels::subscriptions(&self.hub, app_id, name).await?;
                let attributes =
                    channels::attributes(&self.hub, app_id, name, subscribers, event.info).await?;
                channels.insert(name.clone(), Value::Object(attributes));
            }
        }
        Ok(channels)
    }
}
