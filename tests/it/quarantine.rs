//! The quarantine in front of the automatic doors, against a real RabbitMQ node, real HTTP on
//! loopback, `offboard worker` processes (killed with SIGKILL) and the sandbox providers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use offboard::job::ProviderKind;
use offboard::sandbox::Seed;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::intake::{
    Scim, deliver_okta, intake_in_process, okta_delivery, okta_event, outcomes_queue, rig,
};
use crate::support::{offboard, report_lines, spawn_worker, terminate, wait_until};
use crate::worker::Rig;

const FACTORY_ONLY: &str = "[intake]\nlisten = \"127.0.0.1:0\"\ntargets = [{ provider = \"factory\" }]\n[intake.okta]\nsecret_env = \"TEST_OKTA_SECRET\"\n";

/// `n` people, members of the Factory organization.
fn leavers(prefix: &str, n: usize) -> (Seed, Vec<String>) {
    let people: Vec<String> = (0..n)
        .map(|i| format!("{prefix}{i:03}@acme.example"))
        .collect();
    let mut seed = Seed::default();
    for p in &people {
        seed = seed.member_with_email(ProviderKind::Factory, None, p, p);
    }
    (seed, people)
}

/// A rig whose intake sends every person to Factory alone, with the quarantine's limits set
/// through the environment (as an operator may).
async fn quarantine_rig(seed: Seed, extra: &str, settle: &str, max_people: u32) -> Rig {
    let mut rig = rig(seed, extra).await;
    rig.env.retain(|(k, _)| *k != "OFFBOARD__SAFETY__SETTLE");
    rig.env.push(("OFFBOARD__SAFETY__SETTLE", settle.into()));
    rig.env.push((
        "OFFBOARD__SAFETY__MAX_PEOPLE_PER_WINDOW",
        max_people.to_string(),
    ));
    rig
}

/// `offboard quarantine ARGS --config CONFIG`: exit code and stdout.
async fn quarantine(rig: &Rig, args: &[&str]) -> (i32, String) {
    let mut all = vec!["quarantine"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", rig.config.to_str().unwrap()]);
    let out = offboard(&rig.env, &all).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), stdout)
}

/// The gate's view, as `offboard quarantine list --json` prints it (Null when no gate answers).
async fn gate_view(rig: &Rig) -> Value {
    let (code, out) = quarantine(rig, &["list", "--json"]).await;
    if code != 0 {
        return Value::Null;
    }
    serde_json::from_str(out.trim()).unwrap_or(Value::Null)
}

async fn wait_for_quarantine(rig: &Rig, people: u64) -> Value {
    let mut view = Value::Null;
    wait_until(
        Duration::from_secs(90),
        &format!("a quarantine of {people}"),
        async || {
            view = gate_view(rig).await;
            view["quarantine"]["people"] == json!(people)
        },
    )
    .await;
    view
}

fn removals(rig: &Rig) -> usize {
    rig.sandbox
        .log()
        .iter()
        .filter(|r| r.operation == "remove")
        .count()
}

