//! Real HTTP against the sandbox on loopback.

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
async fn aitronos_search_is_partial_case_insensitive_and_paged() {
    let sb = plain(seed_listed()).await;
    let key = env(&sb, "SANDBOX_AITRONOS_API_KEY");

    let r = aitronos_search(&sb, "org_acme", json!({"search_term": "ann"}), "ak_wrong").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "INVALID_API_KEY"
    );

    let r = aitronos_search(
        &sb,
        "org_acme",
        json!({"search_term": "ANN", "take": 100}),
        &key,
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (&v["total_users_count"], &v["skip"], &v["take"]),
        (&json!(2), &json!(0), &json!(100))
    );
    assert_eq!(emails_in(&v["users"]), [ANN, JOANN]);
    // `id` is the membership, `user_id` the user the removal takes.
    let membership = aitronos::membership_id("org_acme", "usr_ann");
    assert!(membership.starts_with("orguser_") && membership.len() == 20);
    assert_eq!(
        v["users"][0],
        json!({
            "id": membership,
            "user_id": "usr_ann",
            "organization_id": "org_acme",
            "email": ANN,
            "full_name": "Ann",
            "username": "ann",
            "role": {"id": "role_member", "name": "Member", "is_owner": false},
            "status": {"id": "active", "name": "Active"},
            "joined_at": created_at("usr_ann"),
        })
    );
    assert_eq!(v["users"][1]["user_id"], "usr_joann");
    assert_eq!(
        v["users"][1]["id"],
        aitronos::membership_id("org_acme", "usr_joann")
    );
    assert_ne!(v["users"][0]["id"], v["users"][1]["id"]);

    // Paging: skip/take, total counts every match.
    let r = aitronos_search(
        &sb,
        "org_acme",
        json!({"search_term": "x.EXAMPLE", "take": 1, "skip": 1}),
        &key,
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total_users_count"], 3);
    assert_eq!((&v["skip"], &v["take"]), (&json!(1), &json!(1)));
    assert_eq!(emails_in(&v["users"]), [BOB]);
    let v: Value = aitronos_search(
        &sb,
        "org_acme",
        json!({"search_term": "x.example", "skip": 3}),
        &key,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (
            v["total_users_count"].as_u64(),
            emails_in(&v["users"]).len()
        ),
        (Some(3), 0)
    );

    // Everyone, with the owner's role and the derived email.
    let v: Value = aitronos_search(&sb, "org_acme", json!({}), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["total_users_count"], 5);
    assert_eq!(v["take"], 10, "take defaults to 10");
    let users = v["users"].as_array().unwrap();
    assert_eq!(users.len(), 5);
    let owner = users
        .iter()
        .find(|u| u["user_id"] == OWNER_AITRONOS)
        .unwrap();
    assert_eq!(owner["role"]["id"], "role_owner");
    assert_eq!(owner["email"], "usr_owner1@members.example");

    let r = aitronos_search(
        &sb,
        "org_acme",
        json!({"search_term": "a", "take": 101}),
        &key,
    )
    .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "VALIDATION_ERROR"
    );

    let r = aitronos_search(&sb, "org_nope", json!({"search_term": "ann"}), &key).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "ORGANIZATION_NOT_FOUND");
    assert_eq!(v["error"]["status"], 404);
    assert_eq!(v["error"]["details"]["organization_id"], "org_nope");

    // A removed member is no longer found.
    let r = remove(&sb, ProviderKind::Aitronos, Some("org_acme"), "usr_joann").await;
    assert_eq!(r.status(), 204);
    let v: Value = aitronos_search(&sb, "org_acme", json!({"search_term": "ann"}), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["total_users_count"].as_u64(), emails_in(&v["users"])),
        (Some(1), vec![ANN.to_owned()])
    );

    let log = sb.log();
    assert_eq!(log.iter().filter(|l| l.operation == "remove").count(), 1);
    let searched: Vec<(String, u16)> = log
        .iter()
        .filter(|l| l.operation == "lookup")
        .map(|l| (l.user.clone(), l.status))
        .collect();
    assert_eq!(
        searched,
        [
            ("ANN".to_owned(), 200),
            ("x.EXAMPLE".to_owned(), 200),
            ("x.example".to_owned(), 200),
            (String::new(), 200),
            ("a".to_owned(), 422),
            ("ann".to_owned(), 404),
            ("ann".to_owned(), 200),
        ],
        "401s are not logged"
    );
    assert_eq!(log[5].organization.as_deref(), Some("org_nope"));
}

