//! Pacing: the five providers at once, each at its own configured rate (5, 20, 50, 100 and 200
//! removals/s), against the sandbox enforcing exactly those limits (a GCRA with the same rate and
//! burst, answering 429 over it). Reports, per provider, the steady accepted rate as a fraction of
//! its configured rate and how many requests were answered 429.
//!
//! Run: `cargo bench --bench pacing` (release build; `OFFBOARD_BENCH_SECONDS` sets how long each
//! lane runs, default 20). Loopback only.

mod common;

use std::collections::HashMap;

use common::{RATES, Seen, asked_to_measure, burst_at, env_usize, paced, run_csv, seed};
use offboard::sandbox::{Faults, Sandbox, SandboxOptions};

fn main() {
    if !asked_to_measure() {
        return;
    }
    let secs = env_usize("OFFBOARD_BENCH_SECONDS", 20) as f64;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let people: Vec<_> = RATES
        .iter()
        .map(|&(k, rate)| (k, (rate * secs) as usize))
        .collect();
    let opts = SandboxOptions {
        limits: RATES
            .iter()
            .map(|&(k, rate)| (k, (rate, burst_at(rate))))
            .collect::<HashMap<_, _>>(),
        faults: Faults::none(),
        ..SandboxOptions::plain(seed(&people))
    };
    let sandbox = rt.block_on(Sandbox::start(opts)).unwrap();
    let (run, _) = run_csv(dir.path(), &sandbox, &people, paced, || false);
    let log = sandbox.log();
    println!(
        "pacing: {} jobs in {:.1} s, peak RSS {:.1} MiB",
        people.iter().map(|p| p.1).sum::<usize>(),
        run.seconds,
        run.peak_mib()
    );
    println!("provider   configured/s  achieved/s  fraction  requests  429s  (share)");
    for (&(kind, rate), &(_, n)) in RATES.iter().zip(&people) {
        let seen = Seen::of(&log, kind);
        assert_eq!(seen.accepted, n, "{kind}: every member removed once");
        let achieved = seen.steady_rate(burst_at(rate));
        println!(
            "{:<10} {:>12.0} {:>11.1} {:>8.1}% {:>9} {:>5}  ({:.2}%)",
            kind.as_str(),
            rate,
            achieved,
            100.0 * achieved / rate,
            seen.requests(),
            seen.throttled,
            100.0 * seen.throttled as f64 / seen.requests() as f64
        );
    }
}
