//! A session's channels: the rules and hooks asked, the subscription (its `subscribed`
//! reply, then the channel's events from the fan-out, and presence) and its end.

use super::super::fanout::Events;
use super::super::recovery;
use super::{Session, unavailable};
use crate::broker::StreamPosition;
use crate::hooks::SubscribeDecision;
use crate::protocol::{ErrorCode, Reply, RequestError, RequestId};
use crate::rules::{Access, check};

impl<'h> Session<'h> {
    /// Refuses, with `forbidden`, what the channel rules do not allow this client.
    pub(super) fn check(
        &self,
        id: Option<&RequestId>,
        channel: &str,
        access: Access,
    ) -> Result<(), RequestError> {
        check(&self.hub.config.rules, channel, self.user(), access)
            .map_err(|reason| RequestError::new(id.cloned(), ErrorCode::Forbidden, reason))
    }

    pub(super) async fn subscribe(
        &mut self,
        id: Option<RequestId>,
        channel: String,
        since: Option<StreamPosition>,
        join_leave: bool,
    ) -> Result<(), RequestError> {
        self.check(id.as_ref(), &channel, Access::Read)?;
        if let Some(hooks) = &self.hub.config.hooks
            && !self.subscriptions.contains(&channel)
            && let SubscribeDecision::Refuse(reason) = hooks.subscribe(&self.info, &channel).await
        {
            return Err(RequestError::new(id, ErrorCode::Forbidden, reason));
        }
        self.join(id, channel, since, join_leave).await
    }

    /// Subscribes, rules already checked (or waived, when the server side asks): the
    /// `subscribed` reply, then the channel's events (`join` and `leave` only if `join_leave`).
    pub(super) async fn join(
        &mut self,
        id: Option<RequestId>,
        channel: String,
        since: Option<StreamPosition>,
        join_leave: bool,
    ) -> Result<(), RequestError> {
        if self.subscriptions.contains(&channel) {
            let reason = format!("already subscribed to {channel}");
            return Err(RequestError::new(id, ErrorCode::AlreadySubscribed, reason));
        }
        if self.subscriptions.len() >= self.hub.config.max_subscriptions {
            self.hub.limits.subscription_limited();
            let reason = format!(
                "a connection may subscribe to at most {} channels",
                self.hub.config.max_subscriptions
            );
            return Err(RequestError::new(
                id,
                ErrorCode::TooManySubscriptions,
                reason,
            ));
        }
        let fanout = &self.hub.fanout;
        let events = Events {
            join_leave,
            tap: None,
        };
        fanout.add_pending(&channel, self.id, &self.sender, &self.mailbox, events);
        if let Err(e) = self.hub.interest.attach(&channel).await {
            fanout.remove(&channel, self.id);
            return Err(unavailable(id, &e));
        }
        let range = recovery::range(since.as_ref(), self.hub.config.max_replay);
        let history = match self.hub.broker.history(&channel, range).await {
            Ok(history) => history,
            Err(e) => {
                fanout.remove(&channel, self.id);
                self.hub.interest.detach(&channel).await;
                return Err(unavailable(id, &e));
            }
        };
        let recovery = since
            .as_ref()
            .map(|since| recovery::recover(since, &history));
        let (recovered, code, reason, publications) = match &recovery {
            None => (None, None, None, &[][..]),
            Some(Ok(())) => (Some(true), None, None, &history.publications[..]),
            Some(Err((code, reason))) => (Some(false), Some(*code), Some(reason.as_str()), &[][..]),
        };
        let reply = Reply::Subscribed {
            id: id.as_ref(),
            channel: &channel,
            epoch: &history.position.epoch,
            offset: history.position.offset,
            recovered,
            code,
            reason,
            publications,
        };
        self.subscriptions.insert(channel.clone());
        let offset = history.position.offset;
        fanout.activate(&channel, self.id, vec![reply.to_json()], offset, None);
        if let Err(e) = self.hub.broker.join(&channel, self.info.clone()).await {
            tracing::warn!(%channel, error = %e, "presence join failed");
        }
        Ok(())
    }

    /// Leaves a channel: no more events, out of presence, and the node's interest dropped.
    pub(super) async fn leave(&self, channel: &str) {
        self.hub.fanout.remove(channel, self.id);
        if let Err(e) = self.hub.broker.leave(channel, self.info.clone()).await {
            tracing::warn!(%channel, error = %e, "presence leave failed");
        }
        self.hub.interest.detach(channel).await;
    }
}
