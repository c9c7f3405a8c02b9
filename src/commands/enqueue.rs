//! `offboard enqueue`: a CSV file checked, guarded and published as jobs, each confirmed.

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::Confirmation;
use lapin::options::BasicPublishOptions;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::sync::mpsc;

use super::setup::load;
use crate::config::Settings;
use crate::doors::amqp::{self, AmqpError, JobMessage, Publisher};
use crate::doors::csv::{self, CsvFile, InvalidRow, Plan};
use crate::job::Directory;

#[derive(Debug, clap::Args)]
pub struct EnqueueArgs {
    #[arg(long)]
    pub csv: PathBuf,
    #[arg(long, env = "OFFBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Approve a batch above the blast-radius limits: N must be the file's exact removable count.
    #[arg(long, value_name = "N")]
    pub allow_removals: Option<u64>,
    /// Read past this CSV column (repeat for each). Without it, a column the tool does not read
    /// refuses the file, naming it, before anything is published.
    #[arg(long, value_name = "NAME")]
    pub ignore_column: Vec<String>,
}

pub(super) async fn command(args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let (_, settings) = load(args.config.as_ref())?;
    let directory = settings.directory();
    let allow = args.allow_removals;
    let limits = settings.limits();
    let guard =
        |plan: &crate::doors::csv::Plan| crate::safety::check(&limits, &plan.per_lane, allow);
    let done = match enqueue(
        &settings,
        &directory,
        &args.csv,
        &args.ignore_column,
        50,
        guard,
    )
    .await
    {
        Err(EnqueueError::Refused(refusal)) => {
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
    if done.scheduled > 0 {
        println!(
            "Of them, {} are due later and wait in the broker until then: `offboard schedule list` shows them, `offboard schedule cancel` takes them back.",
            done.scheduled
        );
    }
    Ok(ExitCode::from(
        if done.unconfirmed == 0 && done.plan.invalid == 0 {
            0
        } else {
            super::EXIT_INCOMPLETE
        },
    ))
}

#[derive(Debug, thiserror::Error)]
pub(super) enum EnqueueError {
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error(transparent)]
    Csv(#[from] csv::CsvError),
    #[error("{0}")]
    Refused(String),
}

/// What `enqueue` did.
pub(super) struct Enqueued {
    pub plan: Plan,
    pub invalid: Vec<InvalidRow>,
    pub published: u64,
    pub unconfirmed: u64,
    /// Of the published (confirmed), the jobs due later: they wait in the broker.
    pub scheduled: u64,
}

/// Publishes confirms at most this many ahead of the broker's acknowledgements.
const WINDOW: usize = 512;

/// Validates a CSV (invalid rows are returned, not published) and publishes every valid,
/// non-duplicate row as a job message, each confirmed by the broker.
pub(super) async fn enqueue(
    settings: &Settings,
    directory: &Directory,
    path: &std::path::Path,
    ignored: &[String],
    show: usize,
    guard: impl FnOnce(&Plan) -> Result<(), String>,
) -> Result<Enqueued, EnqueueError> {
    let url = settings.amqp.url().ok_or(AmqpError::NoUrl)?;
    let csv = {
        let (p, ignored) = (path.to_owned(), ignored.to_vec());
        tokio::task::spawn_blocking(move || CsvFile::open_ignoring(&p, &ignored))
            .await
            .expect("no panic")?
    };
    let (plan, invalid) = {
        let (csv, directory, n) = (csv.clone(), directory.clone(), settings.providers.len());
        tokio::task::spawn_blocking(move || {
            let mut shown = vec![];
            let plan = csv::scan(&csv, &directory, n, |r| {
                if shown.len() < show {
                    shown.push(r)
                }
            })?;
            Ok::<_, csv::CsvError>((plan, shown))
        })
        .await
        .expect("no panic")?
    };
    // The blast-radius guard, before the broker is even contacted.
    guard(&plan).map_err(EnqueueError::Refused)?;
    // What is published is what the guard approved: the same open file, unmodified.
    csv.unchanged()?;
    let connection = amqp::connect(&url, "offboard-enqueue").await?;
    let publisher = Publisher::new(&connection).await?;
    let names: Vec<&str> = settings.providers.keys().map(String::as_str).collect();
    amqp::declare(publisher.channel(), &settings.amqp, &names).await?;

    let (tx, mut rx) = mpsc::channel::<JobMessage>(1024);
    let reader = {
        let (csv, directory, duplicates) =
            (csv.clone(), directory.clone(), plan.duplicates.clone());
        tokio::task::spawn_blocking(move || {
            csv.for_each(|(line, raw)| {
                let Ok(raw) = raw else { return };
                for (_, job) in directory.validate_each(&raw, Some(line)) {
                    match job {
                        Ok(job) if !duplicates.contains(&(line, job.lane)) => {
                            let _ = tx.blocking_send(JobMessage::from_job(&job));
                        }
                        _ => {}
                    }
                }
            })
        })
    };
    let (mut published, mut unconfirmed, mut scheduled) = (0u64, 0u64, 0u64);
    let mut pending = FuturesUnordered::new();
    let exchange = settings.amqp.exchange.as_str();
    let channel = publisher.channel();
    loop {
        tokio::select! {
            msg = rx.recv(), if pending.len() < WINDOW => match msg {
                Some(msg) => {
                    let body = serde_json::to_vec(&msg).expect("serializable");
                    let due = msg.due_at.as_deref().and_then(|d| d.parse::<jiff::Timestamp>().ok());
                    let later = due.filter(|d| *d > jiff::Timestamp::now());
                    let confirms = match later {
                        // Due later: logged first (so `schedule list` shows it), then sent to wait.
                        Some(due) => {
                            amqp::schedule_job(channel, &settings.amqp, &msg, &body, due).await?.into()
                        }
                        None => vec![channel.basic_publish(
                            exchange.into(),
                            msg.provider.as_str().into(),
                            BasicPublishOptions { mandatory: true, ..Default::default() },
                            &body,
                            amqp::job_properties(&msg.job_id),
                        ).await.map_err(AmqpError::from)?],
                    };
                    let later = later.is_some();
                    pending.push(futures_util::future::join_all(confirms).map(move |c| (later, c)));
                }
                None => break,
            },
            Some((later, c)) = pending.next(), if !pending.is_empty() => {
                if tally(c, &mut published, &mut unconfirmed) && later {
                    scheduled += 1;
                }
            }
        }
    }
    while let Some((later, c)) = pending.next().await {
        if tally(c, &mut published, &mut unconfirmed) && later {
            scheduled += 1;
        }
    }
    reader.await.expect("no panic")?;
    let _ = connection.close(200, "enqueued".into()).await;
    Ok(Enqueued {
        plan,
        invalid,
        published,
        unconfirmed,
        scheduled,
    })
}

/// Counts a job published when every one of its publishes was confirmed; says whether it was.
fn tally(
    confirms: Vec<lapin::Result<Confirmation>>,
    published: &mut u64,
    unconfirmed: &mut u64,
) -> bool {
    let confirmed = confirms.into_iter().all(|c| match c {
        Ok(c) => c.is_ack() && c.take_message().is_none(),
        Err(e) => {
            tracing::error!(error = %e, "publish not confirmed");
            false
        }
    });
    if confirmed {
        *published += 1
    } else {
        *unconfirmed += 1
    }
    confirmed
}