/// Okta deliveries of ten deactivations each, one every 100 ms.
async fn okta_burst(hook: &str, people: &[String]) {
    for chunk in people.chunks(10) {
        let events = chunk
            .iter()
            .map(|p| okta_event(&format!("ev-{p}"), "user.lifecycle.deactivate", p))
            .collect();
        assert_eq!(deliver_okta(hook, &okta_delivery(events)).await, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the worker logging to `log` says it is the gate; on a timeout, shows its log.
async fn wait_for_gate(log: &Path) {
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("this worker is the gate") {
            return;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            panic!(
                "{} did not take the gate in 90 s; its log ends:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn lines_of(reports: &[PathBuf]) -> Vec<Value> {
    reports
        .iter()
        .filter(|r| r.exists())
        .flat_map(|r| report_lines(r))
        .collect()
}

fn audit_of(report: &Path) -> String {
    std::fs::read_to_string(report.with_extension("audit.jsonl")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_okta_deactivations_is_quarantined_whole_and_released_only_by_its_exact_count() {
    let (seed, people) = leavers("burst", 200);
    let mut rig = quarantine_rig(seed, FACTORY_ONLY, "5s", 50).await;
    let port = crate::intake::free_port();
    rig.env
        .push(("OFFBOARD__METRICS__LISTEN", format!("127.0.0.1:{port}")));
    let metric = async |series: &str| {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .trim()
            .to_owned()
    };
    let mut worker = rig.worker();
    rig.declared("offboard.intake").await;
    let stop = CancellationToken::new();
    let addr = intake_in_process(&rig.config, &rig.broker.url(), &stop).await;
    okta_burst(&format!("http://{addr}/hooks/okta"), &people).await;

    let view = wait_for_quarantine(&rig, 200).await;
    assert_eq!(view["quarantine"]["by_door"], json!({"okta": 200}));
    assert_eq!(view["in_window_total"], 200);
    assert_eq!(
        removals(&rig),
        0,
        "nothing is sent before an operator decides"
    );
    let (_, table) = quarantine(&rig, &["list"]).await;
    assert!(table.contains("people:  200 (okta 200)"), "{table}");
    assert!(
        table.contains("burst000@acme.example"),
        "the first are named: {table}"
    );

    // A count that is not the quarantine's is refused, and changes nothing.
    let (code, out) = quarantine(&rig, &["approve", "--count", "199", "--by", "ops-ann"]).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("holds 200 people, not 199"), "{out}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(removals(&rig), 0);
    assert_eq!(gate_view(&rig).await["quarantine"]["people"], 200);

    let (code, out) = quarantine(&rig, &["approve", "--count", "200", "--by", "ops-ann"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("approved quarantine") && out.contains("200 people"),
        "{out}"
    );
    rig.wait_for_report(200, Duration::from_secs(120)).await;
    let lines = report_lines(&rig.report);
    assert!(
        lines.iter().all(|l| l["outcome"] == "removed"),
        "every approved person is removed"
    );
    assert_eq!(removals(&rig), 200, "each once");
    assert!(
        people
            .iter()
            .all(|p| !rig.sandbox.is_member(ProviderKind::Factory, None, p))
    );
    let audit = audit_of(&rig.report);
    let decision: Value = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["kind"] == "decision")
        .expect("the decision is in the audit log");
    assert_eq!(
        (&decision["decision"], &decision["by"], &decision["people"]),
        (&json!("approved"), &json!("ops-ann"), &json!(200))
    );
    assert_eq!(gate_view(&rig).await["quarantine"], Value::Null, "closed");
    wait_until(
        Duration::from_secs(10),
        "the gauges back to 0",
        async || metric("offboard_quarantined_people{door=\"okta\"}").await == "0",
    )
    .await;
    stop.cancel();
    terminate(&worker);
    worker.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_and_the_quarantine_survive_kill_9_and_a_standby_taking_over_and_reject_sends_nothing()
 {
    let (seed, okta_people) = leavers("okta", 40);
    let scim_people: Vec<String> = (0..30)
        .map(|i| format!("scim{i:03}@acme.example"))
        .collect();
    let seed = scim_people.iter().fold(seed, |s, p| {
        s.member_with_email(ProviderKind::Factory, None, p, p)
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scim.sqlite");
    let extra = format!(
        "{FACTORY_ONLY}[intake.scim]\ntoken_env = \"TEST_SCIM_TOKEN\"\ndatabase = \"{}\"\n",
        db.display()
    );
    // A settle long enough that the whole burst, kill included, arrives before anyone is due.
    let rig = quarantine_rig(seed, &extra, "15s", 50).await;
    let spawn = |n: usize| {
        let (report, log) = (
            dir.path().join(format!("w{n}.jsonl")),
            dir.path().join(format!("w{n}.log")),
        );
        let child = spawn_worker(&rig.env, &rig.broker.url(), &rig.config, &report, &log);
        (child, report, log)
    };
    let is_gate = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("this worker is the gate")
    };
    let mut workers = vec![spawn(0), spawn(1)];
    let mut gate = 0;
    wait_until(Duration::from_secs(60), "a gate", async || {
        match workers.iter().position(|(_, _, log)| is_gate(log)) {
            Some(i) => {
                gate = i;
                true
            }
            None => false,
        }
    })
    .await;
    let (_c, mut notices) = outcomes_queue(&rig.broker).await;
    let stop = CancellationToken::new();
    let addr = intake_in_process(&rig.config, &rig.broker.url(), &stop).await;
    okta_burst(&format!("http://{addr}/hooks/okta"), &okta_people).await;
    wait_until(Duration::from_secs(30), "40 people counted", async || {
        gate_view(&rig).await["in_window_total"] == 40
    })
    .await;

    // kill -9 of the gate: the standby takes it, and the 40 still count.
    workers[gate].0.start_kill().unwrap();
    workers[gate].0.wait().await.unwrap();
    let standby = 1 - gate;
    wait_for_gate(&workers[standby].2).await;
    // Entra's deprovisioning: a user created, then PATCHed active "False".
    let scim = Scim {
        http: reqwest::Client::new(),
        base: format!("http://{addr}/scim/v2"),
    };
    for p in &scim_people {
        let id = scim.create(&format!("{p}.upn"), p).await;
        let (s, body) = scim
            .patch_user(
                &id,
                json!([{"op": "Replace", "path": "active", "value": "False"}]),
            )
            .await;
        assert_eq!(s, 200, "{body}");
    }
    let view = wait_for_quarantine(&rig, 70).await;
    assert_eq!(
        view["quarantine"]["by_door"],
        json!({"okta": 40, "scim": 30})
    );
    assert_eq!(removals(&rig), 0);

    // And again: the killed one restarted, the gate killed; the quarantine is the same.
    workers.push(spawn(2));
    workers[standby].0.start_kill().unwrap();
    workers[standby].0.wait().await.unwrap();
    wait_for_gate(&workers[2].2).await;
    let again = wait_for_quarantine(&rig, 70).await;
    assert_eq!(again["quarantine"]["id"], view["quarantine"]["id"]);
    // A late arrival joins it.
    let late = okta_people[0].replace("okta000", "late");
    let one = okta_delivery(vec![okta_event(
        "ev-late",
        "user.lifecycle.deactivate",
        &late,
    )]);
    assert_eq!(
        deliver_okta(&format!("http://{addr}/hooks/okta"), &one).await,
        200
    );
    wait_for_quarantine(&rig, 71).await;

    let (code, out) = quarantine(&rig, &["reject", "--count", "71", "--by", "ops-bo"]).await;
    assert_eq!(code, 0, "{out}");
    let reports: Vec<PathBuf> = workers.iter().map(|(_, r, _)| r.clone()).collect();
    wait_until(
        Duration::from_secs(60),
        "71 rejections recorded",
        async || lines_of(&reports).len() >= 71,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lines = lines_of(&reports);
    assert_eq!(lines.len(), 71, "each person recorded once");
    assert!(
        lines
            .iter()
            .all(|l| l["outcome"] == "failed" && l["reason"] == "rejected_by_operator"),
        "{:?}",
        lines.iter().find(|l| l["reason"] != "rejected_by_operator")
    );
    assert!(
        lines[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ops-bo")
    );
    assert_eq!(removals(&rig), 0, "nothing was sent");
    assert!(audit_of(&workers[2].1).contains("\"decision\":\"rejected\""));

    // The outcomes exchange said it: one quarantine opened, one rejected, 71 failed jobs.
    let mut keys = Vec::new();
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(2), notices.next()).await {
        keys.push(d.routing_key.as_str().to_owned());
    }
    let count = |k: &str| keys.iter().filter(|x| *x == k).count();
    assert_eq!(count("quarantine.opened"), 1, "{keys:?}");
    assert_eq!(count("quarantine.rejected"), 1, "{keys:?}");
    assert_eq!(count("factory.failed"), 71, "{keys:?}");
    stop.cancel();
    for (w, _, _) in &mut workers {
        let _ = w.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_under_the_threshold_is_removed_after_the_settle_delay() {
    let (seed, people) = leavers("trickle", 3);
    let rig = quarantine_rig(seed, FACTORY_ONLY, "3s", 50).await;
    let mut worker = rig.worker();
    rig.declared("offboard.intake").await;
    let stop = CancellationToken::new();
    let addr = intake_in_process(&rig.config, &rig.broker.url(), &stop).await;
    let hook = format!("http://{addr}/hooks/okta");
    let mut sent_at = Vec::new();
    for p in &people {
        sent_at.push(std::time::SystemTime::now());
        let one = okta_delivery(vec![okta_event(
            &format!("ev-{p}"),
            "user.lifecycle.deactivate",
            p,
        )]);
        assert_eq!(deliver_okta(&hook, &one).await, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rig.wait_for_report(3, Duration::from_secs(60)).await;
    for (p, sent) in people.iter().zip(&sent_at) {
        let line = report_lines(&rig.report)
            .into_iter()
            .find(|l| l["user"] == json!(p))
            .unwrap();
        assert_eq!(line["outcome"], "removed");
        let started = humantime::parse_rfc3339(line["started_at"].as_str().unwrap()).unwrap();
        let waited = started.duration_since(*sent).unwrap_or_default();
        assert!(waited >= Duration::from_secs(3), "{p} waited {waited:?}");
    }
    assert_eq!(gate_view(&rig).await["quarantine"], Value::Null);
    stop.cancel();
    terminate(&worker);
    worker.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_records_the_plan_of_every_event_and_sends_nothing() {
    let (seed, people) = leavers("shadow", 100);
    let extra = FACTORY_ONLY.replace("[intake]\n", "[intake]\nmode = \"shadow\"\n");
    let rig = quarantine_rig(seed, &extra, "0s", 500).await;
    let mut worker = rig.worker();
    rig.declared("offboard.intake").await;
    let stop = CancellationToken::new();
    let addr = intake_in_process(&rig.config, &rig.broker.url(), &stop).await;
    okta_burst(&format!("http://{addr}/hooks/okta"), &people).await;
    rig.wait_for_report(100, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = report_lines(&rig.report);
    assert_eq!(lines.len(), 100);
    for l in &lines {
        assert_eq!(
            (&l["outcome"], &l["reason"]),
            (&json!("not_attempted"), &json!("shadow"))
        );
        assert_eq!(l["provider"], "factory", "the plan names the entry");
        assert!(people.contains(&l["user"].as_str().unwrap().to_owned()));
    }
    assert_eq!(removals(&rig), 0, "nothing was sent");
    assert!(
        people
            .iter()
            .all(|p| rig.sandbox.is_member(ProviderKind::Factory, None, p))
    );
    assert_eq!(gate_view(&rig).await["in_window"], json!({"okta": 100}));
    stop.cancel();
    terminate(&worker);
    worker.wait().await.unwrap();
}

/// The worker guide's (`docs/worker.md`) `rabbitmqctl set_permissions` lines for each role, as
/// arguments.
fn readme_roles() -> Vec<Vec<String>> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/worker.md")).unwrap();
    let block = readme
        .split("<!-- roles:begin -->")
        .nth(1)
        .and_then(|r| r.split("<!-- roles:end -->").next())
        .expect("the roles block of docs/worker.md");
    block
        .lines()
        .filter_map(|l| l.strip_prefix("rabbitmqctl set_permissions "))
        .map(|args| {
            // Words, and '...' quoted as one.
            let mut out = Vec::new();
            let mut rest = args.trim();
            while !rest.is_empty() {
                let (word, tail) = match rest.strip_prefix('\'') {
                    Some(q) => q.split_once('\'').expect("a closing quote"),
                    None => rest.split_once(' ').unwrap_or((rest, "")),
                };
                out.push(word.to_owned());
                rest = tail.trim_start();
            }
            out
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_works_with_its_own_broker_permissions_and_an_unsigned_command_is_ignored() {
    let (seed, people) = leavers("role", 3);
    let mut rig = quarantine_rig(seed, FACTORY_ONLY, "3s", 2).await;
    let roles = readme_roles();
    assert_eq!(roles.len(), 3, "worker, intake, operator: {roles:?}");
    let mut urls = std::collections::HashMap::new();
    for args in &roles {
        // ["-p", "/", user, configure, write, read]
        let user = args[2].clone();
        let password = format!("pw-{user}");
        rig.broker.ctl(&["add_user", &user, &password]).await;
        let mut ctl = vec!["set_permissions"];
        ctl.extend(args.iter().map(String::as_str));
        rig.broker.ctl(&ctl).await;
        urls.insert(
            user.clone(),
            format!(
                "amqp://{user}:{password}@127.0.0.1:{}/%2f",
                rig.broker.port()
            ),
        );
    }
    let secret = "control-secret-for-tests";
    rig.env.push(("OFFBOARD_CONTROL_SECRET", secret.into()));
    let worker_log = rig.config.with_extension("worker.log");
    let mut worker = spawn_worker(
        &rig.env,
        &urls["offboard-worker"],
        &rig.config,
        &rig.report,
        &worker_log,
    );
    rig.declared("offboard.intake").await;
    wait_until(Duration::from_secs(30), "the gate", async || {
        std::fs::read_to_string(&worker_log)
            .unwrap_or_default()
            .contains("this worker is the gate")
    })
    .await;
    // The intake publishes with its own user: three people, over the threshold of two.
    let stop = CancellationToken::new();
    let addr = intake_in_process(&rig.config, &urls["offboard-intake"], &stop).await;
    okta_burst(&format!("http://{addr}/hooks/okta"), &people).await;

    // The intake's user cannot reach a lane, by the default exchange or the jobs exchange.
    let conn = offboard::doors::amqp::connect(&urls["offboard-intake"], "test-intruder")
        .await
        .unwrap();
    let job = br#"{"job_id":"forged","provider":"factory","user":"role000@acme.example"}"#;
    for (exchange, key) in [("", "offboard.jobs.factory"), ("offboard.jobs", "factory")] {
        let p = offboard::doors::amqp::Publisher::new(&conn).await.unwrap();
        let sent = p
            .publish(
                exchange,
                key,
                job,
                offboard::doors::amqp::job_properties("forged"),
            )
            .await;
        let e = sent.expect_err("refused by RabbitMQ");
        assert!(e.to_string().contains("ACCESS_REFUSED"), "{e}");
    }
    // Nor send a control command.
    let p = offboard::doors::amqp::Publisher::new(&conn).await.unwrap();
    let e = p
        .publish(
            "offboard.control",
            "",
            b"{\"command\":\"list\"}",
            Default::default(),
        )
        .await
        .expect_err("refused by RabbitMQ");
    assert!(e.to_string().contains("ACCESS_REFUSED"), "{e}");

    // The operator's user, with the secret, sees the quarantine.
    let operator: Vec<(&'static str, String)> = rig
        .env
        .iter()
        .filter(|(k, _)| *k != "OFFBOARD_AMQP_URL" && *k != "OFFBOARD_CONTROL_SECRET")
        .cloned()
        .chain([("OFFBOARD_AMQP_URL", urls["offboard-operator"].clone())])
        .collect();
    let with_secret = |s: &str| {
        let mut env = operator.clone();
        env.push(("OFFBOARD_CONTROL_SECRET", s.to_owned()));
        env
    };
    let config = rig.config.to_str().unwrap().to_owned();
    let run = async |env: &[(&'static str, String)], args: &[&str]| {
        let mut all = vec!["quarantine"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", &config]);
        let out = offboard(env, &all).await;
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    wait_until(Duration::from_secs(30), "a quarantine of 3", async || {
        let (_, out) = run(&with_secret(secret), &["list", "--json"]).await;
        serde_json::from_str::<Value>(out.trim()).is_ok_and(|v| v["quarantine"]["people"] == 3)
    })
    .await;
    // Without the secret, or with another, the gate does not answer and nothing is approved.
    for env in [operator.clone(), with_secret("a-guess")] {
        let (code, out) = run(&env, &["approve", "--count", "3"]).await;
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("No worker answered"), "{out}");
    }
    let log = std::fs::read_to_string(&worker_log).unwrap();
    assert!(log.contains("not authentic"), "logged");
    assert!(!log.contains(secret), "the secret is never logged");
    assert_eq!(removals(&rig), 0);
    let (code, out) = run(&with_secret(secret), &["approve", "--count", "3"]).await;
    assert_eq!(code, 0, "{out}");
    rig.wait_for_report(3, Duration::from_secs(60)).await;
    assert_eq!(removals(&rig), 3);
    stop.cancel();
    terminate(&worker);
    worker.wait().await.unwrap();
}

/// A login that is not an email address (Okta's `alternateId`, Entra's `userName`), with no email
/// beside it, is nobody to look up: the job ends `invalid`, reason `no_email`, and nothing is sent
/// (it was taken for a provider's user id, and reported `already_absent`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_is_not_an_email_ends_invalid_no_email_and_sends_nothing() {
    let (seed, _) = leavers("kept", 1);
    let seed = seed.member_with_email(ProviderKind::Factory, None, "jdoe", "jdoe@acme.example");
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{FACTORY_ONLY}[intake.scim]\ntoken_env = \"TEST_SCIM_TOKEN\"\ndatabase = \"{}\"\n",
        dir.path().join("scim.sqlite").display()
    );
    let rig = quarantine_rig(seed, &extra, "0s", 50).await;
    let mut worker = rig.worker();
    rig.declared("offboard.intake").await;
    let stop = CancellationToken::new();
    let addr = intake_in_process(&rig.config, &rig.broker.url(), &stop).await;
    let one = okta_delivery(vec![okta_event(
        "ev-jdoe",
        "user.lifecycle.deactivate",
        "jdoe",
    )]);
    assert_eq!(
        deliver_okta(&format!("http://{addr}/hooks/okta"), &one).await,
        200
    );
    let scim = Scim {
        http: reqwest::Client::new(),
        base: format!("http://{addr}/scim/v2"),
    };
    let (status, body) = scim
        .post_user(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "JDOE",
            "active": true
        }))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap();
    let (s, body) = scim
        .patch_user(
            id,
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    rig.wait_for_report(2, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = report_lines(&rig.report);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for l in &lines {
        assert_eq!(
            (&l["outcome"], &l["reason"]),
            (&json!("invalid"), &json!("no_email")),
            "{l}"
        );
    }
    assert_eq!(removals(&rig), 0);
    assert!(rig.sandbox.is_member(ProviderKind::Factory, None, "jdoe"));
    assert!(
        !rig.sandbox
            .log()
            .iter()
            .any(|r| r.user.eq_ignore_ascii_case("jdoe")),
        "not even looked up"
    );
    stop.cancel();
    terminate(&worker);
    worker.wait().await.unwrap();
}

/// The count lives in the broker: 30 people, a broker restart, 30 more, and the quarantine holds
/// all 60 (a count kept in a process would have started again at zero, and sent the first 30).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_survives_a_broker_restart() {
    let (seed, people) = leavers("restart", 60);
    let mut rig = quarantine_rig(seed, FACTORY_ONLY, "30s", 50).await;
    let mut worker = rig.worker();
    rig.declared("offboard.intake").await;
    let stop = CancellationToken::new();
    let addr = intake_in_process(&rig.config, &rig.broker.url(), &stop).await;
    let hook = format!("http://{addr}/hooks/okta");
    okta_burst(&hook, &people[..30]).await;
    wait_until(Duration::from_secs(30), "30 people counted", async || {
        gate_view(&rig).await["in_window_total"] == 30
    })
    .await;
    rig.broker.stop().await;
    rig.broker.restart().await;
    // The intake reconnects on the next delivery; one that meets the broker still starting is
    // answered 503, and sent again as Okta would.
    for chunk in people[30..].chunks(10) {
        let events = chunk
            .iter()
            .map(|p| okta_event(&format!("ev-{p}"), "user.lifecycle.deactivate", p))
            .collect::<Vec<_>>();
        let delivery = okta_delivery(events);
        wait_until(Duration::from_secs(60), "a delivery accepted", async || {
            deliver_okta(&hook, &delivery).await == 200
        })
        .await;
    }
    let view = wait_for_quarantine(&rig, 60).await;
    assert_eq!(view["quarantine"]["by_door"], json!({"okta": 60}));
    assert_eq!(removals(&rig), 0);
    stop.cancel();
    terminate(&worker);
    worker.wait().await.unwrap();
}