#[tokio::test]
async fn telnyx_filter_is_partial_case_insensitive_and_paged() {
    let sb = plain(seed_listed()).await;
    let token = env(&sb, "SANDBOX_TELNYX_TOKEN");

    let r = telnyx_list(&sb, &[("filter[email]", "ann")], "KEYwrong").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["code"],
        "10009"
    );

    let r = telnyx_list(
        &sb,
        &[("filter[email]", "ANN"), ("page[size]", "250")],
        &token,
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(emails_in(&v["data"]), [ANN, JOANN]);
    let first = &v["data"][0];
    assert_eq!(first["id"], user_of(ProviderKind::Telnyx, ANN));
    assert_eq!(first["record_type"], "organization_sub_user");
    assert_eq!(
        v["meta"],
        json!({"page_number": 1, "page_size": 250, "total_pages": 1, "total_results": 2})
    );

    // Page 2 of size 1.
    let q = [
        ("filter[email]", "ann"),
        ("page[size]", "1"),
        ("page[number]", "2"),
    ];
    let v: Value = telnyx_list(&sb, &q, &token).await.json().await.unwrap();
    assert_eq!(emails_in(&v["data"]), [JOANN]);
    assert_eq!(
        v["meta"],
        json!({"page_number": 2, "page_size": 1, "total_pages": 2, "total_results": 2})
    );

    // Defaults, every member.
    let v: Value = telnyx_list(&sb, &[], &token).await.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 5);
    assert_eq!(
        v["meta"],
        json!({"page_number": 1, "page_size": 20, "total_pages": 1, "total_results": 5})
    );

    let r = telnyx_list(&sb, &[("page[size]", "251")], &token).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["code"],
        "10015"
    );

    let joann = user_of(ProviderKind::Telnyx, JOANN);
    assert_eq!(
        remove(&sb, ProviderKind::Telnyx, None, joann)
            .await
            .status(),
        200
    );
    let v: Value = telnyx_list(&sb, &[("filter[email]", "ann")], &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(emails_in(&v["data"]), [ANN]);
    assert_eq!(v["meta"]["total_results"], 1);

    assert_eq!(
        lookups(&sb),
        [
            (ProviderKind::Telnyx, "ANN".to_owned(), 200),
            (ProviderKind::Telnyx, "ann".to_owned(), 200),
            (ProviderKind::Telnyx, String::new(), 200),
            (ProviderKind::Telnyx, String::new(), 400),
            (ProviderKind::Telnyx, "ann".to_owned(), 200),
        ]
    );
}

