//! The CSV path's own cost: `offboard run` on N rows over the five providers against the sandbox
//! with no rate limits, no faults and pacing set far above what the machine can do, so nothing but
//! the tool itself limits the run. Reports jobs/s and the peak RSS; and the peak RSS of a dry run
//! (the scan alone) at 10k, 100k and 1M rows.
//!
//! Run: `cargo bench --bench overhead` (release build; `OFFBOARD_BENCH_ROWS` sets the run's size,
//! default 100,000). Loopback only.

mod common;

use common::{Pace, asked_to_measure, config, each, env_usize, fake_env, measure, seed, write_csv};
use offboard::sandbox::{Sandbox, SandboxOptions};

fn main() {
    if !asked_to_measure() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rows = env_usize("OFFBOARD_BENCH_ROWS", 100_000);

    // Overhead: a full run of `rows` jobs.
    let people = each(rows / 5);
    let sandbox = rt
        .block_on(Sandbox::start(SandboxOptions::plain(seed(&people))))
        .unwrap();
    let csv = dir.path().join("bench.csv");
    write_csv(&csv, &people);
    let cfg = dir.path().join("bench.toml");
    std::fs::write(&cfg, config(Some(&sandbox), |_| Pace::UNLIMITED)).unwrap();
    let report = dir.path().join("bench.report.jsonl");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
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
        || false,
    );
    let jobs = rows / 5 * 5;
    let done = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"removed\""))
        .count();
    assert_eq!(done, jobs, "every job removed");
    println!(
        "overhead: {jobs} jobs in {:.2} s = {:.0} jobs/s, peak RSS {:.1} MiB",
        run.seconds,
        jobs as f64 / run.seconds,
        run.peak_mib()
    );
    drop(sandbox);

    // Memory of the scan (validation, duplicates, plan) as the file grows.
    let dry_cfg = dir.path().join("dry.toml");
    std::fs::write(&dry_cfg, config(None, |_| Pace::UNLIMITED)).unwrap();
    for n in [10_000usize, 100_000, 1_000_000] {
        let csv = dir.path().join(format!("dry{n}.csv"));
        write_csv(&csv, &each(n / 5));
        let scan = measure(
            &[
                "run",
                "--dry-run",
                "--csv",
                &path(&csv),
                "--config",
                &path(&dry_cfg),
            ],
            &fake_env(),
            || false,
        );
        println!(
            "scan: {n} rows in {:.2} s, peak RSS {:.1} MiB",
            scan.seconds,
            scan.peak_mib()
        );
    }
}
