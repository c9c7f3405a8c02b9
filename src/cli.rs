//! The command line: parsing, and each command's edge (config loading, exit codes, printing).
//! Everything below this is the library; errors become `anyhow` only here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Health};
use crate::config::Settings;
use crate::job::ProviderKind;
use crate::lane::Lanes;
use crate::metrics::Metrics;
use crate::run;
use crate::sandbox::{Sandbox, SandboxOptions};
use std::sync::Arc;

/// Exit codes: 0 every job removed or already absent; 1 any other outcome; 2 usage or
/// configuration error (nothing sent).
pub const EXIT_INCOMPLETE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "offboard",
    version,
    about = "Removes people from the organizations of SaaS providers, safely and fast."
)]
pub struct Cli {
    /// Log format on stderr. The filter comes from OFFBOARD_LOG (e.g. `info`, `offboard=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty, env = "OFFBOARD_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Remove every account listed in a CSV file, and write a report.
    Run(RunArgs),
    /// Consume removal jobs and person-level events from RabbitMQ (OFFBOARD_AMQP_URL).
    Worker(WorkerArgs),
    /// Validate a CSV file and publish its rows as jobs, each confirmed by the broker.
    Enqueue(EnqueueArgs),
    /// The workers' rolling-window holds: list them, or release a provider's lane.
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
        #[arg(long, env = "OFFBOARD_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// The quarantine of the automatic doors (Okta, SCIM, person-level messages): list it, or
    /// decide on it by exact count.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
        #[arg(long, env = "OFFBOARD_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Check an audit log: well formed, and every job that sent a request has a final record.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Look at the dead-letter queue, or move its messages back after a fix.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
        #[arg(long, env = "OFFBOARD_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Ask each provider, read-only, whether the people a report says are gone are still members.
    Verify(VerifyArgs),
    /// Serve the door identity systems push deprovisioning to (Okta Event Hooks, SCIM 2.0):
    /// it publishes into the broker's intake queue and holds no provider credential.
    Intake {
        /// The configuration file, with an [intake] table [default: config/offboard.toml].
        #[arg(long, env = "OFFBOARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the outcomes every worker publishes on the `offboard.outcomes` exchange, one JSON
    /// line each, as they come.
    Outcomes {
        #[arg(long, env = "OFFBOARD_CONFIG")]
        config: Option<PathBuf>,
        /// Keep printing until interrupted (without it: until no outcome came for --idle-ms).
        #[arg(long)]
        follow: bool,
        /// Milliseconds without an outcome after which a run without --follow ends.
        #[arg(long, default_value_t = 2000)]
        idle_ms: u64,
        /// A topic binding: `<provider>.<outcome>` with `*` and `#` (e.g. `*.failed`).
        #[arg(long, default_value = "#")]
        binding: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The JSON Lines report of `offboard run` (or of the worker). The last line of each job
    /// counts; every job that ended removed or already_absent is checked.
    #[arg(long)]
    pub report: PathBuf,
    /// The configuration file the run used [default: config/offboard.toml; with --sandbox, the
    /// embedded one].
    #[arg(long, env = "OFFBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Check against the five providers simulated on loopback. The sandbox starts afresh with
    /// the demo's members, so people an earlier `run --sandbox` removed show as still members.
    #[arg(long)]
    pub sandbox: bool,
    /// Where to write the evidence, one JSON line per person checked [default: beside the
    /// report, <report stem>.verify.jsonl].
    #[arg(long)]
    pub evidence: Option<PathBuf>,
}

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

#[derive(Debug, clap::Args)]
pub struct EnqueueArgs {
    #[arg(long)]
    pub csv: PathBuf,
    #[arg(long, env = "OFFBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Approve a batch above the blast-radius limits: N must be the file's exact removable count.
    #[arg(long, value_name = "N")]
    pub allow_removals: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Every worker's lanes: held or not, removals in the window.
    List,
    /// Let a held provider's lane consume again (its window starts afresh).
    Release { provider: String },
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// The gate's counts in the window and the open quarantine: doors, people, first and last
    /// arrival. `--json` prints the gate's view as one JSON object.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Release the open quarantine: refused unless it holds exactly COUNT people.
    Approve {
        #[arg(long)]
        count: usize,
        /// Who decides, for the audit log [default: $USER@host].
        #[arg(long)]
        by: Option<String>,
    },
    /// End every job of the open quarantine as failed, reason rejected_by_operator: nothing is
    /// sent. With --count, refused unless it holds exactly COUNT people.
    Reject {
        #[arg(long)]
        count: Option<usize>,
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Exit 0 when well formed and complete, 1 when jobs are unfinished or lines malformed.
    Verify { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Every dead letter: reason, provider, attempts, first and last failure.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move dead letters back to their provider's queue.
    Replay {
        /// Only this provider entry's.
        #[arg(long)]
        provider: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u64>,
    },
}

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
    /// Serve /metrics, /healthz and /readyz on this address while the run lasts.
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The sandbox's config, built in so `--sandbox` works from any directory.
const SANDBOX_CONFIG: &str = include_str!("../config/sandbox.toml");

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OFFBOARD_LOG")
        .unwrap_or_else(|_| "warn".into())
        .add_directive(
            format!("{}=info", crate::console::TARGET)
                .parse()
                .expect("a valid directive"),
        );
    crate::console::use_json(format == LogFormat::Json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub async fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => run_command(args).await,
        Command::Worker(args) => worker_command(args).await,
        Command::Enqueue(args) => enqueue_command(args).await,
        Command::Dlq { command, config } => dlq_command(command, config).await,
        Command::Audit {
            command: AuditCommand::Verify { file },
        } => audit_verify(&file),
        Command::Hold { command, config } => hold_command(command, config).await,
        Command::Quarantine { command, config } => quarantine_command(command, config).await,
        Command::Verify(args) => verify_command(args).await,
        Command::Intake { config } => intake_command(config).await,
        Command::Outcomes {
            config,
            follow,
            idle_ms,
            binding,
        } => outcomes_command(config, follow, idle_ms, binding).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            crate::console::error(format_args!("{e:#}"));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The config file named, or the default one.
fn load(config: Option<&PathBuf>) -> anyhow::Result<(String, Settings)> {
    let path = match config {
        Some(p) => p.clone(),
        None => {
            let path = PathBuf::from("config/offboard.toml");
            if !path.exists() {
                anyhow::bail!(
                    "no configuration: pass --config FILE or set OFFBOARD_CONFIG (config/offboard.example.toml documents every key)"
                );
            }
            path
        }
    };
    Ok((path.display().to_string(), Settings::load(&path)?))
}

/// Resolves once SIGTERM or SIGINT arrives.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn worker_command(args: WorkerArgs) -> anyhow::Result<ExitCode> {
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

/// `offboard intake`: the HTTP door alone, with `/metrics` and `/healthz` on `[metrics] listen`.
async fn intake_command(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
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

/// `offboard outcomes`: a private queue bound to the outcomes exchange, printed line by line.
async fn outcomes_command(
    config: Option<PathBuf>,
    follow: bool,
    idle_ms: u64,
    binding: String,
) -> anyhow::Result<ExitCode> {
    let (_, settings) = load(config.as_ref())?;
    let idle = (!follow).then(|| Duration::from_millis(idle_ms));
    let mut out = std::io::stdout().lock();
    crate::doors::outcomes::follow(&settings.amqp, &binding, idle, |line| {
        use std::io::Write;
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn enqueue_command(args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let (_, settings) = load(args.config.as_ref())?;
    let directory = settings.directory();
    let allow = args.allow_removals;
    let limits = settings.limits();
    let guard =
        |plan: &crate::doors::csv::Plan| crate::safety::check(&limits, &plan.per_lane, allow);
    let done = match crate::queue_admin::enqueue(&settings, &directory, &args.csv, 50, guard).await
    {
        Err(crate::queue_admin::QueueError::Refused(refusal)) => {
            crate::console::error(format_args!("{refusal}"));
            return Ok(ExitCode::from(crate::safety::EXIT_REFUSED));
        }
        other => other?,
    };
    for row in &done.invalid {
        println!("invalid: line {}: {}", row.line, row.reason);
    }
    if done.plan.invalid > done.invalid.len() as u64 {
        println!(
            "invalid: ... and {} more",
            done.plan.invalid - done.invalid.len() as u64
        );
    }
    println!(
        "Published {} job(s), each confirmed; {} not confirmed; {} invalid and {} protected row(s) not published.",
        done.published, done.unconfirmed, done.plan.invalid, done.plan.protected
    );
    Ok(ExitCode::from(
        if done.unconfirmed == 0 && done.plan.invalid == 0 {
            0
        } else {
            EXIT_INCOMPLETE
        },
    ))
}

async fn hold_command(command: HoldCommand, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use crate::doors::control::Control;
    let (_, settings) = load(config.as_ref())?;
    let control = match &command {
        HoldCommand::List => Control::List,
        HoldCommand::Release { provider } => {
            anyhow::ensure!(
                settings.providers.contains_key(provider),
                "no provider entry `{provider}` in the config"
            );
            Control::Release {
                provider: provider.clone(),
            }
        }
    };
    let replies =
        crate::queue_admin::control(&settings, &control, std::time::Duration::from_secs(2)).await?;
    if replies.is_empty() {
        println!("No worker answered within 2 s.");
        return Ok(ExitCode::from(EXIT_INCOMPLETE));
    }
    match command {
        HoldCommand::List => {
            println!(
                "{:<24} {:<14} {:<5} {:>9}  window",
                "worker", "provider", "held", "removals"
            );
            for r in &replies {
                for h in &r.holds {
                    println!(
                        "{:<24} {:<14} {:<5} {:>4}/{:<4}  {} s",
                        r.worker,
                        h.provider,
                        if h.held { "yes" } else { "no" },
                        h.removals_in_window,
                        h.max_removals_per_window,
                        h.window_s
                    );
                }
            }
        }
        HoldCommand::Release { provider } => {
            let released: Vec<&str> = replies
                .iter()
                .filter(|r| r.released)
                .map(|r| r.worker.as_str())
                .collect();
            if released.is_empty() {
                println!(
                    "No worker held `{provider}`; its window was reset on {} worker(s).",
                    replies.len()
                );
            } else {
                println!("Released `{provider}` on {}.", released.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn quarantine_command(
    command: QuarantineCommand,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use crate::doors::control::Control;
    let (_, settings) = load(config.as_ref())?;
    let operator = |by: Option<String>| {
        by.unwrap_or_else(|| {
            let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{user}@{}", host.trim())
        })
    };
    let (control, json) = match command {
        QuarantineCommand::List { json } => (Control::Quarantine, json),
        QuarantineCommand::Approve { count, by } => (
            Control::Approve {
                count,
                by: operator(by),
            },
            false,
        ),
        QuarantineCommand::Reject { count, by } => (
            Control::Reject {
                count,
                by: operator(by),
            },
            false,
        ),
    };
    let wait = std::time::Duration::from_secs(3);
    let replies = crate::queue_admin::control(&settings, &control, wait).await?;
    let Some(gate) = replies.into_iter().find_map(|r| r.gate) else {
        println!("No worker answered as the gate within 3 s: is a worker running?");
        return Ok(ExitCode::from(EXIT_INCOMPLETE));
    };
    if json {
        println!("{}", serde_json::to_string(&gate.view)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &gate.decided {
        Some(Ok(said)) => println!("{said}"),
        Some(Err(why)) => {
            println!("Refused: {why}");
            print!("{}", gate.view.table());
            return Ok(ExitCode::from(crate::safety::EXIT_REFUSED));
        }
        None => print!("{}", gate.view.table()),
    }
    Ok(ExitCode::SUCCESS)
}

fn audit_verify(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let v = crate::audit::verify(file).with_context(|| format!("reading {}", file.display()))?;
    println!("{}: {} entries", file.display(), v.entries);
    for line in &v.malformed {
        println!("line {line}: not an audit entry (a torn record from a crash mid-write?)");
    }
    for (job, attempt) in &v.unfinished {
        println!("unfinished: job {job} sent {attempt} request(s) and has no final record");
    }
    if v.is_complete() {
        println!("well formed and complete");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(EXIT_INCOMPLETE))
    }
}

/// Opens the audit log and attaches it to every lane.
/// Opens the audit log: every lane tells it of each request it sends, and the outcome sink of
/// each job's end.
fn open_audit(path: &std::path::Path, lanes: &Lanes) -> anyhow::Result<crate::audit::Audit> {
    let (audit, _thread) = crate::audit::Audit::open(path)
        .with_context(|| format!("opening the audit log {}", path.display()))?;
    for lane in &lanes.lanes {
        lane.log_requests(Arc::new(audit.clone()));
    }
    Ok(audit)
}

async fn dlq_command(command: DlqCommand, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let (_, settings) = load(config.as_ref())?;
    match command {
        DlqCommand::List { json } => {
            let letters = crate::queue_admin::list(&settings).await?;
            if json {
                for l in &letters {
                    println!("{}", serde_json::to_string(l)?);
                }
            } else {
                println!(
                    "{:<14} {:<26} {:>8}  {:<20} {:<20} job_id",
                    "provider", "reason", "attempts", "first_failure", "last_failure"
                );
                for l in &letters {
                    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                    println!(
                        "{:<14} {:<26} {:>8}  {:<20} {:<20} {}",
                        o(&l.provider),
                        l.reason,
                        l.attempts.map_or("-".into(), |a| a.to_string()),
                        o(&l.first_failure),
                        o(&l.last_failure),
                        o(&l.job_id)
                    );
                }
                println!("{} dead letter(s)", letters.len());
            }
        }
        DlqCommand::Replay { provider, limit } => {
            let moved = crate::queue_admin::replay(&settings, provider.as_deref(), limit).await?;
            println!("Moved {moved} dead letter(s) back to their queues.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a command that talks to providers starts from: the settings, the lanes, their metrics,
/// and the embedded sandbox when asked for (every entry pointed at it, its credentials in place
/// of the environment's).
struct Ready {
    settings: Settings,
    lanes: Lanes,
    metrics: Arc<Metrics>,
    sandbox: Option<Sandbox>,
}

/// Loads the config (`config`, else the built-in sandbox one with `sandbox`, else the default
/// path), starts the sandbox if asked (saying `note`), resolves credentials, builds the lanes.
async fn ready(config: Option<&PathBuf>, sandbox: bool, note: &str) -> anyhow::Result<Ready> {
    let (config_name, mut settings) = match (config, sandbox) {
        (Some(path), _) => (path.display().to_string(), Settings::load(path)?),
        (None, true) => (
            "sandbox.toml (built in)".to_owned(),
            Settings::from_toml(SANDBOX_CONFIG, "sandbox.toml (built in)")?,
        ),
        (None, false) => {
            let path = PathBuf::from("config/offboard.toml");
            if !path.exists() {
                anyhow::bail!(
                    "no configuration: pass --config FILE or set OFFBOARD_CONFIG (config/offboard.example.toml documents every key), or try --sandbox"
                );
            }
            (path.display().to_string(), Settings::load(&path)?)
        }
    };
    let sandbox = if sandbox {
        let sandbox = Sandbox::start(SandboxOptions::demo())
            .await
            .context("starting the sandbox")?;
        for entry in settings.providers.values_mut() {
            entry.base_url = Some(sandbox.base_url(entry.kind));
            if entry.kind == ProviderKind::Aerospike {
                entry.token_url = Some(sandbox.token_url());
            }
        }
        crate::console::say(format_args!("{note}"));
        Some(sandbox)
    } else {
        None
    };
    let sandbox_env: HashMap<&str, String> = sandbox
        .as_ref()
        .map(|s| s.env().into_iter().collect())
        .unwrap_or_default();
    let env = |name: &str| match &sandbox {
        Some(_) => sandbox_env.get(name).cloned(),
        None => std::env::var(name).ok(),
    };
    let resolved = settings.resolve(&config_name, &env)?;
    let metrics = Arc::new(Metrics::new());
    let lanes = Lanes::build(&settings, &resolved, &metrics)?;
    Ok(Ready {
        settings,
        lanes,
        metrics,
        sandbox,
    })
}

async fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
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

    let (csv, plan, shown) = run::plan(&args.csv, &lanes, 50).await?;
    let guard = crate::safety::check(&settings.limits(), &plan.per_lane, args.allow_removals);
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
                EXIT_INCOMPLETE
            } else {
                0
            },
        ));
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
    let audit = open_audit(
        &settings.audit.path_for(args.audit.as_deref(), &report),
        &lanes,
    )?;
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
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    Ok(ExitCode::from(if finished.success() {
        0
    } else {
        EXIT_INCOMPLETE
    }))
}

/// `offboard verify`: exit 0 when every person checked is confirmed gone, 1 when anyone is still a
/// member or could not be checked, 2 for bad input (nothing asked then). Sends no removal.
async fn verify_command(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    use crate::verify;
    let evidence = args
        .evidence
        .clone()
        .unwrap_or_else(|| verify::default_evidence_path(&args.report));
    // The whole report is read before anything is asked: a bad line ends here, nothing sent.
    let people = verify::read(&args.report).await?;

    let Ready { lanes, sandbox, .. } = ready(
        args.config.as_ref(),
        args.sandbox,
        "Sandbox: the five providers simulated on 127.0.0.1, started afresh with the demo's members; nothing leaves this machine.",
    )
    .await?;
    verify::check_providers(&args.report, &people, &lanes)?;
    let file = {
        let (path, report) = (evidence.clone(), args.report.clone());
        tokio::task::spawn_blocking(move || verify::EvidenceFile::create(&path, &report))
            .await
            .expect("creating a file does not panic")?
    };

    crate::console::say(format_args!(
        "Checking {} person(s) from {} (read-only: list and search requests only).",
        people.len(),
        args.report.display()
    ));
    let mut verified = verify::verify(&lanes, people, file).await;
    print!("{}", verify::table(&args.report, &verified));
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    if let Some(e) = verified.evidence_error.take() {
        return Err(e.into());
    }
    Ok(ExitCode::from(if verified.success() {
        0
    } else {
        EXIT_INCOMPLETE
    }))
}
