//! The intake's own cost: Okta-shaped Event Hook POSTs against `offboard::doors::intake` served on
//! loopback, publishing into a private RabbitMQ node (the integration tests' harness), every
//! event confirmed by the broker before the answer.
//!
//! - single: POSTs of 1 event each, 32 senders at once, 20,000 events (`OFFBOARD_BENCH_INTAKE_EVENTS`);
//! - batch: POSTs of 200 events each, 4 senders at once, the same number of events.
//!
//! For each: events/s accepted end to end (from the first request sent to the last answer), and
//! the answer latency p50/p99/max. Afterwards the broker is asked that the intake queue holds
//! exactly one message per event answered 200: nothing lost, nothing doubled.
//!
//! Run: `cargo bench --bench intake` (release build; needs `rabbitmq-server`, as the broker tests
//! do). Loopback only.

mod common;

#[path = "../tests/it/broker.rs"]
#[allow(dead_code)] // the harness's tests and helpers this bench has no use for
mod broker;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use broker::Broker;
use offboard::config::Settings;
use offboard::metrics::Metrics;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-secret";

fn delivery(first: usize, n: usize, round: &str) -> String {
    let events: Vec<_> = (first..first + n)
        .map(|i| {
            json!({
                "uuid": format!("{round}-{i:08}"),
                "published": "2026-11-28T08:00:00.000Z",
                "eventType": "user.lifecycle.deactivate",
                "actor": {"id": "00uadmin", "type": "User", "alternateId": "admin@acme.example"},
                "target": [{"id": format!("00u{i}"), "type": "User", "alternateId": format!("person{i}@acme.example")}]
            })
        })
        .collect();
    json!({"eventType": "com.okta.event_hook", "eventId": format!("{round}-{first}"), "data": {"events": events}})
        .to_string()
}

struct Round {
    events: usize,
    took: Duration,
    latencies: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn round(url: &str, name: &str, events: usize, per_post: usize, senders: usize) -> Round {
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let posts = events / per_post;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (http, next, url, name) = (http.clone(), next.clone(), url.to_owned(), name.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= posts {
                    return latencies;
                }
                let body = delivery(i * per_post, per_post, &name);
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("Authorization", SECRET)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("the intake answers");
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Round {
        events: posts * per_post,
        took: start.elapsed(),
        latencies,
    }
}

async fn bench(events: usize) {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[providers.factory]\nkind = \"factory\"\ntoken_env = \"UNUSED\"\n\
         [amqp]\nurl = \"{}\"\n\
         [intake]\nlisten = \"127.0.0.1:0\"\n[intake.okta]\nsecret_env = \"BENCH_OKTA_SECRET\"\n",
        broker.url()
    );
    let settings = Settings::from_toml(&text, "bench").unwrap();
    // The workers own the topology (the intake only checks its exchange is there): declare it as
    // a worker would.
    let conn = offboard::doors::amqp::connect(&broker.url(), "bench-topology")
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    offboard::doors::amqp::declare(&ch, &settings.amqp, &["factory"])
        .await
        .unwrap();
    let secrets = settings
        .intake_secrets("bench", &|v| {
            (v == "BENCH_OKTA_SECRET").then(|| SECRET.into())
        })
        .unwrap();
    let stop = CancellationToken::new();
    let running = offboard::doors::intake::serve(
        &settings,
        secrets,
        Arc::new(Metrics::new()),
        stop.clone(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let url = format!("http://{}/hooks/okta", running.addr);
    // One POST first: the intake connects.
    round(&url, "warm", 1, 1, 1).await;
    let mut accepted = 1;
    println!(
        "intake bench: {events} events a round, Okta Event Hook POSTs, each confirmed by RabbitMQ"
    );
    println!("| POST | senders | events/s | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for (name, per_post, senders) in [("single", 1, 32), ("batch", 200, 4)] {
        let mut r = round(&url, name, events, per_post, senders).await;
        accepted += r.events;
        r.latencies.sort();
        println!(
            "| {per_post} event(s) | {senders} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms |",
            r.events as f64 / r.took.as_secs_f64(),
            percentile(&r.latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&r.latencies, 0.99).as_secs_f64() * 1e3,
            r.latencies.last().unwrap().as_secs_f64() * 1e3,
        );
    }
    let queued = broker.queue_messages("offboard.intake").await;
    assert_eq!(
        queued,
        Some(accepted as u64),
        "one intake message per accepted event"
    );
    println!("intake queue: {accepted} messages, one per accepted event");
    stop.cancel();
    let _ = dir;
}

fn main() {
    if !common::asked_to_measure() {
        return;
    }
    let events = common::env_usize("OFFBOARD_BENCH_INTAKE_EVENTS", 20_000);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(bench(events));
}
