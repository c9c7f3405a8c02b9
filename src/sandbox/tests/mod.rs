//! Real HTTP against the sandbox on loopback: what every provider shares here, each provider's
//! own answers in its own file.

mod aerospike;
mod aitronos;
mod cognee;
mod factory;
mod telnyx;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::seed::{REASON, REQUESTED_BY, Role, demo_csv, demo_rows};
use super::*;
use crate::job::{Directory, RawJob};

const TENANT: &str = "0b7e6f3a-52c1-4d8e-9f10-2a3b4c5d6e7f";

const OTHER_TENANT: &str = "1c8f7a4b-63d2-4e9f-8a21-3b4c5d6e7f80";

pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

pub(super) fn env(sb: &Sandbox, name: &str) -> String {
    sb.env()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name}"))
}

async fn plain(seed: Seed) -> Sandbox {
    Sandbox::start(SandboxOptions::plain(seed))
        .await
        .expect("start")
}

pub(super) async fn aerospike_token(sb: &Sandbox) -> String {
    let r = client()
        .post(sb.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env(sb, "SANDBOX_AEROSPIKE_CLIENT_ID")),
            ("client_secret", &env(sb, "SANDBOX_AEROSPIKE_CLIENT_SECRET")),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    v["access_token"].as_str().expect("token").to_owned()
}

/// The removal request of that kind, authenticated as a client would send it.
async fn remove(
    sb: &Sandbox,
    kind: ProviderKind,
    org: Option<&str>,
    user: &str,
) -> reqwest::Response {
    let c = client();
    let base = sb.base_url(kind);
    let req = match kind {
        ProviderKind::Factory => c
            .delete(format!("{base}/api/v0/organization/users"))
            .query(&[("email", user)])
            .bearer_auth(env(sb, "SANDBOX_FACTORY_TOKEN")),
        ProviderKind::Aitronos => c
            .delete(format!(
                "{base}/v1/organizations/{}/users/{user}",
                org.expect("org")
            ))
            .header("X-API-Key", env(sb, "SANDBOX_AITRONOS_API_KEY"))
            .json(&json!({"confirm": true})),
        ProviderKind::Telnyx => c
            .post(format!(
                "{base}/v2/organizations/users/{user}/actions/remove"
            ))
            .bearer_auth(env(sb, "SANDBOX_TELNYX_TOKEN")),
        ProviderKind::Aerospike => c
            .delete(format!("{base}/organization/members/{user}"))
            .bearer_auth(aerospike_token(sb).await),
        ProviderKind::Cognee => c
            .delete(format!(
                "{base}/api/v1/permissions/tenants/{}/users/{user}",
                org.expect("tenant")
            ))
            .header("X-Api-Key", env(sb, "SANDBOX_COGNEE_API_KEY")),
    };
    req.send().await.expect("send")
}

/// One removable member per kind, as (kind, organization, user).
fn one_each() -> Vec<(ProviderKind, Option<&'static str>, &'static str)> {
    vec![
        (ProviderKind::Factory, None, "ann.lee@acme.example"),
        (ProviderKind::Aitronos, Some("org_acme"), "usr_abc123"),
        (
            ProviderKind::Telnyx,
            None,
            "6a09cdc3-8948-47f0-aa62-74ac943d6c58",
        ),
        (
            ProviderKind::Aerospike,
            None,
            "b0658b67-8ea3-46de-a3b8-18c3f5347def",
        ),
        (
            ProviderKind::Cognee,
            Some(TENANT),
            "7b09cdc3-8948-47f0-aa62-74ac943d6c59",
        ),
    ]
}

fn seed_one_each() -> Seed {
    one_each()
        .into_iter()
        .fold(Seed::default(), |s, (k, o, u)| s.member(k, o, u))
}

