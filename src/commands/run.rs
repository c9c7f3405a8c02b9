//! `offboard run`: a CSV file through the lanes now, or its plan with `--dry-run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::setup::{Ready, open_audit, ready};
use crate::admin::{self, Health};
use crate::run;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The CSV file: provider,user,organization,transfer_to,job_id,reason,requested_by.
    #[arg(long)]
    pub csv: PathBuf,
    /// The configuration file [default: config/offboard.toml; with --sandbox, the embedded one].
    #[arg(long, env = "OFFBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where to write the JSON Lines report [default: beside the CSV, named for it and the time].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Validate the file and the config, prove each entry with one read-only request
    /// (preflight), and print the plan; send no removal.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: skip the preflight, send nothing at all.
    #[arg(long, requires = "dry_run")]
    pub offline: bool,
    /// Run against the five providers simulated on loopback (no accounts, no network).
    #[arg(long)]
    pub sandbox: bool,
    /// Approve a batch above the blast-radius limits: N must be the file's exact removable count.
    #[arg(long, value_name = "N")]
    pub allow_removals: Option<u64>,
    /// The audit log [default: audit.path in the config, else beside the report].
    #[arg(long)]
    pub audit: Option<PathBuf>,
    /// Read past this CSV column (repeat for each). Without it, a column the tool does not read
    /// refuses the file, naming it, before anything is sent.
    #[arg(long, value_name = "NAME")]
    pub ignore_column: Vec<String>,
    /// Run the rows that are due now and record the ones due later (`not_before`, `last_day`)
    /// as `not_attempted`, reason `scheduled`. Without it, a file with rows due later is
    /// refused: `offboard enqueue` schedules them.
    #[arg(long)]
    pub due_only: bool,
    /// Serve /metrics, /healthz and /readyz on this address while the run lasts.
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

pub(super) async fn command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let Ready {
        settings,
        lanes,
        metrics,
        sandbox,
    } = ready(
        args.config.as_ref(),
        args.sandbox,
        "Sandbox: the five providers simulated on 127.0.0.1; nothing leaves this machine.",
    )
    .await?;

    let (csv, plan, shown) = run::plan(&args.csv, &args.ignore_column, &lanes, 50).await?;
    let guard = crate::safety::check(&settings.limits(), &plan.due_now(), args.allow_removals);
    if args.dry_run {
        println!(
            "Plan for {} ({} rows), {} (--dry-run):",
            args.csv.display(),
            plan.rows,
            if args.offline {
                "nothing sent"
            } else {
                "no removal sent"
            }
        );
        for lane in &lanes.lanes {
            println!(
                "  {:<16} {:>8} removals ({})",
                lane.name,
                plan.per_lane[lane.id.0],
                lane.kind()
            );
        }
        println!("  {:<16} {:>8} removals", "total", plan.removable());
        if let Some((first, last)) = plan.later_span {
            println!(
                "Due later: {} of them (the first at {first}, the last at {last}); {}",
                plan.due_later(),
                if args.due_only {
                    "--due-only records them not_attempted (scheduled)"
                } else {
                    "a real run refuses the file: schedule them with `offboard enqueue`, or pass --due-only"
                }
            );
        }
        let skipped = plan.invalid + plan.protected;
        if skipped > 0 {
            println!(
                "Rows that will not run ({} invalid, {} protected):",
                plan.invalid, plan.protected
            );
            for row in &shown {
                println!("  line {}: {}", row.line, row.reason);
            }
            if skipped > shown.len() as u64 {
                println!("  ... and {} more", skipped - shown.len() as u64);
            }
        }
        if let Err(refusal) = &guard {
            println!("A real run would be {refusal}");
        }
        let mut unproven = false;
        if !args.offline {
            println!("Preflight (one read-only request per entry and organization):");
            for p in run::preflight(&lanes, &plan).await {
                let at = match &p.organization {
                    Some(o) => format!("{} {o}", p.entry),
                    None => p.entry.clone(),
                };
                match p.result {
                    Ok(()) => println!("  {at}: ok"),
                    Err(reason) => {
                        unproven = true;
                        println!("  {at}: FAILED: {reason}");
                    }
                }
            }
        }
        return Ok(ExitCode::from(
            if skipped > 0 || guard.is_err() || unproven {
                super::EXIT_INCOMPLETE
            } else {
                0
            },
        ));
    }
    if let (false, Some((first, last))) = (args.due_only, plan.later_span) {
        crate::console::error(format_args!(
            "{}: {} job(s) are due later (the first at {first}, the last at {last}); `offboard run` removes now, so nothing is sent. Schedule them with `offboard enqueue`, or pass --due-only to run what is due and record the rest not_attempted (scheduled)",
            args.csv.display(),
            plan.due_later(),
        ));
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }
    if let Err(refusal) = guard {
        crate::console::error(format_args!("{refusal}"));
        return Ok(ExitCode::from(crate::safety::EXIT_REFUSED));
    }
    drop(shown);

    let report = args
        .report
        .clone()
        .unwrap_or_else(|| run::default_report_path(&args.csv));
    let audit_path = settings.audit.path_for(args.audit.as_deref(), &report);
    let audit = open_audit(&audit_path, &lanes)?;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            crate::console::say(format_args!(
                "Interrupted: finishing the requests in flight, then writing the report."
            ));
            on_signal.cancel();
        }
    });
    let serving = CancellationToken::new();
    if let Some(addr) = args.metrics_listen {
        let bound = admin::serve(
            addr,
            metrics.clone(),
            lanes.lanes.clone(),
            Arc::new(Health::default()),
            serving.clone(),
        )
        .await
        .with_context(|| format!("serving metrics on {addr}"))?;
        crate::console::say(format_args!("Metrics on http://{bound}/metrics"));
    }
    // Every entry proves its base URL and credential before its first removal; a failed one is
    // said now, loudly, and its jobs end not_attempted with the reason.
    for p in run::preflight(&lanes, &plan).await {
        if let Err(reason) = p.result {
            crate::console::error(format_args!(
                "preflight failed, nothing is sent there: {reason}"
            ));
        }
    }
    let finished = run::run(&csv, &plan, &report, Some(audit), &lanes, metrics, stop).await?;
    lanes.remember(&settings).await;
    serving.cancel();
    print!("{}", run::closing(&finished, &lanes));
    // The audit log's head, for the ticket: a log that still ends in it was not changed since.
    if let Ok(chain) = crate::sink::chain::Chain::resume(&audit_path, "") {
        println!(
            "Audit log: {} (chain head sha256:{}; `offboard audit verify` checks it)",
            audit_path.display(),
            chain.head()
        );
    }
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    Ok(ExitCode::from(if finished.success() {
        0
    } else {
        super::EXIT_INCOMPLETE
    }))
}
