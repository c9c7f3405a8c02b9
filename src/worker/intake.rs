//! Person-level events: split into one job per provider target, published with confirms, then
//! the event acknowledged.

use std::sync::Arc;

use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::BasicCancelOptions;
use tokio_util::sync::CancellationToken;

use crate::doors::amqp::{self, AmqpError, Event, JobMessage};
use crate::job::Invalid;

use super::consume::{next_delivery, open_consumer, reject};
use super::{Ctx, invalid_record};

/// Consumes person-level events: splits each into per-provider jobs, publishes them with
/// confirms, and only then acknowledges the event.
pub(super) async fn consume_intake(
    ctx: Arc<Ctx>,
    channel: Channel,
    session: CancellationToken,
) -> Result<(), AmqpError> {
    let queue = ctx.settings.amqp.intake_queue.clone();
    let tag = format!("offboard-intake-{}", std::process::id());
    let mut consumer = open_consumer(&channel, &queue, &tag, 16).await?;
    let result = loop {
        match next_delivery(&mut consumer, &session).await {
            Ok(Some(delivery)) => handle_event(&ctx, &channel, &queue, delivery).await,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let _ = channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    let _ = channel.close(200, "done".into()).await;
    result
}

pub(super) async fn handle_event(ctx: &Ctx, channel: &Channel, queue: &str, delivery: Delivery) {
    let acker = amqp::Acker {
        channel,
        queue,
        dead_letter_exchange: &ctx.settings.amqp.dead_letter_exchange,
        delivery: &delivery,
    };
    let event_id = amqp::stable_id(&delivery.properties, &delivery.data);
    let event = match serde_json::from_slice::<Event>(&delivery.data) {
        Ok(e) if !e.targets.is_empty() => e,
        Ok(_) => {
            let reason = Invalid::Missing("targets");
            let rec = invalid_record(event_id, None, None, &reason);
            return reject(ctx, &acker, rec, &reason).await;
        }
        Err(e) => {
            let reason = Invalid::Unreadable(format!("not an event: {e}"));
            let rec = invalid_record(event_id, None, None, &reason);
            return reject(ctx, &acker, rec, &reason).await;
        }
    };
    let event_id = event
        .event_id
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(event_id);
    for (i, target) in event.targets.iter().enumerate() {
        let raw = target.raw(&event, &event_id, i);
        // One job, or one per entry for a target addressed to every provider (`*`).
        for (provider, result) in ctx.directory.validate_each(&raw, None) {
            match result {
                Ok(job) => {
                    let msg = JobMessage::from_job(&job);
                    let body = serde_json::to_vec(&msg).expect("serializable");
                    let props = amqp::job_properties(&msg.job_id);
                    if let Err(e) = amqp::confirm_publish(
                        channel,
                        &ctx.settings.amqp.exchange,
                        &job.provider,
                        &body,
                        props,
                    )
                    .await
                    {
                        // Republishing the lot later is harmless: job ids are stable, so copies dedupe.
                        tracing::error!(error = %e, event_id, "publishing a job of the event failed: the event goes back to its queue");
                        return acker.requeue().await;
                    }
                }
                Err(reason) => {
                    let id = match (&provider, target.provider.as_str()) {
                        (Some(p), crate::job::EVERY_PROVIDER) => format!("{event_id}:{i}:{p}"),
                        _ => format!("{event_id}:{i}"),
                    };
                    let provider = provider.unwrap_or_else(|| target.provider.clone());
                    if !ctx.sink.is_settled(&id, false).await
                        && !ctx
                            .sink
                            .settle(
                                invalid_record(
                                    id,
                                    Some(provider),
                                    Some(target.user.clone()),
                                    &reason,
                                ),
                                None,
                                amqp::Part,
                            )
                            .await
                    {
                        return acker.requeue().await;
                    }
                }
            }
        }
    }
    acker.ack().await;
}