#[tokio::test]
async fn urls_and_env_are_on_loopback() {
    let sb = Sandbox::start(SandboxOptions::demo()).await.unwrap();
    let names: Vec<_> = sb.env().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "SANDBOX_FACTORY_TOKEN",
            "SANDBOX_AITRONOS_API_KEY",
            "SANDBOX_TELNYX_TOKEN",
            "SANDBOX_AEROSPIKE_CLIENT_ID",
            "SANDBOX_AEROSPIKE_CLIENT_SECRET",
            "SANDBOX_COGNEE_API_KEY"
        ]
    );
    let bases: HashSet<_> = ProviderKind::ALL.iter().map(|k| sb.base_url(*k)).collect();
    assert_eq!(bases.len(), 5);
    assert!(bases.iter().all(|b| b.starts_with("http://127.0.0.1:")));
    assert!(sb.base_url(ProviderKind::Aerospike).ends_with("/v1"));
    assert!(sb.token_url().ends_with("/oauth/token"));
    sb.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_each_providers_headers() {
    let mut opts = SandboxOptions::plain(seed_one_each());
    opts.limits = ProviderKind::ALL.iter().map(|k| (*k, (1.0, 1))).collect();
    let sb = Sandbox::start(opts).await.unwrap();
    for (kind, org, user) in one_each() {
        let first = remove(&sb, kind, org, user).await;
        assert!(first.status().is_success(), "{kind}: {}", first.status());
        let r = remove(&sb, kind, org, user).await;
        assert_eq!(r.status(), 429, "{kind}");
        let h = r.headers().clone();
        let v: Value = r.json().await.unwrap();
        let num = |name: &str| h[name].to_str().unwrap().parse::<u64>().unwrap();
        match kind {
            ProviderKind::Factory => {
                assert!((1..=2).contains(&num("retry-after")));
                assert_eq!(
                    (v["status"].as_u64(), v["title"].as_str()),
                    (Some(429), Some("Too Many Requests"))
                );
            }
            ProviderKind::Aitronos => {
                let now = SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                assert!((now..=now + 2).contains(&num("x-ratelimit-reset")));
                assert_eq!(v["error"]["code"], "RATE_LIMIT_EXCEEDED");
            }
            ProviderKind::Telnyx => {
                assert_eq!(num("x-ratelimit-limit"), 1);
                assert_eq!(num("x-ratelimit-remaining"), 0);
                assert!((1..=2).contains(&num("x-ratelimit-reset")));
                assert_eq!(v["errors"][0]["code"], "10011");
            }
            ProviderKind::Aerospike => {
                let at = httpdate::parse_http_date(h["retry-after"].to_str().unwrap()).unwrap();
                assert!(at > SystemTime::now());
                assert!(h.contains_key("x-request-id"));
                assert_eq!(v["type"], "urn:aerospike:errors:ratelimit:exceeded");
            }
            ProviderKind::Cognee => {
                assert!((1..=2).contains(&num("retry-after")));
                assert!(v["detail"].is_string());
            }
        }
    }
    let statuses: Vec<u16> = sb.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5);
}

#[tokio::test]
async fn injected_faults_hit_the_first_attempt_only() {
    let cases = [
        (
            Faults {
                unavailable_every: 1,
                ..Faults::none()
            },
            503,
        ),
        (
            Faults {
                rate_limited_every: 1,
                ..Faults::none()
            },
            429,
        ),
        (
            Faults {
                conflict_every: 1,
                ..Faults::none()
            },
            409,
        ),
    ];
    for (faults, status) in cases {
        let mut opts = SandboxOptions::plain(seed_one_each());
        opts.faults = faults;
        let sb = Sandbox::start(opts).await.unwrap();
        for (kind, org, user) in one_each() {
            let r = remove(&sb, kind, org, user).await;
            assert_eq!(r.status(), status, "{kind}");
            if status == 429 {
                let h = r.headers();
                let has = match kind {
                    ProviderKind::Telnyx => h.contains_key("x-ratelimit-reset"),
                    ProviderKind::Aitronos => h.contains_key("x-ratelimit-reset"),
                    _ => h.contains_key("retry-after"),
                };
                assert!(has, "{kind}: {h:?}");
            }
            let v: Value = r.json().await.unwrap();
            assert!(v.is_object(), "{kind}: error body");
            assert!(
                sb.is_member(kind, org, user),
                "{kind}: a fault removes nothing"
            );
            let r = remove(&sb, kind, org, user).await;
            assert!(r.status().is_success(), "{kind}: retry {}", r.status());
            assert!(!sb.is_member(kind, org, user));
        }
        let log = sb.log();
        assert_eq!(log.len(), 10);
        for pair in log.chunks(2) {
            assert_eq!(pair[0].status, status);
            assert!(pair[1].status < 300);
            assert_eq!(pair[0].user, pair[1].user);
            assert!(pair[0].at <= pair[1].at);
        }
    }
}

