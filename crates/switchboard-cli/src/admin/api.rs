//! The dashboard's JSON endpoints under `/admin/api/`: what it reads (`GET`: connections,
//! channels, one channel, nodes) with the session cookie, and what it does (`POST`: disconnect,
//! publish) with the cookie, the CSRF token and an origin of this server. Reads and actions go
//! through the hub's server API, so they reach every node; each action is logged with the
//! session that did it.

use std::collections::HashMap;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use switchboard::CloseCode;
use switchboard_hub::{HubError, Target};

use super::Admin;
use super::guard;
use super::login;
use super::respond::{error, json};

/// Connections listed per node at most.
const MAX_LISTED: usize = 500;

/// Channels whose position a listing reads at most (the rest are listed without).
const MAX_POSITIONS: usize = 200;

/// Publications a channel's page shows.
const LAST_MESSAGES: usize = 20;

/// The answer to a request under `/admin/api/`.
pub(super) async fn handle(admin: &Admin, request: Request<Bytes>) -> Response<Bytes> {
    let path = request
        .uri()
        .path()
        .strip_prefix("/admin/api/")
        .unwrap_or("");
    let method = request.method();
    let (reads, allowed) = match path {
        "session" | "connections" | "channels" | "channel" | "nodes" => (true, "GET, HEAD"),
        "login" | "logout" | "disconnect" | "publish" => (false, "POST"),
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    };
    let fits = if reads {
        method == Method::GET || method == Method::HEAD
    } else {
        method == Method::POST
    };
    if !fits {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("{path} takes {allowed}"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allowed));
        return response;
    }
    match path {
        "login" => return login::login(admin, &request),
        "logout" => return login::logout(admin, &request),
        "session" => return login::current(admin, &request),
        _ => {}
    }
    if reads {
        if let Err(refused) = guard::session(&admin.sessions, request.headers()) {
            return refused.response();
        }
        let query = query(&request);
        let answer = match path {
            "connections" => connections(admin, &query).await,
            "channels" => channels(admin, &query).await,
            "channel" => channel(admin, &query).await,
            _ => admin.hub.info().await.map(|info| to_value(&info)),
        };
        return answered(answer);
    }
    let session = match guard::change(&admin.sessions, request.headers(), request.uri()) {
        Ok(session) => session,
        Err(refused) => return refused.response(),
    };
    let Ok(body) = serde_json::from_slice::<HashMap<String, Box<RawValue>>>(request.body()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be a JSON object",
        );
    };
    let text = |field: &str| {
        body.get(field)
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
    };
    match path {
        "disconnect" => {
            let code = body
                .get("code")
                .and_then(|v| serde_json::from_str::<u16>(v.get()).ok())
                .unwrap_or(4000);
            let reason = text("reason").unwrap_or_default();
            let (user, conn) = (text("user"), text("conn"));
            let target = match (&user, &conn) {
                (Some(user), None) => Target::User(user),
                (None, Some(conn)) => Target::Conn(conn),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "give user or conn, not both",
                    );
                }
            };
            tracing::info!(
                session = %session.tag,
                user = user.as_deref().unwrap_or(""),
                conn = conn.as_deref().unwrap_or(""),
                code,
                reason,
                "admin disconnects"
            );
            let done = admin
                .hub
                .disconnect(target, CloseCode::from(code), &reason)
                .await;
            answered(done.map(|n| json!({"connections": n})))
        }
        _ => {
            let (Some(channel), Some(data)) = (text("channel"), body.get("data")) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "give channel and data",
                );
            };
            tracing::info!(session = %session.tag, %channel, "admin publishes");
            let published = admin.hub.publish(&channel, data.clone(), None).await;
            answered(published.map(|p| json!({"epoch": p.epoch, "offset": p.offset})))
        }
    }
}

/// The query string's parameters.
fn query(request: &Request<Bytes>) -> HashMap<String, String> {
    let query = request.uri().query().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

async fn connections(admin: &Admin, query: &HashMap<String, String>) -> Result<Value, HubError> {
    let user = query.get("user").map(String::as_str);
    Ok(to_value(&admin.hub.clients(user, MAX_LISTED).await?))
}

/// The channels `q` is part of (every one without), with subscribers on every node and each
/// one's position: the page turns successive offsets into a rate.
async fn channels(admin: &Admin, query: &HashMap<String, String>) -> Result<Value, HubError> {
    let pattern = query
        .get("q")
        .filter(|q| !q.is_empty())
        .map(|q| format!("*{q}*"));
    let list = admin.hub.channels(pattern.as_deref()).await?;
    let reads = list.channels.iter().take(MAX_POSITIONS).map(|info| {
        let hub = admin.hub.clone();
        let channel = info.channel.clone();
        tokio::spawn(async move { hub.history(&channel, Some(0), None).await })
    });
    let reads: Vec<_> = reads.collect();
    let mut channels = Vec::with_capacity(list.channels.len());
    let mut reads = reads.into_iter();
    for info in &list.channels {
        let mut row = json!({"channel": info.channel, "subscribers": info.subscribers});
        if let Some(read) = reads.next()
            && let Ok(Ok(history)) = read.await
        {
            row["epoch"] = json!(history.position.epoch);
            row["offset"] = json!(history.position.offset);
        }
        channels.push(row);
    }
    Ok(json!({"channels": channels, "unanswered": list.unanswered}))
}

/// One channel: its position, who is present, its last messages.
async fn channel(admin: &Admin, query: &HashMap<String, String>) -> Result<Value, HubError> {
    let name = query.get("name").map_or("", String::as_str);
    let history = admin.hub.history(name, Some(LAST_MESSAGES), None).await?;
    let presence = admin.hub.presence(name).await?;
    Ok(json!({
        "channel": name,
        "epoch": history.position.epoch,
        "offset": history.position.offset,
        "presence": presence,
        "publications": history.publications,
    }))
}

fn to_value(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// 200 with the value, or the hub's error: 400 for what was asked, 503 for the broker.
fn answered(result: Result<Value, HubError>) -> Response<Bytes> {
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => {
            let status = match e {
                HubError::Unavailable(_) | HubError::Partial { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::BAD_REQUEST,
            };
            error(status, e.code(), &e.to_string())
        }
    }
}
