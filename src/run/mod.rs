//! `offboard run`: a CSV file through the lanes to the providers, with a report for the auditors.

pub mod progress;

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::doors::csv::{self, CsvError, CsvFile, InvalidRow, Plan};
use crate::job::{Job, LaneId};
use crate::lane::{Lane, Lanes};
use crate::metrics::Metrics;
use crate::outcome::{Outcome, Reason, Record, Summary};
use crate::sink::Outcomes;
use crate::sink::audit::Audit;
use crate::sink::report::Writer;
use progress::Progress;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "{report} does not belong to this CSV: line {line} there is {was}, here {now}. Pass another --report"
    )]
    ForeignReport {
        report: String,
        line: u64,
        was: String,
        now: String,
    },
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error(transparent)]
    Provider(#[from] crate::lane::registry::BuildError),
    #[error("report {path}: {source}")]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a finished run hands back for the exit code and the closing words.
pub struct Finished {
    pub csv: PathBuf,
    pub plan: Plan,
    pub summary: Summary,
    pub report: PathBuf,
    /// Jobs the plan counted that have no record: interrupted before they started.
    pub unrecorded: u64,
    pub interrupted: bool,
}

impl Finished {
    /// Exit code 0 only when every planned job ended removed or already absent.
    pub fn success(&self) -> bool {
        self.summary.all_done() && self.unrecorded == 0 && !self.interrupted
    }
}

/// The default report path: beside the CSV, named for it and the time, so no run overwrites another.
pub fn default_report_path(csv: &Path) -> PathBuf {
    let stem = csv
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("offboard");
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    csv.with_file_name(format!("{stem}.report-{stamp}.jsonl"))
}

fn invalid_record(row: InvalidRow) -> Record {
    let mut r = Record::invalid(
        row.job_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        Some(row.line),
        row.provider,
        row.user,
        &row.reason,
    );
    r.organization = row.organization;
    r
}

/// One preflight: the entry, the organization (where rows name one), and what it found.
pub struct Preflight {
    pub entry: String,
    pub organization: Option<String>,
    pub result: Result<(), String>,
}

/// Proves every entry (and organization) the plan has jobs for, before any removal: one
/// read-only request each, all entries at once. Failed ones keep their jobs from being sent
/// (they end `not_attempted` with the reason); the others go on.
pub async fn preflight(lanes: &Lanes, plan: &Plan) -> Vec<Preflight> {
    let mut checks = tokio::task::JoinSet::new();
    for lane in &lanes.lanes {
        if plan.per_lane[lane.id.0] == 0 {
            continue;
        }
        let orgs: Vec<Option<String>> = match plan.organizations.get(lane.id.0) {
            Some(o) if !o.is_empty() => o.iter().cloned().map(Some).collect(),
            _ => vec![None],
        };
        let lane = lane.clone();
        checks.spawn(async move {
            let mut out = Vec::new();
            for org in orgs {
                let result = lane.preflight(org.as_deref()).await;
                out.push(Preflight {
                    entry: lane.name.to_string(),
                    organization: org,
                    result,
                });
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(done) = checks.join_next().await {
        all.extend(done.expect("preflight does not panic"));
    }
    all.sort_by(|a, b| (&a.entry, &a.organization).cmp(&(&b.entry, &b.organization)));
    all
}

/// Opens the file and validates it without sending anything: the open file (which the run then
/// reads, and no other), the plan, and up to `show` invalid rows.
pub async fn plan(
    csv_path: &Path,
    ignored: &[String],
    lanes: &Lanes,
    show: usize,
) -> Result<(CsvFile, Plan, Vec<InvalidRow>), RunError> {
    let csv = open(csv_path, ignored).await?;
    let directory = lanes.directory.clone();
    let n = lanes.lanes.len();
    let scanned = csv.clone();
    let (plan, shown) = tokio::task::spawn_blocking(move || {
        let mut shown = Vec::new();
        let plan = csv::scan(&scanned, &directory, n, |r| {
            if shown.len() < show {
                shown.push(r)
            }
        })?;
        Ok::<_, RunError>((plan, shown))
    })
    .await
    .expect("scan does not panic")?;
    Ok((csv, plan, shown))
}

async fn open(path: &Path, ignored: &[String]) -> Result<CsvFile, RunError> {
    let (path, ignored) = (path.to_owned(), ignored.to_vec());
    Ok(
        tokio::task::spawn_blocking(move || CsvFile::open_ignoring(&path, &ignored))
            .await
            .expect("open does not panic")?,
    )
}

/// Runs every job of the CSV file, as opened and planned by [`plan`] and approved (`approved`),
/// and writes the report. Refuses to send anything if the file was modified since, or if its rows
/// now plan differently. `stop` ends the run early: no new job starts, jobs in flight finish and
/// are recorded.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    csv: &CsvFile,
    approved: &Plan,
    report: &Path,
    audit: Option<Audit>,
    lanes: &Lanes,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<Finished, RunError> {
    let csv = csv.clone();
    csv.unchanged()?;
    let report_err = |source| RunError::Report {
        path: report.to_owned(),
        source,
    };
    // Resuming: the lines the report already settled are neither run nor recorded again.
    let settled = {
        let path = report.to_owned();
        tokio::task::spawn_blocking(move || crate::sink::report::settled_lines(&path))
            .await
            .expect("no panic")
            .map_err(report_err)?
    };
    if !settled.is_empty() {
        check_same_file(&csv, report, &settled).await?;
    }
    let settled: Arc<HashSet<(u64, String)>> = Arc::new(settled.into_keys().collect());
    let settled_lanes: HashSet<(u64, LaneId)> = settled
        .iter()
        .filter_map(|(line, provider)| Some((*line, lanes.directory.lookup(provider)?.0)))
        .collect();
    if !settled.is_empty() {
        crate::console::say(format_args!(
            "Resuming: {} job(s) already in {} are skipped.",
            settled.len(),
            report.display()
        ));
    }
    let (writer, sink) = Writer::start(report, true).map_err(report_err)?;
    let sink = Outcomes::new(sink, audit).observed_by(lanes.job_counter(metrics.clone()));
    let total = Arc::new(AtomicU64::new(0));
    let tally = sink.live().clone();
    let progress = Progress::start(tally.clone(), total.clone(), lanes.lanes.clone());

    // The scan records invalid rows as it finds them and counts the plan, before anything is sent.
    let scanned = {
        let (csv, directory, sink, n, metrics, settled) = (
            csv.clone(),
            lanes.directory.clone(),
            sink.clone(),
            lanes.lanes.len(),
            metrics.clone(),
            settled.clone(),
        );
        tokio::task::spawn_blocking(move || {
            csv::scan(&csv, &directory, n, |row| {
                if !settled.contains(&(row.line, row.provider.clone().unwrap_or_default())) {
                    if !matches!(row.reason, crate::job::Invalid::Protected { .. }) {
                        metrics.invalid("csv");
                    }
                    sink.record_blocking(invalid_record(row))
                }
            })
        })
        .await
        .expect("scan does not panic")
    };
    // What is about to be sent must be what was approved: the same open file, unmodified, planning
    // the same jobs.
    let scanned = scanned.and_then(|plan| {
        csv.unchanged()?;
        if plan.per_lane != approved.per_lane || plan.duplicates != approved.duplicates {
            return Err(CsvError::Changed {
                path: csv.path().to_owned(),
            });
        }
        Ok(plan)
    });
    let plan = match scanned {
        Ok(plan) => plan,
        Err(e) => {
            drop(sink);
            progress.finish().await;
            let _ = writer.finish().await;
            return Err(e.into());
        }
    };
    total.store(
        plan.removable() + plan.invalid + plan.protected,
        Ordering::Relaxed,
    );

    let skip: Arc<HashSet<(u64, LaneId)>> =
        Arc::new(plan.duplicates.union(&settled_lanes).copied().collect());
    let mut drives = Vec::new();
    let mut feeds = Vec::new();
    for lane in &lanes.lanes {
        if plan.per_lane[lane.id.0] == 0 {
            continue;
        }
        // Up to 16 chunks of 64 jobs queued per lane.
        let (tx, rx) = mpsc::channel(16);
        let (csv, directory, skip, id) =
            (csv.clone(), lanes.directory.clone(), skip.clone(), lane.id);
        feeds.push(tokio::task::spawn_blocking(move || {
            csv::feed(&csv, &directory, id, &skip, &tx)
        }));
        // On `stop` the lane stops taking jobs; its receiver drops, and the feed ends with it.
        drives.push(tokio::spawn(drive(
            lane.clone(),
            rx,
            sink.clone(),
            stop.clone(),
            approved.cutoff,
        )));
    }
    drop(sink);
    let mut feed_error = None;
    for f in feeds {
        if let Err(e) = f.await.expect("feed does not panic") {
            feed_error.get_or_insert(e);
        }
    }
    for d in drives {
        d.await.expect("lane does not panic");
    }
    progress.finish().await;
    writer.finish().await.map_err(report_err)?;
    let mut summary = tally.summary();
    let recorded: u64 = Outcome::ALL.iter().map(|o| summary.total(*o)).sum();
    if !settled.is_empty() {
        // The closing table and the exit code speak for the whole file, earlier runs included.
        summary = crate::sink::report::summarize(report).map_err(report_err)?;
    }
    if let Some(e) = feed_error {
        tracing::error!(error = %e, "reading the CSV failed part-way: jobs after the failure were not started");
    }
    if let Err(e) = csv.unchanged() {
        crate::console::error(format_args!(
            "{e} (during the run: the report says what was sent)"
        ));
    }
    let planned = plan.removable() + plan.invalid + plan.protected;
    Ok(Finished {
        csv: csv.path().to_owned(),
        unrecorded: planned.saturating_sub(recorded + settled.len() as u64),
        interrupted: stop.is_cancelled(),
        plan,
        summary,
        report: report.to_owned(),
    })
}

/// Refuses to resume from a report written for another file: each settled line must name the same
/// provider and user as the CSV's row there.
async fn check_same_file(
    csv: &CsvFile,
    report: &Path,
    settled: &std::collections::HashMap<(u64, String), String>,
) -> Result<(), RunError> {
    let csv = csv.clone();
    let mut by_line: std::collections::HashMap<u64, Vec<(String, String)>> = Default::default();
    for ((line, provider), user) in settled {
        by_line
            .entry(*line)
            .or_default()
            .push((provider.clone(), user.clone()));
    }
    let report = report.display().to_string();
    tokio::task::spawn_blocking(move || {
        let mut mismatch = None;
        csv.for_each(|(line, raw)| {
            let Some(recorded) = by_line.get(&line) else {
                return;
            };
            let field = |v: Option<&std::borrow::Cow<'_, str>>| {
                v.map(|c| c.trim().to_owned()).unwrap_or_default()
            };
            let (p, u) = raw
                .as_ref()
                .map(|r| (field(r.provider.as_ref()), field(r.user.as_ref())))
                .unwrap_or_default();
            for (provider, user) in recorded {
                // Invalid rows may have been recorded without a provider or user: only compare
                // what is there. A row for every provider (`*`) was recorded under each name.
                let same =
                    (provider.is_empty() || p == *provider || p == crate::job::EVERY_PROVIDER)
                        && (user.is_empty() || u.eq_ignore_ascii_case(user));
                if !same && mismatch.is_none() {
                    mismatch = Some((line, format!("{provider} {user}"), format!("{p} {u}")));
                }
            }
        })?;
        match mismatch {
            None => Ok(()),
            Some((line, was, now)) => Err(RunError::ForeignReport {
                report,
                line,
                was,
                now,
            }),
        }
    })
    .await
    .expect("no panic")
}

/// The closing words of a run, for stdout.
pub fn closing(f: &Finished, lanes: &Lanes) -> String {
    let mut out = progress::table(&f.summary, &lanes.lanes);
    out.push_str(&format!("\nReport: {}\n", f.report.display()));
    if f.unrecorded > 0 {
        out.push_str(&format!(
            "{} job(s) were not started{}: they are not in the report. To finish them (jobs already in\nthe report are skipped): offboard run --csv {} --report {}\n",
            f.unrecorded,
            if f.interrupted { " (interrupted)" } else { "" },
            f.csv.display(),
            f.report.display()
        ));
    }
    out
}

/// Takes one lane's jobs from `jobs` until it closes or `stop` fires, at most `max_in_flight` at
/// a time, and hands each record to the outcome sink. Jobs already started finish and are
/// recorded after `stop`.
///
/// `max_in_flight` workers share the queue, each taking the next job once its last is
/// recorded: no task spawned and no permit taken per job. Jobs come in chunks so that a feeder
/// on a blocking thread wakes once a chunk rather than once a job when the lane is the
/// bottleneck.
///
/// A job due after `cutoff` (the plan's time; `run` only takes such rows with `--due-only`) is
/// not sent: it is recorded `not_attempted`, reason `scheduled`.
async fn drive(
    lane: Arc<Lane>,
    jobs: mpsc::Receiver<Vec<Job>>,
    sink: Outcomes,
    stop: CancellationToken,
    cutoff: jiff::Timestamp,
) {
    let queue = Arc::new(tokio::sync::Mutex::new((jobs, VecDeque::new())));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..lane.max_in_flight().max(1) {
        let (lane, sink, stop, queue) = (lane.clone(), sink.clone(), stop.clone(), queue.clone());
        workers.spawn(async move {
            while let Some(job) = next_job(&queue, &stop).await {
                if stop.is_cancelled() || sink.is_broken() {
                    return;
                }
                let record = match job.due.filter(|due| *due > cutoff) {
                    Some(due) => lane.unsent_job(
                        &job,
                        Outcome::NotAttempted,
                        Reason::Scheduled,
                        format!(
                            "due at {due}, after this run: schedule it with `offboard enqueue`"
                        ),
                    ),
                    None => lane.execute(&job).await,
                };
                sink.settle(record, Some(&job), csv::RowAck).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

/// A lane's queue: the feed's chunks, and what is left of the last one.
type Queue = tokio::sync::Mutex<(mpsc::Receiver<Vec<Job>>, VecDeque<Job>)>;

/// The next job in the queue, waiting for the feed's next chunk if needed; None once the feed is
/// done or `stop` fires.
async fn next_job(queue: &Queue, stop: &CancellationToken) -> Option<Job> {
    let mut guard = queue.lock().await;
    let (jobs, pending) = &mut *guard;
    loop {
        if let Some(job) = pending.pop_front() {
            return Some(job);
        }
        let chunk = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            chunk = jobs.recv() => chunk?,
        };
        pending.extend(chunk);
    }
}
