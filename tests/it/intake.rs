//! The intake (Okta Event Hooks, SCIM 2.0) against a real RabbitMQ node, real HTTP on loopback,
//! the worker and the sandbox providers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use offboard::config::Settings;
use offboard::job::ProviderKind;
use offboard::metrics::Metrics;
use offboard::sandbox::{Faults, Seed};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::support::{report_lines, successful_removals, terminate, wait_until};
use crate::worker::Rig;

const TENANT: &str = "7b09cdc3-8948-47f0-aa62-74ac943d6c59";
pub(crate) const OKTA_SECRET: &str = "okta-shared-secret-for-tests";
pub(crate) const SCIM_TOKEN: &str = "scim-bearer-token-for-tests";

/// A person known by `email` at all five providers.
fn everywhere(seed: Seed, email: &str, uuid: &str, aitronos_id: &str) -> Seed {
    seed.member_with_email(ProviderKind::Factory, None, email, email)
        .member_with_email(ProviderKind::Aitronos, Some("org_acme"), aitronos_id, email)
        .member_with_email(ProviderKind::Telnyx, None, uuid, email)
        .member_with_email(ProviderKind::Aerospike, None, uuid, email)
        .member_with_email(ProviderKind::Cognee, Some(TENANT), uuid, email)
}

fn is_member_anywhere(rig: &Rig, email: &str, uuid: &str, aitronos_id: &str) -> Vec<ProviderKind> {
    let s = &rig.sandbox;
    [
        (ProviderKind::Factory, None, email),
        (ProviderKind::Aitronos, Some("org_acme"), aitronos_id),
        (ProviderKind::Telnyx, None, uuid),
        (ProviderKind::Aerospike, None, uuid),
        (ProviderKind::Cognee, Some(TENANT), uuid),
    ]
    .into_iter()
    .filter(|(k, o, u)| s.is_member(*k, *o, u))
    .map(|(k, _, _)| k)
    .collect()
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A rig whose Aitronos and Cognee entries name their organization (targets by email to every
/// provider need it), with `extra` appended to the config.
pub(crate) async fn rig(seed: Seed, extra: &str) -> Rig {
    let mut rig = Rig::with_seed(seed, Faults::none(), HashMap::new()).await;
    rig.manage_organizations("org_acme", TENANT, extra);
    rig.env.push(("TEST_OKTA_SECRET", OKTA_SECRET.into()));
    rig.env.push(("TEST_SCIM_TOKEN", SCIM_TOKEN.into()));
    rig
}

pub(crate) fn okta_event(uuid: &str, event_type: &str, email: &str) -> Value {
    json!({
        "uuid": uuid,
        "published": "2026-11-28T08:00:00.000Z",
        "eventType": event_type,
        "version": "0",
        "displayMessage": "Deactivate Okta user",
        "severity": "INFO",
        "actor": {"id": "00uadmin", "type": "User", "alternateId": "admin@acme.example", "displayName": "Admin"},
        "target": [
            {"id": "00u1", "type": "User", "alternateId": email, "displayName": "Someone"}
        ]
    })
}

pub(crate) fn okta_delivery(events: Vec<Value>) -> Value {
    json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "https://acme.okta.com/api/v1/eventHooks/who8x",
        "eventId": "b5a188b9-5ece-4636-b041-482ffda96311",
        "data": {"events": events},
        "eventTime": "2026-11-28T08:00:01.000Z",
        "contentType": "application/json"
    })
}

