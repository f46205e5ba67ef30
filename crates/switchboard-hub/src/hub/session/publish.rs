//! A session's publishes: checked, handed to the broker at once, and answered in the order
//! they were made (an ack, or an error), before any later reply.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use serde_json::value::RawValue;
use tracing::Instrument as _;

use super::{Session, unavailable};
use crate::hooks::PublishDecision;
use crate::hub::shared::Shared;
use crate::protocol::{ErrorCode, Reply, RequestError, RequestId};
use crate::request_id::new_request_id;
use crate::rules::Access;

/// The most publishes of one connection waiting for the broker: past this the session reads
/// no more requests until the oldest is answered.
const MAX_IN_FLIGHT: usize = 64;

/// A publish handed to the broker, whose answer (the ack, or an error) is not sent yet.
type InFlight<'h> = Pin<Box<dyn Future<Output = Option<String>> + Send + 'h>>;

/// Publishes in flight, oldest first. The futures are `Send` but not `Sync`, and the session
/// must be `Sync` (its methods hold `&self` across awaits): the mutex provides that, and is
/// never locked, only reached through `&mut self`.
#[derive(Default)]
pub(super) struct Queue<'h>(std::sync::Mutex<VecDeque<InFlight<'h>>>);

impl<'h> Queue<'h> {
    pub(super) fn get(&mut self) -> &mut VecDeque<InFlight<'h>> {
        self.0.get_mut().unwrap_or_else(|e| e.into_inner())
    }
}

impl<'h> Session<'h> {
    /// Checks a publish and hands it to the broker, answered later (see `in_flight`).
    pub(super) async fn publish(
        &mut self,
        id: Option<RequestId>,
        channel: String,
        mut data: Box<RawValue>,
    ) -> Result<(), RequestError> {
        self.check(id.as_ref(), &channel, Access::Publish)?;
        let size = data.get().len();
        if size > self.hub.config.max_data_size {
            let reason = format!(
                "data is {size} bytes, limit is {}",
                self.hub.config.max_data_size
            );
            return Err(RequestError::new(id, ErrorCode::TooLarge, reason));
        }
        // The id is made only when the span is on: none is logged otherwise.
        let span = tracing::debug_span!(
            "publish",
            conn = %self.info.conn,
            request_id = tracing::field::Empty
        );
        if !span.is_disabled() {
            span.record("request_id", new_request_id());
        }
        if let Some(hooks) = &self.hub.config.hooks {
            let decision = hooks.publish(&self.info, &channel, &data);
            match decision.instrument(span.clone()).await {
                PublishDecision::Allow => {}
                PublishDecision::Rewrite(rewritten) => data = rewritten,
                PublishDecision::Refuse(reason) => {
                    return Err(RequestError::new(id, ErrorCode::Forbidden, reason));
                }
            }
        }
        if self.in_flight.get().len() >= MAX_IN_FLIGHT
            && let Some(reply) = answered(self.in_flight.get()).await
        {
            self.send(reply).await;
        }
        let hub: &'h Shared = self.hub;
        // A broker may do its work in the call (`LocalBroker` delivers there): in the span.
        let broker = tracing::debug_span!(parent: &span, "broker", op = "publish", %channel);
        let published = broker
            .in_scope(|| hub.broker.publish(&channel, self.info.clone(), data))
            .instrument(broker);
        let conn = self.info.conn.clone();
        self.in_flight.get().push_back(Box::pin(
            async move {
                let position = match published.await {
                    Ok(position) => position,
                    Err(e) => {
                        let e = unavailable(id, &e);
                        tracing::debug!(%conn, error = %e, "request refused");
                        return Some(String::from(&e));
                    }
                };
                let id = id?;
                let reply = Reply::Ack {
                    id: &id,
                    channel: &channel,
                    offset: position.offset,
                };
                Some(reply.to_json())
            }
            .instrument(span),
        ));
        Ok(())
    }
}

/// The reply of the oldest publish in flight, once the broker answered it (`None`: the
/// publish had no id, so nothing is sent).
pub(super) async fn answered(in_flight: &mut VecDeque<InFlight<'_>>) -> Option<String> {
    let reply = in_flight.front_mut()?.await;
    in_flight.pop_front();
    reply
}
