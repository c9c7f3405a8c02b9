//! How a delivery ends, once its record is on disk: acknowledged, dead-lettered with its reason in
//! headers, handed back, or requeued.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel};

use crate::outcome::Record;

use super::{AmqpError, confirm_publish, header, header_str};

/// Why a message is dead-lettered, for its headers.
pub struct Why<'a> {
    pub provider: Option<&'a str>,
    pub reason: &'a str,
    pub message: &'a str,
    pub attempts: u32,
}

/// Publishes a dead letter to `exchange` (publisher confirm): the original body, its headers, and
/// why, with the first and last failure times.
pub async fn dead_letter(
    channel: &Channel,
    exchange: &str,
    delivery: &Delivery,
    source_queue: &str,
    why: Why<'_>,
) -> Result<(), AmqpError> {
    let Why {
        provider,
        reason,
        message,
        attempts,
    } = why;
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    let now = now_secs();
    let first = header_str(&delivery.properties, header::FIRST_FAILURE)
        .and_then(|s| s.parse().ok())
        .unwrap_or(now);
    headers.insert(header::REASON.into(), AMQPValue::LongString(reason.into()));
    headers.insert(
        header::MESSAGE.into(),
        AMQPValue::LongString(
            message
                .chars()
                .take(500)
                .collect::<String>()
                .as_str()
                .into(),
        ),
    );
    if let Some(p) = provider {
        headers.insert(header::PROVIDER.into(), AMQPValue::LongString(p.into()));
    }
    headers.insert(
        header::ATTEMPTS.into(),
        AMQPValue::LongLongInt(attempts as i64),
    );
    headers.insert(header::FIRST_FAILURE.into(), AMQPValue::LongLongInt(first));
    headers.insert(header::LAST_FAILURE.into(), AMQPValue::LongLongInt(now));
    headers.insert(
        header::SOURCE_QUEUE.into(),
        AMQPValue::LongString(source_queue.into()),
    );
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(
            delivery
                .properties
                .content_type()
                .clone()
                .unwrap_or_else(|| "application/json".into()),
        )
        .with_headers(headers);
    if let Some(id) = delivery.properties.message_id() {
        props = props.with_message_id(id.clone());
    }
    confirm_publish(channel, exchange, source_queue, &delivery.data, props).await
}

/// Acknowledges a message whose outcome is recorded.
pub async fn ack(delivery: &Delivery) {
    match delivery.acker.ack(BasicAckOptions::default()).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("ack not sent (channel closed): the message will be redelivered")
        }
        Err(e) => tracing::warn!(error = %e, "ack failed: the message will be redelivered"),
    }
}

/// Hands a message the lane will not run now (it holds or halted) back to the end of its queue:
/// republished with the same body and properties (publisher confirm), then the original
/// acknowledged. Unlike `basic.nack` with requeue, this never counts toward the queue's delivery
/// limit, which RabbitMQ before 4.3 increments on every return: a message held more times than
/// `amqp.delivery_limit` would otherwise be dead-lettered unrun. If the republish is not
/// confirmed, the message is returned with a nack instead (nothing is lost either way).
pub async fn hand_back(channel: &Channel, queue: &str, delivery: &Delivery) {
    let mut props = delivery.properties.clone();
    if let Some(headers) = props.headers().as_ref() {
        // The count of the delivery being handed back: the new message starts from zero.
        let kept: std::collections::BTreeMap<_, _> = headers
            .inner()
            .iter()
            .filter(|(k, _)| k.as_str() != "x-delivery-count")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        props = props.with_headers(kept.into());
    }
    match confirm_publish(channel, "", queue, &delivery.data, props).await {
        Ok(()) => ack(delivery).await,
        Err(e) => {
            tracing::warn!(error = %e, queue, "handing a message back failed: returning it with a nack");
            requeue(delivery).await;
        }
    }
}

/// Returns a message to its queue with `basic.nack` (counted toward the delivery limit): for one
/// whose outcome could not be recorded.
pub async fn requeue(delivery: &Delivery) {
    let _ = delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await;
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// How one delivery goes back to the broker once its outcome is recorded: the door's half of the
/// acknowledgement rules, so the worker never speaks the wire.
pub struct Acker<'a> {
    pub channel: &'a Channel,
    /// The queue it came from (a hand-back goes to its end; a dead letter names it).
    pub queue: &'a str,
    pub dead_letter_exchange: &'a str,
    pub delivery: &'a Delivery,
}

/// What the broker was told about a delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    Acknowledged,
    /// Published to the dead-letter exchange (confirmed), then acknowledged.
    DeadLettered {
        provider: Option<String>,
        reason: &'static str,
    },
    /// Dead-lettering failed, or the outcome could not be recorded: back to its queue, to be tried
    /// again.
    Returned,
}

impl Acker<'_> {
    /// Tells the broker what became of the delivery, once `record` is on disk: done (removed,
    /// already absent, protected, a copy recorded as a duplicate) is acknowledged; anything else
    /// (failed, invalid, a job not sent to its organization) is dead-lettered with its reason,
    /// then acknowledged, so a replay after a fix runs it again.
    pub async fn settled(&self, record: &Record) -> Settled {
        if !record.fate().dead_lettered() {
            ack(self.delivery).await;
            return Settled::Acknowledged;
        }
        let reason = record.reason.map_or("failed", |r| r.as_str());
        let why = Why {
            provider: record.provider.as_deref(),
            reason,
            message: record.error.as_ref().map_or("", |e| e.message.as_str()),
            attempts: record.attempts,
        };
        match dead_letter(
            self.channel,
            self.dead_letter_exchange,
            self.delivery,
            self.queue,
            why,
        )
        .await
        {
            Ok(()) => {
                ack(self.delivery).await;
                Settled::DeadLettered {
                    provider: record.provider.clone(),
                    reason,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, job_id = %record.job_id, "dead-lettering failed: the message goes back to its queue");
                requeue(self.delivery).await;
                Settled::Returned
            }
        }
    }

    /// Acknowledges without a new record (a redelivery of a job the report already settled).
    pub async fn ack(&self) {
        ack(self.delivery).await
    }

    /// See [`hand_back`].
    pub async fn hand_back(&self) {
        hand_back(self.channel, self.queue, self.delivery).await
    }

    /// See [`requeue`].
    pub async fn requeue(&self) {
        requeue(self.delivery).await
    }
}

/// One part of a message (a target of an intake event) recorded on its own; the message is
/// acknowledged once all its parts are. Settles as whether the record is on disk.
pub struct Part;

impl crate::doors::Ack for Part {
    type Settled = bool;
    const WAITS_FOR_DISK: bool = true;

    async fn settled(self, _: &Record) -> bool {
        true
    }

    async fn unrecorded(self) -> bool {
        false
    }
}

/// A broker forgets what it was told to: it hears of an outcome only once that is on disk.
impl crate::doors::Ack for &Acker<'_> {
    type Settled = Settled;
    const WAITS_FOR_DISK: bool = true;

    async fn settled(self, record: &Record) -> Settled {
        Acker::settled(self, record).await
    }

    async fn unrecorded(self) -> Settled {
        self.requeue().await;
        Settled::Returned
    }
}
