//! Real HTTP against the sandbox on loopback.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::seed::{REASON, REQUESTED_BY, Role, demo_csv, demo_rows};
use super::*;
use crate::job::{Directory, RawJob};

const TENANT: &str = "0b7e6f3a-52c1-4d8e-9f10-2a3b4c5d6e7f";
const OTHER_TENANT: &str = "1c8f7a4b-63d2-4e9f-8a21-3b4c5d6e7f80";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

fn env(sb: &Sandbox, name: &str) -> String {
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

async fn aerospike_token(sb: &Sandbox) -> String {
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
async fn factory_success_then_not_found() {
    let sb = plain(seed_one_each()).await;
    assert!(sb.is_member(ProviderKind::Factory, None, "Ann.Lee@ACME.example"));
    let r = remove(&sb, ProviderKind::Factory, None, "Ann.Lee@acme.example").await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    assert!(!sb.is_member(ProviderKind::Factory, None, "ann.lee@acme.example"));

    let r = remove(&sb, ProviderKind::Factory, None, "ann.lee@acme.example").await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], 404);
    assert_eq!(v["title"], "Not Found");
    assert!(v["detail"].is_string());

    let base = sb.base_url(ProviderKind::Factory);
    let token = env(&sb, "SANDBOX_FACTORY_TOKEN");
    let r = client()
        .delete(format!("{base}/api/v0/organization/users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .delete(format!(
            "{base}/api/v0/organization/users?email=x@acme.example"
        ))
        .bearer_auth("fk-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["status"].as_u64(), v["title"].as_str()),
        (Some(401), Some("Unauthorized"))
    );

    let statuses: Vec<u16> = sb.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, [204, 404, 400], "401s are not logged");
    assert_eq!(sb.log()[0].user, "Ann.Lee@acme.example");
}

