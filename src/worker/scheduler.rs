//! The scheduler: the one worker at a time that moves waiting jobs from tier to tier, hands each
//! to its lane at its due time, and takes cancels, so that a cancel and a release of the same job
//! are decided in one place, one after the other: a cancel wins whole or loses whole.
//!
//! It is whoever holds `<amqp.schedule_queue>.lock` (an exclusive queue, as the gate's). On taking
//! it, it replays the schedule's log to learn which jobs' waits already ended, then consumes the
//! scheduler's queue. Every decision is on the log before it takes effect for others: a release
//! is published to its lane (confirmed) before its `released` entry, so a scheduler killed in
//! between sends it again (the lane knows the job id) rather than never; a cancel's entry is
//! confirmed before its record is written and the cancel answered.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions, BasicRejectOptions};
use lapin::{Channel, Connection};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::doors::amqp::{self, AmqpError, JobMessage, next_delivery, open_consumer};
use crate::outcome::{Outcome, Reason, Record};
use crate::schedule::{
    Book, CancelRequest, Cancelled, Entry, Filter, Ledger, Selector, View, tier_for,
};

use super::Ctx;

/// Waiting jobs the scheduler takes at a time off its queue.
const PREFETCH: u16 = 1000;
/// How often the waiting gauge is brought up to date.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// The most waiting jobs a list shows one by one (the counts cover all).
const SHOWN: usize = 200;

/// What the control consumer asks the scheduler (when this worker is it).
pub(super) enum Ask {
    List(Filter, oneshot::Sender<View>),
    Cancel {
        selector: Selector,
        by: String,
        event: Option<String>,
        reply: oneshot::Sender<Result<Cancelled, String>>,
    },
}

/// The way to the scheduler task, set while this worker holds the role.
pub(super) type SchedulerHandle = super::handle::Handle<Ask>;

/// Takes the scheduler's role when it is free and keeps it until the session ends.
pub(super) async fn run(
    ctx: Arc<Ctx>,
    handle: Arc<SchedulerHandle>,
    connection: Arc<Connection>,
    session: CancellationToken,
) -> Result<(), AmqpError> {
    let amqp_settings = &ctx.settings.amqp;
    let lock = format!("{}.lock", amqp_settings.schedule_queue);
    let Some(_lock) = amqp::take_lock(&connection, &lock, "scheduler", &session).await? else {
        return Ok(());
    };
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    let started = std::time::Instant::now();
    let mut ledger = Ledger::default();
    let stream = amqp_settings.schedule_stream.clone();
    let Some((read, mark)) = amqp::replay(&connection, &channel, &stream, &session, |body| {
        if let Ok(entry) = serde_json::from_slice::<Entry>(body) {
            ledger.apply(&entry);
        }
    })
    .await?
    else {
        return Ok(());
    };
    tracing::info!(
        entries = read,
        replay_ms = started.elapsed().as_millis() as u64,
        waiting = ledger.waiting().values().sum::<u64>(),
        "this worker is the scheduler of jobs due later"
    );
    let (tx, mut asks) = mpsc::channel(16);
    handle.set(Some(tx));
    // What enqueues write from now on keeps the waiting counts true (nothing else depends on it).
    let (_following, follower) = amqp::follow(&connection, &stream, mark).await?;
    let mut scheduler = Scheduler {
        ctx: ctx.clone(),
        connection: connection.clone(),
        channel,
        ledger,
        holding: JoinSet::new(),
        sending: FuturesUnordered::new(),
    };
    let result = scheduler.serve(&mut asks, follower, &session).await;
    handle.set(None);
    result
}

struct Scheduler {
    ctx: Arc<Ctx>,
    connection: Arc<Connection>,
    /// In confirm mode: tiers, lanes, the log.
    channel: Channel,
    ledger: Ledger,
    /// Jobs under a second from their due time, each asleep until it.
    holding: JoinSet<(Delivery, JobMessage)>,
    /// Publishes under way, each acknowledging its delivery once confirmed.
    sending: FuturesUnordered<BoxFuture<'static, Result<(), AmqpError>>>,
}

