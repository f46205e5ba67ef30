//! Client events (`client-*`): on private and presence channels when the app allows them,
//! at Pusher's rate, never sent back to their sender, and told to the app's webhooks.

use serde_json::value::RawValue;

use super::{CLIENT_EVENTS_PER_SECOND, Session};
use crate::hub::pusher_wire::{Envelope, hub_channel};
use crate::pusher::frames::{MAX_EVENT_DATA, PusherCode};
use crate::pusher::names::ChannelKind;

impl Session<'_> {
    /// Publishes a client event to the channel's other subscribers, when the app allows them
    /// and the channel takes them.
    pub(super) async fn client_event(&mut self, event: &str, name: &str, data: &RawValue) {
        if !self.app.client_events {
            let message = "client events are not enabled for this app";
            return self.error(None, message).await;
        }
        if !ChannelKind::of(name).takes_client_events() {
            let message = "client events are only for private and presence channels";
            return self.error(None, message).await;
        }
        let Some(member) = self.channels.get(name) else {
            let message = format!("client event on {name}, which this connection is not on");
            return self.error(None, &message).await;
        };
        let member = member.clone();
        if !self.client_events.try_take() {
            let message = format!(
                "Client event rejected - only {CLIENT_EVENTS_PER_SECOND} per second allowed"
            );
            return self
                .error(Some(PusherCode::ClientEventRateLimit), &message)
                .await;
        }
        let limit = MAX_EVENT_DATA.min(self.hub.config.max_data_size);
        let size = data.get().len();
        if size > limit {
            let message =
                format!("Payload too large: client event data is {size} bytes, limit is {limit}");
            return self.error(None, &message).await;
        }
        let envelope = Envelope {
            event: event.into(),
            data,
            socket_id: Some(self.socket_id.as_str().into()),
            user_id: member.as_ref().map(|m| m.user.as_str().into()),
        };
        let envelope_data = envelope.to_raw();
        let channel = hub_channel(&self.app.id, name);
        let user_id = member.as_ref().map(|m| m.user.clone());
        let from = member.unwrap_or_else(|| self.info.clone());
        let published = self.hub.broker.publish(&channel, from, envelope_data).await;
        match published {
            Ok(_) => self.hub.pusher_hooks.client_event(
                &self.app.id,
                name,
                event,
                data,
                &self.socket_id,
                user_id.as_deref(),
            ),
            Err(e) => {
                self.error(None, &format!("client event not sent: {e}"))
                    .await;
            }
        }
    }
}
