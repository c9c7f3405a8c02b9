//! Removals due later, against a real RabbitMQ node (delay tiers, the log stream), `offboard
//! worker` processes (killed with SIGKILL), a broker restart, and the sandbox providers.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use offboard::job::ProviderKind;
use offboard::sandbox::{Faults, Seed};
use serde_json::Value;

use crate::support::{offboard, report_lines, terminate, wait_until};
use crate::worker::Rig;

const PEOPLE: [&str; 4] = [
    "now.nguyen@acme.example",
    "soon.sato@acme.example",
    "later.larsen@acme.example",
    "tomorrow.tan@acme.example",
];

async fn rig() -> Rig {
    let mut seed = Seed::default();
    for p in PEOPLE {
        seed = seed.member_with_email(ProviderKind::Factory, None, p, p);
    }
    Rig::with_seed(seed, Faults::none(), HashMap::new()).await
}

impl Rig {
    async fn cli(&self, args: &[&str]) -> (Option<i32>, String) {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--config", self.config.to_str().unwrap()]);
        let out = offboard(&self.env, &all).await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }

    async fn waiting(&self) -> Value {
        let (code, out) = self.cli(&["schedule", "list", "--json"]).await;
        assert_eq!(code, Some(0), "{out}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn line_of<'a>(lines: &'a [Value], user: &str) -> Vec<&'a Value> {
        lines.iter().filter(|l| l["user"] == user).collect()
    }
}

fn instant(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("an instant: {v}"))
        .parse()
        .unwrap()
}