#[tokio::test]
async fn an_outage_answers_every_attempt_at_its_provider_only() {
    for (outage, status) in [
        (Outage::Unavailable, 503),
        (Outage::RateLimited(Duration::from_secs(30)), 429),
    ] {
        let mut opts = SandboxOptions::plain(seed_one_each());
        opts.outages.insert(ProviderKind::Telnyx, outage);
        let sb = Sandbox::start(opts).await.unwrap();
        for (kind, org, user) in one_each() {
            for _ in 0..3 {
                let r = remove(&sb, kind, org, user).await;
                if kind != ProviderKind::Telnyx {
                    assert!(r.status().is_success(), "{kind}: {}", r.status());
                    break;
                }
                assert_eq!(r.status(), status, "{kind}: every attempt");
                if status == 429 {
                    let reset = r.headers()["x-ratelimit-reset"]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    assert_eq!(reset, "30", "{kind}: asks for the outage's wait");
                }
            }
            assert_eq!(sb.is_member(kind, org, user), kind == ProviderKind::Telnyx);
        }
    }
}

#[test]
fn faults_pick_by_a_stable_hash() {
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    let f = Faults::demo();
    let picked = demo_rows()
        .iter()
        .filter(|r| f.pick(&key(&r.user)).is_some())
        .count();
    assert!(
        (20..=80).contains(&picked),
        "{picked} demo targets get a fault"
    );
    assert_eq!(Faults::none().pick("anything"), None);
}

#[test]
fn gcra_allows_the_burst_then_refuses() {
    let g = Gcra::new(10.0, 3);
    assert!((0..3).all(|_| g.check().is_none()));
    let wait = g.check().expect("over the burst");
    assert!(wait <= Duration::from_millis(100), "{wait:?}");
}

#[test]
fn helpers() {
    assert_eq!(
        rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(1_795_280_000)),
        "2026-11-21T16:53:20Z"
    );
    assert_eq!(
        form_pairs("a=1&email=ann%2Blee%40acme.example&b=x+y"),
        [
            ("a".into(), "1".into()),
            ("email".into(), "ann+lee@acme.example".into()),
            ("b".into(), "x y".into())
        ]
    );
}

/// Regenerates `examples/reorg.csv`: `cargo test --lib sandbox::tests::write_demo_csv -- --ignored`.
#[test]
#[ignore]
fn write_demo_csv() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/reorg.csv");
    std::fs::write(path, demo_csv()).unwrap();
}

#[test]
fn demo_csv_file_matches_the_generator() {
    assert_eq!(include_str!("../../../examples/reorg.csv"), demo_csv());
}

#[test]
fn demo_seed_agrees_with_the_csv() {
    let text = include_str!("../../../examples/reorg.csv");
    let dir = Directory::new(ProviderKind::ALL.iter().map(|k| (k.as_str(), *k)));
    let seed = Seed::demo();
    let members: HashSet<(ProviderKind, Option<String>, String)> = seed
        .entries()
        .iter()
        .filter(|e| !e.owner)
        .filter_map(|e| {
            let org = org_key(e.kind, e.organization.as_deref());
            Some((e.kind, org, key(e.user.as_deref()?)))
        })
        .collect();
    let owners: HashSet<(ProviderKind, Option<String>, String)> = seed
        .entries()
        .iter()
        .filter(|e| e.owner)
        .map(|e| {
            (
                e.kind,
                org_key(e.kind, e.organization.as_deref()),
                key(e.user.as_deref().unwrap()),
            )
        })
        .collect();

    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "provider",
            "user",
            "organization",
            "transfer_to",
            "job_id",
            "reason",
            "requested_by"
        ]
    );
    let mut seen = HashSet::new();
    let (mut invalid, mut duplicates, mut absent, mut owner_rows) = (0, 0, Vec::new(), 0);
    let mut removed = HashSet::new();
    let mut per_kind: HashMap<ProviderKind, usize> = HashMap::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.unwrap();
        let raw: RawJob = record.deserialize(Some(&headers)).unwrap();
        assert_eq!(raw.reason.as_deref(), Some(REASON));
        assert_eq!(raw.requested_by.as_deref(), Some(REQUESTED_BY));
        let Ok(job) = dir.validate(&raw, Some(n as u64 + 2)) else {
            invalid += 1;
            continue;
        };
        let crate::job::Subject::Known(t) = &job.subject else {
            panic!("the demo CSV names ids")
        };
        let id = (
            t.kind(),
            org_key(t.kind(), t.organization().as_deref()),
            key(&t.user()),
        );
        if !seen.insert(id.clone()) {
            duplicates += 1;
            continue;
        }
        *per_kind.entry(t.kind()).or_default() += 1;
        if members.contains(&id) {
            removed.insert(id);
        } else if owners.contains(&id) {
            owner_rows += 1;
            assert_eq!(t.kind(), ProviderKind::Cognee);
        } else {
            absent.push(id);
        }
    }
    assert_eq!(
        invalid, 4,
        "unknown provider, non-email, no usr_, missing tenant"
    );
    assert_eq!(duplicates, 1);
    assert_eq!(owner_rows, 1);
    assert_eq!(absent.len(), 5, "{absent:?}");
    assert_eq!(
        absent.iter().map(|a| a.0).collect::<HashSet<_>>().len(),
        5,
        "one per provider"
    );
    assert!(
        per_kind.values().all(|n| (55..=65).contains(n)),
        "{per_kind:?}"
    );
    // Every removable member of the tenant and organizations the CSV names is removed by it, except the
    // one Cognee user who lives in another tenant (the CSV's already-absent row).
    let unremoved: Vec<_> = members.difference(&removed).collect();
    assert_eq!(unremoved.len(), 1, "{unremoved:?}");
    assert_eq!(unremoved[0].0, ProviderKind::Cognee);
    assert!(absent.iter().any(|a| a.2 == unremoved[0].2));
    // The roles the generator meant agree.
    let rows = demo_rows();
    assert_eq!(rows.iter().filter(|r| r.role == Role::Bad).count(), 4);
    assert_eq!(rows.iter().filter(|r| r.role == Role::NonMember).count(), 5);
    assert!((290..=310).contains(&rows.len()));
}

