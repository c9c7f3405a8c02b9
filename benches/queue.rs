//! The queue path's own cost, against a private RabbitMQ node (the integration tests' harness) and
//! the sandbox with no rate limits, no faults and pacing far above what the machine can do:
//!
//! - enqueue: `offboard enqueue --csv` of N rows (each publish confirmed), in messages/s;
//! - worker: `offboard worker` started on the N queued jobs, timed until every outcome is in its
//!   report and the five provider queues hold no ready message, then stopped with SIGTERM (exit 0);
//!   in jobs/s acknowledged end to end, with its peak RSS. Afterwards the broker itself is asked
//!   that no message is left, ready or unacknowledged, and the report and the sandbox that every
//!   job was removed exactly once;
//! - both at once: a worker already consuming while `enqueue` publishes N other rows, timed from the
//!   start of `enqueue` to the last job acknowledged.
//!
//! N is 20,000 rows over the five providers; `OFFBOARD_BENCH_QUEUE_JOBS` changes it.
//!
//! Run: `cargo bench --bench queue` (release build; needs `rabbitmq-server` installed, as the broker
//! tests do). Loopback only.

mod common;

#[path = "../tests/it/broker.rs"]
#[allow(dead_code)] // the harness's tests and helpers this bench has no use for
mod broker;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions};
use tokio::process::{Child, Command};

use broker::Broker;
use common::{Pace, config, peak_rss_kib, seed_rows, write_rows};

/// How often the report, the queues and the worker's memory are looked at.
const POLL: Duration = Duration::from_millis(10);
/// The longest any phase may take before the bench gives up.
const LIMIT: Duration = Duration::from_secs(600);

fn queue(kind: ProviderKind) -> String {
    format!("offboard.jobs.{kind}")
}

/// Ready messages and consumers of the provider queues, over one connection kept open (a passive
/// declare: cheap enough to poll, unlike `rabbitmqctl`).
struct Queues {
    _connection: lapin::Connection,
    channel: lapin::Channel,
}

impl Queues {
    async fn open(url: &str) -> Queues {
        let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
            .await
            .expect("connect to the bench broker");
        let channel = connection.create_channel().await.expect("channel");
        Queues {
            _connection: connection,
            channel,
        }
    }

    /// (ready messages, queues with a consumer) over the five provider queues.
    async fn state(&self) -> (u64, usize) {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let (mut ready, mut consumed) = (0, 0);
        for kind in ProviderKind::ALL {
            let q = self
                .channel
                .queue_declare(queue(kind).as_str().into(), passive, Default::default())
                .await
                .expect("the provider queues exist");
            ready += u64::from(q.message_count());
            consumed += usize::from(q.consumer_count() > 0);
        }
        (ready, consumed)
    }
}

/// Messages the broker still holds in the provider queues, ready or delivered and unacknowledged,
/// asked of each quorum queue's state machine (not `list_queues`, whose counts are statistics
/// emitted every few seconds).
async fn held_by_broker(broker: &Broker) -> u64 {
    let names: Vec<String> = ProviderKind::ALL
        .iter()
        .map(|k| format!("<<\"{}\">>", queue(*k)))
        .collect();
    let expr = format!(
        "lists:sum([begin {{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>, queue, N)), \
         {{ok, {{_, T}}, _}} = ra:local_query(amqqueue:get_pid(Q), fun rabbit_fifo:query_messages_total/1), \
         T end || N <- [{}]]).",
        names.join(", ")
    );
    let out = broker.ctl(&["eval", &expr]).await;
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("rabbitmqctl eval answered {out:?}"))
}

/// Counts a growing report's lines by reading only what was appended since the last call.
struct Tail {
    path: PathBuf,
    file: Option<std::fs::File>,
    buf: Vec<u8>,
    lines: usize,
}

impl Tail {
    fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_owned(),
            file: None,
            buf: Vec::new(),
            lines: 0,
        }
    }

    fn lines(&mut self) -> usize {
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        if let Some(f) = &mut self.file {
            self.buf.clear();
            f.read_to_end(&mut self.buf).expect("reading the report");
            self.lines += self.buf.iter().filter(|b| **b == b'\n').count();
        }
        self.lines
    }
}

/// A child process with its peak RSS sampled as it runs.
struct Sampled {
    child: Child,
    pid: u32,
    peak_kib: u64,
}

