//! `offboard worker`, `enqueue` and `dlq` against a real RabbitMQ node and the sandbox providers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use offboard::job::ProviderKind;
use offboard::sandbox::{Faults, Sandbox, SandboxOptions, Seed};

use crate::broker::Broker;
use crate::support::{
    Pacing, assert_within_rate, config_for, example_csv, offboard, report_count, report_lines,
    spawn_worker, successful_removals, terminate, wait_until,
};

pub(crate) const METRICS_ANY_PORT: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// Jobs the example CSV publishes (its valid, non-duplicate rows).
const PUBLISHED: usize = 296;
/// The intake queue of the default config: person-level events, read by the gate.
const INTAKE_QUEUE: &str = "offboard.intake";

pub(crate) struct Rig {
    pub(crate) broker: Broker,
    pub(crate) sandbox: Sandbox,
    _dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
    pub(crate) report: PathBuf,
    log: PathBuf,
    pub(crate) env: Vec<(&'static str, String)>,
}

impl Rig {
    async fn new(faults: Faults, pacing: HashMap<ProviderKind, Pacing>) -> Rig {
        Rig::with_seed(Seed::demo(), faults, pacing).await
    }

    pub(crate) async fn with_seed(
        seed: Seed,
        faults: Faults,
        pacing: HashMap<ProviderKind, Pacing>,
    ) -> Rig {
        let broker = Broker::start().await;
        let mut opts = SandboxOptions::plain(seed);
        opts.faults = faults;
        let sandbox = Sandbox::start(opts).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("offboard.toml");
        // Port 0: every worker of every test serves metrics on a port of its own.
        let text = config_for(&sandbox, &pacing, "") + METRICS_ANY_PORT;
        std::fs::write(&config, text).unwrap();
        let mut env = sandbox.env();
        env.push(("OFFBOARD_AMQP_URL", broker.url()));
        // People from the automatic doors go straight on: the quarantine's tests set their own.
        env.push(("OFFBOARD__SAFETY__SETTLE", "0s".into()));
        Rig {
            report: dir.path().join("worker.jsonl"),
            log: dir.path().join("worker.log"),
            config,
            broker,
            sandbox,
            _dir: dir,
            env,
        }
    }

    pub(crate) fn worker(&self) -> tokio::process::Child {
        spawn_worker(
            &self.env,
            &self.broker.url(),
            &self.config,
            &self.report,
            &self.log,
        )
    }

    async fn enqueue(&self) -> std::process::Output {
        let (csv, config) = (example_csv(), self.config.to_str().unwrap().to_owned());
        offboard(
            &self.env,
            &[
                "enqueue",
                "--csv",
                csv.to_str().unwrap(),
                "--config",
                &config,
            ],
        )
        .await
    }

