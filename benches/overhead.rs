//! The CSV path's own cost: `offboard run` on N rows over the five providers against the sandbox
//! with no rate limits, no faults and pacing set far above what the machine can do, so nothing but
//! the tool itself limits the run. Reports jobs/s and the peak RSS; and the peak RSS of a dry run
//! (the scan alone) at 10k, 100k and 1M rows.
//!
//! The machine is shared and noisy (a run's rate moves by a fifth from one run to the next), so
//! the bench alternates `offboard run` and `wrk` several times against one sandbox, each run on
//! people of its own, and reports every pair and the medians.
//!
//! Run: `cargo bench --bench overhead` (release build; `OFFBOARD_BENCH_ROWS` sets a run's size,
//! default 100,000; `OFFBOARD_BENCH_REPS` the number of pairs, default 5). Loopback only.

mod common;

use common::{
    Pace, asked_to_measure, config, each, env_usize, fake_env, measure, run_file, seed_rows,
    write_csv, write_rows,
};
use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions};

/// `wrk` removing people from the sandbox's Factory for 5 s, two threads and 64 connections: the
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
        .args(["-t2", "-c64", "-d5s", "-s"])
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

    // Overhead: `reps` runs of `rows` jobs, each followed by `wrk` against the same sandbox.
    let reps = env_usize("OFFBOARD_BENCH_REPS", 5).max(1);
    let sandbox = rt
        .block_on(Sandbox::start(SandboxOptions::plain(seed_rows(
            0..rows * reps,
        ))))
        .unwrap();
    let (mut rates, mut sendings, mut cpus) = (vec![], vec![], vec![]);
    let (mut ceilings, mut ratios) = (vec![], vec![]);
    for rep in 0..reps {
        // A directory of its own: a report or audit log left by the run before is not resumed.
        let own = dir.path().join(format!("run{rep}"));
        std::fs::create_dir(&own).unwrap();
        let csv = own.join("bench.csv");
        write_rows(&csv, rep * rows..(rep + 1) * rows);
        drop(sandbox.take_log()); // the wrk run before
        let (run, report) = run_file(&own, &sandbox, &csv, |_| Pace::UNLIMITED, || false);
        assert!(run.succeeded, "offboard run failed");
        // The sending rate as the stand-in saw it, first removal to last: the rate `wrk` is
        // compared with (its own start-up is not in its figure either).
        let removals: Vec<_> = sandbox
            .take_log()
            .into_iter()
            .filter(|l| l.operation == "remove" && l.status < 300)
            .map(|l| l.at)
            .collect();
        let span = match (removals.iter().min(), removals.iter().max()) {
            (Some(first), Some(last)) => (*last - *first).as_secs_f64(),
            _ => 0.0,
        };
        let sending = removals.len() as f64 / span.max(1e-9);
        let done = std::fs::read_to_string(&report)
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"removed\""))
            .count();
        assert_eq!(done, rows, "every job removed");
        assert_eq!(removals.len(), rows, "the stand-in saw every removal once");
        let rate = rows as f64 / run.seconds;
        let cpu = run.cpu_seconds * 1e6 / rows as f64;
        print!(
            "run {}: {rows} jobs in {:.2} s = {rate:.0} jobs/s end to end, sending at {sending:.0}/s; peak RSS {:.1} MiB, CPU {:.2} s = {cpu:.0} µs a job",
            rep + 1,
            run.seconds,
            run.peak_mib(),
            run.cpu_seconds,
        );
        rates.push(rate);
        sendings.push(sending);
        cpus.push(cpu);
        // The ceiling: a plain load generator against the same stand-in, if `wrk` is installed.
        match wrk(&sandbox, dir.path()) {
            Some(ceiling) => {
                println!("; wrk {ceiling:.0}/s: {:.0}%", 100.0 * sending / ceiling);
                ceilings.push(ceiling);
                ratios.push(sending / ceiling);
            }
            None => println!("; wrk not installed (`apt-get install wrk`), no ceiling measured"),
        }
    }
    println!(
        "overhead: medians of {reps} runs of {rows} jobs: {:.0} jobs/s end to end (start, scan and all), sending at {:.0} removals/s, {:.0} µs of CPU a job",
        median(&mut rates),
        median(&mut sendings),
        median(&mut cpus)
    );
    if !ratios.is_empty() {
        let mid = median(&mut ratios);
        println!(
            "wrk: median {:.0} requests/s against the same stand-in; offboard sends at a median {:.0}% of it (range {:.0}-{:.0}%)",
            median(&mut ceilings),
            100.0 * mid,
            100.0 * ratios[0],
            100.0 * ratios[ratios.len() - 1],
        );
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

/// The median (sorts `v`).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
