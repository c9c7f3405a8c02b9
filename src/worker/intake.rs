//! Person-level events: read off the intake queue (by the gate), and, once the gate releases a
//! person, split into one job per provider target and published with confirms; or, for a person
//! rejected by an operator or pushed in shadow mode, each job recorded and nothing sent.

use lapin::Channel;
use lapin::message::Delivery;

use crate::doors::amqp::{self, AmqpError, Event, JobMessage};
use crate::job::{Invalid, Job};
use crate::outcome::{Outcome, Reason, Record};

use super::consume::reject;
use super::{Ctx, invalid_record};

/// An event off the intake queue, with its id (its own, else the message's stable id); or
/// `None` once an unreadable one is recorded and dead-lettered.
pub(super) async fn parse(
    ctx: &Ctx,
    acker: &amqp::Acker<'_>,
    delivery: &Delivery,
) -> Option<(Event, String)> {
    match amqp::read_event(delivery) {
        Ok(read) => Some(read),
        Err(amqp::Unreadable { id, why }) => {
            let rec = invalid_record(id, None, None, &why);
            reject(ctx, acker, rec, &why).await;
            None
        }
    }
}

/// What became of a released person's event.
#[derive(Debug)]
pub(super) enum Split {
    /// Every job published (or, without sending, recorded), and every invalid target recorded.
    Done,
    /// An outcome could not be recorded: try again later.
    Unrecorded,
}

/// Publishes every job of the event to its lane (confirmed), recording targets that cannot be
/// jobs. Job ids are stable, so publishing the lot again after a crash is harmless: copies dedupe.
pub(super) async fn release(
    ctx: &Ctx,
    channel: &Channel,
    event: &Event,
    event_id: &str,
) -> Result<Split, AmqpError> {
    for (i, target) in event.targets.iter().enumerate() {
        // One job, or one per entry for a target addressed to every provider (`*`).
        for (provider, result) in jobs_of(ctx, event, event_id, i, target) {
            match result {
                Ok(job) => {
                    let msg = JobMessage::from_job(&job);
                    let body = serde_json::to_vec(&msg).expect("serializable");
                    let props = amqp::job_properties(&msg.job_id);
                    amqp::confirm_publish(
                        channel,
                        &ctx.settings.amqp.exchange,
                        &job.provider,
                        &body,
                        props,
                    )
                    .await?;
                }
                Err(reason) => {
                    if !record_invalid(ctx, event_id, i, target, provider, reason).await {
                        return Ok(Split::Unrecorded);
                    }
                }
            }
        }
    }
    Ok(Split::Done)
}

/// Records every job of the event as ended without a request: `failed`/`rejected_by_operator`,
/// or `not_attempted`/`shadow` with the plan (which entry would be asked to remove whom).
pub(super) async fn record_unsent(
    ctx: &Ctx,
    event: &Event,
    event_id: &str,
    unsent: &Unsent<'_>,
) -> Split {
    for (i, target) in event.targets.iter().enumerate() {
        for (provider, result) in jobs_of(ctx, event, event_id, i, target) {
            let recorded = match result {
                Ok(job) => {
                    if ctx.sink.is_settled(&job.id, true).await {
                        continue;
                    }
                    let rec = unsent.record(&job);
                    ctx.sink.settle(rec, Some(&job), amqp::Part).await
                }
                Err(reason) => record_invalid(ctx, event_id, i, target, provider, reason).await,
            };
            if !recorded {
                return Split::Unrecorded;
            }
        }
    }
    Split::Done
}

/// The jobs of one target of an event, or why each cannot be one.
fn jobs_of(
    ctx: &Ctx,
    event: &Event,
    event_id: &str,
    index: usize,
    target: &amqp::EventTarget,
) -> Vec<(Option<String>, Result<Job, Invalid>)> {
    let raw = target.raw(event, event_id, index);
    let mut jobs = ctx.directory.validate_each(&raw, None);
    if target.lacks_email() {
        for (_, result) in &mut jobs {
            if !matches!(result, Err(Invalid::Protected { .. })) {
                *result = Err(Invalid::NoEmail(target.user.clone()));
            }
        }
    }
    jobs
}

/// Why a job ends without a request.
pub(super) enum Unsent<'a> {
    Rejected { by: &'a str, quarantine: &'a str },
    Shadow,
}

impl Unsent<'_> {
    fn record(&self, job: &Job) -> Record {
        let (outcome, reason, message) = match self {
            Unsent::Rejected { by, quarantine } => (
                Outcome::Failed,
                Reason::RejectedByOperator,
                format!("rejected by {by} in quarantine {quarantine}: nothing was sent"),
            ),
            Unsent::Shadow => (
                Outcome::NotAttempted,
                Reason::Shadow,
                format!(
                    "shadow mode: `{}` would be asked to remove {}; nothing was sent",
                    job.provider,
                    job.subject.user()
                ),
            ),
        };
        let mut r = Record::unsent(job.id.to_string(), outcome, reason, message);
        r.provider = Some(job.provider.to_string());
        r.organization = job.subject.organization();
        r.user = Some(job.subject.user());
        r
    }
}

/// Records a target of an event that cannot be a job (once). False when it could not be recorded.
async fn record_invalid(
    ctx: &Ctx,
    event_id: &str,
    index: usize,
    target: &amqp::EventTarget,
    provider: Option<String>,
    reason: Invalid,
) -> bool {
    let id = match (&provider, target.provider.as_str()) {
        (Some(p), crate::job::EVERY_PROVIDER) => format!("{event_id}:{index}:{p}"),
        _ => format!("{event_id}:{index}"),
    };
    let provider = provider.unwrap_or_else(|| target.provider.clone());
    ctx.sink.is_settled(&id, false).await
        || ctx
            .sink
            .settle(
                invalid_record(id, Some(provider), Some(target.user.clone()), &reason),
                None,
                amqp::Part,
            )
            .await
}
