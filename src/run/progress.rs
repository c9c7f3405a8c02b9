//! What a person watching `offboard run` sees: a progress bar on a terminal, plain periodic lines
//! otherwise (CI logs, `| tee`), and the closing summary table.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::lane::Lane;
use crate::outcome::{Live, Outcome, Summary};

pub struct Progress {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn counts(live: &Live) -> String {
    format!(
        "removed {} · already absent {} · failed {} · invalid {} · not attempted {} · protected {}",
        live.get(Outcome::Removed),
        live.get(Outcome::AlreadyAbsent),
        live.get(Outcome::Failed),
        live.get(Outcome::Invalid),
        live.get(Outcome::NotAttempted),
        live.get(Outcome::SkippedProtected)
    )
}

/// Each busy lane's pace: `factory 20.0/s · telnyx 9.7/s`.
fn paces(lanes: &[Arc<Lane>]) -> String {
    lanes
        .iter()
        .filter(|l| l.counts().0 > 0)
        .map(|l| format!("{} {:.1}/s", l.name, l.pace().0))
        .collect::<Vec<_>>()
        .join(" · ")
}

impl Progress {
    /// Starts showing progress; `total` may be set once the plan is known (0 = not yet).
    pub fn start(live: Arc<Live>, total: Arc<AtomicU64>, lanes: Vec<Arc<Lane>>) -> Progress {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            if std::io::stderr().is_terminal() && !crate::console::json() {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{elapsed_precise} [{wide_bar}] {pos}/{len} jobs {per_sec}\n{msg}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                loop {
                    let t = total.load(Ordering::Relaxed);
                    if t > 0 {
                        bar.set_length(t);
                    }
                    bar.set_position(live.total());
                    bar.set_message(format!("{}\npace: {}", counts(&live), paces(&lanes)));
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
                bar.finish_and_clear();
            } else {
                let started = Instant::now();
                loop {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                    let done = live.total();
                    let rate = done as f64 / started.elapsed().as_secs_f64();
                    crate::console::say(format_args!(
                        "progress: {done}/{} jobs ({rate:.1}/s): {}; pace: {}",
                        total.load(Ordering::Relaxed),
                        counts(&live),
                        paces(&lanes)
                    ));
                }
            }
        });
        Progress { stop, task }
    }

    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The closing table: provider by outcome, with each lane's requests, retries and 429s, and its
/// pace at the end (what it learned, for `"auto"`) with where that came from.
pub fn table(summary: &Summary, lanes: &[Arc<Lane>]) -> String {
    use std::fmt::Write;
    let mut names: Vec<String> = summary.counts.keys().cloned().collect();
    for l in lanes {
        if !names.iter().any(|n| **n == *l.name) {
            names.push(l.name.to_string());
        }
    }
    names.sort();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0).max(8);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>8} {:>14} {:>7} {:>8} {:>13} {:>9}  {:>8} {:>7} {:>5}  pace",
        "provider",
        "removed",
        "already_absent",
        "failed",
        "invalid",
        "not_attempted",
        "protected",
        "requests",
        "retries",
        "429s"
    );
    let mut totals = [0u64; 9];
    for name in &names {
        let n = |o| summary.get(name, o);
        let lane = lanes.iter().find(|l| *l.name == **name);
        let (requests, retries, throttled) = lane.map_or((0, 0, 0), |l| l.counts());
        let row = [
            n(Outcome::Removed),
            n(Outcome::AlreadyAbsent),
            n(Outcome::Failed),
            n(Outcome::Invalid),
            n(Outcome::NotAttempted),
            n(Outcome::SkippedProtected),
            requests,
            retries,
            throttled,
        ];
        for (t, v) in totals.iter_mut().zip(row) {
            *t += v;
        }
        let label = if name.is_empty() { "(none)" } else { name };
        write_row(&mut out, label, &row, width);
        if let Some(l) = lane {
            let (rate, source) = l.pace();
            out.pop();
            let _ = writeln!(out, "  {rate:.1}/s {}", source.as_str());
        }
        if let Some(reason) = lane.and_then(|l| l.halted()) {
            let _ = writeln!(out, "{:<width$}  ! halted: {reason}", "");
        }
    }
    write_row(&mut out, "total", &totals, width);
    out
}

fn write_row(out: &mut String, label: &str, r: &[u64; 9], width: usize) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "{label:<width$}  {:>8} {:>14} {:>7} {:>8} {:>13} {:>9}  {:>8} {:>7} {:>5}",
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]
    );
}