/// POSTs an Okta delivery to `hook` with the right secret; the answer's status.
pub(crate) async fn deliver_okta(hook: &str, delivery: &Value) -> u16 {
    reqwest::Client::new()
        .post(hook)
        .header("Authorization", OKTA_SECRET)
        .json(delivery)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A consumer of everything on the outcomes exchange.
pub(crate) async fn outcomes_queue(broker: &Broker) -> (lapin::Connection, lapin::Consumer) {
    let conn = offboard::doors::amqp::connect(&broker.url(), "test-outcomes")
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        q.name().as_str().into(),
        "offboard.outcomes".into(),
        "#".into(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let consumer = ch
        .basic_consume(
            q.name().as_str().into(),
            "test".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    (conn, consumer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_okta_deactivation_removes_the_person_everywhere_once_and_says_so_on_the_outcomes_exchange()
 {
    let zoe = (
        "zoe.zhang@acme.example",
        "5b09cdc3-8948-47f0-aa62-74ac943d6c57",
        "usr_zoe",
    );
    let ann = (
        "ann.lee@acme.example",
        "6a09cdc3-8948-47f0-aa62-74ac943d6c58",
        "usr_ann",
    );
    let seed = everywhere(
        everywhere(Seed::default(), zoe.0, zoe.1, zoe.2),
        ann.0,
        ann.1,
        ann.2,
    );
    let port = free_port();
    let rig = rig(
        seed,
        &format!(
            "[intake]\nlisten = \"127.0.0.1:{port}\"\n[intake.okta]\nsecret_env = \"TEST_OKTA_SECRET\"\n"
        ),
    )
    .await;
    let mut worker = rig.worker();
    let hook = format!("http://127.0.0.1:{port}/hooks/okta");
    let http = reqwest::Client::new();
    wait_until(
        Duration::from_secs(30),
        "the intake listening",
        async || http.get(&hook).send().await.is_ok(),
    )
    .await;
    rig.declared("offboard.intake").await;
    let (_c, mut outcomes) = outcomes_queue(&rig.broker).await;
    // `offboard outcomes` follows too, and ends 3 s after the last one.
    let follower = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args([
            "outcomes",
            "--config",
            rig.config.to_str().unwrap(),
            "--idle-ms",
            "3000",
            "--binding",
            "*.removed",
        ])
        .envs(rig.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "two queues bound to the outcomes exchange",
        async || {
            rig.broker
                .ctl(&["list_bindings", "source_name", "routing_key"])
                .await
                .lines()
                .filter(|l| l.starts_with("offboard.outcomes"))
                .count()
                == 2
        },
    )
    .await;

    // Okta's one-time verification, with the secret; without it, nothing.
    let v = http
        .get(&hook)
        .header("Authorization", OKTA_SECRET)
        .header("X-Okta-Verification-Challenge", "chal-123")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), 200);
    assert_eq!(
        v.json::<Value>().await.unwrap(),
        json!({"verification": "chal-123"})
    );
    let v = http
        .get(&hook)
        .header("Authorization", "wrong")
        .header("X-Okta-Verification-Challenge", "chal-123")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), 401);
    assert!(v.text().await.unwrap().is_empty(), "no detail");

    // A bad secret publishes nothing.
    let deliver = okta_delivery(vec![
        okta_event("ev-zoe-1", "user.lifecycle.deactivate", zoe.0),
        okta_event("ev-ann-1", "user.lifecycle.suspend", ann.0),
        okta_event("ev-x", "user.session.start", ann.0),
    ]);
    let r = http
        .post(&hook)
        .header("Authorization", "Bearer guess")
        .json(&deliver)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(report_lines(&rig.report).len(), 0, "nothing was published");

    // The deactivation removes Zoe at all five; a suspension (not enabled) and a session event
    // do nothing.
    assert_eq!(deliver_okta(&hook, &deliver).await, 200);
    rig.wait_for_report(5, Duration::from_secs(60)).await;
    let lines = report_lines(&rig.report);
    for kind in ProviderKind::ALL {
        let l = lines
            .iter()
            .find(|l| l["job_id"] == format!("okta:ev-zoe-1:0:{kind}"))
            .unwrap_or_else(|| panic!("a job for {kind}: {lines:#?}"));
        assert_eq!(l["outcome"], "removed", "{l}");
    }
    assert!(is_member_anywhere(&rig, zoe.0, zoe.1, zoe.2).is_empty());
    assert_eq!(
        is_member_anywhere(&rig, ann.0, ann.1, ann.2).len(),
        5,
        "a suspension does nothing unless enabled"
    );

    // Okta delivers the same events again: nobody is removed twice, nothing new is recorded.
    assert_eq!(deliver_okta(&hook, &deliver).await, 200);
    wait_until(Duration::from_secs(30), "queues drained", async || {
        rig.queues_empty().await
    })
    .await;
    let log = rig.sandbox.log();
    for kind in ProviderKind::ALL {
        let user = match kind {
            ProviderKind::Factory => zoe.0,
            ProviderKind::Aitronos => zoe.2,
            _ => zoe.1,
        };
        assert_eq!(successful_removals(&log, kind, user), 1, "{kind}: once");
    }
    assert_eq!(
        report_lines(&rig.report).len(),
        5,
        "a redelivery records nothing new"
    );

    // The outcomes exchange carried one message per finished job, keyed provider.outcome.
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let d = tokio::time::timeout(Duration::from_secs(30), outcomes.next())
            .await
            .expect("an outcome within 30 s")
            .unwrap()
            .unwrap();
        let body: Value = serde_json::from_slice(&d.data).unwrap();
        assert_eq!(
            d.routing_key.as_str(),
            format!("{}.removed", body["provider"].as_str().unwrap())
        );
        seen.push(body["job_id"].as_str().unwrap().to_owned());
    }
    seen.sort();
    let mut want: Vec<String> = ProviderKind::ALL
        .iter()
        .map(|k| format!("okta:ev-zoe-1:0:{k}"))
        .collect();
    want.sort();
    assert_eq!(seen, want);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), outcomes.next())
            .await
            .is_err(),
        "nothing more"
    );
    let followed = follower.wait_with_output().await.unwrap();
    assert!(
        followed.status.success(),
        "{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    let mut printed: Vec<String> = String::from_utf8_lossy(&followed.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["job_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    printed.sort();
    assert_eq!(printed, want, "offboard outcomes printed each one");
    let log = rig.worker_log();
    assert!(!log.contains(OKTA_SECRET), "the secret is never logged");
    terminate(&worker);
    worker.wait().await.unwrap();
}

