//! A Pusher connection's user: its sign-in, the server-to-user channel it is then on, and
//! its watchlist, whose users' online channels it follows.

use super::Session;
use crate::broker::ClientInfo;
use crate::hub::pusher_wire::{Roster, hub_channel};
use crate::pusher::PusherCode;
use crate::pusher::names::{self, MAX_USER_ID, MAX_WATCHLIST};
use crate::pusher::replies;
use crate::pusher::signature::check_user_auth;

impl Session<'_> {
    /// Signs the connection in as the user `user_data` names, when the app signed it: the
    /// user's server-to-user channel subscribed, `signin_success`, and the connection its
    /// user's for the server side. A refusal is `pusher:error` 4009, and the connection stays.
    pub(super) async fn signin(&mut self, auth: &str, user_data: &str) {
        let refused = PusherCode::Unauthorized;
        if let Err(e) = check_user_auth(self.app, auth, &self.socket_id, user_data) {
            return self
                .error(Some(refused), &format!("Invalid signature: {e}"))
                .await;
        }
        let Some(signed_in) = names::signed_in_user(user_data) else {
            let message = format!(
                "user_data must be JSON with an id, a string of 1 to {MAX_USER_ID} bytes, and \
                 an optional watchlist of at most {MAX_WATCHLIST} such ids"
            );
            return self.error(Some(refused), &message).await;
        };
        let user = signed_in.id;
        if let Some(current) = &self.user {
            if *current == user {
                return self.send(replies::signin_success(user_data)).await;
            }
            let message = format!("already signed in as {current}");
            return self.error(Some(refused), &message).await;
        }
        let (hub, id) = (self.hub, self.id);
        let channel = hub_channel(&self.app.id, &names::server_to_user(&user));
        if let Err(e) = self.follow(&channel, false).await {
            return self.error(None, &format!("sign-in failed: {e}")).await;
        }
        let succeeded = vec![replies::signin_success(user_data)];
        hub.fanout.activate(&channel, id, succeeded, 0, None);
        // A sign-in names the connection's user over a presence member's.
        self.named = true;
        let hub_user = crate::pusher::hub_user(&self.app.id, &user);
        hub.registry.rename(&self.info.conn, &hub_user);
        let online = hub_channel(&self.app.id, &names::online_channel(&user));
        if let Err(e) = hub.broker.join(&online, self.online_member(&user)).await {
            tracing::warn!(channel = %online, error = %e, "presence join failed");
        }
        self.user = Some(user);
        self.watch(&signed_in.watchlist).await;
    }

    /// This connection in its user's online channel.
    pub(super) fn online_member(&self, user: &str) -> ClientInfo {
        ClientInfo {
            user: user.to_owned(),
            conn: self.info.conn.clone(),
            authenticated: true,
            info: None,
        }
    }

    /// Subscribes to the online channels of `users`: a first `watchlist_events` with those
    /// online and those offline, read from the channels' presence, then each change.
    async fn watch(&mut self, users: &[String]) {
        let (hub, id) = (self.hub, self.id);
        let mut watched = Vec::with_capacity(users.len());
        for user in users {
            let channel = hub_channel(&self.app.id, &names::online_channel(user));
            if let Err(e) = self.follow(&channel, true).await {
                tracing::warn!(%channel, error = %e, "watchlist channel unavailable");
                continue;
            }
            let roster = match hub.broker.presence(&channel).await {
                Ok(clients) => Roster::of(&clients),
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "watchlist presence unread");
                    Roster::default()
                }
            };
            let online = !roster.members().members.is_empty();
            self.watching.push(channel.clone());
            watched.push((channel, user.as_str(), online, roster));
        }
        let of = |online: bool| -> Vec<&str> {
            let users = watched.iter().filter(|w| w.2 == online);
            users.map(|w| w.1).collect()
        };
        let first = replies::watchlist_events(&of(true), &of(false));
        // The first state goes out ahead of every change held meanwhile.
        let mut replies = vec![first];
        for (channel, _, _, roster) in watched {
            hub.fanout
                .activate(&channel, id, std::mem::take(&mut replies), 0, Some(roster));
        }
    }

    /// Answers a subscribe to a server-to-user channel, as pusher-js sends after its sign-in:
    /// the connection is on its own user's since the sign-in, and never on another's.
    pub(super) async fn subscribe_user_channel(&self, name: &str) {
        let own = self.user.as_deref().map(names::server_to_user);
        let reply = if own.as_deref() == Some(name) {
            replies::subscription_succeeded(name, None)
        } else {
            let error = "a server-to-user channel is its signed-in user's only";
            replies::subscription_error(name, "AuthError", error, 403)
        };
        self.send(reply).await;
    }
}
