//! Publishing what identity systems push into the broker's intake queue, each message confirmed
//! by the broker before the sender hears success. One connection and one confirm-mode channel,
//! shared by every request and made anew after a failure.

use std::time::Duration;

use futures_util::future::try_join_all;
use lapin::options::BasicPublishOptions;
use lapin::{Channel, Connection};
use thiserror::Error;

use crate::config::{Amqp, IntakeTarget};
use crate::doors::amqp::{self, AmqpError, Event, EventTarget, Publisher};

#[derive(Debug, Error)]
pub enum PublishError {
    #[error("the broker did not confirm within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Amqp(#[from] AmqpError),
}

/// The intake's way into the broker.
pub struct IntakePublisher {
    url: String,
    amqp: Amqp,
    timeout: Duration,
    /// `[intake] mode = "shadow"`: every event is stamped so, and nothing of it is sent.
    shadow: bool,
    link: tokio::sync::Mutex<Option<(Connection, Channel)>>,
}

impl IntakePublisher {
    pub fn new(url: String, amqp: Amqp, timeout: Duration) -> Self {
        IntakePublisher {
            url,
            amqp,
            timeout,
            shadow: false,
            link: Default::default(),
        }
    }

    /// The same, in shadow mode when `shadow`.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// A connected confirm-mode channel, connecting if needed. The topology is the workers': the
    /// intake only checks that its exchange is there (a passive declare needs no permission).
    async fn channel(&self) -> Result<Channel, AmqpError> {
        let mut link = self.link.lock().await;
        if let Some((conn, channel)) = link.as_ref() {
            if conn.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *link = None;
        let conn = amqp::connect(&self.url, "offboard-intake").await?;
        let mut publisher = Publisher::new(&conn).await?;
        if let Err(e) = amqp::expect_exchange(publisher.channel(), &self.amqp.intake_exchange).await
        {
            // No worker has declared the topology yet: declare our part, if our user may (a
            // user narrowed to the intake's role may not, and waits for a worker).
            tracing::warn!(error = %e, exchange = self.amqp.intake_exchange, "the intake's exchange is not there yet: declaring it");
            publisher = Publisher::new(&conn).await?;
            amqp::declare_intake(publisher.channel(), &self.amqp).await?;
        }
        let channel = publisher.channel().clone();
        *link = Some((conn, channel.clone()));
        Ok(channel)
    }

    /// Forgets the connection after a failure, so the next request makes a new one. The lock is
    /// let go before the close: a blocked broker may never answer it, and the close waits in a
    /// task of its own (bounded by the publish timeout), not in front of the next request.
    /// Another request holding the lock is connecting afresh already: then there is nothing to
    /// forget, and this one's answer does not wait for that.
    async fn reset(&self) {
        let Ok(mut held) = self.link.try_lock() else {
            return;
        };
        let link = held.take();
        drop(held);
        if let Some((conn, _)) = link {
            let timeout = self.timeout;
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, conn.close(200, "reconnecting".into())).await;
            });
        }
    }

    /// Publishes every event to the intake queue, persistent, and returns once the broker
    /// confirmed them all, or fails (after at most the publish timeout).
    pub async fn publish(&self, events: &[Event]) -> Result<(), PublishError> {
        if events.is_empty() {
            return Ok(());
        }
        let done = tokio::time::timeout(self.timeout, self.publish_all(events)).await;
        let result = match done {
            Ok(r) => r.map_err(PublishError::from),
            Err(_) => Err(PublishError::Timeout(self.timeout)),
        };
        if result.is_err() {
            self.reset().await;
        }
        result
    }

    async fn publish_all(&self, events: &[Event]) -> Result<(), AmqpError> {
        let channel = self.channel().await?;
        // Every message is sent before the first confirmation is awaited: a batch of hundreds
        // costs about one round trip, not hundreds.
        let mut confirms = Vec::with_capacity(events.len());
        for event in events {
            let body = if self.shadow && !event.shadow {
                let mut event = event.clone();
                event.shadow = true;
                serde_json::to_vec(&event)
            } else {
                serde_json::to_vec(event)
            }
            .expect("an event serializes");
            let id = event.event_id.as_deref().unwrap_or_default();
            let confirm = channel
                .basic_publish(
                    self.amqp.intake_exchange.as_str().into(),
                    "".into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &body,
                    amqp::job_properties(id),
                )
                .await?;
            confirms.push(confirm);
        }
        let confirmations = try_join_all(confirms).await?;
        for c in confirmations {
            if !c.is_ack() || c.take_message().is_some() {
                return Err(AmqpError::NotConfirmed(self.amqp.intake_exchange.clone()));
            }
        }
        Ok(())
    }
}

/// The intake message for one person: removed from every configured target, with a job id per
/// target derived from `event_id` (so a redelivered event removes once).
pub fn event(
    door: &str,
    targets: &[IntakeTarget],
    person: &str,
    event_id: String,
    reason: String,
    requested_by: String,
) -> Event {
    Event {
        targets: targets
            .iter()
            .map(|t| EventTarget {
                provider: t.provider.clone(),
                user: person.to_owned(),
                organization: t.organization.clone(),
                transfer_to: None,
                by_email: true,
            })
            .collect(),
        reason: Some(reason),
        requested_by: Some(requested_by),
        event_id: Some(event_id),
        door: Some(door.to_owned()),
        shadow: false,
        reactivated: false,
    }
}

/// The intake message for a person made active again: their scheduled removals are cancelled,
/// recorded with `event_id`; nothing is removed.
pub fn reactivation(door: &str, person: &str, event_id: String, requested_by: String) -> Event {
    Event {
        targets: vec![EventTarget {
            provider: crate::job::EVERY_PROVIDER.to_owned(),
            user: person.to_owned(),
            organization: None,
            transfer_to: None,
            by_email: true,
        }],
        reason: Some(format!("{door} reactivation")),
        requested_by: Some(requested_by),
        event_id: Some(event_id),
        door: Some(door.to_owned()),
        shadow: false,
        reactivated: true,
    }
}