impl Scheduler {
    async fn serve(
        &mut self,
        asks: &mut mpsc::Receiver<Ask>,
        mut follower: lapin::Consumer,
        session: &CancellationToken,
    ) -> Result<(), AmqpError> {
        let queue = self.ctx.settings.amqp.schedule_queue.clone();
        let consuming = self.connection.create_channel().await?;
        let tag = format!("offboard-scheduler-{}", std::process::id());
        let mut consumer = open_consumer(&consuming, &queue, &tag, PREFETCH).await?;
        let mut shown: Option<std::time::Instant> = None;
        loop {
            if shown.is_none_or(|t| t.elapsed() >= METRICS_EVERY) {
                self.ctx.metrics.schedule_waiting(self.ledger.waiting());
                shown = Some(std::time::Instant::now());
            }
            tokio::select! {
                biased;
                _ = session.cancelled() => return Ok(()),
                Some(sent) = self.sending.next(), if !self.sending.is_empty() => sent?,
                ask = asks.recv() => match ask {
                    Some(ask) => self.answer(ask, session).await?,
                    None => return Ok(()),
                },
                Some(held) = self.holding.join_next(), if !self.holding.is_empty() => {
                    let (delivery, job) = held.expect("a sleep does not panic");
                    self.release(delivery, job);
                }
                next = next_delivery(&mut consumer, session) => match next? {
                    Some(d) if d.properties.kind().as_ref().is_some_and(|k| k.as_str() == amqp::CANCEL_KIND) => {
                        self.cancel_request(d, session).await?
                    }
                    Some(delivery) => self.arrive(delivery).await,
                    None => return Ok(()),
                },
                Some(entry) = follower.next() => {
                    let entry = entry?;
                    if let Ok(e) = serde_json::from_slice::<Entry>(&entry.data) {
                        self.ledger.apply(&e);
                    }
                    amqp::follow_ack(&entry).await?;
                }
                _ = tokio::time::sleep(METRICS_EVERY) => {}
            }
        }
    }

    /// A waiting job back from a tier (or new): sent on to the next tier, held for its last
    /// second, or released; one whose wait ended already is acknowledged and dropped.
    async fn arrive(&mut self, delivery: Delivery) {
        let job = match serde_json::from_slice::<JobMessage>(&delivery.data) {
            Ok(job) => job,
            Err(e) => {
                // Not ours to read: the broker dead-letters it (the queue's dead-letter exchange).
                tracing::error!(error = %e, "a message on the scheduler's queue is not a job message: dead-lettered");
                let _ = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await;
                return;
            }
        };
        if self.ctx.directory.lookup(&job.provider).is_none() {
            // No lane would take it: recorded invalid, then dead-lettered, never looping here.
            let why = crate::job::Invalid::UnknownProvider(job.provider.clone());
            let rec = super::invalid_record(
                job.job_id.clone(),
                Some(job.provider.clone()),
                Some(job.user.clone()),
                &why,
            );
            tracing::error!(
                job_id = job.job_id,
                provider = job.provider,
                "a scheduled job for a provider this worker does not know: recorded invalid and dead-lettered"
            );
            if self.ctx.sink.settle(rec, None, amqp::Part).await {
                let _ = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await;
            }
            return;
        }
        if let Some(released) = self.ledger.ended(&job.job_id) {
            tracing::info!(
                job_id = job.job_id,
                released,
                "a copy of a job whose wait ended: dropped"
            );
            self.sending.push(Box::pin(ack(delivery)));
            return;
        }
        let due = job
            .due_at
            .as_deref()
            .and_then(|d| d.parse::<jiff::Timestamp>().ok())
            .unwrap_or_else(jiff::Timestamp::now);
        let remaining = due.duration_since(jiff::Timestamp::now());
        if tier_for(remaining).is_some() {
            let sent = amqp::send_to_wait(
                &self.channel,
                &self.ctx.settings.amqp,
                &job,
                &delivery.data,
                due,
            )
            .await;
            self.sending.push(Box::pin(async move {
                confirmed(sent?.await?, "a delay tier")?;
                ack(delivery).await
            }));
        } else if remaining.is_positive() {
            let wait = Duration::try_from(remaining).unwrap_or_default();
            self.holding.spawn(async move {
                tokio::time::sleep(wait).await;
                (delivery, job)
            });
        } else {
            self.release(delivery, job);
        }
    }

