//! The topology the workers own: quorum queues per entry, the dead-letter exchange and queue,
//! the intake queue, and private reply queues.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::config::Amqp;

use super::{AmqpError, quorum_args};

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
    super::declare_stream(channel, &amqp.gate_stream).await?;
    // Where scheduled jobs wait, and the schedule's log.
    super::declare_schedule(channel, amqp).await?;
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