#[tokio::test]
async fn aerospike_lists_every_member() {
    let sb = plain(seed_listed()).await;
    let r = aerospike_list(&sb, "made-up").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    let token = aerospike_token(&sb).await;
    let r = aerospike_list(&sb, &token).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.unwrap();
    // Paging is "currently disabled": the full set, and meta says so.
    assert_eq!(v["count"], 5);
    assert_eq!(v["meta"], json!({"total": 5, "limit": 5, "offset": 0}));
    let emails = emails_in(&v["members"]);
    assert_eq!(emails.len(), 5);
    // No server-side filter: "ann" matches several, the client must match exactly.
    let ann: Vec<_> = emails
        .iter()
        .filter(|e| e.to_lowercase().contains("ann"))
        .collect();
    assert_eq!(ann, [ANN, JOANN]);
    let members = v["members"].as_array().unwrap();
    let joann = user_of(ProviderKind::Aerospike, JOANN);
    assert_eq!(
        members.iter().find(|m| m["email"] == JOANN),
        Some(&json!({
            "id": joann,
            "email": JOANN,
            "role": "member",
            "firstName": "JoAnn",
            "lastName": "",
            "createdAt": created_at(joann),
        }))
    );
    let owner = members.iter().find(|m| m["id"] == OWNER_UUID).unwrap();
    assert_eq!(owner["role"], "owner");
    // limit and offset are ignored while paging is disabled.
    let v: Value = aerospike_list_q(&sb, &token, &[("limit", "2"), ("offset", "1")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["count"], 5);
    assert_eq!(v["meta"], json!({"total": 5, "limit": 5, "offset": 0}));

    let bob = user_of(ProviderKind::Aerospike, BOB);
    assert_eq!(
        remove(&sb, ProviderKind::Aerospike, None, bob)
            .await
            .status(),
        204
    );
    let v: Value = aerospike_list(&sb, &token).await.json().await.unwrap();
    assert_eq!(emails_in(&v["members"]).len(), 4);
    assert!(!emails_in(&v["members"]).contains(&BOB.to_owned()));
    assert_eq!((&v["count"], &v["meta"]["total"]), (&json!(4), &json!(4)));

    assert_eq!(
        lookups(&sb),
        [
            (ProviderKind::Aerospike, String::new(), 200),
            (ProviderKind::Aerospike, String::new(), 200),
            (ProviderKind::Aerospike, String::new(), 200),
        ]
    );
}

#[tokio::test]
async fn cognee_lists_a_tenants_members() {
    let sb = plain(seed_listed()).await;
    let key = env(&sb, "SANDBOX_COGNEE_API_KEY");
    let r = cognee_list(&sb, TENANT, "wrong").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Unauthorized"})
    );

    let r = cognee_list(&sb, &TENANT.to_uppercase(), &key).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let emails = emails_in(&v);
    assert_eq!(emails.len(), 5);
    let ann: Vec<_> = emails
        .iter()
        .filter(|e| e.to_lowercase().contains("ann"))
        .collect();
    assert_eq!(ann, [ANN, JOANN], "the other tenant's anna is not listed");
    let joann = user_of(ProviderKind::Cognee, JOANN);
    assert!(
        v.as_array()
            .unwrap()
            .contains(&json!({"id": joann, "email": JOANN, "roles": []}))
    );

    let v: Value = cognee_list(&sb, OTHER_TENANT, &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(emails_in(&v), ["anna@y.example"]);

    let r = cognee_list(&sb, "55555555-6666-4777-8888-999999999999", &key).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Tenant not found. [TenantNotFoundError]"})
    );
    let r = cognee_list(&sb, "acme", &key).await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["detail"][0]["loc"],
        json!(["path", "tenant_id"])
    );

    assert_eq!(
        remove(&sb, ProviderKind::Cognee, Some(TENANT), joann)
            .await
            .status(),
        200
    );
    let v: Value = cognee_list(&sb, TENANT, &key).await.json().await.unwrap();
    assert_eq!(emails_in(&v).len(), 4);
    assert!(!emails_in(&v).contains(&JOANN.to_owned()));

    let statuses: Vec<u16> = lookups(&sb).iter().map(|l| l.2).collect();
    assert_eq!(statuses, [200, 200, 404, 422, 200]);
    assert!(
        lookups(&sb)
            .iter()
            .all(|l| l.0 == ProviderKind::Cognee && l.1.is_empty())
    );
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
async fn aerospike_honours_limit_and_offset_when_paging_is_on() {
    let mut opts = SandboxOptions::plain(seed_listed());
    opts.aerospike_page_size = Some(2);
    let sb = Sandbox::start(opts).await.unwrap();
    let token = aerospike_token(&sb).await;
    let list = async |query: &[(&str, &str)]| -> (u16, Value) {
        let r = aerospike_list_q(&sb, &token, query).await;
        (r.status().as_u16(), r.json().await.unwrap())
    };

    let (status, v) = list(&[]).await;
    assert_eq!(status, 200);
    assert_eq!(v["count"], 2);
    assert_eq!(v["meta"], json!({"total": 5, "limit": 2, "offset": 0}));
    // Above the page size: clamped, and meta says so.
    let (_, v) = list(&[("limit", "1000")]).await;
    assert_eq!(v["meta"], json!({"total": 5, "limit": 2, "offset": 0}));
    let (_, v) = list(&[("limit", "1"), ("offset", "4")]).await;
    assert_eq!(v["count"], 1);
    assert_eq!(v["meta"], json!({"total": 5, "limit": 1, "offset": 4}));
    let (_, v) = list(&[("offset", "9")]).await;
    assert_eq!((&v["count"], &v["members"]), (&json!(0), &json!([])));

    // Following meta reaches every member once.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let o = offset.to_string();
        let (_, v) = list(&[("offset", &o)]).await;
        seen.extend(emails_in(&v["members"]));
        offset += v["count"].as_u64().unwrap() as usize;
        if offset >= v["meta"]["total"].as_u64().unwrap() as usize {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);

    for bad in [("limit", "0"), ("limit", "ten"), ("offset", "-1")] {
        let (status, v) = list(&[bad]).await;
        assert_eq!(status, 400, "{bad:?}");
        assert_eq!(v["type"], "urn:aerospike:errors:request:invalid");
    }
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

#[tokio::test]
async fn factory_lists_with_a_working_cursor() {
    let seed = Seed::default().many(ProviderKind::Factory, None, 45).owner(
        ProviderKind::Factory,
        None,
        "boss@acme.example",
    );
    let sb = plain(seed).await;
    let token = env(&sb, "SANDBOX_FACTORY_TOKEN");

    let r = factory_list(&sb, &[], "fk-wrong").await;
    assert_eq!(r.status(), 401);

    // Default page of 20, then follow the cursor.
    let mut emails = Vec::new();
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = Vec::new();
        if let Some(c) = &cursor {
            q.push(("cursor", c.as_str()));
        }
        let r = factory_list(&sb, &q, &token).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        pages += 1;
        let users = v["users"].as_array().unwrap();
        for u in users {
            assert!(ids.insert(u["id"].as_str().unwrap().to_owned()), "{u}");
        }
        emails.extend(emails_in(&v["users"]));
        let p = &v["pagination"];
        if p["hasMore"] == false {
            assert_eq!(p["nextCursor"], Value::Null);
            break;
        }
        assert_eq!(users.len(), 20);
        cursor = Some(p["nextCursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(pages, 3);
    assert_eq!(emails.len(), 46);
    assert_eq!(emails.iter().collect::<HashSet<_>>().len(), 46);
    assert!(emails.contains(&"boss@acme.example".to_owned()));

    let v: Value = factory_list(&sb, &[("limit", "100")], &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["users"].as_array().unwrap().len(), 46);
    assert_eq!(
        v["pagination"],
        json!({"hasMore": false, "nextCursor": null})
    );

    // The cursor survives the removal of the member it points after.
    let v: Value = factory_list(&sb, &[("limit", "2")], &token)
        .await
        .json()
        .await
        .unwrap();
    let page1 = emails_in(&v["users"]);
    let c = v["pagination"]["nextCursor"].as_str().unwrap().to_owned();
    let r = remove(&sb, ProviderKind::Factory, None, &page1[1]).await;
    assert_eq!(r.status(), 204);
    let v: Value = factory_list(&sb, &[("limit", "2"), ("cursor", &c)], &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(emails_in(&v["users"]), emails[2..4]);

    for bad in [
        ("limit", "0"),
        ("limit", "101"),
        ("limit", "ten"),
        ("cursor", "not-a-cursor"),
    ] {
        let r = factory_list(&sb, &[bad], &token).await;
        assert_eq!(r.status(), 400, "{bad:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (&v["status"], &v["title"]),
            (&json!(400), &json!("Bad Request"))
        );
    }
    let statuses: Vec<u16> = lookups(&sb).iter().map(|l| l.2).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 400, 400, 400, 400]);
}

#[tokio::test]
async fn telnyx_list_marks_the_owner_and_adds_groups_when_asked() {
    let sb = plain(seed_listed()).await;
    let token = env(&sb, "SANDBOX_TELNYX_TOKEN");
    let v: Value = telnyx_list(&sb, &[], &token).await.json().await.unwrap();
    let data = v["data"].as_array().unwrap();
    let owner = data.iter().find(|u| u["id"] == OWNER_UUID).unwrap();
    assert_eq!(owner["record_type"], "organization_owner");
    assert!(
        data.iter()
            .filter(|u| u["id"] != OWNER_UUID)
            .all(|u| u["record_type"] == "organization_sub_user")
    );
    assert!(data.iter().all(|u| u.get("groups").is_none()));
    let v: Value = telnyx_list(&sb, &[("include_groups", "true")], &token)
        .await
        .json()
        .await
        .unwrap();
    for u in v["data"].as_array().unwrap() {
        let g = &u["groups"][0];
        assert!(g["id"].is_string() && g["name"].is_string(), "{u}");
    }
}

#[tokio::test]
async fn cognee_forbidden_tenant_answers_403_to_everything_in_it() {
    let unknown = "55555555-6666-4777-8888-999999999999";
    let mut opts = SandboxOptions::plain(seed_listed());
    opts.cognee_forbidden_tenants = vec![TENANT.to_uppercase(), unknown.to_owned()];
    let sb = Sandbox::start(opts).await.unwrap();
    let key = env(&sb, "SANDBOX_COGNEE_API_KEY");
    let denied = json!({
        "detail": "User does not have permission to manage users in the tenant. [PermissionDeniedError]"
    });

    let r = cognee_list(&sb, TENANT, &key).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap(), denied);
    let joann = user_of(ProviderKind::Cognee, JOANN);
    // A member, the owner (permission comes before the owner check) and a stranger alike.
    for user in [joann, OWNER_UUID, "44444444-5555-4666-8777-888888888888"] {
        let r = remove(&sb, ProviderKind::Cognee, Some(TENANT), user).await;
        assert_eq!(r.status(), 403, "{user}");
        assert_eq!(r.json::<Value>().await.unwrap(), denied);
    }
    assert!(sb.is_member(ProviderKind::Cognee, Some(TENANT), joann));

    // The tenant check comes first; other tenants are unaffected.
    let r = remove(&sb, ProviderKind::Cognee, Some(unknown), joann).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Tenant not found. [TenantNotFoundError]"})
    );
    assert_eq!(cognee_list(&sb, unknown, &key).await.status(), 404);
    assert_eq!(cognee_list(&sb, OTHER_TENANT, &key).await.status(), 200);
    let r = remove(
        &sb,
        ProviderKind::Cognee,
        Some(OTHER_TENANT),
        "f6f6f6f6-0000-4000-8000-000000000001",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "User removed from tenant"})
    );
    let statuses: Vec<u16> = sb.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, [403, 403, 403, 403, 404, 404, 200, 200]);
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
    assert_eq!(v["meta"]["total_pages"], 80);

    // Whole lists are megabytes, as real ones are.
    let r = aerospike_list(&sb, &aerospike_token(&sb).await).await;
    let body = r.bytes().await.unwrap();
    assert!(body.len() > 2_000_000, "{} bytes", body.len());
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["count"], BIG);
    assert_eq!(v["meta"], json!({"total": BIG, "limit": BIG, "offset": 0}));
    let r = cognee_list(&sb, TENANT, &env(&sb, "SANDBOX_COGNEE_API_KEY")).await;
    let body = r.bytes().await.unwrap();
    assert!(body.len() > 1_000_000, "{} bytes", body.len());
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), BIG);
    sb.shutdown().await;
}