    /// Hands a due job to its lane: decided here (a cancel after this loses), published to the
    /// lane and confirmed, then logged `released`, then acknowledged.
    fn release(&mut self, delivery: Delivery, job: JobMessage) {
        if self.ledger.ended(&job.job_id).is_some() {
            self.sending.push(Box::pin(ack(delivery)));
            return;
        }
        let entry = Entry::Released {
            job_id: job.job_id.clone(),
            at: jiff::Timestamp::now(),
        };
        self.ledger.apply(&entry);
        let (channel, exchange) = (
            self.channel.clone(),
            self.ctx.settings.amqp.exchange.clone(),
        );
        let stream = self.ctx.settings.amqp.schedule_stream.clone();
        self.sending.push(Box::pin(async move {
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    job.provider.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &delivery.data,
                    amqp::job_properties(&job.job_id),
                )
                .await?
                .await?;
            confirmed(confirm, &format!("{exchange}/{}", job.provider))?;
            amqp::append(&channel, &stream, &entry).await?;
            tracing::info!(
                job_id = job.job_id,
                provider = job.provider,
                "due: released to its lane"
            );
            ack(delivery).await
        }));
    }

    /// A cancel through the queue (a reactivation): every waiting job of the person, recorded
    /// with the identity system's event, then acknowledged. One that cannot be read is
    /// dead-lettered.
    async fn cancel_request(
        &mut self,
        delivery: Delivery,
        session: &CancellationToken,
    ) -> Result<(), AmqpError> {
        let Ok(request) = serde_json::from_slice::<CancelRequest>(&delivery.data) else {
            tracing::error!(
                "a cancel request on the scheduler's queue cannot be read: dead-lettered"
            );
            let _ = delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await;
            return Ok(());
        };
        let stream = self.ctx.settings.amqp.schedule_stream.clone();
        let book = read_book(&self.connection, &self.channel, &stream, session).await?;
        let selector = Selector {
            people: vec![request.person.clone()],
            ..Selector::default()
        };
        match self
            .cancel(&book, &selector, &request.by, Some(request.event.clone()))
            .await
        {
            Ok(done) => {
                tracing::warn!(
                    event = request.event,
                    cancelled = done.cancelled.len(),
                    "a reactivation cancelled the person's scheduled removals"
                );
                ack(delivery).await
            }
            // Not acknowledged: the request comes back, and what was cancelled stays cancelled.
            Err(why) => Err(AmqpError::NotConfirmed(why)),
        }
    }

    async fn answer(&mut self, ask: Ask, session: &CancellationToken) -> Result<(), AmqpError> {
        let (connection, channel) = (self.connection.clone(), self.channel.clone());
        let stream = self.ctx.settings.amqp.schedule_stream.clone();
        match ask {
            Ask::List(filter, reply) => {
                let book = read_book(&connection, &channel, &stream, session).await?;
                let _ = reply.send(book.view(&filter, SHOWN));
            }
            Ask::Cancel {
                selector,
                by,
                event,
                reply,
            } => {
                let book = read_book(&connection, &channel, &stream, session).await?;
                let result = self.cancel(&book, &selector, &by, event).await;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    /// Cancels every waiting job `selector` names that this scheduler has not released: each
    /// logged `cancelled` (confirmed), then recorded `failed`, reason `cancelled`.
    async fn cancel(
        &mut self,
        book: &Book,
        selector: &Selector,
        by: &str,
        event: Option<String>,
    ) -> Result<Cancelled, String> {
        let mut out = Cancelled::default();
        for w in book.targets(selector) {
            if let Some(true) = self.ledger.ended(&w.job_id) {
                // Released by this scheduler since the log was read: the cancel lost.
                out.too_late
                    .push((w.job_id.clone(), jiff::Timestamp::now()));
                continue;
            }
            let at = jiff::Timestamp::now();
            let entry = Entry::Cancelled {
                job_id: w.job_id.clone(),
                by: by.to_owned(),
                event: event.clone(),
                at,
            };
            amqp::append(
                &self.channel,
                &self.ctx.settings.amqp.schedule_stream,
                &entry,
            )
            .await
            .map_err(|e| format!("the cancel of {} was not logged: {e}", w.job_id))?;
            self.ledger.apply(&entry);
            let mut rec = Record::unsent(
                w.job_id.clone(),
                Outcome::Failed,
                Reason::Cancelled,
                format!(
                    "cancelled by {by}{} at {at}, before its due time {}: never sent (the cancel won)",
                    event
                        .as_deref()
                        .map(|e| format!(" (event {e})"))
                        .unwrap_or_default(),
                    w.due_at
                ),
            );
            rec.provider = Some(w.provider.clone());
            rec.organization = w.organization.clone();
            rec.user = Some(w.user.clone());
            rec.due_at = Some(w.due_at);
            if !self.ctx.sink.settle(rec, None, amqp::Part).await {
                return Err(format!(
                    "{} was cancelled but its record could not be written",
                    w.job_id
                ));
            }
            tracing::warn!(
                job_id = w.job_id,
                provider = w.provider,
                by,
                "scheduled job cancelled"
            );
            out.cancelled.push(w.clone());
        }
        for job_id in &selector.jobs {
            if out.cancelled.iter().any(|w| w.job_id == *job_id)
                || out.too_late.iter().any(|(j, _)| j == job_id)
            {
                continue;
            }
            match book.ended(job_id) {
                Some(crate::schedule::Ended::Released { at }) => {
                    out.too_late.push((job_id.clone(), *at))
                }
                _ => out.unknown.push(job_id.clone()),
            }
        }
        Ok(out)
    }
}

/// The whole log, read now (the ledger knows what ended, not what waits).
async fn read_book(
    connection: &Connection,
    channel: &Channel,
    stream: &str,
    session: &CancellationToken,
) -> Result<Book, AmqpError> {
    let mut book = Book::default();
    amqp::replay(connection, channel, stream, session, |body| {
        if let Ok(entry) = serde_json::from_slice::<Entry>(body) {
            book.apply(entry);
        }
    })
    .await?;
    Ok(book)
}

/// Acknowledges a delivery of the scheduler's queue.
async fn ack(delivery: Delivery) -> Result<(), AmqpError> {
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

fn confirmed(c: lapin::Confirmation, to: &str) -> Result<(), AmqpError> {
    if c.is_ack() && c.take_message().is_none() {
        Ok(())
    } else {
        Err(AmqpError::NotConfirmed(to.to_owned()))
    }
}
