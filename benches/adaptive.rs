//! Adaptive pacing: the five providers at once against hidden limits, every entry `"auto"`.
//!
//! The stand-in is the sandbox: Factory 8/s, Aitronos 15/s, Aerospike 25/s and Cognee 40/s as
//! token buckets (GCRA, a tenth of a second's burst, at least 2) answering 429 with `Retry-After`
//! and nothing else; Telnyx 60/s as a fixed window of 3,600 requests a minute that says
//! `x-ratelimit-limit/-remaining/-reset` on every answer. Each provider has 30 s of work at its
//! limit. Per provider: the achieved rate over the steady part (from 5 s to 30 s after its first
//! request) as a fraction of the limit, the share of attempts answered 429 in that part and
//! overall, and jobs that ended failed.
//!
//! Scenarios:
//! - `auto`: every entry "auto", starting with nothing remembered (slow start);
//! - `halved`: the same, with Cognee's limit halved 15 s in (40 -> 20/s); its steady part is from
//!   10 s after the change to 20 s after it;
//! - `fixed-over`: every entry at 1,000/s (a guess far too high: the ceiling never binds);
//! - `fixed-under`: every entry at 5/s (a guess too low).
//!
//! Run: `cargo bench --bench adaptive` (release build; about three minutes). Loopback only.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Pace, asked_to_measure, config, measure, seed, write_csv};
use offboard::job::ProviderKind;
use offboard::sandbox::{Faults, Logged, Sandbox, SandboxOptions};

/// The hidden limits, requests per second.
const LIMITS: [(ProviderKind, f64); 5] = [
    (ProviderKind::Factory, 8.0),
    (ProviderKind::Aitronos, 15.0),
    (ProviderKind::Aerospike, 25.0),
    (ProviderKind::Cognee, 40.0),
    (ProviderKind::Telnyx, 60.0),
];
/// Telnyx's window.
const WINDOW: Duration = Duration::from_secs(60);
const WORK: f64 = 30.0;

fn burst_of(rate: f64) -> u32 {
    ((rate / 10.0) as u32).max(2)
}

#[derive(Clone, Copy)]
enum Scenario {
    Auto,
    Halved,
    Fixed(f64),
}

impl Scenario {
    fn name(self) -> String {
        match self {
            Scenario::Auto => "auto".into(),
            Scenario::Halved => "halved (cognee 40 -> 20/s at 15 s)".into(),
            Scenario::Fixed(r) => format!("fixed {r}/s"),
        }
    }
}

/// Jobs per provider: 30 s at its limit (the halved one: 15 s at 40/s and 25 s at 20/s).
fn jobs(kind: ProviderKind, limit: f64, s: Scenario) -> usize {
    match (s, kind) {
        (Scenario::Halved, ProviderKind::Cognee) => (15.0 * limit + 25.0 * limit / 2.0) as usize,
        (Scenario::Fixed(r), _) if r < limit => (WORK * r) as usize,
        _ => (WORK * limit) as usize,
    }
}

struct Row {
    kind: ProviderKind,
    limit: f64,
    fraction: f64,
    steady_429: f64,
    all_429: f64,
    failed: usize,
}

/// What the stand-in saw of `kind` over `[from, to)` seconds after its first request.
fn window(log: &[Logged], kind: ProviderKind, from: f64, to: f64) -> (usize, usize) {
    let mine: Vec<&Logged> = log
        .iter()
        .filter(|l| l.kind == kind && l.operation == "remove")
        .collect();
    let Some(t0) = mine.iter().map(|l| l.at).min() else {
        return (0, 0);
    };
    let inside = |l: &&&Logged| {
        let t = (l.at - t0).as_secs_f64();
        t >= from && t < to
    };
    let ok = mine
        .iter()
        .filter(inside)
        .filter(|l| (200..300).contains(&l.status))
        .count();
    let throttled = mine
        .iter()
        .filter(inside)
        .filter(|l| l.status == 429)
        .count();
    (ok, throttled)
}

