//! `offboard worker`: the lanes on the broker's queues, with the intake when `[intake] listen` is set.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::setup::{load, open_audit, terminated};
use crate::admin::{self, Health};
use crate::lane::Lanes;
use crate::metrics::Metrics;

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The configuration file [default: config/offboard.toml].
    #[arg(long, env = "OFFBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// The JSON Lines report to append to [default: worker.report in the config].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The audit log [default: audit.path in the config, else beside the report].
    #[arg(long)]
    pub audit: Option<PathBuf>,
}

pub(super) async fn command(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let (name, settings) = load(args.config.as_ref())?;
    let resolved = settings.resolve(&name, &|v| std::env::var(v).ok())?;
    let metrics = Arc::new(Metrics::new());
    let lanes = Lanes::build(&settings, &resolved, &metrics)?;
    let report = args
        .report
        .unwrap_or_else(|| settings.worker.report.clone());
    let audit = open_audit(
        &settings.audit.path_for(args.audit.as_deref(), &report),
        &lanes,
    )?;
    let health = Arc::new(Health {
        needs_broker: true,
        ..Health::default()
    });
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        terminated().await;
        tracing::warn!("stopping: no new jobs; jobs in flight finish within the grace period");
        on_signal.cancel();
    });
    let bound = admin::serve(
        settings.metrics.listen,
        metrics.clone(),
        lanes.lanes.clone(),
        health.clone(),
        stop.clone(),
    )
    .await
    .with_context(|| format!("serving metrics on {}", settings.metrics.listen))?;
    tracing::info!(%bound, "metrics, healthz and readyz served");
    if settings.intake.listen.is_some() {
        let secrets = settings.intake_secrets(&name, &|v| std::env::var(v).ok())?;
        crate::doors::intake::serve(
            &settings,
            secrets,
            metrics.clone(),
            stop.clone(),
            Duration::from_secs(settings.worker.grace_period_s),
        )
        .await?;
    }
    crate::worker::run(&settings, &lanes, &report, audit, metrics, health, stop).await?;
    Ok(ExitCode::SUCCESS)
}
