//! The gate's own cost: how fast one worker logs people from the automatic doors in the
//! quarantine's stream, and how fast a worker taking over replays that stream.
//!
//! 10,000 person-level events (`OFFBOARD_BENCH_GATE_EVENTS`) wait in the intake queue of a private
//! RabbitMQ node; an `offboard worker` (settle 0, a threshold of 1, so that all but the first are
//! quarantined and nothing but the log is measured) takes them. Reported: people logged a second,
//! from the gate's first answer to the last person quarantined (each person two confirmed stream
//! entries and an acknowledgement); then a second worker's replay of the whole stream, as its log
//! says (entries, milliseconds).
//!
//! Run: `cargo bench --bench gate` (needs `rabbitmq-server`, as the broker tests do). Loopback only.

mod common;

#[path = "../tests/it/broker.rs"]
#[allow(dead_code)] // the harness's tests and helpers this bench has no use for
mod broker;

use std::process::Stdio;
use std::time::{Duration, Instant};

use broker::Broker;
use offboard::config::Settings;
use offboard::sandbox::{Sandbox, SandboxOptions, Seed};

fn main() {
    if !common::asked_to_measure() {
        return;
    }
    let events = common::env_usize("OFFBOARD_BENCH_GATE_EVENTS", 10_000);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(bench(events));
}

fn worker(
    env: &[(&'static str, String)],
    config: &std::path::Path,
    dir: &std::path::Path,
    n: usize,
) -> (tokio::process::Child, std::path::PathBuf) {
    let log = dir.join(format!("worker{n}.log"));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["worker", "--config", config.to_str().unwrap(), "--report"])
        .arg(dir.join(format!("worker{n}.jsonl")))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("OFFBOARD_LOG", "info")
        .env("OFFBOARD_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, log)
}

/// The open quarantine's people, from `offboard quarantine list --json`; `None` while no gate
/// answers.
async fn quarantined(env: &[(&'static str, String)], config: &std::path::Path) -> Option<u64> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["quarantine", "list", "--json", "--config"])
        .arg(config)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["quarantine"]["people"].as_u64().unwrap_or(0))
}

async fn bench(events: usize) {
    let broker = Broker::start().await;
    let sandbox = Sandbox::start(SandboxOptions::plain(Seed::default()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let text = common::config(Some(&sandbox), |_| common::Pace::UNLIMITED)
        + "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&config, &text).unwrap();
    let mut env = sandbox.env();
    env.push(("OFFBOARD_AMQP_URL", broker.url()));
    env.push(("OFFBOARD__SAFETY__SETTLE", "0s".into()));
    env.push(("OFFBOARD__SAFETY__MAX_PEOPLE_PER_WINDOW", "1".into()));

    // The events wait in the intake queue before any worker runs.
    let settings = Settings::from_toml(&text, "bench").unwrap();
    let conn = offboard::doors::amqp::connect(&broker.url(), "bench")
        .await
        .unwrap();
    let publisher = offboard::doors::amqp::Publisher::new(&conn).await.unwrap();
    let names: Vec<&str> = settings.providers.keys().map(String::as_str).collect();
    offboard::doors::amqp::declare(publisher.channel(), &settings.amqp, &names)
        .await
        .unwrap();
    for i in 0..events {
        let body = serde_json::json!({
            "targets": [{"provider": "factory", "user": format!("p{i}@bench.example")}],
            "event_id": format!("bench-{i}"),
        });
        publisher
            .publish(
                "",
                &settings.amqp.intake_queue,
                &serde_json::to_vec(&body).unwrap(),
                offboard::doors::amqp::job_properties(&format!("bench-{i}")),
            )
            .await
            .unwrap();
    }
    println!("gate bench: {events} person events queued");

    let (mut first, _) = worker(&env, &config, dir.path(), 1);
    let (start, at_start) = loop {
        if let Some(n) = quarantined(&env, &config).await {
            break (Instant::now(), n);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let want = events as u64 - 1;
    loop {
        let n = quarantined(&env, &config).await.unwrap_or(0);
        if n >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = start.elapsed();
    let logged = want - at_start;
    println!(
        "logged: {logged} people in {:.2} s after the gate first answered = {:.0} people/s (two confirmed entries and an ack each)",
        took.as_secs_f64(),
        logged as f64 / took.as_secs_f64()
    );
    first.start_kill().unwrap();
    first.wait().await.unwrap();

    let (mut second, log) = worker(&env, &config, dir.path(), 2);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("is the gate")) {
            break l.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let said: serde_json::Value = serde_json::from_str(&line).unwrap();
    let field = |name: &str| said["fields"][name].as_f64().unwrap_or(0.0);
    let (entries, ms) = (field("entries"), field("replay_ms"));
    println!(
        "replay by the next worker: {entries:.0} entries in {ms:.0} ms = {:.0} entries/s",
        entries / (ms.max(1.0) / 1000.0)
    );
    assert_eq!(
        quarantined(&env, &config).await,
        Some(want),
        "the next worker holds the same quarantine"
    );
    second.start_kill().unwrap();
    second.wait().await.unwrap();
}
