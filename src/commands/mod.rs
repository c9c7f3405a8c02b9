//! The command line: parsing, and each command's edge (config loading, exit codes, printing), one
//! file per command. Everything below this is the library; errors become `anyhow` only here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod audit;
mod dlq;
mod enqueue;
mod hold;
mod intake;
mod outcomes;
mod quarantine;
mod reconcile;
mod run;
mod schedule;
mod setup;
mod verify;
mod worker;

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
    Run(run::RunArgs),
    /// Consume removal jobs and person-level events from RabbitMQ (OFFBOARD_AMQP_URL).
    Worker(worker::WorkerArgs),
    /// Validate a CSV file and publish its rows as jobs, each confirmed by the broker.
    Enqueue(enqueue::EnqueueArgs),
    /// The workers' rolling-window holds: list them, or release a provider's lane.
    Hold {
        #[command(subcommand)]
        command: hold::HoldCommand,
        #[arg(long, env = "OFFBOARD_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// The quarantine of the automatic doors (Okta, SCIM, person-level messages): list it, or
    /// decide on it by exact count.
    Quarantine {
        #[command(subcommand)]
        command: quarantine::QuarantineCommand,
        #[arg(long, env = "OFFBOARD_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Every member of every configured organization sorted against a roster of who should keep
    /// access: the orphans written as a CSV `run` takes. Removes nobody.
    Reconcile(reconcile::ReconcileArgs),
    /// Removals due later, waiting in the broker: list them, or cancel them before they are due.
    Schedule {
        #[command(subcommand)]
        command: schedule::ScheduleCommand,
        #[arg(long, env = "OFFBOARD_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Check an audit log: well formed, and every job that sent a request has a final record.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Look at the dead-letter queue, or move its messages back after a fix.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
        #[arg(long, env = "OFFBOARD_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Ask each provider, read-only, whether the people a report says are gone are still members.
    Verify(verify::VerifyArgs),
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
        Command::Run(args) => run::command(args).await,
        Command::Worker(args) => worker::command(args).await,
        Command::Enqueue(args) => enqueue::command(args).await,
        Command::Dlq { command, config } => dlq::command(command, config).await,
        Command::Audit {
            command: audit::AuditCommand::Verify { file },
        } => audit::verify(&file),
        Command::Hold { command, config } => hold::command(command, config).await,
        Command::Quarantine { command, config } => quarantine::command(command, config).await,
        Command::Reconcile(args) => reconcile::command(args).await,
        Command::Schedule { command, config } => schedule::command(command, config).await,
        Command::Verify(args) => verify::command(args).await,
        Command::Intake { config } => intake::command(config).await,
        Command::Outcomes {
            config,
            follow,
            idle_ms,
            binding,
        } => outcomes::command(config, follow, idle_ms, binding).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            crate::console::error(format_args!("{e:#}"));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Who an operator's decision is by, for the audit log: `--by`, else `$USER@host`.
fn operator(by: Option<String>) -> String {
    by.unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{user}@{}", host.trim())
    })
}
