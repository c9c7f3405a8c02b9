//! Logs kept as RabbitMQ streams, and the one holder at a time that writes each: an exclusive
//! queue as the lock, a replay from the start up to a mark of the reader's own, confirmed appends.
//!
//! A stream can be read from any offset by anyone without taking anything out, and survives kill
//! -9 of any process, a broker restart and a failover: the gate's quarantine log and the
//! schedule's log are both kept this way.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{AmqpError, confirm_publish};

/// How often a process that is not the holder tries to take the lock.
const LOCK_RETRY: Duration = Duration::from_secs(1);

/// Declares the exclusive queue `lock` and keeps it (on the returned channel) until the
/// connection closes; `None` when the session ended first. Another holder makes the broker answer
/// RESOURCE_LOCKED (405), which closes only that channel: we try again every second, so a
/// standby takes over once the broker sees the holder's connection gone. `what` names the role
/// in the log.
pub async fn take_lock(
    connection: &Connection,
    lock: &str,
    what: &str,
    session: &CancellationToken,
) -> Result<Option<Channel>, AmqpError> {
    let mut said = false;
    loop {
        let channel = connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                lock.into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(_) => return Ok(Some(channel)),
            Err(e) if is_locked(&e) => {
                if !said {
                    tracing::info!("another worker is the {what}; this one takes over if it goes");
                    said = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            _ = session.cancelled() => return Ok(None),
            _ = tokio::time::sleep(LOCK_RETRY) => {}
        }
    }
}

fn is_locked(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 405)
}

/// The mark a reader appends to know where the past ends: `{"entry":"mark","nonce":...}`, in
/// the shape of every log's own entries.
#[derive(Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
enum Marker {
    Mark { nonce: String },
}

/// Reads `stream` from its start, handing each entry's body to `apply`, up to a mark appended
/// (through `confirms`, a channel in confirm mode) once the reader is attached: everything
/// before the mark is the past. Returns how many entries were read and the mark's offset (to
/// [`follow`] from); `None` if the session ended first.
pub async fn replay(
    connection: &Connection,
    confirms: &Channel,
    stream: &str,
    session: &CancellationToken,
    mut apply: impl FnMut(&[u8]),
) -> Result<Option<(u64, i64)>, AmqpError> {
    let channel = connection.create_channel().await?;
    // A stream consumer needs a prefetch and acknowledgements (they are its credit).
    channel.basic_qos(1000, BasicQosOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-stream-offset".into(),
        AMQPValue::LongString("first".into()),
    );
    let mut consumer = channel
        .basic_consume(
            stream.into(),
            "offboard-replay".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await?;
    let nonce = uuid::Uuid::new_v4().to_string();
    append(
        confirms,
        stream,
        &Marker::Mark {
            nonce: nonce.clone(),
        },
    )
    .await?;
    let mut read = 0u64;
    let done = loop {
        let delivery = tokio::select! {
            _ = session.cancelled() => break None,
            next = consumer.next() => match next {
                Some(d) => d?,
                None => return Err(AmqpError::NotConfirmed(format!("{stream} (the replay ended before its mark)"))),
            },
        };
        read += 1;
        // Acknowledgements are the stream's credit: every 200 entries, all at once.
        if read % 200 == 0 {
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .map_err(AmqpError::from)?;
        }
        match serde_json::from_slice::<Marker>(&delivery.data) {
            Ok(Marker::Mark { nonce: n }) if n == nonce => break Some((read, offset(&delivery))),
            _ => apply(&delivery.data),
        }
    };
    let _ = channel.close(200, "replayed".into()).await;
    Ok(done)
}

/// The offset the broker gives a stream delivery (`x-stream-offset`).
fn offset(delivery: &lapin::message::Delivery) -> i64 {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| match h.inner().get("x-stream-offset") {
            Some(AMQPValue::LongLongInt(n)) => Some(*n),
            Some(AMQPValue::LongInt(n)) => Some(i64::from(*n)),
            _ => None,
        })
        .unwrap_or(0)
}

/// A consumer of `stream`'s entries after `offset`, as they are appended (on its own channel,
/// acknowledged by [`follow_ack`]).
pub async fn follow(
    connection: &Connection,
    stream: &str,
    offset: i64,
) -> Result<(Channel, lapin::Consumer), AmqpError> {
    let channel = connection.create_channel().await?;
    channel.basic_qos(1000, BasicQosOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), AMQPValue::LongLongInt(offset + 1));
    let consumer = channel
        .basic_consume(
            stream.into(),
            "offboard-follow".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await?;
    Ok((channel, consumer))
}

/// Acknowledges a followed entry (a stream's credit).
pub async fn follow_ack(delivery: &lapin::message::Delivery) -> Result<(), AmqpError> {
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

/// Appends one entry to `stream` and waits for the broker's confirmation.
pub async fn append(
    channel: &Channel,
    stream: &str,
    entry: &impl Serialize,
) -> Result<(), AmqpError> {
    let body = serde_json::to_vec(entry).expect("an entry serializes");
    confirm_publish(channel, "", stream, &body, entry_properties()).await
}

/// Properties of a log entry: persistent JSON.
pub fn entry_properties() -> lapin::BasicProperties {
    lapin::BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
}

/// Declares a stream queue (idempotent).
pub async fn declare_stream(channel: &Channel, name: &str) -> Result<(), AmqpError> {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    Ok(())
}
