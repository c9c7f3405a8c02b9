//! `offboard schedule`: what waits for its due time, by due time, and cancelling it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::setup::load;
use crate::doors::control::{Control, ScheduleReply};
use crate::schedule::{Filter, Selector};

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// The jobs waiting, by due time, with counts per day (UTC) and per provider.
    List {
        /// Only jobs due before this instant (RFC 3339, e.g. 2027-01-01T00:00:00Z).
        #[arg(long, value_name = "T")]
        before: Option<jiff::Timestamp>,
        #[arg(long, value_name = "P")]
        provider: Option<String>,
        /// Only this person's jobs (the user a job names, any case).
        #[arg(long, value_name = "EMAIL")]
        person: Option<String>,
        /// The scheduler's answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Cancel waiting jobs before they are due: each ends `failed`, reason `cancelled`, in the
    /// report, the audit log and the outcomes exchange, and is never sent.
    Cancel {
        /// Every waiting job of this person (repeat for several).
        #[arg(long, value_name = "EMAIL")]
        person: Vec<String>,
        /// This job (repeat for several).
        #[arg(long = "job", value_name = "ID")]
        jobs: Vec<String>,
        /// Every waiting job a row of this CSV names (by provider and user; `*` for every provider).
        #[arg(long, value_name = "CSV")]
        file: Option<PathBuf>,
        /// Who cancels, for the records [default: $USER@host].
        #[arg(long)]
        by: Option<String>,
    },
}

/// How long the scheduler may take to read the whole log and answer.
const WAIT: Duration = Duration::from_secs(60);

pub(super) async fn command(
    command: ScheduleCommand,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let (_, settings) = load(config.as_ref())?;
    let (control, json) = match command {
        ScheduleCommand::List {
            before,
            provider,
            person,
            json,
        } => (
            Control::Schedule {
                filter: Filter {
                    before,
                    provider,
                    person,
                },
            },
            json,
        ),
        ScheduleCommand::Cancel {
            person,
            jobs,
            file,
            by,
        } => {
            let targets = match file {
                Some(path) => tokio::task::spawn_blocking(move || targets_of(&path))
                    .await
                    .expect("no panic")?,
                None => vec![],
            };
            let selector = Selector {
                people: person,
                jobs,
                targets,
            };
            if selector.is_empty() {
                anyhow::bail!("name what to cancel: --person EMAIL, --job ID or --file CSV");
            }
            (
                Control::Cancel {
                    selector,
                    by: super::operator(by),
                },
                false,
            )
        }
    };
    let replies =
        crate::doors::control::ask_until(&settings, &control, WAIT, |r| r.schedule.is_some())
            .await?;
    let Some(reply) = replies.into_iter().find_map(|r| r.schedule) else {
        println!(
            "No worker answered as the scheduler within {} s: is a worker running?",
            WAIT.as_secs()
        );
        return Ok(ExitCode::from(super::EXIT_INCOMPLETE));
    };
    match reply {
        ScheduleReply::View(view) if json => println!("{}", serde_json::to_string(&view)?),
        ScheduleReply::View(view) => {
            println!(
                "{} job(s) waiting{}.",
                view.waiting,
                if view.waiting == view.all_waiting {
                    String::new()
                } else {
                    format!(" of {} in all", view.all_waiting)
                }
            );
            if !view.per_day.is_empty() {
                println!("Due per day (UTC):");
                for (day, n) in &view.per_day {
                    println!("  {day} {n:>8}");
                }
                println!("Per provider:");
                for (p, n) in &view.per_provider {
                    println!("  {p:<16} {n:>8}");
                }
                println!("First by due time:");
                for w in &view.first {
                    println!(
                        "  {}  {:<12} {:<32} {}",
                        w.due_at, w.provider, w.user, w.job_id
                    );
                }
                if view.waiting > view.first.len() as u64 {
                    println!("  ... and {} more", view.waiting - view.first.len() as u64);
                }
            }
        }
        ScheduleReply::Cancelled(Err(why)) => {
            crate::console::error(format_args!("cancel failed part-way: {why}"));
            return Ok(ExitCode::from(super::EXIT_INCOMPLETE));
        }
        ScheduleReply::Cancelled(Ok(done)) => {
            println!(
                "Cancelled {} waiting job(s): each recorded failed (cancelled), never sent.",
                done.cancelled.len()
            );
            for w in &done.cancelled {
                println!(
                    "  {}  {:<12} {} (was due {})",
                    w.job_id, w.provider, w.user, w.due_at
                );
            }
            for (job, at) in &done.too_late {
                println!("  {job}: too late, released to its lane at {at} (the cancel lost)");
            }
            for job in &done.unknown {
                println!("  {job}: not waiting (never scheduled, or cancelled before)");
            }
            if !done.too_late.is_empty() || !done.unknown.is_empty() {
                return Ok(ExitCode::from(super::EXIT_INCOMPLETE));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The (provider, user) of every row of a CSV, for cancelling what it scheduled. Any header the
/// enqueue took is taken here; only `provider` and `user` are read.
fn targets_of(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let csv = crate::doors::csv::CsvFile::open(path)?;
    let mut out = Vec::new();
    let mut bad = None;
    csv.for_each(|(line, raw)| match raw {
        Ok(raw) => match (raw.provider.as_deref(), raw.user.as_deref()) {
            (Some(p), Some(u)) if !p.trim().is_empty() && !u.trim().is_empty() => {
                out.push((p.trim().to_owned(), u.trim().to_owned()))
            }
            _ => {
                bad.get_or_insert(format!("line {line}: needs `provider` and `user`"));
            }
        },
        Err(e) => {
            bad.get_or_insert(format!("line {line}: {e}"));
        }
    })?;
    match bad {
        Some(why) => anyhow::bail!("{}: {why}: nothing cancelled", path.display()),
        None => Ok(out),
    }
}
