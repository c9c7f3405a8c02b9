//! `offboard quarantine`: the automatic doors' quarantine, listed, approved by exact count or rejected.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::setup::load;

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

pub(super) async fn command(
    command: QuarantineCommand,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use crate::doors::control::Control;
    let (_, settings) = load(config.as_ref())?;
    let operator = super::operator;
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
    let replies = crate::doors::control::ask(&settings, &control, wait).await?;
    let Some(gate) = replies.into_iter().find_map(|r| r.gate) else {
        println!("No worker answered as the gate within 3 s: is a worker running?");
        return Ok(ExitCode::from(super::EXIT_INCOMPLETE));
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