/// A file with one row due now, two due in seconds and one tomorrow: the first three removed at
/// (never before) their due time, the last still listed; a kill -9 of the worker and a broker
/// restart between enqueue and due time lose nothing and remove each once; a cancel by person
/// ends the last `failed`/`cancelled` in the report, and it is never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rows_wait_in_the_broker_through_kill_9_and_a_restart_and_run_on_time() {
    let mut rig = rig().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("leavers.csv");
    let now = Timestamp::now();
    let soon = now + SignedDuration::from_secs(12);
    let later = now + SignedDuration::from_secs(25);
    let tomorrow = now
        .in_tz("Australia/Melbourne")
        .unwrap()
        .date()
        .tomorrow()
        .unwrap();
    std::fs::write(
        &csv,
        format!(
            "provider,user,not_before,last_day,time_zone\n\
             factory,{},,,\n\
             factory,{},{soon},,\n\
             factory,{},{},,\n\
             factory,{},,{tomorrow},Australia/Melbourne\n",
            PEOPLE[0],
            PEOPLE[1],
            PEOPLE[2],
            later
                .in_tz("America/Los_Angeles")
                .unwrap()
                .strftime("%Y-%m-%dT%H:%M:%S%:z"),
            PEOPLE[3],
        ),
    )
    .unwrap();
    let mut worker = rig.worker();
    rig.declared("offboard.schedule").await;
    let (code, out) = rig.cli(&["enqueue", "--csv", csv.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("3 are due later"), "{out}");
    let listed = rig.waiting().await;
    assert_eq!(listed["waiting"], 3, "{listed}");
    assert_eq!(
        listed["first"][0]["user"], PEOPLE[1],
        "by due time: {listed}"
    );
    assert_eq!(listed["first"][2]["user"], PEOPLE[3], "{listed}");

    // Every worker dies, and the broker restarts, before anything comes due.
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
    rig.broker.stop().await;
    rig.broker.restart().await;
    let mut worker = rig.worker();

    wait_until(
        Duration::from_secs(60),
        "the rows due in seconds",
        async || {
            report_lines(&rig.report)
                .iter()
                .filter(|l| l["outcome"] == "removed")
                .count()
                >= 3
        },
    )
    .await;
    let lines = report_lines(&rig.report);
    for (person, due) in [(PEOPLE[1], soon), (PEOPLE[2], later)] {
        let mine = Rig::line_of(&lines, person);
        assert_eq!(mine.len(), 1, "recorded once: {mine:?}");
        let l = mine[0];
        assert_eq!(l["outcome"], "removed", "{l}");
        // Pinned to the second the file asked for (the file carries no sub-second part).
        assert_eq!(instant(&l["due_at"]).as_second(), due.as_second(), "{l}");
        let started = instant(&l["started_at"]);
        assert!(started >= instant(&l["due_at"]), "never early: {l}");
        assert!(
            started.duration_since(instant(&l["due_at"])) < SignedDuration::from_secs(10),
            "within seconds of its due time: {l}"
        );
        assert!(!rig.sandbox.is_member(ProviderKind::Factory, None, person));
    }
    assert!(Rig::line_of(&lines, PEOPLE[0])[0].get("due_at").is_none());
    let log = rig.sandbox.log();
    for p in &PEOPLE[..3] {
        assert_eq!(
            crate::support::successful_removals(&log, ProviderKind::Factory, p),
            1,
            "{p} removed exactly once"
        );
    }

    let listed = rig.waiting().await;
    assert_eq!(listed["waiting"], 1, "{listed}");
    assert_eq!(listed["first"][0]["user"], PEOPLE[3]);
    let due = instant(&listed["first"][0]["due_at"]);
    let midnight = tomorrow
        .tomorrow()
        .unwrap()
        .to_zoned_datetime(jiff::tz::db().get("Australia/Melbourne").unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(due, midnight, "the end of the last day in Melbourne");

    let (code, out) = rig
        .cli(&[
            "schedule",
            "cancel",
            "--person",
            &PEOPLE[3].to_uppercase(),
            "--by",
            "it-ops",
        ])
        .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Cancelled 1 waiting job"), "{out}");
    assert_eq!(rig.waiting().await["waiting"], 0);
    let lines = report_lines(&rig.report);
    let cancelled = Rig::line_of(&lines, PEOPLE[3]);
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert_eq!(cancelled[0]["outcome"], "failed");
    assert_eq!(cancelled[0]["reason"], "cancelled");
    assert_eq!(instant(&cancelled[0]["due_at"]), midnight);
    assert!(
        cancelled[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("by it-ops"),
        "{}",
        cancelled[0]
    );
    assert!(
        rig.sandbox
            .is_member(ProviderKind::Factory, None, PEOPLE[3])
    );
    // A cancel of a job already released loses whole: said, and its removal's record stands.
    let released = Rig::line_of(&lines, PEOPLE[1])[0]["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, out) = rig.cli(&["schedule", "cancel", "--job", &released]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("{released}: too late, released to its lane")),
        "{out}"
    );
    assert_eq!(Rig::line_of(&report_lines(&rig.report), PEOPLE[1]).len(), 1);
    // A second cancel finds nothing waiting.
    let (code, out) = rig
        .cli(&["schedule", "cancel", "--person", PEOPLE[3]])
        .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Cancelled 0 waiting job"), "{out}");
    terminate(&worker);
    worker.wait().await.unwrap();
}

/// A cancel by file takes back every row it scheduled; a job the file does not name stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_by_file_takes_back_what_that_file_scheduled() {
    let rig = rig().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("next-quarter.csv");
    let other = dir.path().join("other.csv");
    std::fs::write(
        &csv,
        format!(
            "provider,user,last_day,time_zone\nfactory,{},2031-03-31,Europe/Berlin\nfactory,{},2031-06-30,America/Los_Angeles\n",
            PEOPLE[0], PEOPLE[1]
        ),
    )
    .unwrap();
    std::fs::write(
        &other,
        format!(
            "provider,user,job_id,not_before\nfactory,{},keep-me,2031-01-01T00:00:00Z\n",
            PEOPLE[2]
        ),
    )
    .unwrap();
    let mut worker = rig.worker();
    rig.declared("offboard.schedule").await;
    for f in [&csv, &other] {
        let (code, out) = rig.cli(&["enqueue", "--csv", f.to_str().unwrap()]).await;
        assert_eq!(code, Some(0), "{out}");
    }
    assert_eq!(rig.waiting().await["waiting"], 3);
    let (code, out) = rig
        .cli(&["schedule", "cancel", "--file", csv.to_str().unwrap()])
        .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Cancelled 2 waiting job"), "{out}");
    let left = rig.waiting().await;
    assert_eq!(left["waiting"], 1, "{left}");
    assert_eq!(left["first"][0]["job_id"], "keep-me");
    // Named by id after it was cancelled: not waiting.
    let (code, out) = rig
        .cli(&[
            "schedule",
            "cancel",
            "--job",
            "keep-me",
            "--job",
            "never-was",
        ])
        .await;
    assert_eq!(code, Some(1), "one of them was not waiting: {out}");
    assert!(out.contains("never-was: not waiting"), "{out}");
    let lines = report_lines(&rig.report);
    assert_eq!(
        lines.iter().filter(|l| l["reason"] == "cancelled").count(),
        3
    );
    assert!(
        rig.sandbox.log().is_empty()
            || crate::support::successful_removals(
                &rig.sandbox.log(),
                ProviderKind::Factory,
                PEOPLE[0]
            ) == 0
    );
    terminate(&worker);
    worker.wait().await.unwrap();
}

/// A person made active again through SCIM (`active: true`) or Okta
/// (`user.lifecycle.reactivate`) has their waiting removals cancelled, recorded with the
/// identity system's event; someone else's stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reactivation_through_scim_or_okta_cancels_the_persons_scheduled_removals() {
    let mut seed = Seed::default();
    for p in PEOPLE {
        seed = seed.member_with_email(ProviderKind::Factory, None, p, p);
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[intake]\nlisten = \"127.0.0.1:0\"\ntargets = [{{ provider = \"factory\" }}]\n[intake.okta]\nsecret_env = \"TEST_OKTA_SECRET\"\n[intake.scim]\ntoken_env = \"TEST_SCIM_TOKEN\"\ndatabase = \"{}\"\n",
        dir.path().join("scim.sqlite").display()
    );
    let rig = crate::intake::rig(seed, &extra).await;
    let csv = dir.path().join("leavers.csv");
    std::fs::write(
        &csv,
        format!(
            "provider,user,last_day,time_zone\nfactory,{},2031-03-31,Europe/Berlin\nfactory,{},2031-03-31,Europe/Berlin\nfactory,{},2031-03-31,Europe/Berlin\n",
            PEOPLE[1], PEOPLE[2], PEOPLE[3]
        ),
    )
    .unwrap();
    let mut worker = rig.worker();
    rig.declared("offboard.schedule").await;
    let (code, out) = rig.cli(&["enqueue", "--csv", csv.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(rig.waiting().await["waiting"], 3);

    let stop = tokio_util::sync::CancellationToken::new();
    let addr = crate::intake::intake_in_process(&rig.config, &rig.broker.url(), &stop).await;
    // SCIM: a user provisioned inactive, then made active.
    let scim = crate::intake::Scim {
        http: reqwest::Client::new(),
        base: format!("http://{addr}/scim/v2"),
    };
    let (status, user) = scim
        .post_user(serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": PEOPLE[3],
            "active": false,
            "emails": [{"primary": true, "value": PEOPLE[3]}]
        }))
        .await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap();
    let (status, body) = scim
        .patch_user(
            id,
            serde_json::json!([{"op": "replace", "path": "active", "value": true}]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Okta: the reactivation of another.
    let hook = format!("http://{addr}/hooks/okta");
    let delivery = crate::intake::okta_delivery(vec![crate::intake::okta_event(
        "ev-reactivate-1",
        "user.lifecycle.reactivate",
        PEOPLE[2],
    )]);
    assert_eq!(crate::intake::deliver_okta(&hook, &delivery).await, 200);

    wait_until(Duration::from_secs(30), "both cancelled", async || {
        rig.waiting().await["waiting"] == 1
    })
    .await;
    let left = rig.waiting().await;
    assert_eq!(left["first"][0]["user"], PEOPLE[1], "{left}");
    let lines = report_lines(&rig.report);
    for (person, event) in [
        (PEOPLE[3], format!("scim:{id}:")),
        (PEOPLE[2], "okta:ev-reactivate-1".into()),
    ] {
        let mine = Rig::line_of(&lines, person);
        assert_eq!(mine.len(), 1, "{mine:?}");
        assert_eq!(mine[0]["reason"], "cancelled");
        let message = mine[0]["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("(event {event}")), "{message}");
        assert!(rig.sandbox.is_member(ProviderKind::Factory, None, person));
    }
    stop.cancel();
    terminate(&worker);
    worker.wait().await.unwrap();
}
