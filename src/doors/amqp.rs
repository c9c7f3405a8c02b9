//! The RabbitMQ door: topology, the job and event message formats, and confirmed publishing.
//!
//! One durable quorum queue per provider entry (`offboard.jobs.<name>`), bound to a direct exchange by
//! the entry name, so each lane consumes only its own queue; every queue dead-letters to a fanout
//! exchange and its queue (`offboard.dead`), with `x-delivery-limit` so a message that keeps killing
//! the worker ends there instead of looping. Person-level events arrive on an intake queue.

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};

use crate::config::Amqp;
use crate::job::{Job, RawJob};
use crate::outcome::Record;

/// Headers the worker sets on a dead letter.
pub mod header {
    pub const REASON: &str = "x-offboard-reason";
    pub const MESSAGE: &str = "x-offboard-message";
    pub const PROVIDER: &str = "x-offboard-provider";
    pub const ATTEMPTS: &str = "x-offboard-attempts";
    pub const FIRST_FAILURE: &str = "x-offboard-first-failure";
    pub const LAST_FAILURE: &str = "x-offboard-last-failure";
    pub const SOURCE_QUEUE: &str = "x-offboard-source-queue";
}

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("no broker URL: set OFFBOARD_AMQP_URL or amqp.url in the config")]
    NoUrl,
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker did not confirm a publish to `{0}` (nacked or unroutable)")]
    NotConfirmed(String),
}

/// Connects, naming the connection so operators can tell replicas apart in the broker's UI.
pub async fn connect(url: &str, name: &str) -> Result<Connection, AmqpError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Ok(Connection::connect(url, props).await?)
}

fn quorum_args(amqp: &Amqp, dead_letter: bool, single_active: bool) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if dead_letter {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(amqp.dead_letter_exchange.as_str().into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(amqp.delivery_limit as i32),
        );
    }
    if single_active {
        args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    }
    args
}

