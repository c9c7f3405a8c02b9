//! The schedule's own cost: a quarter's leavers enqueued at once, waiting in the broker, and a
//! night's batch released on time.
//!
//! 100,000 jobs due over the next 30 days (`OFFBOARD_BENCH_SCHEDULE_JOBS`) and 2,000 due in the
//! same second about two minutes out (`OFFBOARD_BENCH_SCHEDULE_BURST`), in one file, enqueued with
//! one `offboard enqueue` while one `offboard worker` is the scheduler, against a fast sandbox.
//! Reported: the time to enqueue; the broker's memory and disk with everything waiting; the
//! worker's resident set before the enqueue, with everything waiting, and after the burst (it
//! must stay flat: the jobs wait in the broker); and the lag from due to start (the report's
//! `started_at` minus `due_at`) of the 2,000, at p50, p99 and max.
//!
//! Run: `cargo bench --bench schedule` (needs `rabbitmq-server`, as the broker tests do).
//! Loopback only.

mod common;

#[path = "../tests/it/broker.rs"]
#[allow(dead_code)] // the harness's tests and helpers this bench has no use for
mod broker;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use broker::Broker;
use jiff::{SignedDuration, Timestamp};
use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions};

fn main() {
    if !common::asked_to_measure() {
        return;
    }
    let jobs = common::env_usize("OFFBOARD_BENCH_SCHEDULE_JOBS", 100_000);
    let burst = common::env_usize("OFFBOARD_BENCH_SCHEDULE_BURST", 2_000);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(bench(jobs, burst));
}

/// A process's resident set now (VmRSS), in MiB.
fn rss_mib(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// The broker's memory (as it counts it) in MiB, and its data directory's size on disk in MiB.
async fn broker_use(broker: &Broker) -> (f64, f64) {
    let status = broker.ctl(&["status", "--formatter", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    let memory = v["memory"]["total"]["rss"]
        .as_f64()
        .or_else(|| v["memory"]["total"]["erlang"].as_f64())
        .unwrap_or(0.0)
        / 1048576.0;
    let du = std::process::Command::new("du")
        .args(["-sb"])
        .arg(broker.data_dir())
        .output()
        .unwrap();
    let bytes: f64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or(0.0);
    (memory, bytes / 1048576.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn bench(jobs: usize, burst: usize) {
    let broker = Broker::start().await;
    let rows: Vec<(ProviderKind, usize)> = vec![(ProviderKind::Factory, burst)];
    let sandbox = Sandbox::start(SandboxOptions::plain(common::seed(&rows)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let text = common::config(Some(&sandbox), |_| common::Pace::UNLIMITED)
        + "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&config, &text).unwrap();
    let mut env = sandbox.env();
    env.push(("OFFBOARD_AMQP_URL", broker.url()));

    // The burst: members of the sandbox, due in the same second. The rest: people due over 30
    // days, at every hour of it, nobody the sandbox knows (none comes due during the bench).
    let csv = dir.path().join("quarter.csv");
    let now = Timestamp::now();
    let due = Timestamp::from_second(now.as_second() + 150).unwrap();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        writeln!(f, "provider,user,job_id,not_before").unwrap();
        for i in 0..burst {
            let (_, user) = common::person(ProviderKind::Factory, i);
            writeln!(f, "factory,{user},burst-{i},{due}").unwrap();
        }
        for i in 0..jobs {
            let at = now + SignedDuration::from_secs(3600 + (i as i64 * 30 * 86_400 / jobs as i64));
            writeln!(
                f,
                "factory,later{i}@bench.example,later-{i},{}",
                Timestamp::from_second(at.as_second()).unwrap()
            )
            .unwrap();
        }
        f.flush().unwrap();
    }

    let report = dir.path().join("worker.jsonl");
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["worker", "--config", config.to_str().unwrap(), "--report"])
        .arg(&report)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("OFFBOARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("worker.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = worker.id().unwrap();
    while broker.queue_messages("offboard.schedule").await.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_mib(pid);

    let total = jobs + burst;
    let started = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args([
            "enqueue",
            "--csv",
            csv.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .args(["--allow-removals", &total.to_string()])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "enqueue: {total} scheduled jobs in {:.1} s = {:.0} jobs/s (a log entry and a tier message each, confirmed)",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (memory, disk) = broker_use(&broker).await;
    let rss_waiting = rss_mib(pid);
    println!(
        "waiting: broker memory {memory:.0} MiB, broker disk {disk:.0} MiB; worker RSS {rss_before:.1} MiB before, {rss_waiting:.1} MiB with {total} waiting"
    );
    // `schedule list`: the scheduler reads the whole log to answer.
    let asked = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args([
            "schedule",
            "list",
            "--json",
            "--config",
            config.to_str().unwrap(),
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    println!(
        "schedule list: {} of {total} waiting listed, answered in {:.1} s (the whole log read)",
        listed["waiting"],
        asked.elapsed().as_secs_f64()
    );
    assert!(
        Timestamp::now() < due,
        "the burst came due before it was measured: lower the jobs"
    );

    // The burst comes due: wait until all of it is recorded.
    let limit = Instant::now() + Duration::from_secs(600);
    loop {
        let n = std::fs::read_to_string(&report)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= burst {
            break;
        }
        assert!(Instant::now() < limit, "only {n} of {burst} recorded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut lags: Vec<f64> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["outcome"] == "removed")
        .map(|l| {
            let due: Timestamp = l["due_at"].as_str().unwrap().parse().unwrap();
            let start: Timestamp = l["started_at"].as_str().unwrap().parse().unwrap();
            start.duration_since(due).as_secs_f64()
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    assert_eq!(lags.len(), burst, "every one of the burst removed");
    println!(
        "lag from due to start of the {burst} due in the same second: p50 {:.2} s, p99 {:.2} s, max {:.2} s, min {:.3} s (never negative: none early)",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags[lags.len() - 1],
        lags[0]
    );
    println!(
        "worker RSS after the burst: {:.1} MiB ({} jobs still waiting in the broker)",
        rss_mib(pid),
        jobs
    );
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
}