#[tokio::test]
async fn demo_sandbox_removes_a_demo_row() {
    let sb = Sandbox::start(SandboxOptions::demo()).await.unwrap();
    let row = demo_rows()
        .into_iter()
        .find(|r| {
            r.provider == "cognee"
                && r.role == Role::Member
                && Faults::demo().pick(&key(&r.user)).is_none()
        })
        .unwrap();
    assert!(sb.is_member(ProviderKind::Cognee, Some(&row.organization), &row.user));
    let r = remove(
        &sb,
        ProviderKind::Cognee,
        Some(&row.organization),
        &row.user,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(!sb.is_member(ProviderKind::Cognee, Some(&row.organization), &row.user));
    sb.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// List/search endpoints.

const ANN: &str = "ann@x.example";
const JOANN: &str = "JoAnn@X.example";
const BOB: &str = "bob@x.example";

/// Per kind (not Factory): (organization, [(user, email)]) with ann, joann and bob, plus an owner
/// and a member without an email (so a derived one).
/// (kind, organization, [(user, email)]).
type Listed = (
    ProviderKind,
    Option<&'static str>,
    [(&'static str, &'static str); 3],
);

fn listed() -> Vec<Listed> {
    vec![
        (
            ProviderKind::Aitronos,
            Some("org_acme"),
            [("usr_ann", ANN), ("usr_joann", JOANN), ("usr_bob", BOB)],
        ),
        (
            ProviderKind::Telnyx,
            None,
            [
                ("a1a1a1a1-0000-4000-8000-000000000001", ANN),
                ("a1a1a1a1-0000-4000-8000-000000000002", JOANN),
                ("a1a1a1a1-0000-4000-8000-000000000003", BOB),
            ],
        ),
        (
            ProviderKind::Aerospike,
            None,
            [
                ("b2b2b2b2-0000-4000-8000-000000000001", ANN),
                ("b2b2b2b2-0000-4000-8000-000000000002", JOANN),
                ("b2b2b2b2-0000-4000-8000-000000000003", BOB),
            ],
        ),
        (
            ProviderKind::Cognee,
            Some(TENANT),
            [
                ("c3c3c3c3-0000-4000-8000-000000000001", ANN),
                ("c3c3c3c3-0000-4000-8000-000000000002", JOANN),
                ("c3c3c3c3-0000-4000-8000-000000000003", BOB),
            ],
        ),
    ]
}

const OWNER_AITRONOS: &str = "usr_owner1";

const OWNER_UUID: &str = "d4d4d4d4-0000-4000-8000-00000000000f";

const NO_EMAIL_AITRONOS: &str = "usr_noemail";

const NO_EMAIL_UUID: &str = "E5E5E5E5-0000-4000-8000-00000000000E";

fn seed_listed() -> Seed {
    let mut seed = Seed::default().organization(ProviderKind::Cognee, OTHER_TENANT);
    for (kind, org, members) in listed() {
        for (user, email) in members {
            seed = seed.member_with_email(kind, org, user, email);
        }
        let (owner, no_email) = if kind == ProviderKind::Aitronos {
            (OWNER_AITRONOS, NO_EMAIL_AITRONOS)
        } else {
            (OWNER_UUID, NO_EMAIL_UUID)
        };
        seed = seed.owner(kind, org, owner).member(kind, org, no_email);
    }
    seed.member_with_email(
        ProviderKind::Cognee,
        Some(OTHER_TENANT),
        "f6f6f6f6-0000-4000-8000-000000000001",
        "anna@y.example",
    )
}

fn user_of(kind: ProviderKind, email: &str) -> &'static str {
    listed()
        .into_iter()
        .find(|(k, _, _)| *k == kind)
        .and_then(|(_, _, m)| m.into_iter().find(|(_, e)| *e == email))
        .map(|(u, _)| u)
        .expect("listed")
}

async fn aitronos_search(sb: &Sandbox, org: &str, body: Value, key: &str) -> reqwest::Response {
    client()
        .post(format!(
            "{}/v1/organizations/{org}/users",
            sb.base_url(ProviderKind::Aitronos)
        ))
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn telnyx_list(sb: &Sandbox, query: &[(&str, &str)], token: &str) -> reqwest::Response {
    client()
        .get(format!(
            "{}/v2/organizations/users",
            sb.base_url(ProviderKind::Telnyx)
        ))
        .query(query)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn aerospike_list(sb: &Sandbox, token: &str) -> reqwest::Response {
    aerospike_list_q(sb, token, &[]).await
}

async fn aerospike_list_q(sb: &Sandbox, token: &str, query: &[(&str, &str)]) -> reqwest::Response {
    client()
        .get(format!(
            "{}/organization/members",
            sb.base_url(ProviderKind::Aerospike)
        ))
        .query(query)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn cognee_list(sb: &Sandbox, tenant: &str, key: &str) -> reqwest::Response {
    client()
        .get(format!(
            "{}/api/v1/permissions/tenants/{tenant}/users",
            sb.base_url(ProviderKind::Cognee)
        ))
        .header("X-Api-Key", key)
        .send()
        .await
        .unwrap()
}

fn emails_in(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["email"].as_str().expect("email").to_owned())
        .collect()
}

fn lookups(sb: &Sandbox) -> Vec<(ProviderKind, String, u16)> {
    sb.log()
        .into_iter()
        .filter(|l| l.operation == "lookup")
        .map(|l| (l.kind, l.user, l.status))
        .collect()
}

#[test]
fn seed_emails_given_derived_and_demo() {
    let seed = Seed::default()
        .member_with_email(ProviderKind::Telnyx, None, "ID-1", "Ann@X.example")
        .member(ProviderKind::Aitronos, Some("org_a"), "USR_Abc")
        .member(ProviderKind::Factory, None, "Ann.Lee@Acme.example");
    assert_eq!(seed.email_of(ProviderKind::Telnyx, "id-1"), "Ann@X.example");
    assert_eq!(
        seed.email_of(ProviderKind::Aitronos, "usr_abc"),
        "usr_abc@members.example"
    );
    assert_eq!(
        seed.email_of(ProviderKind::Factory, "ann.lee@acme.example"),
        "ann.lee@acme.example"
    );

    // Every demo member (owners too) has a realistic email, unique per provider.
    let demo = Seed::demo();
    let mut per_kind: HashMap<ProviderKind, HashSet<String>> = HashMap::new();
    let mut users: HashSet<(ProviderKind, String)> = HashSet::new();
    for e in demo.entries() {
        let Some(user) = &e.user else { continue };
        if !users.insert((e.kind, key(user))) {
            continue;
        }
        let email = demo.email_of(e.kind, user);
        let (local, domain) = email.split_once('@').expect("an email");
        assert_eq!(domain, "acme.example", "{}: {user} -> {email}", e.kind);
        assert!(local.contains('.'), "{email} is first.last");
        assert!(
            per_kind.entry(e.kind).or_default().insert(email.clone()),
            "{}: {email} twice",
            e.kind
        );
    }
    assert_eq!(per_kind.len(), 5);
}

#[tokio::test]
async fn sandbox_email_of_survives_removal() {
    let sb = plain(seed_listed()).await;
    let (kind, org) = (ProviderKind::Cognee, Some(TENANT));
    let user = user_of(kind, JOANN);
    assert_eq!(
        sb.email_of(kind, org, &user.to_uppercase()).as_deref(),
        Some(JOANN)
    );
    assert_eq!(sb.email_of(kind, Some(OTHER_TENANT), user), None);
    assert_eq!(
        sb.email_of(kind, org, NO_EMAIL_UUID).as_deref(),
        Some("e5e5e5e5-0000-4000-8000-00000000000e@members.example")
    );
    assert_eq!(
        sb.email_of(
            ProviderKind::Telnyx,
            Some("ignored"),
            user_of(ProviderKind::Telnyx, BOB)
        )
        .as_deref(),
        Some(BOB)
    );
    assert_eq!(remove(&sb, kind, org, user).await.status(), 200);
    assert_eq!(sb.email_of(kind, org, user).as_deref(), Some(JOANN));
}

#[tokio::test]
async fn lookups_are_rate_limited_but_never_faulted() {
    let mut opts = SandboxOptions::plain(seed_listed());
    opts.faults = Faults {
        unavailable_every: 1,
        rate_limited_every: 0,
        conflict_every: 0,
    };
    let sb = Sandbox::start(opts).await.unwrap();
    let ak = env(&sb, "SANDBOX_AITRONOS_API_KEY");
    let tk = env(&sb, "SANDBOX_TELNYX_TOKEN");
    let ck = env(&sb, "SANDBOX_COGNEE_API_KEY");
    let token = aerospike_token(&sb).await;
    for _ in 0..2 {
        let body = json!({"search_term": "ann"});
        assert_eq!(
            aitronos_search(&sb, "org_acme", body, &ak).await.status(),
            200
        );
        assert_eq!(
            telnyx_list(&sb, &[("filter[email]", "ann")], &tk)
                .await
                .status(),
            200
        );
        assert_eq!(aerospike_list(&sb, &token).await.status(), 200);
        assert_eq!(cognee_list(&sb, TENANT, &ck).await.status(), 200);
    }
    let r = remove(
        &sb,
        ProviderKind::Telnyx,
        None,
        user_of(ProviderKind::Telnyx, ANN),
    )
    .await;
    assert_eq!(r.status(), 503, "removals are still faulted");
    sb.shutdown().await;

    let mut opts = SandboxOptions::plain(seed_listed());
    opts.limits = ProviderKind::ALL.iter().map(|k| (*k, (0.2, 1))).collect();
    let sb = Sandbox::start(opts).await.unwrap();
    let ak = env(&sb, "SANDBOX_AITRONOS_API_KEY");
    let tk = env(&sb, "SANDBOX_TELNYX_TOKEN");
    let ck = env(&sb, "SANDBOX_COGNEE_API_KEY");
    let token = aerospike_token(&sb).await;
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let body = json!({"search_term": "ann"});
        statuses.push(
            aitronos_search(&sb, "org_acme", body, &ak)
                .await
                .status()
                .as_u16(),
        );
        statuses.push(telnyx_list(&sb, &[], &tk).await.status().as_u16());
        statuses.push(aerospike_list(&sb, &token).await.status().as_u16());
        statuses.push(cognee_list(&sb, TENANT, &ck).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429, 429]);
    let logged: Vec<u16> = lookups(&sb).iter().map(|l| l.2).collect();
    assert_eq!(logged, statuses);
    // The lookups used up the budget that removals share.
    let r = remove(
        &sb,
        ProviderKind::Telnyx,
        None,
        user_of(ProviderKind::Telnyx, ANN),
    )
    .await;
    assert_eq!(r.status(), 429);
}

// ---------------------------------------------------------------------------------------------
// Documented shapes beyond the removal: the other search shape, paging, unknown URLs, forbidden
// tenants, and organizations of realistic size.

#[tokio::test]
async fn aitronos_search_answers_the_other_pages_shape_when_asked() {
    let mut opts = SandboxOptions::plain(seed_listed());
    opts.aitronos_search = AitronosSearchShape::Members;
    let sb = Sandbox::start(opts).await.unwrap();
    let key = env(&sb, "SANDBOX_AITRONOS_API_KEY");
    let r = aitronos_search(
        &sb,
        "org_acme",
        json!({"search_term": "ann", "take": 1, "skip": 1}),
        &key,
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (&v["total"], &v["skip"], &v["limit"]),
        (&json!(2), &json!(1), &json!(1))
    );
    assert!(v.get("users").is_none() && v.get("total_users_count").is_none());
    assert_eq!(emails_in(&v["members"]), [JOANN]);
    assert_eq!(v["members"][0]["user_id"], "usr_joann");
    assert!(
        v["members"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("orguser_")
    );
}

#[tokio::test]
async fn unknown_urls_answer_each_providers_own_404() {
    let sb = plain(seed_one_each()).await;
    let telnyx = sb.base_url(ProviderKind::Telnyx);
    let token = env(&sb, "SANDBOX_TELNYX_TOKEN");
    let id = "6a09cdc3-8948-47f0-aa62-74ac943d6c58";
    // A base URL that already ends in /v2, as Telnyx documents its server.
    for r in [
        client()
            .post(format!(
                "{telnyx}/v2/v2/organizations/users/{id}/actions/remove"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        client()
            .get(format!("{telnyx}/v2/v2/organizations/users"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status(), 404);
        let v: Value = r.json().await.unwrap();
        let e = &v["errors"][0];
        assert_eq!(e["code"], "10005");
        assert_eq!(e["title"], "Resource not found");
        assert_eq!(
            e["detail"],
            "The requested resource or URL could not be found."
        );
    }

    let factory = sb.base_url(ProviderKind::Factory);
    let r = client()
        .delete(format!(
            "{factory}/api/v0/api/v0/organization/users?email=ann.lee@acme.example"
        ))
        .bearer_auth(env(&sb, "SANDBOX_FACTORY_TOKEN"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Not Found"})
    );

    // Aerospike's base URL without /v1: its generic error, not a problem document.
    let aerospike = sb.base_url(ProviderKind::Aerospike);
    let origin = aerospike.trim_end_matches("/v1");
    let r = client()
        .delete(format!(
            "{origin}/organization/members/b0658b67-8ea3-46de-a3b8-18c3f5347def"
        ))
        .bearer_auth(aerospike_token(&sb).await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.unwrap();
    let keys: HashSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, HashSet::from(["code", "message"]));

    let cognee = sb.base_url(ProviderKind::Cognee);
    let r = client()
        .delete(format!(
            "{cognee}/api/v1/api/v1/permissions/tenants/{TENANT}/users/7b09cdc3-8948-47f0-aa62-74ac943d6c59"
        ))
        .header("X-Api-Key", env(&sb, "SANDBOX_COGNEE_API_KEY"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Not Found"})
    );

    assert!(sb.log().is_empty(), "unknown URLs reach no endpoint");
    for (kind, org, user) in one_each() {
        assert!(sb.is_member(kind, org, user), "{kind}: nothing removed");
    }
}

async fn factory_list(sb: &Sandbox, query: &[(&str, &str)], token: &str) -> reqwest::Response {
    client()
        .get(format!(
            "{}/api/v0/organization/users",
            sb.base_url(ProviderKind::Factory)
        ))
        .query(query)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[test]
fn generated_members_are_deterministic_and_apart_from_the_demo() {
    assert_eq!(Seed::many_email(3), "person3@bulk.example");
    assert_eq!(
        Seed::many_user(ProviderKind::Factory, 3),
        "person3@bulk.example"
    );
    let demo_users: HashSet<String> = Seed::demo()
        .entries()
        .iter()
        .filter_map(|e| e.user.as_deref().map(key))
        .collect();
    for kind in ProviderKind::ALL {
        let users: Vec<String> = (0..500).map(|i| Seed::many_user(kind, i)).collect();
        assert_eq!(
            users,
            (0..500)
                .map(|i| Seed::many_user(kind, i))
                .collect::<Vec<_>>()
        );
        assert_eq!(users.iter().collect::<HashSet<_>>().len(), 500, "{kind}");
        assert!(
            users.iter().all(|u| !demo_users.contains(&key(u))),
            "{kind}"
        );
        let u = &users[7];
        match kind {
            ProviderKind::Factory => assert!(u.contains('@')),
            ProviderKind::Aitronos => assert!(u.starts_with("usr_") && u.len() == 16, "{u}"),
            _ => assert!(uuid::Uuid::try_parse(u).is_ok(), "{u}"),
        }
    }
}

/// The organization of each kind that [`big_seed`] fills.
fn big_org(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Aitronos => Some("org_big"),
        ProviderKind::Cognee => Some(TENANT),
        _ => None,
    }
}

const BIG: usize = 20_000;

fn big_seed() -> Seed {
    ProviderKind::ALL
        .iter()
        .fold(Seed::default(), |s, k| s.many(*k, big_org(*k), BIG))
}

#[tokio::test]
async fn twenty_thousand_members_per_organization_are_cheap_indexed_and_restorable() {
    let started = std::time::Instant::now();
    let sb = plain(big_seed()).await;
    // Generous for a debug build on a busy machine; a quadratic seed would take minutes.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let i = 12_345;
    for kind in ProviderKind::ALL {
        let org = big_org(kind);
        let user = Seed::many_user(kind, i);
        let email = Seed::many_email(i);
        assert_eq!(sb.member_count(kind, org), BIG, "{kind}");
        assert!(sb.is_member(kind, org, &user), "{kind}");
        assert!(
            sb.is_member(kind, org, &email.to_uppercase()),
            "{kind}: by email"
        );
        assert_eq!(
            sb.email_of(kind, org, &user).as_deref(),
            Some(email.as_str())
        );
        assert!(
            !sb.restore(kind, org, &user),
            "{kind}: nothing to restore yet"
        );

        let r = remove(&sb, kind, org, &user).await;
        assert!(r.status().is_success(), "{kind}: {}", r.status());
        assert!(!sb.is_member(kind, org, &user));
        assert!(!sb.is_member(kind, org, &email));
        assert_eq!(sb.member_count(kind, org), BIG - 1);
        assert_eq!(
            sb.email_of(kind, org, &user).as_deref(),
            Some(email.as_str())
        );

        assert!(sb.restore(kind, org, &email), "{kind}: by email");
        assert!(sb.is_member(kind, org, &user));
        assert_eq!(sb.member_count(kind, org), BIG);
        assert!(!sb.restore(kind, org, &user), "{kind}: already back");
        // Restored members are ordinary members: removable again.
        let r = remove(&sb, kind, org, &user).await;
        assert!(r.status().is_success(), "{kind}: again {}", r.status());
        assert!(sb.restore(kind, org, &user));
    }
    assert!(!sb.restore(ProviderKind::Aitronos, Some("org_nope"), "usr_x"));

    // Searches: an exact email finds one, a prefix of it eleven (person1234, person12340..9).
    let key = env(&sb, "SANDBOX_AITRONOS_API_KEY");
    let v: Value = aitronos_search(
        &sb,
        "org_big",
        json!({"search_term": "Person12345@bulk.example", "take": 100}),
        &key,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["total_users_count"], 1);
    assert_eq!(
        v["users"][0]["user_id"],
        Seed::many_user(ProviderKind::Aitronos, i)
    );
    let v: Value = aitronos_search(&sb, "org_big", json!({"search_term": "person1234"}), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["total_users_count"], 11);
    assert_eq!(v["users"].as_array().unwrap().len(), 10);

    let token = env(&sb, "SANDBOX_TELNYX_TOKEN");
    let v: Value = telnyx_list(&sb, &[("filter[email]", "person19999@")], &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["meta"]["total_results"], 1);
    let v: Value = telnyx_list(
        &sb,
        &[("page[size]", "250"), ("page[number]", "80")],
        &token,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 250);
    // 20,000 and the owner the sandbox adds.
    assert_eq!(v["meta"]["total_pages"], 81);

    // Aerospike pages (at most 100 a page); its last one is short.
    let v: Value = aerospike_list_q(
        &sb,
        &aerospike_token(&sb).await,
        &[("limit", "100"), ("offset", "19950")],
    )
    .await
    .json()
    .await
    .unwrap();
    // 20,000 and the owner the sandbox adds.
    assert_eq!(v["count"], 51);
    assert_eq!(
        v["meta"],
        json!({"total": BIG + 1, "limit": 100, "offset": 19_950})
    );
    // Whole lists are megabytes, as real ones are.
    let r = cognee_list(&sb, TENANT, &env(&sb, "SANDBOX_COGNEE_API_KEY")).await;
    let body = r.bytes().await.unwrap();
    assert!(body.len() > 1_000_000, "{} bytes", body.len());
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), BIG + 1);
    sb.shutdown().await;
}