    async fn dlq(&self, args: &[&str]) -> String {
        let mut all = vec!["dlq"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", self.config.to_str().unwrap()]);
        let out = offboard(&self.env, &all).await;
        assert!(
            out.status.success(),
            "dlq {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A confirming publisher on the test broker, kept open with its connection.
    pub(crate) async fn publisher(&self) -> (lapin::Connection, offboard::doors::amqp::Publisher) {
        let conn = offboard::doors::amqp::connect(&self.broker.url(), "test")
            .await
            .unwrap();
        let publisher = offboard::doors::amqp::Publisher::new(&conn).await.unwrap();
        (conn, publisher)
    }

    /// Waits until the worker has declared `queue`.
    pub(crate) async fn declared(&self, queue: &str) {
        wait_until(
            Duration::from_secs(30),
            &format!("{queue} declared"),
            async || self.broker.queue_messages(queue).await.is_some(),
        )
        .await;
    }

    /// Names the organization the Aitronos and Cognee entries manage (targets addressed to every
    /// provider need it), and appends `extra` to the config.
    pub(crate) fn manage_organizations(&self, org: &str, tenant: &str, extra: &str) {
        let text = std::fs::read_to_string(&self.config)
            .unwrap()
            .replace(
                "[providers.aitronos]\n",
                &format!("[providers.aitronos]\norganization = \"{org}\"\n"),
            )
            .replace(
                "[providers.cognee]\n",
                &format!("[providers.cognee]\norganization = \"{tenant}\"\n"),
            )
            + extra;
        std::fs::write(&self.config, text).unwrap();
    }

    pub(crate) fn worker_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every job of the CSV ends exactly once in the report, and each member was removed by exactly
    /// one successful request.
    fn assert_each_job_once(&self) {
        self.assert_each_job_once_and(0)
    }

    /// The same, with `extra` messages outside the CSV (each with a line of its own).
    fn assert_each_job_once_and(&self, extra: usize) {
        let lines = report_lines(&self.report);
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for l in &lines {
            *by_id
                .entry(l["job_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert_eq!(by_id.len(), PUBLISHED + extra, "every job recorded");
        let twice: Vec<_> = lines
            .iter()
            .filter(|l| by_id[l["job_id"].as_str().unwrap()] > 1)
            .collect();
        assert!(
            twice.is_empty(),
            "recorded more than once: {twice:#?}\nworker log:\n{}",
            self.worker_log()
        );
        // Every CSV job but the tenant owner's ends with the person gone. A job a killed worker had
        // in flight ends already_absent after redelivery: its removal happened, unrecorded.
        let gone: Vec<_> = lines
            .iter()
            .filter(|l| l["outcome"] == "removed" || l["outcome"] == "already_absent")
            .collect();
        assert_eq!(gone.len(), PUBLISHED - 1, "all but the owner");
        let log = self.sandbox.log();
        for l in gone {
            let kind: ProviderKind = l["provider"].as_str().unwrap().parse().unwrap();
            let user = l["user"].as_str().unwrap();
            let ok = successful_removals(&log, kind, user);
            if l["outcome"] == "removed" {
                assert_eq!(ok, 1, "{kind} {user} removed exactly once");
            } else {
                assert!(ok <= 1, "{kind} {user} removed at most once");
            }
            let org = l["organization"].as_str();
            assert!(
                !self.sandbox.is_member(kind, org, user),
                "{kind} {user} is gone"
            );
        }
    }

    pub(crate) async fn wait_for_report(&self, n: usize, limit: Duration) {
        let report = self.report.clone();
        let start = std::time::Instant::now();
        while report_count(&report) < n {
            if start.elapsed() > limit {
                let log = self.worker_log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "timed out after {limit:?} waiting for {n} report lines (have {}); worker log tail:\n{}",
                    report_count(&report),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every provider queue and the intake queue drained: nothing ready, and nothing delivered
    /// but unacknowledged (an event the gate holds unacknowledged is not done). The intake queue
    /// may not exist yet in a test that never starts a gate: then it holds nothing.
    pub(crate) async fn queues_empty(&self) -> bool {
        for kind in ProviderKind::ALL {
            if self
                .broker
                .queue_messages(&format!("offboard.jobs.{kind}"))
                .await
                != Some(0)
            {
                return false;
            }
        }
        if self
            .broker
            .queue_messages(INTAKE_QUEUE)
            .await
            .is_some_and(|n| n > 0)
        {
            return false;
        }
        let unacked = self.broker.unacknowledged().await;
        unacked.get(INTAKE_QUEUE).is_none_or(|n| *n == 0)
            && ProviderKind::ALL.iter().all(|kind| {
                unacked
                    .get(&format!("offboard.jobs.{kind}"))
                    .is_some_and(|n| *n == 0)
            })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueued_jobs_are_removed_acknowledged_reported_and_failures_dead_lettered() {
    let rig = Rig::new(Faults::demo(), HashMap::new()).await;
    let mut worker = rig.worker();
    let out = rig.enqueue().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "invalid rows make enqueue exit 1: {stdout}"
    );
    assert!(
        stdout.contains(&format!("Published {PUBLISHED} job(s)")),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 42:"),
        "invalid rows are reported: {stdout}"
    );

    // A poison message straight onto a provider queue.
    let poison = offboard::doors::amqp::connect(&rig.broker.url(), "test")
        .await
        .unwrap();
    let publisher = offboard::doors::amqp::Publisher::new(&poison)
        .await
        .unwrap();
    publisher
        .publish(
            "offboard.jobs",
            "factory",
            b"{not json",
            lapin::BasicProperties::default().with_message_id("poison-1".into()),
        )
        .await
        .unwrap();

    rig.wait_for_report(PUBLISHED + 1, Duration::from_secs(60))
        .await;
    wait_until(Duration::from_secs(20), "queues drained", async || {
        rig.queues_empty().await
    })
    .await;
    rig.assert_each_job_once_and(1);

    let listed = rig.dlq(&["list", "--json"]).await;
    let letters: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        letters.len(),
        2,
        "the owner's refusal and the poison message: {listed}"
    );
    let poison = letters
        .iter()
        .find(|l| l["job_id"] == "poison-1")
        .expect("poison listed");
    assert_eq!(poison["reason"], "unreadable_row");
    assert_eq!(poison["provider"], "factory");
    let owner = letters
        .iter()
        .find(|l| l["provider"] == "cognee")
        .expect("owner listed");
    assert_eq!(owner["reason"], "refused");
    assert_eq!(owner["attempts"], 1);
    assert!(owner["first_failure"].is_string());
    // Listing leaves them in place.
    assert_eq!(rig.broker.queue_messages("offboard.dead").await, Some(2));

    terminate(&worker);
    let status = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("worker stopped")
        .unwrap();
    assert!(status.success(), "SIGTERM exits 0\n{}", rig.worker_log());
    let creds: Vec<&String> = rig
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("SANDBOX_"))
        .map(|(_, v)| v)
        .collect();
    let log = rig.worker_log();
    let report = std::fs::read_to_string(&rig.report).unwrap();
    for c in creds {
        assert!(
            !log.contains(c.as_str()) && !report.contains(c.as_str()),
            "a credential leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_then_restart_loses_nothing_and_records_each_job_once() {
    let slow: HashMap<ProviderKind, Pacing> = ProviderKind::ALL
        .iter()
        .map(|k| (*k, (15.0, 2, 4)))
        .collect();
    let rig = Rig::new(Faults::none(), slow).await;
    let out = rig.enqueue().await;
    assert_eq!(out.status.code(), Some(1));
    let mut worker = rig.worker();
    rig.wait_for_report(60, Duration::from_secs(60)).await;
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
    let before = report_count(&rig.report);
    assert!(before < PUBLISHED, "killed mid-batch ({before} done)");
    let mut worker = rig.worker();
    rig.wait_for_report(PUBLISHED, Duration::from_secs(90))
        .await;
    wait_until(Duration::from_secs(20), "queues drained", async || {
        rig.queues_empty().await
    })
    .await;
    rig.assert_each_job_once();
    terminate(&worker);
    worker.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reconnects_by_itself_after_a_broker_restart() {
    let slow: HashMap<ProviderKind, Pacing> = ProviderKind::ALL
        .iter()
        .map(|k| (*k, (20.0, 2, 4)))
        .collect();
    let mut rig = Rig::new(Faults::none(), slow).await;
    assert_eq!(rig.enqueue().await.status.code(), Some(1));
    let mut worker = rig.worker();
    rig.wait_for_report(50, Duration::from_secs(60)).await;
    rig.broker.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.broker.restart().await;
    rig.wait_for_report(PUBLISHED, Duration::from_secs(120))
        .await;
    wait_until(Duration::from_secs(30), "queues drained", async || {
        rig.queues_empty().await
    })
    .await;
    rig.assert_each_job_once();
    assert!(
        rig.worker_log().contains("reconnecting"),
        "the worker noticed the broker going away"
    );
    terminate(&worker);
    worker.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_jobs_and_leaves_the_rest_queued() {
    let slow: HashMap<ProviderKind, Pacing> = ProviderKind::ALL
        .iter()
        .map(|k| (*k, (5.0, 1, 2)))
        .collect();
    let rig = Rig::new(Faults::none(), slow).await;
    assert_eq!(rig.enqueue().await.status.code(), Some(1));
    let mut worker = rig.worker();
    rig.wait_for_report(20, Duration::from_secs(60)).await;
    terminate(&worker);
    let status = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("stopped within the grace period")
        .unwrap();
    assert!(status.success(), "{}", rig.worker_log());
    let done = report_count(&rig.report);
    let mut queued = 0;
    for kind in ProviderKind::ALL {
        queued += rig
            .broker
            .queue_messages(&format!("offboard.jobs.{kind}"))
            .await
            .unwrap();
    }
    assert_eq!(
        done as u64 + queued,
        PUBLISHED as u64,
        "every job is either recorded or still queued"
    );
    // A restart finishes the rest.
    let mut worker = rig.worker();
    rig.wait_for_report(PUBLISHED, Duration::from_secs(120))
        .await;
    rig.assert_each_job_once();
    terminate(&worker);
    worker.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_keep_each_rate_and_the_standby_takes_over() {
    let pacing: HashMap<ProviderKind, Pacing> = ProviderKind::ALL
        .iter()
        .map(|k| (*k, (10.0, 2, 4)))
        .collect();
    let rig = Rig::new(Faults::none(), pacing.clone()).await;
    assert_eq!(rig.enqueue().await.status.code(), Some(1));
    let mut first = rig.worker();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = rig.worker();
    rig.wait_for_report(100, Duration::from_secs(60)).await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    // From here on only the standby can send: what the provider sees after this instant is its.
    let killed_at = std::time::Instant::now();
    let at_kill = report_count(&rig.report);
    assert!(
        at_kill < PUBLISHED,
        "the first worker finished all {PUBLISHED} jobs before it was killed: nothing left to take over"
    );
    rig.wait_for_report(PUBLISHED, Duration::from_secs(120))
        .await;
    rig.assert_each_job_once();
    let log = rig.sandbox.log();
    let after_kill = log
        .iter()
        .filter(|r| r.at > killed_at && r.operation == "remove")
        .count();
    assert!(
        after_kill > 0,
        "the standby sent no removal after the kill, yet {} job(s) were left then",
        PUBLISHED - at_kill
    );
    for (kind, (rate, burst, _)) in &pacing {
        assert_within_rate(*kind, &log, *rate, *burst);
    }
    terminate(&second);
    second.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_whose_preflight_fails_stays_queued_and_dlq_replay_moves_dead_letters_back() {
    let rig = Rig::new(Faults::none(), HashMap::new()).await;
    // A worker with a revoked Telnyx token: its preflight is refused, so the Telnyx lane consumes
    // nothing and its messages stay queued; the other lanes run.
    let mut bad_env = rig.env.clone();
    for (k, v) in bad_env.iter_mut() {
        if *k == "SANDBOX_TELNYX_TOKEN" {
            *v = "revoked".into();
        }
    }
    assert_eq!(rig.enqueue().await.status.code(), Some(1));
    let queued_telnyx = rig
        .broker
        .queue_messages("offboard.jobs.telnyx")
        .await
        .unwrap();
    assert!(queued_telnyx > 50, "{queued_telnyx}");
    let mut worker = spawn_worker(
        &bad_env,
        &rig.broker.url(),
        &rig.config,
        &rig.report,
        &rig.log,
    );
    wait_until(
        Duration::from_secs(90),
        "the healthy lanes drained",
        async || {
            for kind in ProviderKind::ALL {
                if kind == ProviderKind::Telnyx {
                    continue;
                }
                let q = format!("offboard.jobs.{kind}");
                if rig.broker.queue_messages(&q).await != Some(0) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    assert!(
        rig.worker_log().contains("preflight failed"),
        "{}",
        rig.worker_log()
    );
    assert_eq!(
        rig.broker.queue_messages("offboard.jobs.telnyx").await,
        Some(queued_telnyx),
        "nothing taken from the unproven lane"
    );
    assert!(
        rig.sandbox
            .log()
            .iter()
            .all(|r| r.kind != ProviderKind::Telnyx || r.operation != "remove"),
        "no removal sent with the refused credential"
    );
    terminate(&worker);
    worker.wait().await.unwrap();
    // The dead letters are the other providers' failures: the Cognee tenant owner's refusal.
    let listed = rig.dlq(&["list", "--json"]).await;
    let letters: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        letters.iter().all(|l| l["provider"] != "telnyx"),
        "{listed}"
    );
    let cognee = letters.iter().filter(|l| l["provider"] == "cognee").count();
    assert!(cognee >= 1, "{listed}");

    // The fix: the right token. The new worker proves the lane and removes every Telnyx member.
    let mut worker = rig.worker();
    let telnyx_removed = || {
        report_lines(&rig.report)
            .iter()
            .filter(|l| l["provider"] == "telnyx" && l["outcome"] == "removed")
            .count()
    };
    wait_until(
        Duration::from_secs(90),
        "every telnyx member removed after the fix",
        async || telnyx_removed() == 58,
    )
    .await;
    assert_eq!(
        rig.broker.queue_messages("offboard.jobs.telnyx").await,
        Some(0)
    );
    // Replay moves the Cognee dead letters back; the owner is refused again and dead-lettered
    // again, with a second report line.
    let before = report_count(&rig.report);
    let moved = rig.dlq(&["replay", "--provider", "cognee"]).await;
    assert_eq!(
        moved.trim(),
        format!("Moved {cognee} dead letter(s) back to their queues.")
    );
    rig.wait_for_report(before + cognee, Duration::from_secs(60))
        .await;
    wait_until(
        Duration::from_secs(30),
        "the refused owner dead-lettered again",
        async || rig.broker.queue_messages("offboard.dead").await == Some(letters.len() as u64),
    )
    .await;
    terminate(&worker);
    worker.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_level_event_fans_out_to_every_provider_it_names() {
    const TENANT: &str = "7b09cdc3-8948-47f0-aa62-74ac943d6c59";
    const UUID: &str = "6a09cdc3-8948-47f0-aa62-74ac943d6c58";
    let seed = Seed::default()
        .member(ProviderKind::Factory, None, "ann.lee@acme.example")
        .member(ProviderKind::Aitronos, Some("org_acme"), "usr_annlee")
        .member(ProviderKind::Telnyx, None, UUID)
        .member(ProviderKind::Aerospike, None, UUID)
        .member(ProviderKind::Cognee, Some(TENANT), UUID);
    // Zoe is known by one email at all five providers.
    const ZOE: &str = "5b09cdc3-8948-47f0-aa62-74ac943d6c57";
    let zoe = "zoe.zhang@acme.example";
    let seed = seed
        .member_with_email(ProviderKind::Factory, None, zoe, zoe)
        .member_with_email(ProviderKind::Aitronos, Some("org_acme"), "usr_zoe", zoe)
        .member_with_email(ProviderKind::Telnyx, None, ZOE, zoe)
        .member_with_email(ProviderKind::Aerospike, None, ZOE, zoe)
        .member_with_email(ProviderKind::Cognee, Some(TENANT), ZOE, zoe);
    let rig = Rig::with_seed(seed, Faults::none(), HashMap::new()).await;
    // Each entry says which organization it manages, for targets addressed to every provider.
    rig.manage_organizations("org_acme", TENANT, "");
    let mut worker = rig.worker();
    let event = serde_json::json!({
        "event_id": "hr-4711",
        "reason": "contract ended",
        "requested_by": "workday",
        "targets": [
            {"provider": "factory", "user": "ann.lee@acme.example"},
            {"provider": "aitronos", "user": "usr_annlee", "organization": "org_acme", "transfer_to": "dept_eng"},
            {"provider": "telnyx", "user": UUID},
            {"provider": "aerospike", "user": UUID},
            {"provider": "cognee", "user": UUID, "organization": TENANT},
            {"provider": "slack", "user": "ann.lee@acme.example"}
        ]
    });
    let (_conn, publisher) = rig.publisher().await;
    // The worker declares the topology; wait for the intake queue before publishing to it.
    rig.declared("offboard.intake").await;
    publish_json(&publisher, "", "offboard.intake", &event).await;
    rig.wait_for_report(6, Duration::from_secs(60)).await;
    let lines = report_lines(&rig.report);
    let by_id: HashMap<&str, &serde_json::Value> = lines
        .iter()
        .map(|l| (l["job_id"].as_str().unwrap(), l))
        .collect();
    for i in 0..5 {
        let l = by_id[format!("hr-4711:{i}").as_str()];
        assert_eq!(l["outcome"], "removed", "{l}");
    }
    assert_eq!(by_id["hr-4711:5"]["outcome"], "invalid");
    assert_eq!(by_id["hr-4711:5"]["reason"], "unknown_provider");
    assert!(
        !rig.sandbox
            .is_member(ProviderKind::Cognee, Some(TENANT), UUID)
    );
    assert!(
        !rig.sandbox
            .is_member(ProviderKind::Factory, None, "ann.lee@acme.example")
    );
    assert_eq!(
        rig.broker.queue_messages("offboard.intake").await,
        Some(0),
        "the event was acknowledged"
    );
    // The same person again within the window, under another job id, after the first removed
    // them: not sent again, the copy names the job that did.
    let again = serde_json::json!({"job_id": "again-1", "provider": "factory", "user": "Ann.Lee@acme.example"});
    let requests = rig.sandbox.log().len();
    publish_json(&publisher, "offboard.jobs", "factory", &again).await;
    rig.wait_for_report(7, Duration::from_secs(30)).await;
    let lines = report_lines(&rig.report);
    let copy = lines
        .iter()
        .find(|l| l["job_id"] == "again-1")
        .expect("recorded");
    assert_eq!(copy["reason"], "duplicate", "{copy}");
    assert!(
        copy["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hr-4711:0"),
        "{copy}"
    );
    assert_eq!(
        rig.sandbox.log().len(),
        requests,
        "nothing sent for the copy"
    );

    // One target for every provider: Zoe, by email, removed at all five.
    let everywhere =
        serde_json::json!({"event_id": "hr-4712", "targets": [{"provider": "*", "user": zoe}]});
    publish_json(&publisher, "", "offboard.intake", &everywhere).await;
    rig.wait_for_report(12, Duration::from_secs(60)).await;
    let lines = report_lines(&rig.report);
    for kind in ProviderKind::ALL {
        let l = lines
            .iter()
            .find(|l| l["job_id"] == format!("hr-4712:0:{kind}"))
            .expect("a job per provider");
        assert_eq!(l["outcome"], "removed", "{l}");
    }
    assert!(
        !rig.sandbox
            .is_member(ProviderKind::Aitronos, Some("org_acme"), "usr_zoe")
    );
    assert!(!rig.sandbox.is_member(ProviderKind::Telnyx, None, ZOE));
    terminate(&worker);
    worker.wait().await.unwrap();
}

/// A copy is a duplicate of a success only. Every removal's first attempt answers 409 and a 409
/// fails the job (`on_conflict = "fail"`): a first job for a person fails, and a second one under
/// another id, within the window, runs and removes them, whether it came after the first ended or
/// while it ran; a third, after that success, is recorded as its duplicate and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_failed_job_runs_and_only_a_copy_of_a_success_is_a_duplicate() {
    let (ann, bob) = ("ann.lee@acme.example", "bob.ray@acme.example");
    let seed = Seed::default()
        .member(ProviderKind::Factory, None, ann)
        .member(ProviderKind::Factory, None, bob);
    let faults = Faults {
        conflict_every: 1,
        ..Faults::none()
    };
    let rig = Rig::with_seed(seed, faults, HashMap::new()).await;
    let text = std::fs::read_to_string(&rig.config).unwrap().replace(
        "[providers.factory]\n",
        "[providers.factory]\non_conflict = \"fail\"\n",
    );
    std::fs::write(&rig.config, text).unwrap();
    let mut worker = rig.worker();
    let (_conn, publisher) = rig.publisher().await;
    rig.declared("offboard.jobs.factory").await;
    let job = |id: &str, user: &str| serde_json::json!({"job_id": id, "provider": "factory", "user": user});
    let outcome = |id: &str| -> serde_json::Value {
        report_lines(&rig.report)
            .into_iter()
            .find(|l| l["job_id"] == id)
            .unwrap_or_else(|| panic!("{id} recorded"))
    };

    // One after the other: the first fails; the copy, spelled otherwise, runs and removes Ann.
    publish_json(&publisher, "offboard.jobs", "factory", &job("ann-1", ann)).await;
    rig.wait_for_report(1, Duration::from_secs(30)).await;
    let first = outcome("ann-1");
    assert_eq!(
        (&first["outcome"], &first["reason"]),
        (&"failed".into(), &"conflict".into()),
        "{first}"
    );
    let copy = job("ann-2", &ann.to_uppercase());
    publish_json(&publisher, "offboard.jobs", "factory", &copy).await;
    rig.wait_for_report(2, Duration::from_secs(30)).await;
    assert_eq!(
        outcome("ann-2")["outcome"],
        "removed",
        "{}",
        outcome("ann-2")
    );
    assert!(!rig.sandbox.is_member(ProviderKind::Factory, None, ann));

    // Both at once: whichever runs first fails, and the other, which waited for it, then runs.
    publish_json(&publisher, "offboard.jobs", "factory", &job("bob-1", bob)).await;
    publish_json(&publisher, "offboard.jobs", "factory", &job("bob-2", bob)).await;
    rig.wait_for_report(4, Duration::from_secs(30)).await;
    let mut bobs = [outcome("bob-1"), outcome("bob-2")].map(|l| l["outcome"].to_string());
    bobs.sort();
    assert_eq!(bobs, ["\"failed\"", "\"removed\""]);
    assert!(!rig.sandbox.is_member(ProviderKind::Factory, None, bob));

    // A copy of the success, within the window: a duplicate naming it, nothing sent.
    let requests = rig.sandbox.log().len();
    publish_json(&publisher, "offboard.jobs", "factory", &job("ann-3", ann)).await;
    rig.wait_for_report(5, Duration::from_secs(30)).await;
    let dup = outcome("ann-3");
    assert_eq!(dup["reason"], "duplicate", "{dup}");
    assert!(
        dup["error"]["message"].as_str().unwrap().contains("ann-2"),
        "{dup}"
    );
    assert_eq!(rig.sandbox.log().len(), requests, "nothing sent for it");
    let ann_requests: Vec<u16> = rig
        .sandbox
        .log()
        .iter()
        .filter(|l| l.operation == "remove" && l.user.eq_ignore_ascii_case(ann))
        .map(|l| l.status)
        .collect();
    assert_eq!(ann_requests, [409, 204]);
    // The two failures wait in the dead-letter queue; the rest is acknowledged.
    wait_until(
        Duration::from_secs(30),
        "both failures dead-lettered",
        async || rig.broker.queue_messages("offboard.dead").await == Some(2),
    )
    .await;
    wait_until(Duration::from_secs(30), "every queue empty", async || {
        rig.queues_empty().await
    })
    .await;
    terminate(&worker);
    worker.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_worker_and_its_counts_match_the_report() {
    let mut rig = Rig::new(Faults::demo(), HashMap::new()).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = std::fs::read_to_string(&rig.config).unwrap();
    config = config.replace(
        METRICS_ANY_PORT,
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    std::fs::write(&rig.config, config).unwrap();
    let prometheus = crate::prom::Prometheus::start(&format!("127.0.0.1:{port}")).await;
    let mut worker = rig.worker();
    let http = reqwest::Client::new();
    let readyz = async |http: &reqwest::Client| {
        http.get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    wait_until(Duration::from_secs(30), "the worker ready", async || {
        readyz(&http).await == 200
    })
    .await;
    assert_eq!(rig.enqueue().await.status.code(), Some(1));
    rig.wait_for_report(PUBLISHED, Duration::from_secs(90))
        .await;

    // What the report says, per provider and outcome.
    let mut want: HashMap<(String, String), f64> = HashMap::new();
    for l in report_lines(&rig.report) {
        let key = (
            l["provider"].as_str().unwrap().to_owned(),
            l["outcome"].as_str().unwrap().to_owned(),
        );
        *want.entry(key).or_default() += 1.0;
    }
    // Scrapes come every second: wait for one that saw the last job.
    let total = want.values().sum::<f64>();
    wait_until(
        Duration::from_secs(30),
        "a scrape with every job",
        async || {
            prometheus
                .query("sum(offboard_jobs_total)")
                .await
                .first()
                .map(|(_, v)| *v)
                == Some(total)
        },
    )
    .await;
    let got: HashMap<(String, String), f64> = prometheus
        .query("offboard_jobs_total > 0")
        .await
        .into_iter()
        .map(|(labels, v)| ((labels["provider"].clone(), labels["outcome"].clone()), v))
        .collect();
    assert_eq!(
        got, want,
        "Prometheus's offboard_jobs_total equals the report's counts"
    );
    let dead = prometheus.query("sum(offboard_dead_lettered_total)").await;
    assert_eq!(
        dead.first().map(|(_, v)| *v),
        Some(1.0),
        "the owner's refusal was dead-lettered"
    );
    let retries = prometheus
        .query("sum by (reason) (offboard_retries_total)")
        .await;
    for reason in ["server_error", "conflict", "rate_limited"] {
        assert!(
            retries
                .iter()
                .any(|(l, v)| l["reason"] == reason && *v > 0.0),
            "{reason} retries counted: {retries:?}"
        );
    }

    // Readiness follows the broker.
    rig.broker.stop().await;
    wait_until(
        Duration::from_secs(30),
        "not ready without a broker",
        async || readyz(&http).await == 503,
    )
    .await;
    rig.broker.restart().await;
    wait_until(Duration::from_secs(60), "ready again", async || {
        readyz(&http).await == 200
    })
    .await;
    terminate(&worker);
    worker.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_past_its_window_holds_until_released_and_loses_nothing() {
    let rig = Rig::new(Faults::none(), HashMap::new()).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = std::fs::read_to_string(&rig.config).unwrap().replace(
        METRICS_ANY_PORT,
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    std::fs::write(
        &rig.config,
        format!("[safety]\nmax_removals_per_window = 50\nwindow = \"1h\"\n{config}"),
    )
    .unwrap();
    // `offboard_lane_held{provider}` as the worker serves it.
    let held = async |kind: ProviderKind| {
        let text = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let name = format!("offboard_lane_held{{provider=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(name.as_str()))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .trim()
            .to_owned()
    };
    let mut worker = rig.worker();
    assert_eq!(rig.enqueue().await.status.code(), Some(1));
    // Five lanes of about 59 jobs each, 50 removals allowed per window: each lane holds at 50.
    rig.wait_for_report(250, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        report_count(&rig.report),
        250,
        "no lane went past its window"
    );
    let mut queued = 0;
    for kind in ProviderKind::ALL {
        queued += rig
            .broker
            .queue_messages(&format!("offboard.jobs.{kind}"))
            .await
            .unwrap();
    }
    assert_eq!(
        queued,
        (PUBLISHED - 250) as u64,
        "the held jobs wait in their queues"
    );

    let hold = |args: Vec<&'static str>| {
        let config = rig.config.to_str().unwrap().to_owned();
        let env = rig.env.clone();
        async move {
            let mut all = vec!["hold"];
            all.extend(args);
            all.extend(["--config", config.as_str()]);
            let out = offboard(&env, &all).await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let listed = hold(vec!["list"]).await;
    for kind in ProviderKind::ALL {
        assert!(
            listed
                .lines()
                .any(|l| l.contains(kind.as_str()) && l.contains("yes") && l.contains("50/50")),
            "{kind} held:\n{listed}"
        );
    }
    for kind in ProviderKind::ALL {
        assert_eq!(held(kind).await, "1", "{kind} held");
    }
    for kind in ProviderKind::ALL {
        let said = hold(vec!["release", kind.as_str()]).await;
        assert!(said.contains(&format!("Released `{kind}`")), "{said}");
    }
    rig.wait_for_report(PUBLISHED, Duration::from_secs(60))
        .await;
    for kind in ProviderKind::ALL {
        assert_eq!(held(kind).await, "0", "{kind} released");
    }
    rig.assert_each_job_once();
    terminate(&worker);
    worker.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_already_in_the_report_is_acknowledged_without_a_request_even_after_a_restart() {
    let seed = Seed::default().member(ProviderKind::Factory, None, "ann@corp.example");
    let rig = Rig::with_seed(seed, Faults::none(), HashMap::new()).await;
    let job =
        serde_json::json!({"job_id": "again-7", "provider": "factory", "user": "ann@corp.example"});
    let (_conn, publisher) = rig.publisher().await;
    let mut worker = rig.worker();
    rig.declared("offboard.jobs.factory").await;
    publish_json(&publisher, "offboard.jobs", "factory", &job).await;
    rig.wait_for_report(1, Duration::from_secs(30)).await;
    assert_eq!(report_lines(&rig.report)[0]["outcome"], "removed");
    terminate(&worker);
    worker.wait().await.unwrap();

    // A new worker learns the report once, at start; the same job again is acknowledged unrun.
    let removals = || {
        rig.sandbox
            .log()
            .iter()
            .filter(|r| r.operation == "remove")
            .count()
    };
    assert_eq!(removals(), 1);
    worker = rig.worker();
    publish_json(&publisher, "offboard.jobs", "factory", &job).await;
    wait_until(
        Duration::from_secs(30),
        "the copy acknowledged",
        async || rig.queues_empty().await && rig.worker_log().contains("already recorded"),
    )
    .await;
    assert_eq!(removals(), 1, "no request for a job the report settled");
    assert_eq!(report_count(&rig.report), 1, "and no second line");
    terminate(&worker);
    worker.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_more_times_than_the_delivery_limit_is_still_run_after_release() {
    const JOBS: usize = 5;
    let mut seed = Seed::default();
    for i in 0..JOBS {
        seed = seed.member(ProviderKind::Factory, None, &format!("p{i}@corp.example"));
    }
    let rig = Rig::with_seed(seed, Faults::none(), HashMap::new()).await;
    // One removal a window, and a delivery limit of 2: the last job is handed back four times.
    let config = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        format!(
            "[safety]\nmax_removals_per_window = 1\nwindow = \"1h\"\n[amqp]\ndelivery_limit = 2\n{config}"
        ),
    )
    .unwrap();
    let (_conn, publisher) = rig.publisher().await;
    let mut worker = rig.worker();
    rig.declared("offboard.jobs.factory").await;
    for i in 0..JOBS {
        let job = serde_json::json!({"job_id": format!("w-{i}"), "provider": "factory", "user": format!("p{i}@corp.example")});
        publish_json(&publisher, "offboard.jobs", "factory", &job).await;
    }
    let (config, env) = (rig.config.to_str().unwrap().to_owned(), rig.env.clone());
    let hold = |args: &'static [&'static str]| {
        let (config, env) = (config.clone(), env.clone());
        async move {
            let mut all = vec!["hold"];
            all.extend(args);
            all.extend(["--config", config.as_str()]);
            String::from_utf8_lossy(&offboard(&env, &all).await.stdout).into_owned()
        }
    };
    for round in 1..=JOBS {
        rig.wait_for_report(round, Duration::from_secs(30)).await;
        if round == JOBS {
            break;
        }
        wait_until(
            Duration::from_secs(30),
            "the factory lane held",
            async || {
                hold(&["list"])
                    .await
                    .lines()
                    .any(|l| l.contains("factory") && l.contains("yes"))
            },
        )
        .await;
        assert!(hold(&["release", "factory"]).await.contains("Released"));
    }
    let lines = report_lines(&rig.report);
    assert_eq!(lines.len(), JOBS);
    assert!(lines.iter().all(|l| l["outcome"] == "removed"), "{lines:?}");
    assert_eq!(
        rig.broker.queue_messages("offboard.dead").await,
        Some(0),
        "nothing dead-lettered by the delivery limit"
    );
    terminate(&worker);
    worker.wait().await.unwrap();
}

/// Publishes `body` as a persistent JSON message and waits for the broker's confirm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_people_stay_in_the_worker_whichever_way_a_message_names_them() {
    const PAT: &str = "7b09cdc3-8948-47f0-aa62-74ac943d6c59";
    let seed = Seed::default()
        .member_with_email(
            ProviderKind::Aitronos,
            Some("org_acme"),
            "usr_owner1",
            "owner@corp.example",
        )
        .member_with_email(
            ProviderKind::Aitronos,
            Some("org_acme"),
            "usr_ann",
            "ann@corp.example",
        )
        .member_with_email(ProviderKind::Telnyx, None, PAT, "pat@corp.example");
    let rig = Rig::with_seed(seed, Faults::none(), HashMap::new()).await;
    let text = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        format!("[safety]\nprotected = [\"usr_owner?\", \"pat@corp.example\"]\n{text}"),
    )
    .unwrap();
    let mut worker = rig.worker();
    let (_conn, publisher) = rig.publisher().await;
    rig.declared("offboard.intake").await;
    // The owner by email (protected by id), Pat by id (protected by email), Ann by email.
    let event = serde_json::json!({
        "event_id": "hr-9",
        "targets": [
            {"provider": "aitronos", "user": "owner@corp.example", "organization": "org_acme"},
            {"provider": "telnyx", "user": PAT},
            {"provider": "aitronos", "user": "ann@corp.example", "organization": "org_acme"}
        ]
    });
    publish_json(&publisher, "", "offboard.intake", &event).await;
    rig.wait_for_report(3, Duration::from_secs(60)).await;
    let lines = report_lines(&rig.report);
    let by_id: HashMap<&str, &serde_json::Value> = lines
        .iter()
        .map(|l| (l["job_id"].as_str().unwrap(), l))
        .collect();
    assert_eq!(by_id["hr-9:0"]["outcome"], "skipped_protected", "{lines:?}");
    assert_eq!(by_id["hr-9:1"]["outcome"], "skipped_protected", "{lines:?}");
    assert_eq!(by_id["hr-9:2"]["outcome"], "removed", "{lines:?}");
    let removals: Vec<_> = rig
        .sandbox
        .log()
        .into_iter()
        .filter(|r| r.operation == "remove")
        .map(|r| r.user)
        .collect();
    assert_eq!(removals, ["usr_ann"], "only the unprotected person");
    assert!(
        rig.sandbox
            .is_member(ProviderKind::Aitronos, Some("org_acme"), "usr_owner1")
    );
    assert!(rig.sandbox.is_member(ProviderKind::Telnyx, None, PAT));
    wait_until(Duration::from_secs(30), "every queue empty", async || {
        rig.queues_empty().await
    })
    .await;
    terminate(&worker);
    worker.wait().await.unwrap();
}

async fn publish_json(
    publisher: &offboard::doors::amqp::Publisher,
    exchange: &str,
    routing_key: &str,
    body: &serde_json::Value,
) {
    // A queue is declared a moment before it is bound: a publish routed nowhere comes back
    // unconfirmed (it is mandatory), and is tried again.
    for _ in 0..50 {
        match publisher
            .publish(
                exchange,
                routing_key,
                &serde_json::to_vec(body).unwrap(),
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
        {
            Ok(()) => return,
            Err(offboard::doors::amqp::AmqpError::NotConfirmed(_)) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("publish: {e}"),
        }
    }
    panic!("{exchange}/{routing_key}: no queue bound after 10 s");
}

/// Three replicas, providers answering 429 (wait 1 s) to every third request, and every
/// connection closed by the broker while jobs wait to be retried: a replica whose delivery is gone
/// sends no further request for it (the broker hands it to the next), so every job is recorded
/// once and each member removed by one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_losing_their_connections_while_retrying_record_every_job_once() {
    let slow: HashMap<ProviderKind, Pacing> = ProviderKind::ALL
        .iter()
        .map(|k| (*k, (20.0, 2, 4)))
        .collect();
    let faults = Faults {
        rate_limited_every: 3,
        ..Faults::none()
    };
    let rig = Rig::new(faults, slow).await;
    assert_eq!(rig.enqueue().await.status.code(), Some(1));
    let mut workers = vec![rig.worker(), rig.worker(), rig.worker()];
    rig.wait_for_report(40, Duration::from_secs(90)).await;
    for _ in 0..2 {
        rig.broker
            .ctl(&["close_all_connections", "test: connections lost"])
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    rig.wait_for_report(PUBLISHED, Duration::from_secs(180))
        .await;
    wait_until(Duration::from_secs(30), "queues drained", async || {
        rig.queues_empty().await
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.assert_each_job_once();
    for w in &mut workers {
        terminate(w);
    }
    for w in &mut workers {
        w.wait().await.unwrap();
    }
}
