//! One lane's queue: prefetch = its in-flight bound, each delivery validated, run through the lane,
//! recorded, then acknowledged or dead-lettered; holds and halts hand messages back.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::BasicCancelOptions;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::doors::amqp::{
    self, Acker, AmqpError, Settled, hand_back, next_delivery, open_consumer,
};
use crate::job::{Invalid, Job, ProviderKind};
use crate::lane::Lane;
use crate::outcome::{Outcome, Reason, Record};

use super::recent::Claim;
use super::{Ctx, invalid_record};

/// Consumes one lane's queue with prefetch = its in-flight bound, until stopped or halted.
pub(super) async fn consume_lane(
    ctx: Arc<Ctx>,
    lane: Arc<Lane>,
    channel: Channel,
    session: CancellationToken,
) -> Result<(), AmqpError> {
    let queue = ctx.settings.amqp.queue(&lane.name);
    let tag = format!("offboard-{}-{}", lane.name, std::process::id());
    let tracker = TaskTracker::new();
    let mut active = false;
    // Prove the entry before consuming anything: a wrong base URL or credential leaves the queue
    // untouched, and /readyz says why (the lane reports itself halted).
    let entry = ctx.settings.providers.get(&*lane.name);
    let org = entry.and_then(|e| e.organization.clone());
    let names_orgs = matches!(lane.kind(), ProviderKind::Aitronos | ProviderKind::Cognee);
    // Each session (the first, and every one after a reconnect) proves the entry again.
    lane.reprove();
    if !names_orgs || org.is_some() {
        if let Err(reason) = lane.preflight(org.as_deref()).await {
            tracing::error!(provider = %lane.name, reason, "preflight failed: this lane's queue is not consumed");
            lane.fail_entry(reason);
            return Ok(());
        }
    }
    let result = 'consuming: loop {
        let mut consumer =
            open_consumer(&channel, &queue, &tag, lane.max_in_flight() as u16).await?;
        let ended = loop {
            let delivery = match next_delivery(&mut consumer, &session).await {
                Ok(Some(d)) => d,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            if !active {
                // The first delivery: with single active consumer, we may be a standby taking over
                // from a replica whose last requests the provider still counts.
                active = true;
                lane.start_cold();
            }
            if let Some(reason) = lane.halted() {
                // Stop consuming; this message and any prefetched ones go back to the queue.
                tracing::error!(provider = %lane.name, reason, "lane halted: consumption stopped, messages stay in the queue");
                hand_back(&channel, &queue, &delivery).await;
                break Ok(());
            }
            if lane.hold().is_some_and(|h| h.is_held()) {
                hand_back(&channel, &queue, &delivery).await;
                break Ok(());
            }
            let (ctx, lane, channel, queue) =
                (ctx.clone(), lane.clone(), channel.clone(), queue.clone());
            tracker.spawn(async move { handle_job(&ctx, &lane, &channel, &queue, delivery).await });
        };
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        if lane.hold().is_some_and(|h| h.is_held()) {
            // Deliveries prefetched before the cancel would stay unacknowledged on this channel
            // for the whole hold: hand them back to the queue now.
            while let Some(Ok(d)) = consumer.next().await {
                hand_back(&channel, &queue, &d).await;
            }
        }
        let Some(hold) = lane
            .hold()
            .filter(|h| h.is_held() && ended.is_ok() && !session.is_cancelled())
        else {
            break 'consuming ended;
        };
        tracing::error!(
            provider = %lane.name,
            "lane held: {} removals within safety.window; consumption stopped, messages stay queued; release with `offboard hold release {}`",
            ctx.settings.safety.max_removals_per_window,
            lane.name
        );
        tokio::select! {
            _ = session.cancelled() => break 'consuming Ok(()),
            _ = hold.released() => tracing::warn!(provider = %lane.name, "hold released: consuming again"),
        }
    };
    tracker.close();
    if tokio::time::timeout(ctx.grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(provider = %lane.name, "grace period over: unfinished jobs stay unacknowledged and will be redelivered");
    }
    // Closing the channel returns every unacknowledged message to the queue.
    let _ = channel.close(200, "done".into()).await;
    result
}