fn scenario(s: Scenario) -> Vec<Row> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let people: Vec<(ProviderKind, usize)> =
        LIMITS.iter().map(|&(k, l)| (k, jobs(k, l, s))).collect();
    let opts = SandboxOptions {
        limits: LIMITS
            .iter()
            .filter(|(k, _)| *k != ProviderKind::Telnyx)
            .map(|&(k, l)| (k, (l, burst_of(l))))
            .collect::<HashMap<_, _>>(),
        windows: HashMap::from([(ProviderKind::Telnyx, ((60.0 * 60.0) as u32, WINDOW))]),
        faults: Faults::none(),
        ..SandboxOptions::plain(seed(&people))
    };
    let sandbox = rt.block_on(Sandbox::start(opts)).unwrap();
    let csv = dir.path().join("bench.csv");
    write_csv(&csv, &people);
    let rate = match s {
        Scenario::Fixed(r) => r,
        _ => 1.0, // replaced by "auto" below
    };
    let mut text = config(Some(&sandbox), |_| Pace {
        rate,
        burst: 5,
        in_flight: 8,
    });
    if !matches!(s, Scenario::Fixed(_)) {
        text = text
            .lines()
            .map(|l| {
                if l.starts_with("rate_per_second") {
                    "rate_per_second = \"auto\""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    let state = dir.path().join("pacing.json");
    text.push_str(&format!(
        "\n[pacing]\nstate_file = \"{}\"\n",
        state.display()
    ));
    let cfg = dir.path().join("bench.toml");
    std::fs::write(&cfg, text).unwrap();
    let report = dir.path().join("bench.report.jsonl");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let started = Instant::now();
    let mut halved = false;
    let run = measure(
        &[
            "run",
            "--csv",
            &path(&csv),
            "--config",
            &path(&cfg),
            "--report",
            &path(&report),
        ],
        &sandbox.env(),
        || {
            if matches!(s, Scenario::Halved)
                && !halved
                && started.elapsed() >= Duration::from_secs(15)
            {
                sandbox.set_limit(ProviderKind::Cognee, 20.0, burst_of(20.0));
                halved = true;
            }
            false
        },
    );
    let log = sandbox.log();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    println!(
        "  ({}: {:.1} s, peak RSS {:.1} MiB, exit {})",
        s.name(),
        run.seconds,
        run.peak_mib(),
        if run.succeeded { 0 } else { 1 }
    );
    LIMITS
        .iter()
        .map(|&(kind, limit)| {
            let (from, to, steady_limit) = match (s, kind) {
                (Scenario::Halved, ProviderKind::Cognee) => (25.0, 35.0, limit / 2.0),
                _ => (5.0, WORK, limit),
            };
            let (ok, throttled) = window(&log, kind, from, to);
            let (all_ok, all_throttled) = window(&log, kind, 0.0, f64::MAX);
            let failed = lines
                .iter()
                .filter(|l| l["provider"] == kind.as_str() && l["outcome"] == "failed")
                .count();
            Row {
                kind,
                limit: steady_limit,
                fraction: ok as f64 / ((to - from) * steady_limit),
                steady_429: throttled as f64 / (ok + throttled).max(1) as f64,
                all_429: all_throttled as f64 / (all_ok + all_throttled).max(1) as f64,
                failed,
            }
        })
        .collect()
}

fn main() {
    if !asked_to_measure() {
        return;
    }
    println!("adaptive pacing: hidden limits, 30 s of work per provider at its limit");
    println!(
        "| scenario | provider | limit/s | achieved / limit (steady) | 429s (steady) | 429s (all) | failed |"
    );
    println!("|---|---|---|---|---|---|---|");
    for s in [
        Scenario::Auto,
        Scenario::Halved,
        Scenario::Fixed(1000.0),
        Scenario::Fixed(5.0),
    ] {
        for r in scenario(s) {
            println!(
                "| {} | {} | {:.0} | {:.3} | {:.2}% | {:.2}% | {} |",
                s.name(),
                r.kind.as_str(),
                r.limit,
                r.fraction,
                100.0 * r.steady_429,
                100.0 * r.all_429,
                r.failed
            );
        }
    }
}