/// Declares the whole topology; idempotent, so every worker and `enqueue` may call it at start.
pub async fn declare(channel: &Channel, amqp: &Amqp, entries: &[&str]) -> Result<(), AmqpError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            amqp.exchange.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            amqp.dead_letter_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            amqp.dead_letter_queue.as_str().into(),
            queue,
            quorum_args(amqp, false, false),
        )
        .await?;
    channel
        .queue_bind(
            amqp.dead_letter_queue.as_str().into(),
            amqp.dead_letter_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    // The quarantine's log: a stream, read from its start by each worker that takes the gate.
    let mut stream = FieldTable::default();
    stream.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    channel
        .queue_declare(amqp.gate_stream.as_str().into(), queue, stream)
        .await?;
    for entry in entries {
        let name = amqp.queue(entry);
        channel
            .queue_declare(
                name.as_str().into(),
                queue,
                quorum_args(amqp, true, amqp.single_active_consumer),
            )
            .await?;
        channel
            .queue_bind(
                name.as_str().into(),
                amqp.exchange.as_str().into(),
                (*entry).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    declare_intake(channel, amqp).await?;
    channel
        .exchange_declare(
            amqp.control_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            amqp.outcomes_exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Declares what the intake publishes to: the intake queue and, in front of it, the fanout
/// exchange the intake's broker user may write to (writing to the default exchange reaches
/// every queue). Part of [`declare`]; the intake itself calls it only when the workers have not
/// declared the topology yet and its user may configure.
pub async fn declare_intake(channel: &Channel, amqp: &Amqp) -> Result<(), AmqpError> {
    let queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(
            amqp.intake_queue.as_str().into(),
            queue,
            quorum_args(amqp, true, false),
        )
        .await?;
    channel
        .exchange_declare(
            amqp.intake_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            amqp.intake_queue.as_str().into(),
            amqp.intake_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Checks that `exchange` exists without declaring it: for a component whose broker user may
/// not configure the topology (the intake, an operator). The broker answers 404 when the
/// workers have not declared it yet.
pub async fn expect_exchange(channel: &Channel, exchange: &str) -> Result<(), AmqpError> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// A queue of this connection's own (exclusive, gone with it), bound to `exchange` with `key`
/// when given, and consumed without acknowledgements: for replies, commands and followers, where a
/// message lost with the connection is no loss. Returns the queue's name and its consumer.
pub async fn private_consumer(
    channel: &Channel,
    bind: Option<(&str, &str)>,
) -> Result<(ShortString, lapin::Consumer), AmqpError> {
    let q = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    if let Some((exchange, key)) = bind {
        channel
            .queue_bind(
                q.name().clone(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let consumer = channel
        .basic_consume(
            q.name().clone(),
            "".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((q.name().clone(), consumer))
}

/// A job message: the CSV row's fields, JSON, with a job id always set by its publisher.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobMessage {
    pub job_id: String,
    pub provider: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

impl JobMessage {
    pub fn from_job(job: &Job) -> JobMessage {
        let (organization, transfer_to) = (
            job.subject.organization(),
            job.subject.transfer_to().map(|d| d.as_str().to_owned()),
        );
        JobMessage {
            job_id: job.id.to_string(),
            provider: job.provider.to_string(),
            user: job.subject.user(),
            organization,
            transfer_to,
            reason: job.reason.as_deref().map(str::to_owned),
            requested_by: job.requested_by.as_deref().map(str::to_owned),
        }
    }
}

/// A person-level event: one person, several providers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub targets: Vec<EventTarget>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub requested_by: Option<String>,
    #[serde(default)]
    pub event_id: Option<String>,
    /// The door it came through (`okta`, `scim`); unset for a person-level message (`amqp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub door: Option<String>,
    /// From an intake in shadow mode: counted and recorded, never sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

impl Event {
    /// The door it came through, for the quarantine's counts: `okta`, `scim`, or `amqp` (a
    /// person-level message, whatever it says).
    pub fn door(&self) -> &'static str {
        match self.door.as_deref() {
            Some("okta") => "okta",
            Some("scim") => "scim",
            _ => "amqp",
        }
    }

    /// Who it is about, for the quarantine's counts: the first target's user, lowercased, so
    /// that one person's events through two doors count once.
    pub fn person(&self) -> String {
        self.targets
            .first()
            .map(|t| t.user.trim().to_lowercase())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventTarget {
    pub provider: String,
    pub user: String,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub transfer_to: Option<String>,
    /// Set by the intake: `user` is meant as the person's email (the identity system's login or
    /// email). One that is not an email address is no one to look up: the job ends `invalid`,
    /// reason `no_email`, rather than being taken for a provider's id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_email: bool,
}

impl EventTarget {
    /// Whether `user` must be an email address and is not one.
    pub fn lacks_email(&self) -> bool {
        let user = self.user.trim();
        self.by_email
            && !user
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
    }

    /// The target as a raw job of the event, with a job id stable across redeliveries.
    pub fn raw<'a>(&'a self, event: &'a Event, event_id: &str, index: usize) -> RawJob<'a> {
        RawJob {
            provider: Some(self.provider.as_str().into()),
            user: Some(self.user.as_str().into()),
            organization: self.organization.as_deref().map(Into::into),
            transfer_to: self.transfer_to.as_deref().map(Into::into),
            job_id: Some(format!("{event_id}:{index}").into()),
            reason: event.reason.as_deref().map(Into::into),
            requested_by: event.requested_by.as_deref().map(Into::into),
        }
    }
}

/// An id for a message that carries none, stable across redeliveries and across upgrades: its
/// `message_id` property, else the SHA-256 of its body in hex (a specified hash: the standard
/// library's `DefaultHasher` may change between releases, and a worker after an upgrade must still
/// recognise a job it recorded before).
pub fn stable_id(props: &BasicProperties, body: &[u8]) -> String {
    if let Some(id) = props
        .message_id()
        .as_ref()
        .map(|s| s.as_str())
        .filter(|s| !s.is_empty())
    {
        return id.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    format!("msg-sha256-{}", hex::encode(digest))
}

/// Properties of a job message: persistent JSON.
pub fn job_properties(job_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(job_id.into())
}

/// A channel in confirm mode: every publish is acknowledged by the broker, or reported.
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    pub async fn new(connection: &Connection) -> Result<Publisher, AmqpError> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher { channel })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes and waits for the broker's confirmation. `mandatory`: an unroutable message (no
    /// queue for that provider) comes back, and counts as not confirmed.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        confirm_publish(&self.channel, exchange, routing_key, body, properties).await
    }
}

/// Publishes on a channel in confirm mode and waits for the broker's confirmation.
pub async fn confirm_publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), AmqpError> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties,
        )
        .await?
        .await?;
    if confirm.is_ack() && confirm.take_message().is_none() {
        Ok(())
    } else {
        Err(AmqpError::NotConfirmed(format!("{exchange}/{routing_key}")))
    }
}

/// A header's value as text.
pub fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongUInt(n) => Some(n.to_string()),
        AMQPValue::Timestamp(n) => Some(n.to_string()),
        _ => None,
    }
}

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

impl super::Ack for Part {
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
impl super::Ack for &Acker<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_broker_urls_password_is_in_no_error() {
        for url in [
            "amqp://offboard:s3cr3t-pw@127.0.0.1:notaport/%2f",
            "amqp://offboard:s3cr3t-pw@127.0.0.1:1/%2f",
            "amqp//offboard:s3cr3t-pw@127.0.0.1/",
            "amqps://offboard:s3cr3t-pw@[::1/",
        ] {
            let e = connect(url, "test").await.expect_err("no broker there");
            let text = format!("{e} {e:?}");
            assert!(!text.contains("s3cr3t-pw"), "{url}: {text}");
        }
    }

    #[test]
    fn stable_id_prefers_message_id_and_else_hashes_the_body() {
        let p = BasicProperties::default().with_message_id("m-1".into());
        assert_eq!(stable_id(&p, b"x"), "m-1");
        let none = BasicProperties::default();
        assert_ne!(
            stable_id(&none, b"{\"a\":1}"),
            stable_id(&none, b"{\"a\":2}")
        );
        // Pinned: the same body gets the same id on every build, toolchain and machine.
        assert_eq!(
            stable_id(&none, b"{\"a\":1}"),
            "msg-sha256-015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
    }

    #[test]
    fn an_event_splits_into_jobs_with_stable_ids() {
        let e: Event = serde_json::from_str(
            r#"{"targets":[{"provider":"factory","user":"a@b.co"},{"provider":"cognee","user":"u","organization":"t"}],"reason":"left","event_id":"ev-7"}"#,
        )
        .unwrap();
        let raws: Vec<_> = e
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| t.raw(&e, "ev-7", i))
            .collect();
        assert_eq!(raws[1].job_id.as_deref(), Some("ev-7:1"));
        assert_eq!(raws[1].organization.as_deref(), Some("t"));
        assert_eq!(raws[0].reason.as_deref(), Some("left"));
        assert!(serde_json::from_str::<Event>(r#"{"targets":[],"extra":1}"#).is_err());
    }
}
