//! `offboard worker`: consumes jobs from RabbitMQ through the same lanes, classification and
//! adapters as `offboard run`, and never loses one.
//!
//! Rules: a job is acknowledged only once its outcome is written and flushed to the report;
//! malformed messages and permanent failures are dead-lettered (published with the reason to the
//! dead-letter exchange, confirmed, then acknowledged); a lane whose circuit opens stops consuming and
//! leaves its messages in its queue. A redelivered job whose outcome the report already holds is
//! acknowledged without running again, so a crash between writing and acknowledging records it once.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Health;
use crate::config::Settings;
use crate::doors::amqp::{self, AmqpError, Event, JobMessage, Why, ack, hand_back, requeue};
use crate::job::{Directory, Invalid, Job, ProviderKind, RawJob};
use crate::lane::Lane;
use crate::metrics::Metrics;
use crate::report::{
    ErrorField, Outcome, Record, SETTLED_INDEX_CAP, SettledIndex, Timestamp, Writer,
};
use crate::run::Lanes;
use crate::sink::Outcomes;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error("report {path}: {source}")]
    Report {
        path: String,
        source: std::io::Error,
    },
}

/// What every consumer task shares.
struct Ctx {
    settings: Settings,
    directory: Directory,
    sink: Outcomes,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Memberships asked for within `safety.window`, for duplicate detection.
    recent: Recent,
    /// Job ids whose outcome is settled in the report.
    done: Arc<Mutex<SettledIndex>>,
    grace: Duration,
}

/// The memberships asked for recently: identity hash -> (first job id, when).
struct Recent {
    window: Duration,
    seen: Mutex<Seen>,
}

struct Seen {
    map: std::collections::HashMap<u64, (String, std::time::Instant)>,
    /// Expired entries are swept out once the map outgrows this, which then becomes twice what
    /// is left: a sweep visits every entry, so sweeping at every job past a fixed size would cost
    /// O(entries) per job while the window keeps them all (an hour of jobs, by default).
    sweep_above: usize,
}

/// The fewest entries worth sweeping for.
const SWEEP_MIN: usize = 4096;

impl Recent {
    fn new(window: Duration) -> Recent {
        Recent {
            window,
            seen: Mutex::new(Seen {
                map: Default::default(),
                sweep_above: SWEEP_MIN,
            }),
        }
    }

    /// The first job id that asked for this membership within the window, when it is another job;
    /// otherwise remembers this one and returns None.
    fn first(&self, identity: u64, job_id: &str) -> Option<String> {
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().expect("recent lock");
        if seen.map.len() > seen.sweep_above {
            seen.map
                .retain(|_, (_, at)| now.duration_since(*at) < self.window);
            seen.sweep_above = (2 * seen.map.len()).max(SWEEP_MIN);
        }
        match seen.map.get(&identity) {
            Some((first, at)) if first != job_id && now.duration_since(*at) < self.window => {
                Some(first.clone())
            }
            _ => {
                seen.map.insert(identity, (job_id.to_owned(), now));
                None
            }
        }
    }
}

/// Runs until `stop` fires: connects (and reconnects with backoff), declares the topology, and
/// consumes every provider queue and the intake queue.
pub async fn run(
    settings: &Settings,
    lanes: &Lanes,
    report: &Path,
    audit: crate::audit::Audit,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: CancellationToken,
) -> Result<(), WorkerError> {
    let url = settings.amqp.url().ok_or(AmqpError::NoUrl)?;
    let report_err = |source| WorkerError::Report {
        path: report.display().to_string(),
        source,
    };
    let done = SettledIndex::load(report, SETTLED_INDEX_CAP).map_err(report_err)?;
    let (writer, sink) = Writer::start(report, true).map_err(report_err)?;
    let sink = Outcomes::new(sink, Some(audit)).observed_by(lanes.job_counter(metrics.clone()));
    let ctx = Arc::new(Ctx {
        settings: settings.clone(),
        directory: lanes.directory.clone(),
        sink,
        metrics,
        health,
        recent: Recent::new(settings.safety.window()),
        done: Arc::new(Mutex::new(done)),
        grace: Duration::from_secs(settings.worker.grace_period_s),
    });
    for lane in &lanes.lanes {
        lane.attach_hold(crate::hold::Hold::new(
            settings.safety.max_removals_per_window,
            settings.safety.window(),
        ));
    }
    let mut delay = Duration::from_millis(200);
    let max_delay = Duration::from_millis(settings.amqp.reconnect_max_delay_ms.max(200));
    while !stop.is_cancelled() {
        match session(&ctx, lanes, &url, &stop).await {
            Ok(()) => break, // stopped on purpose
            Err(e) => {
                tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "broker session ended; reconnecting");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(max_delay);
            }
        }
    }
    drop(ctx);
    writer.finish().await.map_err(report_err)?;
    Ok(())
}

