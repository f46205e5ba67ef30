//! The endpoints under `/apps/{app_id}/`, from a request's method and path; and
//! `/users/{user_id}/terminate_connections` without the prefix, where the Python `pusher`
//! library (3.x) posts it, its app named by the request's `auth_key`.

use http::{Method, StatusCode};

use super::refusal::Refusal;

/// One endpoint, with what its path names.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Endpoint<'a> {
    /// `POST events`: one event to one or more channels.
    Events,
    /// `POST batch_events`: several events, each to one channel.
    BatchEvents,
    /// `GET channels`: the occupied channels.
    Channels,
    /// `GET channels/{name}`: one channel's state.
    Channel(&'a str),
    /// `GET channels/{name}/users`: a presence channel's users.
    Users(&'a str),
    /// `POST users/{user_id}/terminate_connections`.
    Terminate(&'a str),
}

/// A request's app id and endpoint.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Route<'a> {
    /// `None` for a path without `/apps/{app_id}`: the app is the one its `auth_key` names.
    pub(super) app_id: Option<&'a str>,
    pub(super) endpoint: Endpoint<'a>,
}

/// The route of `method` on `path`.
///
/// # Errors
///
/// 404 for a path that is no endpoint, 405 for another method than the endpoint's.
pub(super) fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, Refusal> {
    let not_found = || Refusal::new(StatusCode::NOT_FOUND, format!("no endpoint {path}"));
    if let Some(rest) = path.strip_prefix("/users/") {
        return match rest.split('/').collect::<Vec<_>>()[..] {
            [user, "terminate_connections"] if !user.is_empty() => {
                let endpoint = Endpoint::Terminate(user);
                check_method(method, &Method::POST, path)?;
                Ok(Route {
                    app_id: None,
                    endpoint,
                })
            }
            _ => Err(not_found()),
        };
    }
    let rest = path.strip_prefix("/apps/").ok_or_else(not_found)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (endpoint, wanted) = match parts[..] {
        [_, "events"] => (Endpoint::Events, Method::POST),
        [_, "batch_events"] => (Endpoint::BatchEvents, Method::POST),
        [_, "channels"] => (Endpoint::Channels, Method::GET),
        [_, "channels", name] if !name.is_empty() => (Endpoint::Channel(name), Method::GET),
        [_, "channels", name, "users"] if !name.is_empty() => (Endpoint::Users(name), Method::GET),
        [_, "users", user, "terminate_connections"] if !user.is_empty() => {
            (Endpoint::Terminate(user), Method::POST)
        }
        _ => return Err(not_found()),
    };
    check_method(method, &wanted, path)?;
    let app_id = parts[0];
    if app_id.is_empty() {
        return Err(not_found());
    }
    Ok(Route {
        app_id: Some(app_id),
        endpoint,
    })
}

fn check_method(method: &Method, wanted: &Method, path: &str) -> Result<(), Refusal> {
    if method == wanted {
        return Ok(());
    }
    let reason = format!("{path} takes {wanted}");
    Err(Refusal::new(StatusCode::METHOD_NOT_ALLOWED, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_is_found_with_its_method() {
        let ok = |method, path| route(&method, path).unwrap();
        assert_eq!(
            ok(Method::POST, "/apps/7/events"),
            Route {
                app_id: Some("7"),
                endpoint: Endpoint::Events
            }
        );
        assert_eq!(
            ok(Method::POST, "/apps/7/batch_events").endpoint,
            Endpoint::BatchEvents
        );
        assert_eq!(
            ok(Method::GET, "/apps/7/channels").endpoint,
            Endpoint::Channels
        );
        assert_eq!(
            ok(Method::GET, "/apps/7/channels/presence-a").endpoint,
            Endpoint::Channel("presence-a")
        );
        assert_eq!(
            ok(Method::GET, "/apps/7/channels/presence-a/users").endpoint,
            Endpoint::Users("presence-a")
        );
        assert_eq!(
            ok(Method::POST, "/apps/7/users/ann/terminate_connections").endpoint,
            Endpoint::Terminate("ann")
        );
        assert_eq!(
            ok(Method::POST, "/users/ann/terminate_connections"),
            Route {
                app_id: None,
                endpoint: Endpoint::Terminate("ann")
            },
            "where the Python library posts it"
        );
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let status = |method, path| route(&method, path).unwrap_err().status;
        assert_eq!(
            status(Method::GET, "/apps/7/events"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status(Method::POST, "/apps/7/channels"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status(Method::GET, "/users/ann/terminate_connections"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        for path in [
            "/apps/7",
            "/apps//events",
            "/apps/7/channels/",
            "/apps/7/x",
            "/api/x",
            "/users/ann",
            "/users//terminate_connections",
        ] {
            assert_eq!(status(Method::POST, path), StatusCode::NOT_FOUND, "{path}");
        }
    }
}
