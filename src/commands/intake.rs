//! `offboard intake`: the HTTP door identity systems push to, alone.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::setup::{load, terminated};
use crate::admin::{self, Health};
use crate::metrics::Metrics;

/// `offboard intake`: the HTTP door alone, with `/metrics` and `/healthz` on `[metrics] listen`.
pub(super) async fn command(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let (name, settings) = load(config.as_ref())?;
    let secrets = settings.intake_secrets(&name, &|v| std::env::var(v).ok())?;
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        terminated().await;
        tracing::warn!("stopping: requests in flight finish first");
        on_signal.cancel();
    });
    let health = Arc::new(Health::default());
    let bound = admin::serve(
        settings.metrics.listen,
        metrics.clone(),
        vec![],
        health,
        stop.clone(),
    )
    .await
    .with_context(|| format!("serving metrics on {}", settings.metrics.listen))?;
    tracing::info!(%bound, "metrics and healthz served");
    let running = crate::doors::intake::serve(
        &settings,
        secrets,
        metrics,
        stop,
        Duration::from_secs(settings.worker.grace_period_s),
    )
    .await?;
    crate::console::say(format_args!("intake listening on {}", running.addr));
    running.done.await??;
    Ok(ExitCode::SUCCESS)
}
