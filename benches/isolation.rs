//! Isolation: one provider down for the whole run while the other four work, and their throughput
//! as a fraction of their throughput without it. The provider that fails is Cognee, the busiest
//! lane; it is down in two ways: answering 503 to everything, and answering 429 asking to wait
//! 30 s to everything. Each scenario runs twice, paced (the [`common::RATES`] profile, with the
//! sandbox enforcing those limits) and unpaced (no limits: the lanes compete for the CPU).
//!
//! Run: `cargo bench --bench isolation` (release build; `OFFBOARD_BENCH_SECONDS` sets how long the
//! paced lanes run, default 20). Loopback only.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{
    Pace, RATES, Seen, asked_to_measure, burst_at, env_usize, median, paced, run_csv, seed,
};
use offboard::job::ProviderKind;
use offboard::sandbox::{Outage, Sandbox, SandboxOptions};

const DOWN: ProviderKind = ProviderKind::Cognee;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Paced,
    Unpaced,
}

/// Runs the healthy four, plus the down provider unless `outage` is None; returns each healthy
/// provider's accepted removals per second.
fn scenario(
    rt: &tokio::runtime::Runtime,
    mode: Mode,
    outage: Option<Outage>,
    secs: f64,
) -> HashMap<ProviderKind, (f64, usize)> {
    let dir = tempfile::tempdir().unwrap();
    let rows = |kind: ProviderKind| match mode {
        Mode::Paced => (paced(kind).rate * secs) as usize,
        Mode::Unpaced => 10_000,
    };
    let healthy: Vec<(ProviderKind, usize)> = ProviderKind::ALL
        .iter()
        .filter(|&&k| k != DOWN)
        .map(|&k| (k, rows(k)))
        .collect();
    let mut people = healthy.clone();
    if outage.is_some() {
        people.push((DOWN, rows(DOWN)));
    }
    let mut opts = SandboxOptions::plain(seed(&people));
    if mode == Mode::Paced {
        opts.limits = RATES
            .iter()
            .map(|&(k, rate)| (k, (rate, burst_at(rate))))
            .collect();
    }
    if let Some(o) = outage {
        opts.outages.insert(DOWN, o);
    }
    let sandbox = rt.block_on(Sandbox::start(opts)).unwrap();
    // The down lane may take minutes to give up: stop once the healthy four are done.
    let target: usize = healthy.iter().map(|h| h.1).sum();
    let mut checked = Instant::now();
    let healthy_done = || {
        if checked.elapsed() < Duration::from_millis(250) {
            return false;
        }
        checked = Instant::now();
        let log = sandbox.log();
        let done = log
            .iter()
            .filter(|l| l.kind != DOWN && l.operation == "remove" && l.status < 300)
            .count();
        done >= target
    };
    let pace = |k| match mode {
        Mode::Paced => paced(k),
        Mode::Unpaced => Pace::UNLIMITED,
    };
    run_csv(dir.path(), &sandbox, &people, pace, healthy_done);
    let log = sandbox.log();
    healthy
        .iter()
        .map(|&(kind, n)| {
            let seen = Seen::of(&log, kind);
            assert_eq!(seen.accepted, n, "{kind}: every member removed once");
            let rate = match mode {
                Mode::Paced => seen.steady_rate(burst_at(paced(kind).rate)),
                Mode::Unpaced => n as f64 / seen.span,
            };
            (kind, (rate, seen.throttled))
        })
        .collect()
}

fn main() {
    if !asked_to_measure() {
        return;
    }
    let secs = env_usize("OFFBOARD_BENCH_SECONDS", 20) as f64;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outages = [
        ("503 to everything", Outage::Unavailable),
        (
            "429, wait 30 s, to everything",
            Outage::RateLimited(Duration::from_secs(30)),
        ),
    ];
    for mode in [Mode::Paced, Mode::Unpaced] {
        let label = match mode {
            Mode::Paced => "paced",
            Mode::Unpaced => "unpaced",
        };
        // Unpaced runs are bound by the shared machine's CPU and move by a tenth from one run to
        // the next: alternate solo and outage runs and compare medians. Paced runs are steady.
        let reps = match mode {
            Mode::Paced => 1,
            Mode::Unpaced => env_usize("OFFBOARD_BENCH_REPS", 3).max(1),
        };
        let mut solo: HashMap<ProviderKind, Vec<(f64, usize)>> = HashMap::new();
        let mut with: Vec<HashMap<ProviderKind, Vec<(f64, usize)>>> = vec![HashMap::new(); 2];
        for _ in 0..reps {
            for (kind, r) in scenario(&rt, mode, None, secs) {
                solo.entry(kind).or_default().push(r);
            }
            for (i, (_, outage)) in outages.iter().enumerate() {
                for (kind, r) in scenario(&rt, mode, Some(*outage), secs) {
                    with[i].entry(kind).or_default().push(r);
                }
            }
        }
        for (i, (name, _)) in outages.iter().enumerate() {
            let runs = if reps > 1 {
                format!(" (medians of {reps} runs each)")
            } else {
                String::new()
            };
            println!("isolation ({label}), {DOWN} answering {name}{runs}:");
            for (kind, _) in RATES.iter().filter(|r| r.0 != DOWN) {
                let (alone, alone_429) = median_of(&solo[kind]);
                let (beside, beside_429) = median_of(&with[i][kind]);
                println!(
                    "  {:<10} alone {alone:>8.1}/s ({alone_429} 429s)  beside it {beside:>8.1}/s ({beside_429} 429s)  = {:>5.1}%",
                    kind.as_str(),
                    100.0 * beside / alone
                );
            }
        }
    }
}

/// The median rate of some runs, and the most 429s any of them drew.
fn median_of(runs: &[(f64, usize)]) -> (f64, usize) {
    let mut rates: Vec<f64> = runs.iter().map(|r| r.0).collect();
    (
        median(&mut rates),
        runs.iter().map(|r| r.1).max().unwrap_or(0),
    )
}