/// One connection's life: returns Ok when stopped, Err when the connection failed.
async fn session(
    ctx: &Arc<Ctx>,
    lanes: &Lanes,
    url: &str,
    stop: &CancellationToken,
) -> Result<(), AmqpError> {
    let connection = amqp::connect(url, "offboard-worker").await?;
    {
        let ch = connection.create_channel().await?;
        let names: Vec<&str> = lanes.lanes.iter().map(|l| &*l.name).collect();
        amqp::declare(&ch, &ctx.settings.amqp, &names).await?;
        let _ = ch.close(200, "declared".into()).await;
    }
    tracing::info!("connected; topology declared");
    ctx.health
        .broker_ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // A session token: cancelled on stop, or when any consumer loses the connection.
    let session = stop.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in &lanes.lanes {
        let (ctx, lane, session) = (ctx.clone(), lane.clone(), session.clone());
        let channel = connection.create_channel().await?;
        tasks.spawn(async move { consume_lane(ctx, lane, channel, session).await });
    }
    {
        let (ctx, session) = (ctx.clone(), session.clone());
        let channel = connection.create_channel().await?;
        tasks.spawn(async move { consume_intake(ctx, channel, session).await });
    }
    {
        let (lanes, session, exchange) = (
            lanes.lanes.clone(),
            session.clone(),
            ctx.settings.amqp.control_exchange.clone(),
        );
        let channel = connection.create_channel().await?;
        tasks.spawn(async move { consume_control(lanes, channel, exchange, session).await });
    }
    let mut failure = None;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
                session.cancel();
            }
            Err(join) => {
                tracing::error!(error = %join, "consumer task failed");
                session.cancel();
            }
        }
    }
    ctx.health
        .broker_ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = connection.close(200, "bye".into()).await;
    match failure {
        Some(e) if !stop.is_cancelled() => Err(e),
        _ => Ok(()),
    }
}

/// Starts consuming `queue` with at most `prefetch` unacknowledged deliveries, on a channel in
/// confirm mode (for dead letters and split events).
async fn open_consumer(
    channel: &Channel,
    queue: &str,
    tag: &str,
    prefetch: u16,
) -> Result<lapin::Consumer, AmqpError> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    Ok(channel
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?)
}

/// The next delivery; `Ok(None)` when the session ends or the consumer is cancelled, `Err` when
/// the connection failed.
async fn next_delivery(
    consumer: &mut lapin::Consumer,
    session: &CancellationToken,
) -> Result<Option<Delivery>, AmqpError> {
    tokio::select! {
        biased;
        _ = session.cancelled() => Ok(None),
        next = consumer.next() => next.transpose().map_err(AmqpError::from),
    }
}

