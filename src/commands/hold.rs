//! `offboard hold`: the workers' rolling-window holds, listed or released.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::setup::load;

#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Every worker's lanes: held or not, removals in the window.
    List,
    /// Let a held provider's lane consume again (its window starts afresh).
    Release { provider: String },
}

pub(super) async fn command(
    command: HoldCommand,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
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
        crate::doors::control::ask(&settings, &control, std::time::Duration::from_secs(2)).await?;
    if replies.is_empty() {
        println!("No worker answered within 2 s.");
        return Ok(ExitCode::from(super::EXIT_INCOMPLETE));
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