/// The intake in this process, serving SCIM (and Okta) from `config`'s `[intake]`, publishing to
/// the broker at `amqp_url`.
pub(crate) async fn intake_in_process(
    config: &Path,
    amqp_url: &str,
    stop: &CancellationToken,
) -> SocketAddr {
    let mut settings = Settings::load(config).unwrap();
    settings.amqp.url = Some(amqp_url.to_owned());
    let env = |v: &str| match v {
        "TEST_OKTA_SECRET" => Some(OKTA_SECRET.to_owned()),
        "TEST_SCIM_TOKEN" => Some(SCIM_TOKEN.to_owned()),
        _ => None,
    };
    let secrets = settings.intake_secrets("test", &env).unwrap();
    offboard::doors::intake::serve(
        &settings,
        secrets,
        std::sync::Arc::new(Metrics::new()),
        stop.clone(),
        Duration::from_secs(1),
    )
    .await
    .unwrap()
    .addr
}

pub(crate) struct Scim {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

impl Scim {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(SCIM_TOKEN);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    pub(crate) async fn post_user(&self, body: Value) -> (u16, Value) {
        self.post("/Users", body).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
    /// PATCHes the user `id` with the PatchOp `ops`.
    pub(crate) async fn patch_user(&self, id: &str, ops: Value) -> (u16, Value) {
        self.patch(&format!("/Users/{id}"), patch_op(ops)).await
    }
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }
    /// Creates a user the way Entra does and returns its id.
    pub(crate) async fn create(&self, user_name: &str, email: &str) -> String {
        let (status, body) = self
            .post(
                "/Users",
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                    "externalId": format!("ext-{user_name}"),
                    "userName": user_name,
                    "active": true,
                    "displayName": "Someone",
                    "emails": [{"primary": true, "type": "work", "value": email}],
                    "name": {"formatted": "Some One", "familyName": "One", "givenName": "Some"},
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "42"}
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }
}

pub(crate) fn patch_op(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_and_okta_scim_deprovisioning_removes_everywhere_and_reactivation_re_adds_nobody() {
    let zoe = (
        "zoe.zhang@acme.example",
        "5b09cdc3-8948-47f0-aa62-74ac943d6c57",
        "usr_zoe",
    );
    let ann = (
        "ann.lee@acme.example",
        "6a09cdc3-8948-47f0-aa62-74ac943d6c58",
        "usr_ann",
    );
    let bob = (
        "bob.ray@acme.example",
        "4c09cdc3-8948-47f0-aa62-74ac943d6c56",
        "usr_bob",
    );
    let cat = (
        "cat.fox@acme.example",
        "3d09cdc3-8948-47f0-aa62-74ac943d6c55",
        "usr_cat",
    );
    let mut seed = Seed::default();
    for p in [zoe, ann, bob, cat] {
        seed = everywhere(seed, p.0, p.1, p.2);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scim.sqlite");
    let rig = rig(
        seed,
        &format!(
            "[intake]\nlisten = \"127.0.0.1:0\"\n[intake.scim]\ntoken_env = \"TEST_SCIM_TOKEN\"\ndatabase = \"{}\"\n",
            db.display()
        ),
    )
    .await;
    let mut worker = rig.worker();
    rig.declared("offboard.intake").await;
    let stop = CancellationToken::new();
    let addr = intake_in_process(&rig.config, &rig.broker.url(), &stop).await;
    let scim = Scim {
        http: reqwest::Client::new(),
        base: format!("http://{addr}/scim/v2"),
    };
    let ids: Vec<String> = {
        let mut ids = vec![];
        for p in [zoe, ann, bob, cat] {
            // Entra's userName is the UPN; the email is the primary work address.
            ids.push(scim.create(&format!("{}.upn", p.0), p.0).await);
        }
        ids
    };
    // Entra (without aadOptscim062020): Replace, path active, the string "False".
    let (s, body) = scim
        .patch_user(
            &ids[0],
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["active"], false);
    // Okta: replace without a path.
    let (s, body) = scim
        .patch_user(
            &ids[1],
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    // A PUT with active false.
    let (s, mut user) = scim.get(&format!("/Users/{}", ids[2])).await;
    assert_eq!(s, 200);
    user["active"] = json!(false);
    let (s, body) = scim.put(&format!("/Users/{}", ids[2]), user).await;
    assert_eq!(s, 200, "{body}");
    // DELETE.
    let (s, _) = scim.delete(&format!("/Users/{}", ids[3])).await;
    assert_eq!(s, 204);
    let (s, body) = scim.get(&format!("/Users/{}", ids[3])).await;
    assert_eq!(s, 404);
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );

    rig.wait_for_report(20, Duration::from_secs(90)).await;
    for p in [zoe, ann, bob, cat] {
        assert!(
            is_member_anywhere(&rig, p.0, p.1, p.2).is_empty(),
            "{} removed everywhere",
            p.0
        );
    }
    let lines = report_lines(&rig.report);
    assert!(
        lines.iter().all(|l| l["outcome"] == "removed"),
        "{lines:#?}"
    );
    // Deactivated users are still returned, inactive.
    let (_, body) = scim
        .get(&format!(
            "/Users?filter=userName%20eq%20%22{}.upn%22",
            zoe.0
        ))
        .await;
    assert_eq!(body["totalResults"], 1, "{body}");
    assert_eq!(body["Resources"][0]["active"], false);

    // Reactivation is answered and recorded, and re-adds nobody; a repeated deactivation of an
    // inactive user publishes nothing.
    let (s, body) = scim
        .patch_user(
            &ids[0],
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["active"], true);
    let (s, _) = scim
        .patch_user(
            &ids[1],
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_until(Duration::from_secs(30), "queues drained", async || {
        rig.queues_empty().await
    })
    .await;
    assert_eq!(report_lines(&rig.report).len(), 20, "nothing new");
    assert!(is_member_anywhere(&rig, zoe.0, zoe.1, zoe.2).is_empty());
    stop.cancel();
    terminate(&worker);
    worker.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_answers_503_and_loses_nothing() {
    let zoe = (
        "zoe.zhang@acme.example",
        "5b09cdc3-8948-47f0-aa62-74ac943d6c57",
        "usr_zoe",
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scim.sqlite");
    let mut rig = rig(
        everywhere(Seed::default(), zoe.0, zoe.1, zoe.2),
        &format!(
            "[intake]\nlisten = \"127.0.0.1:0\"\npublish_timeout_ms = 1500\n[intake.okta]\nsecret_env = \"TEST_OKTA_SECRET\"\n[intake.scim]\ntoken_env = \"TEST_SCIM_TOKEN\"\ndatabase = \"{}\"\n",
            db.display()
        ),
    )
    .await;
    let stop = CancellationToken::new();
    let addr = intake_in_process(&rig.config, &rig.broker.url(), &stop).await;
    let scim = Scim {
        http: reqwest::Client::new(),
        base: format!("http://{addr}/scim/v2"),
    };
    let id = scim.create("zoe.upn", zoe.0).await;
    rig.broker.stop().await;
    let deactivate = patch_op(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    let (s, body) = scim
        .patch(&format!("/Users/{id}"), deactivate.clone())
        .await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    let (_, user) = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(
        user["active"], true,
        "nothing stored before the broker confirmed"
    );
    let hook = format!("http://{addr}/hooks/okta");
    let okta = okta_delivery(vec![okta_event("ev-1", "user.lifecycle.deactivate", zoe.0)]);
    assert_eq!(deliver_okta(&hook, &okta).await, 503);

    // The senders retry once the broker is back: both land in the intake queue.
    rig.broker.restart().await;
    let (s, body) = scim.patch(&format!("/Users/{id}"), deactivate).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(deliver_okta(&hook, &okta).await, 200);
    assert_eq!(rig.broker.queue_messages("offboard.intake").await, Some(2));
    // And the worker removes Zoe from all five, once: each of her five jobs ends removed under
    // one event and a duplicate under the other.
    let mut worker = rig.worker();
    rig.wait_for_report(10, Duration::from_secs(90)).await;
    assert!(is_member_anywhere(&rig, zoe.0, zoe.1, zoe.2).is_empty());
    let lines = report_lines(&rig.report);
    assert_eq!(
        lines.iter().filter(|l| l["outcome"] == "removed").count(),
        5,
        "{lines:#?}"
    );
    stop.cancel();
    terminate(&worker);
    worker.wait().await.unwrap();
}

/// The checks of Okta's SCIM 2.0 SPEC test and of Microsoft's SCIM validator's user tests, against
/// the intake alone (no deprovisioning here: no broker is needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_conformance_as_okta_spec_test_and_microsoft_validator_check_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(
        &config,
        format!(
            "[providers.factory]\nkind = \"factory\"\ntoken_env = \"UNUSED\"\n\
             [intake]\nlisten = \"127.0.0.1:0\"\n\
             [intake.scim]\ntoken_env = \"TEST_SCIM_TOKEN\"\ndatabase = \"{}\"\n",
            dir.path().join("scim.sqlite").display()
        ),
    )
    .unwrap();
    let stop = CancellationToken::new();
    // No broker listens on port 1: only a deactivation would need one.
    let addr = intake_in_process(&config, "amqp://127.0.0.1:1/%2f", &stop).await;
    let scim = Scim {
        http: reqwest::Client::new(),
        base: format!("http://{addr}/scim/v2"),
    };
    const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
    const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

    // Discovery.
    let (s, spc) = scim.get("/ServiceProviderConfig").await;
    assert_eq!(s, 200);
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["filter"]["supported"], true);
    let (s, types) = scim.get("/ResourceTypes").await;
    assert_eq!(s, 200);
    assert_eq!(types["Resources"][0]["endpoint"], "/Users");
    let (s, schemas) = scim.get("/Schemas").await;
    assert_eq!(s, 200);
    assert_eq!(schemas["totalResults"], 2);

    // 401 in the Error schema, without a token or with a wrong one.
    let r = scim
        .http
        .get(format!("{}/Users", scim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/scim+json"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["schemas"][0], ERROR);
    assert_eq!(body["status"], "401");
    let r = scim
        .http
        .get(format!("{}/Users", scim.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Create: 201 with an id, active, meta; the same userName again (any case): 409.
    let id = scim
        .create("Jane.Doe@acme.example", "jane@acme.example")
        .await;
    let (s, dup) = scim
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "jane.doe@ACME.example"}),
        )
        .await;
    assert_eq!(s, 409, "{dup}");
    assert_eq!(dup["schemas"][0], ERROR);
    assert_eq!(dup["scimType"], "uniqueness");
    let (s, bad) = scim
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "displayName": "x"}),
        )
        .await;
    assert_eq!(s, 400, "{bad}");
    assert_eq!(bad["scimType"], "invalidValue");

    // Get by id; list shape; filters with and without a match (Entra's Test Connection asks for
    // a random GUID).
    let (s, user) = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(user["id"], id.as_str());
    assert_eq!(user["userName"], "Jane.Doe@acme.example");
    assert_eq!(user["active"], true);
    assert_eq!(user["meta"]["resourceType"], "User");
    assert_eq!(
        user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
        "42"
    );
    let (s, list) = scim.get("/Users?startIndex=1&count=100").await;
    assert_eq!(s, 200);
    assert_eq!(list["schemas"][0], LIST);
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["startIndex"], 1);
    assert_eq!(list["itemsPerPage"], 1);
    assert_eq!(list["Resources"][0]["id"], id.as_str());
    let (s, none) = scim
        .get("/Users?filter=userName%20eq%20%22a3f2c1d0-0b1e-4f5e-9d3c-2b1a0f9e8d7c%22")
        .await;
    assert_eq!(s, 200);
    assert_eq!(none["totalResults"], 0);
    assert_eq!(none["Resources"], json!([]));
    let (_, found) = scim
        .get("/Users?filter=userName%20eq%20%22jane.doe%40acme.example%22")
        .await;
    assert_eq!(found["totalResults"], 1, "userName is not case-exact");
    let (_, found) = scim
        .get("/Users?filter=externalId%20eq%20%22ext-Jane.Doe%40acme.example%22%20and%20active%20eq%20true")
        .await;
    assert_eq!(found["totalResults"], 1, "{found}");
    let (s, bad) = scim.get("/Users?filter=userName%20eq").await;
    assert_eq!(s, 400);
    assert_eq!(bad["scimType"], "invalidFilter");
    let (s, missing) = scim
        .get("/Users/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(s, 404);
    assert_eq!(missing["schemas"][0], ERROR);
    assert_eq!(missing["status"], "404");

    // Microsoft's validator: replace and add attributes in every form Entra sends, remove one.
    let (s, patched) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([
                {"op": "Replace", "path": "displayName", "value": "Jane D."},
                {"op": "Replace", "path": "name.givenName", "value": "Janet"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "janet@acme.example"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Finance"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "mgr-1"},
                {"op": "Add", "value": {"nickName": "JJ", "title": "Controller"}}
            ])),
        )
        .await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["displayName"], "Jane D.");
    assert_eq!(patched["name"]["givenName"], "Janet");
    assert_eq!(
        patched["name"]["familyName"], "One",
        "the rest of name stays"
    );
    assert_eq!(patched["emails"][0]["value"], "janet@acme.example");
    assert_eq!(patched["emails"].as_array().unwrap().len(), 1);
    let ext = &patched["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
    assert_eq!(ext["department"], "Finance");
    assert_eq!(ext["manager"]["value"], "mgr-1");
    assert_eq!(ext["employeeNumber"], "42");
    assert_eq!(patched["nickName"], "JJ");
    let (s, patched) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([
                {"op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"},
                {"op": "Remove", "path": "title"}
            ])),
        )
        .await;
    assert_eq!(s, 200, "{patched}");
    assert!(
        patched["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]
            .get("manager")
            .is_none()
    );
    assert!(patched.get("title").is_none());
    // What GET returns is what was stored.
    let (_, again) = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(again["name"]["givenName"], "Janet");
    // A PATCH that is not one: 400 in the Error schema, nothing changed.
    let (s, bad) = scim
        .patch(&format!("/Users/{id}"), json!({"Operations": []}))
        .await;
    assert_eq!(s, 400, "{bad}");
    assert_eq!(bad["schemas"][0], ERROR);
    // userName changes, and PUT replaces everything.
    let (s, put) = scim
        .put(
            &format!("/Users/{id}"),
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "jane.new@acme.example", "active": true, "displayName": "J"}),
        )
        .await;
    assert_eq!(s, 200, "{put}");
    assert_eq!(put["userName"], "jane.new@acme.example");
    assert!(put.get("nickName").is_none(), "PUT replaces");
    let (s, _) = scim
        .patch(
            &format!("/Users/{}", "nobody"),
            patch_op(json!([{"op": "replace", "path": "displayName", "value": "x"}])),
        )
        .await;
    assert_eq!(s, 404);
    // A user created inactive stays so, and publishes nothing (no broker listens).
    let (s, inactive) = scim
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "never@acme.example", "active": false}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(inactive["active"], false);

    // Concurrent requests, as Entra sends them: distinct creates all land, the same userName
    // created at once lands once, and concurrent PATCHes of one user all apply.
    let creates = futures_util::future::join_all((0..32).map(|i| {
        let scim = &scim;
        async move {
            scim.create(&format!("c{i}@acme.example"), &format!("c{i}@acme.example"))
                .await
        }
    }))
    .await;
    assert_eq!(
        creates
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        32
    );
    let same = futures_util::future::join_all((0..8).map(|_| {
        scim.post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "race@acme.example"}),
        )
    }))
    .await;
    assert_eq!(
        same.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "{same:?}"
    );
    assert_eq!(
        same.iter().filter(|(s, _)| *s == 409).count(),
        7,
        "{same:?}"
    );
    let target = &creates[0];
    let target_path = format!("/Users/{target}");
    let patches = futures_util::future::join_all((0..16).map(|i| {
        scim.patch(
            &target_path,
            patch_op(json!([{"op": "add", "path": "emails", "value": [{"value": format!("alias{i}@acme.example"), "type": "other"}]}])),
        )
    }))
    .await;
    assert!(patches.iter().all(|(s, _)| *s == 200), "{patches:?}");
    let (_, user) = scim.get(&format!("/Users/{target}")).await;
    assert_eq!(
        user["emails"].as_array().unwrap().len(),
        17,
        "every concurrent add applied: {user}"
    );
    assert_eq!(user["meta"]["version"], "W/\"17\"");
    let total_now = 2 + 32 + 1;

    // The store survives a restart of the intake.
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop = CancellationToken::new();
    let addr = intake_in_process(&config, "amqp://127.0.0.1:1/%2f", &stop).await;
    let scim = Scim {
        http: reqwest::Client::new(),
        base: format!("http://{addr}/scim/v2"),
    };
    let (s, user) = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(user["userName"], "jane.new@acme.example");
    let (_, list) = scim.get("/Users?count=10&startIndex=11").await;
    assert_eq!(list["totalResults"], total_now);
    assert_eq!(list["itemsPerPage"], 10);
    assert_eq!(list["startIndex"], 11);
    stop.cancel();
}