/// One delivery of a lane's queue: the door reads it as a job (or why it is not one), the lane
/// runs it, the sink records it, and only then does the door tell the broker.
pub(super) async fn handle_job(
    ctx: &Ctx,
    lane: &Lane,
    channel: &Channel,
    queue: &str,
    delivery: Delivery,
) {
    let acker = Acker {
        channel,
        queue,
        dead_letter_exchange: &ctx.settings.amqp.dead_letter_exchange,
        delivery: &delivery,
    };
    let raw = match amqp::read_job(&delivery) {
        Ok(raw) => raw,
        Err(amqp::Unreadable { id, why }) => {
            let rec = invalid_record(id, Some(lane.name.to_string()), None, &why);
            return reject(ctx, &acker, rec, &why).await;
        }
    };
    let job_id = raw.job_id.as_deref().unwrap_or_default().trim().to_owned();
    let user = raw.user.as_deref().map(str::to_owned);
    let job = match ctx.directory.validate(&raw, None) {
        Ok(job) if job.lane == lane.id => job,
        Ok(job) => {
            let reason = Invalid::UnknownProvider(format!(
                "{} (on the queue of {})",
                job.provider, lane.name
            ));
            let rec = invalid_record(job_id, Some(job.provider.to_string()), user, &reason);
            return reject(ctx, &acker, rec, &reason).await;
        }
        Err(reason) => {
            let provider = raw.provider.as_deref().map(str::to_owned);
            let rec = invalid_record(job_id, provider, user, &reason);
            return reject(ctx, &acker, rec, &reason).await;
        }
    };
    drop(raw);
    if let Some(due) = job.due.filter(|d| *d > jiff::Timestamp::now() + EARLY) {
        // Due later (a producer that publishes scheduled jobs straight to a lane): it waits in
        // the broker's schedule, not here, and is not run now.
        return schedule_instead(ctx, &acker, channel, &job, due).await;
    }
    // A redelivery after another process died (a standby taking over) may be a job that process
    // recorded but could not acknowledge: the sink's index reads what the report gained since.
    if ctx.sink.is_settled(&job_id, delivery.redelivered).await {
        tracing::info!(job_id, provider = %lane.name, "already recorded: acknowledging a redelivery without running it again");
        return acker.ack().await;
    }
    if delivery.redelivered {
        // The replica that lost this delivery may still be finishing a request it had sent:
        // give it the time to record it, then look again.
        // A request answered later than this may get the job recorded twice (never sent
        // unasked): `worker.redelivery_grace_ms`.
        let grace = ctx.settings.worker.redelivery_grace_ms;
        tokio::time::sleep(std::time::Duration::from_millis(grace)).await;
        if ctx.sink.is_settled(&job_id, true).await {
            tracing::info!(job_id, provider = %lane.name, "recorded by the replica that lost it: acknowledging the redelivery without running it again");
            return acker.ack().await;
        }
    }
    // The same membership asked for again within the window, under another job id, after a job
    // that removed it (or found it absent) was recorded: not sent again. A copy of a job that
    // failed, was not attempted or was skipped runs; one of a job still running waits for it.
    let running = match ctx.recent.claim(job.identity(), &job_id).await {
        Claim::Run(running) => running,
        Claim::DuplicateOf(first) => {
            let reason = Invalid::DuplicateOf { job_id: first };
            let rec = invalid_record(job_id, Some(lane.name.to_string()), user, &reason);
            settle(ctx, &acker, rec, None).await;
            return;
        }
    };
    if let Some(hold) = lane.hold() {
        if !hold.try_take() {
            // Past the window's limit: the lane holds; this message waits in its queue.
            return acker.hand_back().await;
        }
    }
    let held = || channel.status().connected();
    let rec = lane.execute_while(&job, &held).await;
    if rec.reason == Some(Reason::DeliveryLost) {
        // The broker took the delivery back and gives it to another consumer: that one reports
        // it. Nothing is reported, or acknowledged, here; requests already sent get their final
        // audit line.
        if rec.attempts > 0 {
            ctx.sink.audit_only(&rec, &job).await;
        }
        return;
    }
    if rec.outcome == Outcome::NotAttempted && lane.halted().is_some() {
        // The lane halted: leave it in the queue. (A job kept from one organization only, whose
        // preflight failed or which refused us, is recorded and dead-lettered.)
        return acker.hand_back().await;
    }
    let done = rec.outcome.is_done();
    let settled = settle(ctx, &acker, rec, Some(&job)).await;
    // Only a success on disk makes later copies duplicates; anything else lets them run.
    if done && matches!(settled, Settled::Acknowledged) {
        running.succeeded();
    }
}

/// How early a job may reach its lane and still run: the scheduler releases at the due instant,
/// and clocks of two machines differ by a little.
const EARLY: jiff::SignedDuration = jiff::SignedDuration::from_secs(2);

/// Sends a job that is due later to the schedule (logged, then waiting in a delay tier), then
/// acknowledges it; if the broker does not confirm both, it goes back to its queue.
async fn schedule_instead(
    ctx: &Ctx,
    acker: &Acker<'_>,
    channel: &Channel,
    job: &Job,
    due: jiff::Timestamp,
) {
    let msg = amqp::JobMessage::from_job(job);
    let body = serde_json::to_vec(&msg).expect("serializable");
    // The lane's channel is in confirm mode (see `open_consumer`).
    let mut confirmed = false;
    if let Ok(confirms) = amqp::schedule_job(channel, &ctx.settings.amqp, &msg, &body, due).await {
        confirmed = true;
        for c in confirms {
            confirmed &= c
                .await
                .is_ok_and(|c| c.is_ack() && c.take_message().is_none());
        }
    }
    if confirmed {
        tracing::info!(job_id = %job.id, provider = %job.provider, due_at = %due, "due later: scheduled");
        acker.ack().await
    } else {
        tracing::error!(job_id = %job.id, "a job due later could not be scheduled: back to its queue");
        acker.hand_back().await
    }
}

/// Hands `rec` to the sink, which records it and then tells the broker through `acker`; a dead
/// letter is counted. Returns what the broker was told.
pub(super) async fn settle(
    ctx: &Ctx,
    acker: &Acker<'_>,
    rec: Record,
    job: Option<&Job>,
) -> Settled {
    let settled = ctx.sink.settle(rec, job, acker).await;
    if let Settled::DeadLettered { provider, reason } = &settled {
        let provider = provider
            .as_deref()
            .filter(|p| ctx.directory.lookup(p).is_some())
            .unwrap_or("unknown");
        ctx.metrics.dead_lettered(provider, reason);
    }
    settled
}

/// A message that could not be a job: said, counted (a protected person is not an error), then
/// recorded and settled like any outcome (dead-lettered; a protected one acknowledged).
pub(super) async fn reject(ctx: &Ctx, acker: &Acker<'_>, rec: Record, reason: &Invalid) {
    if matches!(reason, Invalid::Protected { .. }) {
        tracing::warn!(
            job_id = rec.job_id,
            queue = acker.queue,
            "protected account: skipped"
        );
    } else {
        tracing::warn!(
            job_id = rec.job_id,
            reason = Reason::from(reason).as_str(),
            queue = acker.queue,
            "invalid message: dead-lettering it"
        );
        ctx.metrics.invalid("amqp");
    }
    settle(ctx, acker, rec, None).await;
}
