//! `offboard dlq list|replay`: the dead letters, looked at or moved back after a fix.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::setup::load;

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

pub(super) async fn command(
    command: DlqCommand,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let (_, settings) = load(config.as_ref())?;
    match command {
        DlqCommand::List { json } => {
            let letters = crate::doors::amqp::list_dead_letters(&settings).await?;
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
            let moved =
                crate::doors::amqp::replay_dead_letters(&settings, provider.as_deref(), limit)
                    .await?;
            println!("Moved {moved} dead letter(s) back to their queues.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
