//! `offboard worker`: consumes jobs from RabbitMQ through the same lanes, classification and
//! adapters as `offboard run`, and never loses one.
//!
//! Rules: a job is acknowledged only once its outcome is written and flushed to the report;
//! malformed messages and permanent failures are dead-lettered (published with the reason to the
//! dead-letter exchange, confirmed, then acknowledged); a lane whose circuit opens stops consuming and
//! leaves its messages in its queue. A redelivered job whose outcome the report already holds is
//! acknowledged without running again, so a crash between writing and acknowledging records it once.

//!
//! - `consume`: one lane's queue, a delivery's way through the lane to its acknowledgement.
//! - `gate`: the one worker at a time that counts people from the automatic doors, settles them
//!   and quarantines a burst (its log is a stream in the broker).
//! - `scheduler`: the one worker at a time that moves jobs due later through the broker's
//!   delay tiers, releases each to its lane at its due time, and takes cancels.
//! - `intake`: person-level events read, and split into per-provider jobs once released.
//! - `control`: operator commands (holds, the quarantine).
//! - `recent`: duplicates within the window.

mod consume;
mod control;
mod gate;
mod handle;
mod intake;
mod recent;
mod scheduler;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::Health;
use crate::config::Settings;
use crate::doors::amqp::{self, AmqpError};
use crate::job::{Directory, Invalid};
use crate::lane::Lanes;
use crate::metrics::Metrics;
use crate::outcome::Record;
use crate::sink::Outcomes;
use crate::sink::report::{SETTLED_INDEX_CAP, SettledIndex, Writer};

use crate::doors::control::Verifier;
use consume::consume_lane;
use control::consume_control;
use gate::GateHandle;
use recent::Recent;
use scheduler::SchedulerHandle;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error("{0}")]
    Secret(String),
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
    /// Memberships removed within `safety.window` (and those being run), for duplicate detection.
    recent: Recent,
    grace: Duration,
    /// Control commands must be signed with it, when set.
    control_secret: Option<secrecy::SecretString>,
}

/// Runs until `stop` fires: connects (and reconnects with backoff), declares the topology, and
/// consumes every provider queue and the intake queue.
pub async fn run(
    settings: &Settings,
    lanes: &Lanes,
    report: &Path,
    audit: crate::sink::audit::Audit,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: CancellationToken,
) -> Result<(), WorkerError> {
    let url = settings.amqp.url().ok_or(AmqpError::NoUrl)?;
    let control_secret = settings
        .amqp
        .control_secret()
        .map_err(WorkerError::Secret)?;
    if control_secret.is_none() {
        tracing::warn!(
            variable = settings.amqp.control_secret_env,
            "no control secret: hold and quarantine commands are honoured from any broker user allowed to write to the control exchange"
        );
    }
    let report_err = |source| WorkerError::Report {
        path: report.display().to_string(),
        source,
    };
    let done = SettledIndex::load(report, SETTLED_INDEX_CAP).map_err(report_err)?;
    let (writer, sink) = Writer::start(report, true).map_err(report_err)?;
    let grace = Duration::from_secs(settings.worker.grace_period_s);
    let (to_exchange, publishing) =
        crate::doors::outcomes::start(url.clone(), settings.amqp.clone(), stop.clone(), grace);
    let sink = Outcomes::new(sink, Some(audit))
        .observed_by(lanes.job_counter(metrics.clone()))
        .with_index(done)
        .then(to_exchange);
    let ctx = Arc::new(Ctx {
        settings: settings.clone(),
        directory: lanes.directory.clone(),
        sink,
        metrics,
        health,
        recent: Recent::new(settings.safety.window()),
        grace: Duration::from_secs(settings.worker.grace_period_s),
        control_secret,
    });
    for lane in &lanes.lanes {
        lane.attach_hold(crate::safety::hold::Hold::new(
            settings.safety.max_removals_per_window,
            settings.safety.window(),
        ));
    }
    // What the lanes learn of each provider's rate, kept every 30 s for the next start.
    let remembering = {
        let (lanes, settings, stop) = (lanes.clone(), settings.clone(), stop.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REMEMBER_EVERY);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every.tick() => lanes.remember(&settings).await,
                }
            }
        })
    };
    let roles = Roles {
        gate: Arc::new(GateHandle::default()),
        scheduler: Arc::new(SchedulerHandle::default()),
    };
    let mut delay = Duration::from_millis(200);
    let max_delay = Duration::from_millis(settings.amqp.reconnect_max_delay_ms.max(200));
    while !stop.is_cancelled() {
        match session(&ctx, lanes, &roles, &url, &stop).await {
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
    // The sink (and with it the exchange's feed) goes with the context: the publisher finishes
    // what is queued, within the grace period.
    drop(ctx);
    let _ = publishing.await;
    let _ = remembering.await;
    lanes.remember(settings).await;
    writer.finish().await.map_err(report_err)?;
    Ok(())
}

/// How often the worker writes the pacing state file.
const REMEMBER_EVERY: Duration = Duration::from_secs(30);

/// The roles one worker at a time holds, and the way to each while this one does.
#[derive(Clone)]
pub(super) struct Roles {
    gate: Arc<GateHandle>,
    scheduler: Arc<SchedulerHandle>,
}

/// One connection's life: returns Ok when stopped, Err when the connection failed.
async fn session(
    ctx: &Arc<Ctx>,
    lanes: &Lanes,
    roles: &Roles,
    url: &str,
    stop: &CancellationToken,
) -> Result<(), AmqpError> {
    let connection = Arc::new(amqp::connect(url, "offboard-worker").await?);
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
        let (ctx, gate, connection, session) = (
            ctx.clone(),
            roles.gate.clone(),
            connection.clone(),
            session.clone(),
        );
        tasks.spawn(async move { gate::run(ctx, gate, connection, session).await });
    }
    {
        let (ctx, scheduler, connection, session) = (
            ctx.clone(),
            roles.scheduler.clone(),
            connection.clone(),
            session.clone(),
        );
        tasks.spawn(async move { scheduler::run(ctx, scheduler, connection, session).await });
    }
    {
        let (lanes, roles, session, exchange) = (
            lanes.lanes.clone(),
            roles.clone(),
            session.clone(),
            ctx.settings.amqp.control_exchange.clone(),
        );
        let channel = connection.create_channel().await?;
        let verifier = ctx.control_secret.clone().map(Verifier::new);
        tasks.spawn(async move {
            consume_control(lanes, roles, channel, exchange, verifier, session).await
        });
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

fn invalid_record(
    job_id: String,
    provider: Option<String>,
    user: Option<String>,
    reason: &Invalid,
) -> Record {
    Record::invalid(job_id, None, provider, user, reason)
}
