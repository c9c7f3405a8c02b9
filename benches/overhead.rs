//! The CSV path's own cost: `offboard run` on N rows over the five providers against the sandbox
//! with no rate limits, no faults and pacing set far above what the machine can do, so nothing but
//! the tool itself limits the run. Reports jobs/s and the peak RSS; and the peak RSS of a dry run
//! (the scan alone) at 10k, 100k and 1M rows.
//!
//! Run: `cargo bench --bench overhead` (release build; `OFFBOARD_BENCH_ROWS` sets the run's size,
//! default 100,000). Loopback only.

mod common;

use common::{
    Pace, asked_to_measure, config, each, env_usize, fake_env, measure, run_csv, seed, write_csv,
};
use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions};

/// `wrk` removing people from the sandbox's Factory for 10 s, two threads and 64 connections: the
/// requests per second a plain HTTP load generator gets from the same stand-in on the same machine.
/// The people are not members (the seeded ones are gone), so each answer is Factory's 404 error
/// body: a request through the same route, auth and lookup as a removal.
fn wrk(sandbox: &Sandbox, dir: &std::path::Path) -> Option<f64> {
    let script = dir.join("remove.lua");
    std::fs::write(
        &script,
        r#"local n = 0
local auth = "Bearer " .. os.getenv("WRK_FACTORY_TOKEN")
request = function()
  n = n + 1
  return wrk.format("DELETE", "/api/v0/organization/users?email=w" .. n .. "@bench.example",
    { ["Authorization"] = auth })
end
"#,
    )
    .unwrap();
    let token = sandbox
        .env()
        .into_iter()
        .find(|(k, _)| *k == "SANDBOX_FACTORY_TOKEN")?
        .1;
    let out = std::process::Command::new("wrk")
        .args(["-t2", "-c64", "-d10s", "-s"])
        .arg(&script)
        .arg(sandbox.base_url(ProviderKind::Factory))
        .env("WRK_FACTORY_TOKEN", token)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

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
    let (run, report) = run_csv(dir.path(), &sandbox, &people, |_| Pace::UNLIMITED, || false);
    let jobs = rows / 5 * 5;
    let done = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"removed\""))
        .count();
    assert_eq!(done, jobs, "every job removed");
    println!(
        "overhead: {jobs} jobs in {:.2} s = {:.0} jobs/s, peak RSS {:.1} MiB, CPU {:.2} s = {:.0} µs a job",
        run.seconds,
        jobs as f64 / run.seconds,
        run.peak_mib(),
        run.cpu_seconds,
        run.cpu_seconds * 1e6 / jobs as f64
    );
    // The ceiling: a plain load generator against the same stand-in, if `wrk` is installed.
    match wrk(&sandbox, dir.path()) {
        Some(rate) => println!(
            "wrk: {rate:.0} requests/s against the same stand-in; offboard reaches {:.0}% of it",
            100.0 * jobs as f64 / run.seconds / rate
        ),
        None => println!("wrk: not installed (`apt-get install wrk`), no ceiling measured"),
    }
    drop(sandbox);

    // Memory of the scan (validation, duplicates, plan) as the file grows.
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
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
