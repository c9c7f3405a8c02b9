//! The schedule on the wire: the scheduler's queue, the delay tiers that dead-letter into it, the
//! log, and a job message sent to wait for its due time.
//!
//! RabbitMQ 3.10 without plugins has no delayed delivery, and a message's own TTL only expires at
//! the head of its queue. So every tier holds its messages one fixed time (2^k seconds): each
//! tier is FIFO in expiry order, and an expired message is dead-lettered (at least once, confirmed
//! inside the broker) to the scheduler's queue, which sends it to the next tier or, under a
//! second from its due time, holds it until then. All are quorum queues: they survive a broker
//! restart and a failover, and hold the jobs whatever happens to the workers.

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::AMQPValue;
use lapin::{Channel, PublisherConfirm};

use crate::config::Amqp;
use crate::schedule::{CancelRequest, Entry, TIERS, tier_for};

use super::{AmqpError, JobMessage, declare_stream, entry_properties, job_properties, quorum_args};

/// The tier queue that holds messages 2^k seconds.
pub fn tier_queue(amqp: &Amqp, k: u32) -> String {
    format!("{}.wait.{k}", amqp.schedule_queue)
}

/// Declares the scheduler's queue, the tiers and the log (idempotent).
pub async fn declare_schedule(channel: &Channel, amqp: &Amqp) -> Result<(), AmqpError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    // A message the scheduler cannot read ends in the dead-letter queue, not in a loop.
    let due = quorum_args(amqp, true, false);
    channel
        .queue_declare(amqp.schedule_queue.as_str().into(), durable, due)
        .await?;
    for k in 0..TIERS {
        let mut args = quorum_args(amqp, false, false);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(1000i64 << k));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(amqp.schedule_queue.as_str().into()),
        );
        // At least once: the broker confirms the dead letter before it drops the original.
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        channel
            .queue_declare(tier_queue(amqp, k).as_str().into(), durable, args)
            .await?;
    }
    declare_stream(channel, &amqp.schedule_stream).await
}

/// Sends a job message to wait for `due`: into the tier it fits (or straight to the scheduler's
/// queue when under a second is left). Returns the broker's pending confirmation.
pub async fn send_to_wait(
    channel: &Channel,
    amqp: &Amqp,
    job: &JobMessage,
    body: &[u8],
    due: jiff::Timestamp,
) -> Result<PublisherConfirm, AmqpError> {
    let queue = match tier_for(due.duration_since(jiff::Timestamp::now())) {
        Some(k) => tier_queue(amqp, k),
        None => amqp.schedule_queue.clone(),
    };
    Ok(channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            job_properties(&job.job_id),
        )
        .await?)
}

/// Schedules a job message due at `due`: its `scheduled` entry on the log first (so `schedule
/// list` shows it even if the rest fails), then the message sent to wait. Returns both pending
/// confirmations: the job is scheduled once both are confirmed.
pub async fn schedule_job(
    channel: &Channel,
    amqp: &Amqp,
    job: &JobMessage,
    body: &[u8],
    due: jiff::Timestamp,
) -> Result<[PublisherConfirm; 2], AmqpError> {
    let entry = Entry::Scheduled {
        job_id: job.job_id.clone(),
        provider: job.provider.clone(),
        user: job.user.clone(),
        organization: job.organization.clone(),
        due_at: due,
        at: jiff::Timestamp::now(),
    };
    let entry = serde_json::to_vec(&entry).expect("an entry serializes");
    let logged = channel
        .basic_publish(
            "".into(),
            amqp.schedule_stream.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &entry,
            entry_properties(),
        )
        .await?;
    let waits = send_to_wait(channel, amqp, job, body, due).await?;
    Ok([logged, waits])
}

/// The AMQP `type` of a [`CancelRequest`] on the scheduler's queue (a job message has none).
pub const CANCEL_KIND: &str = "offboard.cancel";

/// Sends a cancel to the scheduler through its queue, and waits for the broker's confirmation.
pub async fn request_cancel(
    channel: &Channel,
    amqp: &Amqp,
    request: &CancelRequest,
) -> Result<(), AmqpError> {
    let body = serde_json::to_vec(request).expect("a request serializes");
    let props = entry_properties()
        .with_type(CANCEL_KIND.into())
        .with_message_id(request.event.as_str().into());
    super::confirm_publish(channel, "", &amqp.schedule_queue, &body, props).await
}