#[tokio::test]
async fn aitronos_confirm_owner_and_not_found() {
    let seed = seed_one_each().owner(ProviderKind::Aitronos, Some("org_acme"), "usr_owner1");
    let sb = plain(seed).await;
    let url = |org: &str, usr: &str| {
        format!(
            "{}/v1/organizations/{org}/users/{usr}",
            sb.base_url(ProviderKind::Aitronos)
        )
    };
    let key = env(&sb, "SANDBOX_AITRONOS_API_KEY");

    for body in [None, Some(json!({"confirm": false})), Some(json!({}))] {
        let mut req = client()
            .delete(url("org_acme", "usr_abc123"))
            .header("X-API-Key", &key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 422);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["success"], false);
        let e = &v["error"];
        assert_eq!(e["code"], "CONFIRMATION_REQUIRED");
        assert_eq!(
            e["message"],
            "Please confirm this action by setting confirm to true."
        );
        assert_eq!(
            e["system_message"],
            "please confirm this action by setting confirm to true."
        );
        assert_eq!(e["type"], "client_error");
        assert_eq!(e["status"], 422);
        assert_eq!(e["details"]["user_id"], "usr_abc123");
        assert!(e["trace_id"].is_string() && e["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert!(sb.is_member(ProviderKind::Aitronos, Some("org_acme"), "usr_abc123"));

    let r = client()
        .delete(url("org_acme", "usr_abc123"))
        .header("X-API-Key", &key)
        .json(&json!({"confirm": true, "transfer_resources_to_department_id": "dept_eng001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!sb.is_member(ProviderKind::Aitronos, Some("org_acme"), "usr_abc123"));

    let code = |r: Value| r["error"]["code"].as_str().unwrap().to_owned();
    let r = remove(&sb, ProviderKind::Aitronos, Some("org_acme"), "usr_abc123").await;
    assert_eq!(r.status(), 404);
    assert_eq!(code(r.json().await.unwrap()), "USER_NOT_FOUND");
    let r = remove(&sb, ProviderKind::Aitronos, Some("org_nope"), "usr_abc123").await;
    assert_eq!(r.status(), 404);
    assert_eq!(code(r.json().await.unwrap()), "ORGANIZATION_NOT_FOUND");
    let r = remove(&sb, ProviderKind::Aitronos, Some("org_acme"), "usr_owner1").await;
    assert_eq!(r.status(), 403);
    assert_eq!(code(r.json().await.unwrap()), "CANNOT_DELETE_OWNER");
    assert!(sb.is_member(ProviderKind::Aitronos, Some("org_acme"), "usr_owner1"));
    let r = client()
        .delete(url("org_acme", "usr_owner1"))
        .header("X-API-Key", "ak_wrong")
        .json(&json!({"confirm": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(code(r.json().await.unwrap()), "INVALID_API_KEY");
}

#[tokio::test]
async fn telnyx_success_owner_and_not_found() {
    let owner = "11111111-2222-4333-8444-555555555555";
    let sb = plain(seed_one_each().owner(ProviderKind::Telnyx, None, owner)).await;
    let id = "6a09cdc3-8948-47f0-aa62-74ac943d6c58";
    let r = remove(&sb, ProviderKind::Telnyx, None, id).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let d = &v["data"];
    assert_eq!(d["id"], id);
    assert_eq!(d["record_type"], "organization_sub_user");
    assert!(d["email"].as_str().unwrap().contains('@'));
    assert_eq!(d["user_status"], "enabled");
    assert!(d["created_at"].is_string());

    let first_error = |v: Value| v["errors"][0].clone();
    let r = remove(&sb, ProviderKind::Telnyx, None, id).await;
    assert_eq!(r.status(), 404);
    let e = first_error(r.json().await.unwrap());
    assert_eq!(e["code"], "10005");
    assert_eq!(e["title"], "Resource not found");

    let r = remove(&sb, ProviderKind::Telnyx, None, owner).await;
    assert_eq!(r.status(), 403);
    assert_eq!(first_error(r.json().await.unwrap())["code"], "10010");

    let r = client()
        .post(format!(
            "{}/v2/organizations/users/{id}/actions/remove",
            sb.base_url(ProviderKind::Telnyx)
        ))
        .bearer_auth("KEYwrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(first_error(r.json().await.unwrap())["code"], "10009");
}

#[tokio::test]
async fn aerospike_tokens_form_and_json_then_removal() {
    let sb = plain(seed_one_each()).await;
    let id = env(&sb, "SANDBOX_AEROSPIKE_CLIENT_ID");
    let secret = env(&sb, "SANDBOX_AEROSPIKE_CLIENT_SECRET");

    let r = client()
        .post(sb.token_url())
        .json(
            &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 300);
    let json_token = v["access_token"].as_str().unwrap().to_owned();
    let form_token = aerospike_token(&sb).await;
    assert_ne!(json_token, form_token);
    assert_eq!(sb.tokens_issued(), 2);

    let r = client()
        .post(sb.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "invalid_client"})
    );
    assert_eq!(sb.tokens_issued(), 2);

    let url = |u: &str| {
        format!(
            "{}/organization/members/{u}",
            sb.base_url(ProviderKind::Aerospike)
        )
    };
    let user = "B0658B67-8EA3-46DE-A3B8-18C3F5347DEF";
    // The older token is still valid.
    let r = client()
        .delete(url(user))
        .bearer_auth(&json_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers().contains_key("x-request-id"));
    assert!(!sb.is_member(ProviderKind::Aerospike, None, &user.to_lowercase()));

    let r = client()
        .delete(url(user))
        .bearer_auth(&form_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "urn:aerospike:errors:resource:not-found");
    assert_eq!(v["status"], 404);
    assert!(v["title"].is_string() && v["detail"].is_string() && v["message"].is_string());

    let r = client()
        .delete(url(user))
        .bearer_auth("made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(sb.log().len(), 2, "unauthenticated requests are not logged");
}

#[tokio::test]
async fn aerospike_expired_token_is_401_token_expired() {
    let mut opts = SandboxOptions::plain(seed_one_each());
    opts.token_ttl = Duration::from_millis(300);
    let sb = Sandbox::start(opts).await.unwrap();
    let token = aerospike_token(&sb).await;
    let url = format!(
        "{}/organization/members/b0658b67-8ea3-46de-a3b8-18c3f5347def",
        sb.base_url(ProviderKind::Aerospike)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = client()
        .delete(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "urn:aerospike:errors:auth:token-expired");
    assert!(sb.is_member(
        ProviderKind::Aerospike,
        None,
        "b0658b67-8ea3-46de-a3b8-18c3f5347def"
    ));

    let fresh = aerospike_token(&sb).await;
    let r = client()
        .delete(&url)
        .bearer_auth(&fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(sb.tokens_issued(), 2);
}

#[tokio::test]
async fn cognee_checks_in_order() {
    let user = "7b09cdc3-8948-47f0-aa62-74ac943d6c59";
    let owner = "22222222-3333-4444-8555-666666666666";
    let elsewhere = "33333333-4444-4555-8666-777777777777";
    let seed = seed_one_each()
        .owner(ProviderKind::Cognee, Some(TENANT), owner)
        .member(ProviderKind::Cognee, Some(OTHER_TENANT), elsewhere);
    let sb = plain(seed).await;
    let detail = |v: Value| v["detail"].clone();

    let r = remove(
        &sb,
        ProviderKind::Cognee,
        Some(TENANT),
        &user.to_uppercase(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "User removed from tenant"
    );
    assert!(!sb.is_member(ProviderKind::Cognee, Some(TENANT), user));

    let r = remove(&sb, ProviderKind::Cognee, Some(TENANT), user).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        detail(r.json().await.unwrap()),
        "User not found in this tenant."
    );

    let r = remove(&sb, ProviderKind::Cognee, Some(TENANT), elsewhere).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        detail(r.json().await.unwrap()),
        "User not found in this tenant."
    );

    let r = remove(
        &sb,
        ProviderKind::Cognee,
        Some(TENANT),
        "44444444-5555-4666-8777-888888888888",
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        detail(r.json().await.unwrap()),
        "User not found. [EntityNotFoundError]"
    );

    let r = remove(&sb, ProviderKind::Cognee, Some(TENANT), owner).await;
    assert_eq!(r.status(), 400);
    assert!(
        detail(r.json().await.unwrap())
            .as_str()
            .unwrap()
            .starts_with("Cannot remove the tenant owner.")
    );

    let unknown_tenant = "55555555-6666-4777-8888-999999999999";
    let r = remove(&sb, ProviderKind::Cognee, Some(unknown_tenant), owner).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        detail(r.json().await.unwrap()),
        "Tenant not found. [TenantNotFoundError]"
    );

    let r = remove(&sb, ProviderKind::Cognee, Some("acme"), owner).await;
    assert_eq!(r.status(), 422);
    let v = detail(r.json().await.unwrap());
    assert_eq!(v[0]["loc"], json!(["path", "tenant_id"]));

    let r = client()
        .delete(format!(
            "{}/api/v1/permissions/tenants/{TENANT}/users/{owner}",
            sb.base_url(ProviderKind::Cognee)
        ))
        .header("X-Api-Key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Unauthorized"})
    );
    let statuses: Vec<u16> = sb.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, [200, 404, 404, 404, 400, 404, 422]);
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
    assert_eq!(include_str!("../../examples/reorg.csv"), demo_csv());
}

#[test]
fn demo_seed_agrees_with_the_csv() {
    let text = include_str!("../../examples/reorg.csv");
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