/// `tls_cert_file`/`tls_key_file`: the intake terminates TLS itself (rustls); a client trusting the
/// CA is served, plain HTTP is not. Bodies past `max_body_bytes` are refused with 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_terminates_tls_with_its_own_certificate_and_caps_bodies() {
    let pki = crate::transport::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(
        &config,
        format!(
            "[providers.factory]\nkind = \"factory\"\ntoken_env = \"UNUSED\"\n\
             [intake]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 4096\n\
             tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n\
             [intake.okta]\nsecret_env = \"TEST_OKTA_SECRET\"\n\
             [intake.scim]\ntoken_env = \"TEST_SCIM_TOKEN\"\ndatabase = \"{}\"\n",
            cert.display(),
            key.display(),
            dir.path().join("scim.sqlite").display()
        ),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let addr = intake_in_process(&config, "amqp://127.0.0.1:1/%2f", &stop).await;
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = trusting
        .get(format!(
            "https://127.0.0.1:{}/scim/v2/ServiceProviderConfig",
            addr.port()
        ))
        .bearer_auth(SCIM_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = trusting
        .get(format!("https://127.0.0.1:{}/hooks/okta", addr.port()))
        .header("Authorization", OKTA_SECRET)
        .header("X-Okta-Verification-Challenge", "over-tls")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["verification"], "over-tls");
    // Too big a body: 413, whatever it holds.
    let r = trusting
        .post(format!("https://127.0.0.1:{}/hooks/okta", addr.port()))
        .header("Authorization", OKTA_SECRET)
        .body("x".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Plain HTTP to the TLS port gets no answer; nor does a client not trusting the CA.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/scim/v2/ServiceProviderConfig"))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    let untrusting = reqwest::Client::new()
        .get(format!(
            "https://127.0.0.1:{}/scim/v2/ServiceProviderConfig",
            addr.port()
        ))
        .send()
        .await;
    assert!(untrusting.is_err(), "an unknown CA is refused");
    stop.cancel();
}

/// Event types are config: `user.lifecycle.suspend` offboards once enabled, and a type not enabled
/// is acknowledged and publishes nothing. What reaches the intake queue is the person-level event,
/// by email, for every provider, with the job ids' root from the event's uuid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enabled_event_type_publishes_and_one_not_enabled_does_not() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(
        &config,
        "[providers.factory]\nkind = \"factory\"\ntoken_env = \"UNUSED\"\n\
         [intake]\nlisten = \"127.0.0.1:0\"\n\
         [intake.okta]\nsecret_env = \"TEST_OKTA_SECRET\"\n\
         event_types = [\"user.lifecycle.deactivate\", \"user.lifecycle.suspend\"]\n",
    )
    .unwrap();
    let stop = CancellationToken::new();
    let addr = intake_in_process(&config, &broker.url(), &stop).await;
    let delivery = okta_delivery(vec![
        okta_event("ev-s", "user.lifecycle.suspend", "sue@acme.example"),
        okta_event(
            "ev-a",
            "application.user_membership.remove",
            "al@acme.example",
        ),
    ]);
    assert_eq!(
        deliver_okta(&format!("http://{addr}/hooks/okta"), &delivery).await,
        200
    );
    assert_eq!(broker.queue_messages("offboard.intake").await, Some(1));
    let conn = offboard::doors::amqp::connect(&broker.url(), "test")
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let got = ch
        .basic_get(
            "offboard.intake".into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("one message");
    let event: Value = serde_json::from_slice(&got.delivery.data).unwrap();
    assert_eq!(event["event_id"], "okta:ev-s");
    assert_eq!(
        event["targets"],
        json!([{"provider": "*", "user": "sue@acme.example", "organization": null, "transfer_to": null, "by_email": true}])
    );
    assert_eq!(event["door"], "okta", "counted as the Okta door's");
    assert_eq!(event["requested_by"], "okta:admin@acme.example");
    stop.cancel();
}