impl Sampled {
    fn spawn(cmd: &mut Command) -> Sampled {
        let child = cmd.kill_on_drop(true).spawn().expect("offboard started");
        let pid = child.id().expect("running");
        Sampled {
            child,
            pid,
            peak_kib: 0,
        }
    }

    /// Samples the peak; returns the exit status once exited.
    fn poll(&mut self) -> Option<ExitStatus> {
        if let Some(kib) = peak_rss_kib(self.pid) {
            self.peak_kib = self.peak_kib.max(kib);
        }
        self.child.try_wait().expect("waiting for offboard")
    }

    fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }

    /// SIGTERM, then waits for the exit (a worker drains and exits 0).
    async fn terminate(&mut self) -> ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(sent, "SIGTERM sent");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.poll() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not stop on SIGTERM"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// What the runs share: the broker, the sandbox, the config and the environment.
struct Rig {
    broker: Broker,
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    config: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Rig {
    fn offboard(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_offboard"));
        cmd.args(args)
            .args(["--config", self.config.to_str().unwrap()])
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("OFFBOARD_CONFIG")
            .env("OFFBOARD_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    /// `offboard enqueue --csv CSV`, with its stdout in `NAME.out`.
    fn enqueue(&self, csv: &Path, name: &str) -> (Sampled, PathBuf) {
        let out = self.dir.path().join(format!("{name}.out"));
        let mut cmd = self.offboard(&["enqueue", "--csv", csv.to_str().unwrap()]);
        cmd.stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(self.dir.path().join(format!("{name}.err"))).unwrap());
        (Sampled::spawn(&mut cmd), out)
    }

    /// `offboard worker --report NAME.jsonl`, its stderr in `NAME.log`.
    fn worker(&self, name: &str) -> (Sampled, PathBuf) {
        let report = self.dir.path().join(format!("{name}.jsonl"));
        let mut cmd = self.offboard(&["worker", "--report", report.to_str().unwrap()]);
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap());
        (Sampled::spawn(&mut cmd), report)
    }

    fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Every job of the report removed, each once; and the sandbox answered `expected_total`
    /// successful removals so far, none twice.
    fn check(&self, report: &Path, jobs: usize, expected_total: usize) {
        let text = std::fs::read_to_string(report).unwrap();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON report line");
            assert_eq!(v["outcome"], "removed", "{line}");
            *by_id
                .entry(v["job_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert_eq!(by_id.len(), jobs, "every job recorded");
        assert!(by_id.values().all(|n| *n == 1), "each job recorded once");
        let removed: Vec<_> = self
            .sandbox
            .log()
            .into_iter()
            .filter(|l| l.operation == "remove" && (200..300).contains(&l.status))
            .map(|l| (l.kind, l.user))
            .collect();
        let distinct: HashSet<_> = removed.iter().collect();
        assert_eq!(removed.len(), expected_total, "one removal sent per job");
        assert_eq!(distinct.len(), removed.len(), "nobody removed twice");
    }

    /// Waits until the report has `jobs` lines and the provider queues no ready message, while
    /// sampling the worker (and `other`, when given, until it exits). Returns when that happened.
    async fn wait_drained(
        &self,
        queues: &Queues,
        worker: &mut Sampled,
        report: &Path,
        jobs: usize,
        mut other: Option<&mut Sampled>,
        name: &str,
    ) -> Instant {
        let start = Instant::now();
        let mut tail = Tail::new(report);
        loop {
            if let Some(status) = worker.poll() {
                panic!("the worker exited early: {status}\n{}", self.log_of(name));
            }
            if let Some(status) = other.as_deref_mut().and_then(Sampled::poll) {
                assert!(status.success(), "enqueue failed: {status}");
                other = None;
            }
            if other.is_none() && tail.lines() >= jobs && queues.state().await.0 == 0 {
                return Instant::now();
            }
            assert!(
                start.elapsed() < LIMIT,
                "{name}: {} of {jobs} recorded after {LIMIT:?}\n{}",
                tail.lines(),
                self.log_of(name)
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the worker, checks it exited 0 and the broker holds nothing back; returns when it
    /// exited.
    async fn stop(&self, worker: &mut Sampled, name: &str) -> Instant {
        let status = worker.terminate().await;
        let exited = Instant::now();
        assert!(
            status.success(),
            "SIGTERM exits 0: {status}\n{}",
            self.log_of(name)
        );
        assert_eq!(
            held_by_broker(&self.broker).await,
            0,
            "every message acknowledged"
        );
        exited
    }
}

/// `Published N job(s)` from enqueue's output.
fn published(out: &Path) -> usize {
    let text = std::fs::read_to_string(out).unwrap();
    text.split("Published ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("enqueue's output: {text}"))
}

async fn bench(jobs: usize) {
    let broker = Broker::start().await;
    // The first N people are for the queued run, the next N for the concurrent one.
    let sandbox = Sandbox::start(SandboxOptions::plain(seed_rows(0..2 * jobs)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("bench.toml");
    // Port 0: the worker's metrics on a port of its own.
    let text =
        config(Some(&sandbox), |_| Pace::UNLIMITED) + "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&config_path, text).unwrap();
    let mut env = sandbox.env();
    env.push(("OFFBOARD_AMQP_URL", broker.url()));
    let rig = Rig {
        broker,
        sandbox,
        dir,
        config: config_path,
        env,
    };
    let (first, second) = (rig.dir.path().join("a.csv"), rig.dir.path().join("b.csv"));
    write_rows(&first, 0..jobs);
    write_rows(&second, jobs..2 * jobs);

    // Enqueue alone.
    let start = Instant::now();
    let (mut enqueue, out) = rig.enqueue(&first, "enqueue");
    let status = loop {
        if let Some(status) = enqueue.poll() {
            break status;
        }
        tokio::time::sleep(POLL).await;
    };
    let secs = start.elapsed().as_secs_f64();
    assert!(status.success(), "enqueue exits 0: {status}");
    assert_eq!(published(&out), jobs, "every row published and confirmed");
    let queues = Queues::open(&rig.broker.url()).await;
    assert_eq!(queues.state().await.0, jobs as u64, "all queued");
    println!(
        "enqueue: {jobs} messages in {secs:.2} s = {:.0} msgs/s, peak RSS {:.1} MiB",
        jobs as f64 / secs,
        enqueue.peak_mib()
    );

    // The worker on full queues.
    let start = Instant::now();
    let (mut worker, report) = rig.worker("worker");
    let drained = rig
        .wait_drained(&queues, &mut worker, &report, jobs, None, "worker")
        .await;
    let exited = rig.stop(&mut worker, "worker").await;
    let secs = (drained - start).as_secs_f64();
    rig.check(&report, jobs, jobs);
    println!(
        "worker: {jobs} jobs recorded and acknowledged in {secs:.2} s = {:.0} jobs/s \
         (stopped by SIGTERM {:.2} s later), peak RSS {:.1} MiB",
        jobs as f64 / secs,
        (exited - drained).as_secs_f64(),
        worker.peak_mib()
    );

    // Both at once: the worker consuming while enqueue publishes.
    let (mut worker, report) = rig.worker("both");
    let ready = Instant::now();
    while queues.state().await.1 < ProviderKind::ALL.len() {
        assert!(worker.poll().is_none(), "{}", rig.log_of("both"));
        assert!(ready.elapsed() < LIMIT, "the worker never consumed");
        tokio::time::sleep(POLL).await;
    }
    let start = Instant::now();
    let (mut enqueue, out) = rig.enqueue(&second, "enqueue-both");
    let drained = rig
        .wait_drained(
            &queues,
            &mut worker,
            &report,
            jobs,
            Some(&mut enqueue),
            "both",
        )
        .await;
    let secs = (drained - start).as_secs_f64();
    rig.stop(&mut worker, "both").await;
    assert_eq!(published(&out), jobs, "every row published and confirmed");
    rig.check(&report, jobs, 2 * jobs);
    println!(
        "both at once: {jobs} jobs enqueued, recorded and acknowledged in {secs:.2} s = {:.0} jobs/s, \
         worker peak RSS {:.1} MiB, enqueue peak RSS {:.1} MiB",
        jobs as f64 / secs,
        worker.peak_mib(),
        enqueue.peak_mib()
    );
}

fn main() {
    if !common::asked_to_measure() {
        return;
    }
    let jobs = common::env_usize("OFFBOARD_BENCH_QUEUE_JOBS", 20_000);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(bench(jobs));
}