/// Consumes one lane's queue with prefetch = its in-flight bound, until stopped or halted.
async fn consume_lane(
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

fn invalid_record(
    job_id: String,
    provider: Option<String>,
    user: Option<String>,
    reason: &Invalid,
) -> Record {
    Record {
        job_id,
        line: None,
        provider,
        organization: None,
        user,
        resolved_user: None,
        absence: None,
        outcome: reason.outcome(),
        reason: Some(reason.code()),
        http_status: None,
        attempts: 0,
        provider_request_id: None,
        error: Some(ErrorField {
            code: reason.code().to_owned(),
            message: reason.to_string(),
        }),
        started_at: None,
        finished_at: Timestamp::now(),
    }
}

/// Records an outcome durably and, when no rerun could change it, remembers its job as settled.
/// Records an outcome through the one outcome sink (audit log, report, metrics, tally) and waits
/// until it is on disk; only then may the message be acknowledged. `job`: the job it ended, when
/// there was one (its requester and reason go to the audit log).
async fn record(ctx: &Ctx, r: Record, job: Option<&Job>) -> bool {
    // A failed job sits in the dead-letter queue: replayed after a fix, it must run again.
    let settled =
        (r.outcome.settled(r.reason) && r.outcome != Outcome::Failed).then(|| r.job_id.clone());
    match ctx.sink.record_confirmed(r, job).await {
        Ok(()) => {
            if let Some(id) = settled {
                ctx.done.lock().expect("done lock").insert(id);
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record an outcome: the message stays unacknowledged");
            false
        }
    }
}

/// Dead-letters a message (the door builds the headers) and counts it.
async fn dead_letter(
    ctx: &Ctx,
    channel: &Channel,
    delivery: &Delivery,
    source_queue: &str,
    why: Why<'_>,
) -> Result<(), AmqpError> {
    let (provider, reason) = (why.provider, why.reason);
    amqp::dead_letter(
        channel,
        &ctx.settings.amqp.dead_letter_exchange,
        delivery,
        source_queue,
        why,
    )
    .await?;
    let provider = provider
        .filter(|p| ctx.directory.lookup(p).is_some())
        .unwrap_or("unknown");
    ctx.metrics.dead_lettered(provider, reason);
    Ok(())
}

async fn handle_job(ctx: &Ctx, lane: &Lane, channel: &Channel, queue: &str, delivery: Delivery) {
    let fallback_id = amqp::stable_id(&delivery.properties, &delivery.data);
    let parsed = serde_json::from_slice::<RawJob<'_>>(&delivery.data);
    let mut raw = match parsed {
        Ok(raw) => raw,
        Err(e) => {
            let reason = Invalid::Unreadable(format!("not a job message: {e}"));
            return reject_invalid(
                ctx,
                channel,
                queue,
                &delivery,
                fallback_id,
                Some(lane.name.to_string()),
                None,
                &reason,
            )
            .await;
        }
    };
    if raw.job_id.as_deref().is_none_or(|s| s.trim().is_empty()) {
        raw.job_id = Some(fallback_id.into());
    }
    let job_id = raw.job_id.as_deref().unwrap_or_default().trim().to_owned();
    let user = raw.user.as_deref().map(str::to_owned);
    let job = match ctx.directory.validate(&raw, None) {
        Ok(job) if job.lane == lane.id => job,
        Ok(job) => {
            let reason = Invalid::UnknownProvider(format!(
                "{} (on the queue of {})",
                job.provider, lane.name
            ));
            return reject_invalid(
                ctx,
                channel,
                queue,
                &delivery,
                job_id,
                Some(job.provider.to_string()),
                user,
                &reason,
            )
            .await;
        }
        Err(reason) => {
            let provider = raw.provider.as_deref().map(str::to_owned);
            return reject_invalid(
                ctx, channel, queue, &delivery, job_id, provider, user, &reason,
            )
            .await;
        }
    };
    drop(raw);
    if delivery.redelivered && !ctx.done.lock().expect("done lock").contains(&job_id) {
        // A redelivery after another process died (a standby taking over) may be a job that
        // process recorded but could not acknowledge: read what the report gained since.
        let done = ctx.done.clone();
        let caught_up =
            tokio::task::spawn_blocking(move || done.lock().expect("done lock").catch_up())
                .await
                .expect("catching up does not panic");
        if let Err(e) = caught_up {
            tracing::warn!(error = %e, "cannot read the report's new lines");
        }
    }
    if ctx.done.lock().expect("done lock").contains(&job_id) {
        tracing::info!(job_id, provider = %lane.name, "already recorded: acknowledging a redelivery without running it again");
        return ack(&delivery).await;
    }
    // The same membership asked for again within the window, under another job id: sent once.
    if let Some(first) = ctx.recent.first(job.identity(), &job_id) {
        let reason = Invalid::DuplicateOf { job_id: first };
        if record(
            ctx,
            invalid_record(job_id, Some(lane.name.to_string()), user, &reason),
            None,
        )
        .await
        {
            ack(&delivery).await;
        }
        return;
    }
    if let Some(hold) = lane.hold() {
        if !hold.try_take() {
            // Past the window's limit: the lane holds; this message waits in its queue.
            return hand_back(channel, queue, &delivery).await;
        }
    }
    let rec = lane.execute(&job).await;
    match rec.outcome {
        // The lane halted: leave it in the queue. (A job kept from one organization only, whose
        // preflight failed or which refused us, is recorded and dead-lettered below.)
        Outcome::NotAttempted if lane.halted().is_some() => {
            hand_back(channel, queue, &delivery).await
        }
        // A protected person found by lookup: recorded, nothing sent, nothing to retry.
        Outcome::Removed | Outcome::AlreadyAbsent | Outcome::SkippedProtected => {
            if record(ctx, rec, Some(&job)).await {
                ack(&delivery).await;
            }
        }
        _ => {
            let (reason, message, attempts) = (
                rec.reason.unwrap_or("failed").to_owned(),
                rec.error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_default(),
                rec.attempts,
            );
            if !record(ctx, rec, Some(&job)).await {
                return;
            }
            let why = Why {
                provider: Some(&lane.name),
                reason: &reason,
                message: &message,
                attempts,
            };
            match dead_letter(ctx, channel, &delivery, queue, why).await {
                Ok(()) => ack(&delivery).await,
                Err(e) => {
                    tracing::error!(error = %e, job_id, "dead-lettering failed: the message goes back to its queue");
                    requeue(&delivery).await;
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn reject_invalid(
    ctx: &Ctx,
    channel: &Channel,
    queue: &str,
    delivery: &Delivery,
    job_id: String,
    provider: Option<String>,
    user: Option<String>,
    reason: &Invalid,
) {
    let protected = matches!(reason, Invalid::Protected { .. });
    if protected {
        tracing::warn!(job_id, queue, "protected account: skipped");
    } else {
        tracing::warn!(
            job_id,
            reason = reason.code(),
            queue,
            "invalid message: dead-lettering it"
        );
        ctx.metrics.invalid("amqp");
    }
    if !record(
        ctx,
        invalid_record(job_id, provider.clone(), user, reason),
        None,
    )
    .await
    {
        return requeue(delivery).await;
    }
    if protected {
        // Not a failure: the account is never to be removed. Recorded, and done.
        return ack(delivery).await;
    }
    let message = reason.to_string();
    let why = Why {
        provider: provider.as_deref(),
        reason: reason.code(),
        message: &message,
        attempts: 0,
    };
    match dead_letter(ctx, channel, delivery, queue, why).await {
        Ok(()) => ack(delivery).await,
        Err(e) => {
            tracing::error!(error = %e, "dead-lettering failed: the message goes back to its queue");
            requeue(delivery).await;
        }
    }
}

/// Consumes person-level events: splits each into per-provider jobs, publishes them with
/// confirms, and only then acknowledges the event.
async fn consume_intake(
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

/// Answers operator commands from the control exchange: `list` and `release PROVIDER`.
async fn consume_control(
    lanes: Vec<Arc<Lane>>,
    channel: Channel,
    exchange: String,
    session: CancellationToken,
) -> Result<(), AmqpError> {
    use lapin::options::{QueueBindOptions, QueueDeclareOptions};
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
    channel
        .queue_bind(
            q.name().clone(),
            exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            q.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let me = format!("{}:{}", hostname(), std::process::id());
    loop {
        let delivery = match next_delivery(&mut consumer, &session).await {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Ok(command) = serde_json::from_slice::<amqp::Control>(&delivery.data) else {
            tracing::warn!("ignoring a malformed control message");
            continue;
        };
        let mut released = false;
        if let amqp::Control::Release { provider } = &command {
            if let Some(hold) = lanes
                .iter()
                .find(|l| *l.name == **provider)
                .and_then(|l| l.hold())
            {
                released = hold.is_held();
                hold.release();
                tracing::warn!(provider, "hold released by an operator");
            }
        }
        let Some(reply_to) = delivery.properties.reply_to().clone() else {
            continue;
        };
        let reply = amqp::ControlReply {
            worker: me.clone(),
            released,
            holds: lanes
                .iter()
                .filter_map(|l| l.hold().map(|h| h.state(&l.name)))
                .collect(),
        };
        let body = serde_json::to_vec(&reply).expect("serializable");
        let _ = channel
            .basic_publish(
                "".into(),
                reply_to,
                Default::default(),
                &body,
                BasicProperties::default(),
            )
            .await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into())
}

async fn handle_event(ctx: &Ctx, channel: &Channel, queue: &str, delivery: Delivery) {
    let event_id = amqp::stable_id(&delivery.properties, &delivery.data);
    let event = match serde_json::from_slice::<Event>(&delivery.data) {
        Ok(e) if !e.targets.is_empty() => e,
        Ok(_) => {
            let reason = Invalid::Missing("targets");
            return reject_invalid(
                ctx, channel, queue, &delivery, event_id, None, None, &reason,
            )
            .await;
        }
        Err(e) => {
            let reason = Invalid::Unreadable(format!("not an event: {e}"));
            return reject_invalid(
                ctx, channel, queue, &delivery, event_id, None, None, &reason,
            )
            .await;
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
                        return requeue(&delivery).await;
                    }
                }
                Err(reason) => {
                    let id = match (&provider, target.provider.as_str()) {
                        (Some(p), crate::job::EVERY_PROVIDER) => format!("{event_id}:{i}:{p}"),
                        _ => format!("{event_id}:{i}"),
                    };
                    let provider = provider.unwrap_or_else(|| target.provider.clone());
                    if !ctx.done.lock().expect("done lock").contains(&id)
                        && !record(
                            ctx,
                            invalid_record(id, Some(provider), Some(target.user.clone()), &reason),
                            None,
                        )
                        .await
                    {
                        return requeue(&delivery).await;
                    }
                }
            }
        }
    }
    ack(&delivery).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_names_the_first_job_and_sweeps_expired_entries_now_and_then() {
        let recent = Recent::new(Duration::from_secs(3600));
        assert_eq!(recent.first(1, "a"), None);
        assert_eq!(
            recent.first(1, "a"),
            None,
            "a redelivery is not a duplicate"
        );
        assert_eq!(recent.first(1, "b").as_deref(), Some("a"));
        for i in 2..=SWEEP_MIN as u64 + 1 {
            recent.first(i, "x");
        }
        // Nothing expired: the sweep keeps everything and waits for twice as many.
        assert_eq!(recent.first(u64::MAX, "y"), None);
        let seen = recent.seen.lock().unwrap();
        assert_eq!(seen.map.len(), SWEEP_MIN + 2);
        assert_eq!(seen.sweep_above, 2 * (SWEEP_MIN + 1));
        drop(seen);
        assert_eq!(
            recent.first(1, "c").as_deref(),
            Some("a"),
            "still remembered"
        );

        let short = Recent::new(Duration::ZERO);
        for i in 0..=SWEEP_MIN as u64 + 1 {
            short.first(i, "x");
        }
        assert_eq!(short.first(0, "y"), None, "expired: not a duplicate");
        let seen = short.seen.lock().unwrap();
        assert!(
            seen.map.len() <= 2,
            "expired entries swept: {}",
            seen.map.len()
        );
        assert_eq!(seen.sweep_above, SWEEP_MIN);
    }
}