/// An unauthenticated delivery announcing a 1 MiB body is refused at once, before a byte of it is
/// read (the sender never sends it); with the secret, a body past `max_body_bytes` is a 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_okta_door_checks_the_secret_before_it_reads_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(
        &config,
        "[providers.factory]\nkind = \"factory\"\ntoken_env = \"UNUSED\"\n\
         [intake]\nlisten = \"127.0.0.1:0\"\n\
         [intake.okta]\nsecret_env = \"TEST_OKTA_SECRET\"\n",
    )
    .unwrap();
    let stop = CancellationToken::new();
    let addr = intake_in_process(&config, "amqp://127.0.0.1:1/%2f", &stop).await;
    let answer = |secret: &'static str, length: usize| async move {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /hooks/okta HTTP/1.1\r\nHost: intake\r\nAuthorization: {secret}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        // No body follows: an answer can only come from the headers alone.
        let mut got = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{secret} {length}: answered without waiting for the body"))
            .unwrap();
        String::from_utf8_lossy(&got[..n]).into_owned()
    };
    let refused = answer("wrong-secret", 1 << 20).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let too_big = answer(OKTA_SECRET, (1 << 20) + 1).await;
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big}");
    stop.cancel();
}

/// Under abuse the door still answers a real delivery: 500 clients trickling their headers and 50
/// unauthenticated senders announcing 1 MiB bodies do not delay it past 1 s; an authenticated body
/// trickled byte by byte is cut at `request_timeout_ms` (408); past `max_concurrent_requests`, the
/// next request is answered 503 with `Retry-After` at once; and HTTP/2 is not spoken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_answers_a_real_delivery_in_time_while_slow_clients_crowd_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(
        &config,
        "[providers.factory]\nkind = \"factory\"\ntoken_env = \"UNUSED\"\n\
         [intake]\nlisten = \"127.0.0.1:0\"\nrequest_timeout_ms = 2000\nmax_concurrent_requests = 4\n\
         [intake.okta]\nsecret_env = \"TEST_OKTA_SECRET\"\n",
    )
    .unwrap();
    let stop = CancellationToken::new();
    let addr = intake_in_process(&config, &broker.url(), &stop).await;
    let hook = format!("http://{addr}/hooks/okta");
    let one = okta_delivery(vec![okta_event(
        "ev-1",
        "user.lifecycle.deactivate",
        "a@acme.example",
    )]);
    assert_eq!(
        deliver_okta(&hook, &one).await,
        200,
        "connected and declared"
    );

    // 500 clients sending a header a byte at a time, 50 announcing a body they never send.
    let mut crowd = Vec::new();
    for i in 0..550 {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = if i < 500 {
            "POST /hooks/okta HTTP/1.1\r\nHost: intake\r\nX-Slow: ".to_owned()
        } else {
            "POST /hooks/okta HTTP/1.1\r\nHost: intake\r\nAuthorization: guess\r\n\
             Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
                .to_owned()
        };
        conn.write_all(head.as_bytes()).await.unwrap();
        crowd.push(tokio::spawn(async move {
            for _ in 0..30 {
                if conn.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }
    let started = std::time::Instant::now();
    let two = okta_delivery(vec![okta_event(
        "ev-2",
        "user.lifecycle.deactivate",
        "b@acme.example",
    )]);
    assert_eq!(deliver_okta(&hook, &two).await, 200);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "answered in {took:?}");

    // An authenticated body trickled forever is cut at the request timeout.
    let trickle = |n: usize| async move {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /hooks/okta HTTP/1.1\r\nHost: intake\r\nAuthorization: {OKTA_SECRET}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let mut got = vec![0u8; 512];
        let read = async {
            loop {
                tokio::select! {
                    r = conn.read(&mut got) => return r.map(|k| String::from_utf8_lossy(&got[..k]).into_owned()),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                let _ = conn.write_all(b" ").await;
            }
        };
        let answer = tokio::time::timeout(Duration::from_secs(10 + n as u64), read)
            .await
            .expect("answered")
            .unwrap();
        (answer, started.elapsed())
    };
    let slow: Vec<_> = (0..4).map(|n| tokio::spawn(trickle(n))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Four requests hold the four slots: the fifth is told to come back, at once.
    let r = reqwest::Client::new()
        .post(&hook)
        .header("Authorization", OKTA_SECRET)
        .json(&two)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    for s in slow {
        let (answer, took) = s.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(took < Duration::from_secs(5), "cut after {took:?}");
    }
    // HTTP/2 with prior knowledge is not spoken.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .get(&hook)
        .send()
        .await;
    assert!(h2.is_err(), "HTTP/2 answered: {h2:?}");
    for c in crowd {
        c.abort();
    }
    stop.cancel();
}

/// The virtualenv with python-scim's compliance checker (tests/scim/requirements.txt), made once
/// in the test's target folder from PyPI.
fn scim_checker() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scim2-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    let wanted = std::fs::read_to_string(root.join("tests/scim/requirements.txt")).unwrap();
    if std::fs::read_to_string(&ready).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(&venv);
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().expect("python3 runs");
            assert!(
                out.status.success(),
                "{cmd:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv));
        run(std::process::Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(root.join("tests/scim/requirements.txt")));
        std::fs::write(&ready, wanted).unwrap();
    }
    python
}

/// python-scim's compliance checker (`scim2-tester`, from PyPI) runs every check it has against
/// `/scim/v2` and finds no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_every_check() {
    let python = tokio::task::spawn_blocking(scim_checker).await.unwrap();
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(
        &config,
        format!(
            "[providers.factory]\nkind = \"factory\"\ntoken_env = \"UNUSED\"\n\
             [intake]\nlisten = \"127.0.0.1:0\"\n\
             [intake.scim]\ntoken_env = \"TEST_SCIM_TOKEN\"\ndatabase = \"{}\"\n",
            dir.path().join("scim.sqlite").display()
        ),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let addr = intake_in_process(&config, &broker.url(), &stop).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scim/compliance.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(format!("http://{addr}/scim/v2"))
        .arg(SCIM_TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let checks: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        checks.len() >= 50,
        "the checker ran ({} checks): {stdout}\n{}",
        checks.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    let failed: Vec<&Value> = checks
        .iter()
        .filter(|c| c["status"] == "ERROR" || c["status"] == "CRITICAL")
        .collect();
    assert!(failed.is_empty(), "{} failed: {failed:#?}", failed.len());
    assert!(out.status.success());
    stop.cancel();
}
