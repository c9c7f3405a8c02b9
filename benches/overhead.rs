//! The CSV path's own cost: `offboard run` on N rows over the five providers against the sandbox
//! with no rate limits, no faults and pacing set far above what the machine can do, so nothing but
//! the tool itself limits the run. Reports jobs/s and the peak RSS; and the peak RSS of a dry run
//! (the scan alone) at 10k, 100k and 1M rows.
//!
//! Run: `cargo bench --bench overhead` (release build). Loopback only.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{config, peak_rss_kib, seed, write_csv};
use offboard::sandbox::{Sandbox, SandboxOptions};

/// Runs the binary, sampling its peak RSS (VmHWM) until it exits. Returns (seconds, peak KiB).
fn measure(args: &[&str], env: &[(&'static str, String)]) -> (f64, u64) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    loop {
        peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (start.elapsed().as_secs_f64(), peak)
}

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: measure only when asked.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rows = std::env::var("OFFBOARD_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000usize);

    // Overhead: a full run of `rows` jobs.
    let sandbox = rt
        .block_on(Sandbox::start(SandboxOptions::plain(seed(0..rows))))
        .unwrap();
    let csv = dir.path().join("bench.csv");
    write_csv(&csv, 0..rows);
    let cfg = dir.path().join("bench.toml");
    std::fs::write(&cfg, config(Some(&sandbox))).unwrap();
    let report = dir.path().join("bench.report.jsonl");
    let env = sandbox.env();
    let (secs, peak) = measure(
        &[
            "run",
            "--csv",
            csv.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
        &env,
    );
    let done = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"removed\""))
        .count();
    assert_eq!(done, rows, "every job removed");
    println!(
        "overhead: {rows} jobs in {secs:.2} s = {:.0} jobs/s, peak RSS {:.1} MiB",
        rows as f64 / secs,
        peak as f64 / 1024.0
    );
    drop(sandbox);

    // Memory of the scan (validation, duplicates, plan) as the file grows.
    let dry_cfg = dir.path().join("dry.toml");
    std::fs::write(&dry_cfg, config(None)).unwrap();
    let fake: Vec<(&'static str, String)> = [
        "SANDBOX_FACTORY_TOKEN",
        "SANDBOX_TELNYX_TOKEN",
        "SANDBOX_AITRONOS_API_KEY",
        "SANDBOX_COGNEE_API_KEY",
        "SANDBOX_AEROSPIKE_CLIENT_ID",
        "SANDBOX_AEROSPIKE_CLIENT_SECRET",
    ]
    .into_iter()
    .map(|k| (k, "x".to_owned()))
    .collect();
    for n in [10_000usize, 100_000, 1_000_000] {
        let csv = dir.path().join(format!("dry{n}.csv"));
        write_csv(&csv, 0..n);
        let (secs, peak) = measure(
            &[
                "run",
                "--dry-run",
                "--csv",
                csv.to_str().unwrap(),
                "--config",
                dry_cfg.to_str().unwrap(),
            ],
            &fake,
        );
        println!(
            "scan: {n} rows in {secs:.2} s, peak RSS {:.1} MiB",
            peak as f64 / 1024.0
        );
    }
}
