//! The real `offboard run` against doubles of the five APIs written from their pages, not from our
//! sandbox: each double keeps an organization of realistic size, answers its member list in the
//! page's shape (validating `limit` as the page documents it, searching by case-sensitive
//! substring, since no page promises more) and can mislead the ways a real server or a wrong URL
//! can: a record without its email, an empty list, another provider's wrapper, paging ignored, a
//! range narrower than ours, a removal route answering 404. None of it may ever end as
//! `removed` or `already_absent` unless it happened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use offboard::job::ProviderKind;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{offboard, report_lines};

use ProviderKind::{Aerospike, Aitronos, Cognee, Factory, Telnyx};

const ORG: &str = "org_acme";
const TENANT: &str = "0b7e6f3a-52c1-4d8e-9f10-2a3b4c5d6e7f";
const OWNER: &str = "owner@corp.example";
/// People in each double's organization, besides the owner and the contractors.
const PEOPLE: usize = 2_000;
/// Contractors (`c{i}+ext@corp.example`), whom `*+ext@corp.example` protects.
const CONTRACTORS: usize = 5;

/// How a double misleads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// One record in the middle of the list has no `email`.
    NoEmail,
    /// Every list answers no member, in the page's own shape.
    EmptyList,
    /// The list comes under another provider's wrapper.
    ForeignWrapper,
    /// Every list answers its first page, whatever page was asked for.
    IgnorePaging,
    /// The list's `limit` (page size) range ends below what we ask: answered 400.
    NarrowLimit,
    /// The removal route answers the provider's 404 for everyone, listed or not.
    Remove404,
    /// A success answer names another user than the one asked for (Telnyx).
    NamesOther,
    /// Aitronos answers 422 CONFIRMATION_REQUIRED: our `confirm: true` was lost on the way.
    BodyLost,
}

#[derive(Debug, Clone)]
struct Person {
    id: String,
    email: String,
    owner: bool,
}

struct State {
    kind: ProviderKind,
    fault: Fault,
    people: Mutex<Vec<Person>>,
    /// The user of every removal request that arrived.
    removals: Mutex<Vec<String>>,
}

/// Person `i`'s id in the kind's format.
fn id_of(kind: ProviderKind, i: usize) -> String {
    match kind {
        Factory => format!("fu-{i}"),
        Aitronos => format!("usr_p{i}"),
        _ => format!("00000000-0000-4000-8000-{i:012}"),
    }
}

fn email_of(i: usize) -> String {
    format!("person{i}@corp.example")
}

fn contractor_email(i: usize) -> String {
    format!("c{i}+ext@corp.example")
}

/// The id of contractor `i`.
fn contractor_id(kind: ProviderKind, i: usize) -> String {
    id_of(kind, 900_000 + i)
}

fn owner_id(kind: ProviderKind) -> String {
    id_of(kind, 999_999)
}

/// The organization: its owner, `PEOPLE` people and the contractors; `extra` as well.
fn people(kind: ProviderKind, extra: &[(String, String)]) -> Vec<Person> {
    let mut out = vec![Person {
        id: owner_id(kind),
        email: OWNER.into(),
        owner: true,
    }];
    out.extend((0..PEOPLE).map(|i| Person {
        id: id_of(kind, i),
        email: email_of(i),
        owner: false,
    }));
    out.extend((0..CONTRACTORS).map(|i| Person {
        id: contractor_id(kind, i),
        email: contractor_email(i),
        owner: false,
    }));
    out.extend(extra.iter().map(|(id, email)| Person {
        id: id.clone(),
        email: email.clone(),
        owner: false,
    }));
    out
}

/// A record of the list, in the page's shape.
fn record(kind: ProviderKind, p: &Person) -> Value {
    match kind {
        Factory => json!({"id": p.id, "email": p.email, "name": "A Person"}),
        Aitronos => json!({
            "id": format!("orguser_{}", &p.id[4..]), "user_id": p.id, "organization_id": ORG,
            "email": p.email, "full_name": "A Person", "username": p.email,
            "role": {"name": if p.owner { "Owner" } else { "Member" }}, "status": {"name": "active"}
        }),
        Telnyx => json!({
            "id": p.id, "email": p.email,
            "record_type": if p.owner { "organization_owner" } else { "organization_sub_user" },
            "user_status": "enabled", "organization_user_bypasses_sso": false,
            "created_at": "2024-02-02T22:25:27.521Z", "last_sign_in_at": null
        }),
        Aerospike => json!({
            "id": p.id, "email": p.email, "firstName": "A", "lastName": "Person",
            "createdAt": "2024-02-02T22:25:27Z", "role": if p.owner { "OrgOwner" } else { "OrgAdmin" }
        }),
        Cognee => json!({"id": p.id, "email": p.email, "roles": []}),
    }
}

/// A query parameter.
fn param(r: &Request, name: &str) -> Option<String> {
    r.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// An integer within `range`, its default when absent; Err when it is not.
fn ranged(value: Option<String>, default: usize, min: usize, max: usize) -> Result<usize, ()> {
    match value {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(()),
        },
    }
}

impl State {
    fn error(&self, status: u16, code: &str, message: &str) -> ResponseTemplate {
        let r = ResponseTemplate::new(status).insert_header("x-request-id", "req-double");
        match self.kind {
            Factory => r.set_body_json(json!({"detail": message, "status": status, "title": code})),
            Aitronos => r.set_body_json(json!({"success": false, "error": {
                "code": code, "message": message, "system_message": message.to_lowercase(),
                "type": "client_error", "status": status, "details": {},
                "trace_id": "trace-double", "timestamp": "2026-12-03T10:00:00Z"}})),
            Telnyx => r.set_body_json(json!({"errors": [{"code": code, "title": "Error",
                "detail": message, "source": {"pointer": "/"}}]})),
            Aerospike => r.set_body_raw(
                json!({"type": code, "title": "Error", "status": status, "detail": message,
                    "message": message})
                .to_string(),
                "application/problem+json",
            ),
            Cognee => r.set_body_json(json!({"detail": message})),
        }
    }

    /// The members a list request selects (a search by case-sensitive substring), as records,
    /// with the paging the page documents; None when `limit` is out of the page's range.
    fn list(&self, r: &Request) -> ResponseTemplate {
        let people = self.people.lock().unwrap().clone();
        let narrow = self.fault == Fault::NarrowLimit;
        let bad_limit = |name: &str, max: usize| {
            self.error(
                400,
                match self.kind {
                    Aerospike => "urn:aerospike:errors:validation:failed",
                    Telnyx => "10015",
                    Aitronos => "VALIDATION_ERROR",
                    _ => "Bad Request",
                },
                &format!("{name} must be an integer between 1 and {max}"),
            )
        };
        let search = match self.kind {
            Telnyx => param(r, "filter[email]").unwrap_or_default(),
            Aitronos => serde_json::from_slice::<Value>(&r.body).unwrap_or_default()["search_term"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        };
        let mut selected: Vec<Person> = people
            .into_iter()
            .filter(|p| p.email.contains(&search))
            .collect();
        if self.fault == Fault::EmptyList {
            selected.clear();
        }
        let total = selected.len();
        let (from, size) = match self.kind {
            Factory => {
                let max = if narrow { 10 } else { 100 };
                let Ok(limit) = ranged(param(r, "limit"), 20, 1, max) else {
                    return bad_limit("limit", max);
                };
                (
                    param(r, "cursor").and_then(|c| c.parse().ok()).unwrap_or(0),
                    limit,
                )
            }
            Aitronos => {
                let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
                let max = if narrow { 10 } else { 100 };
                let take = body["take"].as_u64().map(|t| t.to_string());
                let Ok(take) = ranged(take, 10, 1, max) else {
                    return bad_limit("take", max);
                };
                (body["skip"].as_u64().unwrap_or(0) as usize, take)
            }
            Telnyx => {
                let max = if narrow { 50 } else { 250 };
                let Ok(size) = ranged(param(r, "page[size]"), 20, 1, max) else {
                    return bad_limit("page[size]", max);
                };
                let number = ranged(param(r, "page[number]"), 1, 1, usize::MAX).unwrap_or(1);
                ((number - 1) * size, size)
            }
            Aerospike => {
                let max = if narrow { 50 } else { 100 };
                let Ok(limit) = ranged(param(r, "limit"), 10, 1, max) else {
                    return bad_limit("limit", max);
                };
                let Ok(offset) = ranged(param(r, "offset"), 0, 0, usize::MAX) else {
                    return bad_limit("offset", usize::MAX);
                };
                (offset, limit)
            }
            Cognee => (0, usize::MAX),
        };
        let from = if self.fault == Fault::IgnorePaging {
            0
        } else {
            from.min(total)
        };
        let end = from.saturating_add(size).min(total);
        let mut records: Vec<Value> = selected[from..end]
            .iter()
            .map(|p| record(self.kind, p))
            .collect();
        if self.fault == Fault::NoEmail {
            // The middle of the whole list: the page that holds it.
            let middle = total / 2;
            if (from..end).contains(&middle) {
                records[middle - from]
                    .as_object_mut()
                    .unwrap()
                    .remove("email");
            }
        }
        let body = match self.kind {
            Factory => json!({"users": records, "pagination": {
                "hasMore": end < total, "nextCursor": (end < total).then(|| end.to_string())}}),
            Aitronos => json!({"users": records, "total_users_count": total, "skip": from,
                "take": size}),
            Telnyx => json!({"data": records, "meta": {"page_number": from / size + 1,
                "page_size": size, "total_pages": total.div_ceil(size),
                "total_results": total}}),
            Aerospike => json!({"count": records.len(),
                "meta": {"total": total, "limit": size, "offset": from}, "members": records}),
            Cognee => json!(records),
        };
        let body = if self.fault == Fault::ForeignWrapper {
            let records = match self.kind {
                Cognee => body,
                Factory => body["users"].clone(),
                Aitronos => body["users"].clone(),
                Telnyx => body["data"].clone(),
                Aerospike => body["members"].clone(),
            };
            let foreign = match self.kind {
                Factory => "members",
                Aitronos => "data",
                Telnyx => "users",
                Aerospike => "data",
                Cognee => "users",
            };
            json!({ foreign: records })
        } else {
            body
        };
        ResponseTemplate::new(200).set_body_json(body)
    }

    /// A removal: the user from the route (Factory: its `email` query), then the page's answer.
    fn remove(&self, r: &Request) -> ResponseTemplate {
        let segments: Vec<&str> = r.url.path().split('/').collect();
        let user = match self.kind {
            Factory => param(r, "email").unwrap_or_default(),
            Telnyx => segments[segments.len() - 3].to_owned(),
            _ => segments.last().unwrap().to_string(),
        };
        self.removals.lock().unwrap().push(user.clone());
        if self.fault == Fault::BodyLost {
            return self.error(
                422,
                "CONFIRMATION_REQUIRED",
                "Please confirm this action by setting confirm to true.",
            );
        }
        let mut people = self.people.lock().unwrap();
        let at = people.iter().position(|p| match self.kind {
            Factory => p.email.eq_ignore_ascii_case(&user),
            _ => p.id.eq_ignore_ascii_case(&user),
        });
        let not_found = || match self.kind {
            Factory => self.error(404, "Not Found", "User not found"),
            Aitronos => self.error(404, "USER_NOT_FOUND", "The user was not found."),
            Telnyx => self.error(
                404,
                "10005",
                "The requested resource or URL could not be found.",
            ),
            Aerospike => self.error(
                404,
                "urn:aerospike:errors:resource:not-found",
                "The requested resource could not be found.",
            ),
            Cognee => self.error(404, "", "User not found in this tenant."),
        };
        let Some(at) = at.filter(|_| self.fault != Fault::Remove404) else {
            return not_found();
        };
        if people[at].owner {
            return match self.kind {
                Cognee => self.error(400, "", "Cannot remove the tenant owner."),
                Aitronos => self.error(403, "CANNOT_DELETE_OWNER", "The owner cannot be removed."),
                _ => self.error(403, "Forbidden", "The owner cannot be removed."),
            };
        }
        let p = people.remove(at);
        match self.kind {
            Telnyx => {
                let mut named = p.clone();
                if self.fault == Fault::NamesOther {
                    named.id = owner_id(Telnyx);
                }
                ResponseTemplate::new(200).set_body_json(json!({"data": record(Telnyx, &named)}))
            }
            Cognee => ResponseTemplate::new(200)
                .set_body_json(json!({"message": "User removed from tenant"})),
            _ => ResponseTemplate::new(204).insert_header("x-request-id", "req-double"),
        }
    }
}

struct Api(Arc<State>);

impl Respond for Api {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let s = &self.0;
        let p = r.url.path();
        let m = r.method.as_str();
        let listing = match s.kind {
            Factory => m == "GET" && p == "/api/v0/organization/users",
            Aitronos => m == "POST" && p == format!("/v1/organizations/{ORG}/users"),
            Telnyx => m == "GET" && p == "/v2/organizations/users",
            Aerospike => m == "GET" && p == "/v1/organization/members",
            Cognee => m == "GET" && p == format!("/api/v1/permissions/tenants/{TENANT}/users"),
        };
        if listing {
            return s.list(r);
        }
        let removing = match s.kind {
            Factory => m == "DELETE" && p == "/api/v0/organization/users",
            Aitronos => m == "DELETE" && p.starts_with(&format!("/v1/organizations/{ORG}/users/")),
            Telnyx => m == "POST" && p.ends_with("/actions/remove"),
            Aerospike => m == "DELETE" && p.starts_with("/v1/organization/members/"),
            Cognee => {
                m == "DELETE" && p.starts_with(&format!("/api/v1/permissions/tenants/{TENANT}/"))
            }
        };
        if removing {
            return s.remove(r);
        }
        if s.kind == Cognee && p.starts_with("/api/v1/permissions/tenants/") {
            return s.error(404, "", "Tenant not found. [TenantNotFoundError]");
        }
        s.error(404, "Not Found", "No such route")
    }
}

/// A double of `kind` on loopback (and Aerospike's token endpoint), misleading by `fault`.
struct Double {
    server: MockServer,
    state: Arc<State>,
}

/// A server on loopback with Aerospike's token endpoint, answering everything else with `api`.
async fn host(api: impl Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "tok", "token_type": "Bearer", "expires_in": 3600}),
        ))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(api)
        .with_priority(5)
        .mount(&server)
        .await;
    server
}

impl Double {
    async fn start(kind: ProviderKind, fault: Fault, extra: &[(String, String)]) -> Double {
        let state = Arc::new(State {
            kind,
            fault,
            people: Mutex::new(people(kind, extra)),
            removals: Mutex::default(),
        });
        let server = host(Api(state.clone())).await;
        Double { server, state }
    }

    fn removals(&self) -> Vec<String> {
        self.state.removals.lock().unwrap().clone()
    }

    fn is_listed(&self, id: &str) -> bool {
        self.state
            .people
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.id == id || p.email == id)
    }
}

/// One entry of `kind` at `base`, with `extra` config text after the entries.
fn config(kind: ProviderKind, base: &str, in_flight: u32, extra: &str) -> String {
    let base = match kind {
        Aerospike => format!("{base}/v1"),
        _ => base.to_owned(),
    };
    let cred = match kind {
        Factory | Telnyx => "token_env = \"DOUBLE_KEY\"".to_owned(),
        Aitronos | Cognee => "api_key_env = \"DOUBLE_KEY\"".to_owned(),
        Aerospike => format!(
            "token_url = \"{}/oauth/token\"\nclient_id_env = \"DOUBLE_KEY\"\nclient_secret_env = \"DOUBLE_KEY\"",
            base.trim_end_matches("/v1")
        ),
    };
    format!(
        "[providers.{kind}]\nkind = \"{kind}\"\nbase_url = \"{base}\"\n{cred}\nrate_per_second = 2000\nburst = 100\nmax_in_flight = {in_flight}\nbase_delay_ms = 10\nmax_delay_ms = 50\nmax_attempts = 2\n\n{extra}"
    )
}

/// The organization column a row of `kind` needs.
fn org(kind: ProviderKind) -> &'static str {
    match kind {
        Aitronos => ORG,
        Cognee => TENANT,
        _ => "",
    }
}

/// Runs `offboard run` with `rows` (user column only) against `base`: exit code, stderr, report.
async fn run(
    kind: ProviderKind,
    base: &str,
    users: &[String],
    in_flight: u32,
    extra: &str,
) -> (Option<i32>, String, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("provider,user,organization\n");
    for u in users {
        csv.push_str(&format!("{kind},{u},{}\n", org(kind)));
    }
    let (csv_path, config_path, report) = (
        dir.path().join("rows.csv"),
        dir.path().join("offboard.toml"),
        dir.path().join("report.jsonl"),
    );
    std::fs::write(&csv_path, csv).unwrap();
    std::fs::write(&config_path, config(kind, base, in_flight, extra)).unwrap();
    let arg = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let out = offboard(
        &[("DOUBLE_KEY", "k3y".to_owned())],
        &[
            "run",
            "--csv",
            &arg(&csv_path),
            "--config",
            &arg(&config_path),
            "--report",
            &arg(&report),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, report_lines(&report))
}

/// No line claims an absence or reports a removal the double did not make.
fn assert_nothing_claimed(kind: ProviderKind, fault: Fault, double: &Double, lines: &[Value]) {
    let removed = double.removals();
    for l in lines {
        assert_ne!(l["outcome"], "already_absent", "{kind} {fault:?}: {l}");
        if l["outcome"] == "removed" {
            let user = l["resolved_user"].as_str().or(l["user"].as_str()).unwrap();
            assert!(
                removed.iter().any(|r| r.eq_ignore_ascii_case(user)) && !double.is_listed(user),
                "{kind} {fault:?}: a removal reported that the double did not make: {l}"
            );
        }
    }
}

/// Every list a double can make wrong: no absence is claimed, no removal is sent for a person a
/// list had to find, the run exits 1, and each failure names what was wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_cannot_be_read_proves_no_absence_at_any_provider() {
    let faults: [(Fault, &[&str]); 5] = [
        (Fault::NoEmail, &["`email`"]),
        (Fault::EmptyList, &["empty", "no member at all"]),
        (
            Fault::ForeignWrapper,
            &["missing field", "invalid type", "no `users`"],
        ),
        (
            Fault::IgnorePaging,
            &["appears twice", "page_number", "meta.offset"],
        ),
        (Fault::NarrowLimit, &["limit", "take", "page[size]"]),
    ];
    for kind in ProviderKind::ALL {
        for (fault, words) in faults {
            if kind == Cognee && matches!(fault, Fault::IgnorePaging | Fault::NarrowLimit) {
                continue; // a tenant's list has no paging
            }
            let double = Double::start(kind, fault, &[]).await;
            // Two people by email and one who never was a member.
            let users = [
                email_of(7),
                email_of(PEOPLE - 3),
                "gone@corp.example".into(),
            ];
            let (code, stderr, lines) = run(kind, &double.server.uri(), &users, 4, "").await;
            assert_eq!(code, Some(1), "{kind} {fault:?}: {stderr}");
            assert_eq!(lines.len(), users.len(), "{kind} {fault:?}");
            assert_nothing_claimed(kind, fault, &double, &lines);
            let gone = lines
                .iter()
                .find(|l| l["user"] == "gone@corp.example")
                .unwrap();
            assert!(
                gone["outcome"] == "failed" || gone["outcome"] == "not_attempted",
                "{kind} {fault:?}: {gone}"
            );
            let message = gone["error"]["message"].as_str().unwrap_or_default();
            assert!(
                words.iter().any(|w| message.contains(w)),
                "{kind} {fault:?}: the failure names what was wrong ({words:?}): {gone}"
            );
            // Only Factory removes by email without a list; elsewhere the list finds the id.
            // A search that found the person exactly (Aitronos) may still remove them.
            if kind != Factory && kind != Aitronos {
                assert_eq!(double.removals(), Vec::<String>::new(), "{kind} {fault:?}");
            }
            // Whatever was sent named a person a row asked for and the double listed (Factory
            // removes by email, so its removal is how it learns that someone is gone).
            let mut asked = vec![
                email_of(7),
                email_of(PEOPLE - 3),
                id_of(kind, 7),
                id_of(kind, PEOPLE - 3),
            ];
            if kind == Factory {
                asked.push("gone@corp.example".into());
            }
            assert!(
                double.removals().iter().all(|r| asked.contains(r)),
                "{kind} {fault:?}: {:?}",
                double.removals()
            );
        }
    }
}

/// A host that answers every request 200 with an empty array or `{"data": []}` (a wrong URL on a
/// catch-all server) fails every entry's preflight: nothing is sent, nobody is absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_url_answering_an_empty_200_fails_the_preflight_at_every_provider() {
    for body in [json!([]), json!({"data": []})] {
        for kind in ProviderKind::ALL {
            let server = host(ResponseTemplate::new(200).set_body_json(body.clone())).await;
            let users: Vec<String> = match kind {
                Factory => vec![email_of(1), email_of(2)],
                _ => vec![email_of(1), id_of(kind, 2)],
            };
            let (code, stderr, lines) = run(kind, &server.uri(), &users, 4, "").await;
            assert_eq!(code, Some(1), "{kind} {body}: {stderr}");
            for l in &lines {
                assert_eq!(l["outcome"], "not_attempted", "{kind} {body}: {l}");
                assert_eq!(l["reason"], "preflight_failed", "{kind} {body}: {l}");
            }
            let sent = server.received_requests().await.unwrap();
            assert!(
                sent.iter().all(|r| !matches!(r.method.as_str(), "DELETE")
                    && !r.url.path().ends_with("/actions/remove")),
                "{kind} {body}: no removal is sent"
            );
        }
    }
}

/// Telnyx's 10005 is "the requested resource or URL could not be found": with the removal route
/// answering it while the member list still shows the people, none of them is absent.
#[tokio::test]
async fn telnyx_10005_on_the_removal_route_is_not_an_absence_while_the_list_shows_them() {
    let double = Double::start(Telnyx, Fault::Remove404, &[]).await;
    let users: Vec<String> = (0..10).map(|i| id_of(Telnyx, i * 100)).collect();
    let (code, stderr, lines) = run(Telnyx, &double.server.uri(), &users, 4, "").await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(lines.len(), 10);
    for l in &lines {
        assert_eq!(l["outcome"], "failed", "{l}");
        assert_eq!(l["reason"], "not_found_but_listed", "{l}");
    }
    assert_eq!(double.removals().len(), 10, "each was asked once");
}

/// Searches that match case-sensitively (no page promises otherwise): a person whose row and
/// listing differ in case is still found, and an absence is claimed only from the whole list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_sensitive_search_never_makes_a_member_absent() {
    for kind in [Telnyx, Aitronos] {
        let mixed = (id_of(kind, 500_000), "Mixed.Case@Corp.Example".to_owned());
        let double = Double::start(kind, Fault::None, std::slice::from_ref(&mixed)).await;
        let users = [
            // Listed in lowercase, asked for in another case: the lowercased search finds them.
            "Person7@Corp.Example".to_owned(),
            // Listed in mixed case, asked for in lowercase: only the whole list finds them.
            "mixed.case@corp.example".to_owned(),
            "gone@corp.example".to_owned(),
        ];
        let (code, stderr, lines) = run(kind, &double.server.uri(), &users, 4, "").await;
        assert_eq!(code, Some(0), "{kind}: {stderr}");
        let by_user: HashMap<&str, &Value> = lines
            .iter()
            .map(|l| (l["user"].as_str().unwrap(), l))
            .collect();
        for (user, id) in [(&users[0], id_of(kind, 7)), (&users[1], mixed.0.clone())] {
            let l = by_user[user.as_str()];
            assert_eq!(l["outcome"], "removed", "{kind}: {l}");
            assert_eq!(l["resolved_user"], id, "{kind}: {l}");
            assert!(!double.is_listed(&id), "{kind}: {id} is gone");
        }
        let gone = by_user["gone@corp.example"];
        assert_eq!(gone["outcome"], "already_absent", "{kind}: {gone}");
        assert_eq!(gone["absence"], "no_member", "{kind}: {gone}");
        assert_eq!(
            double.removals().len(),
            2,
            "{kind}: {:?}",
            double.removals()
        );
    }
}

/// `*+ext@corp.example` protects every contractor at all five providers, named by id (by email
/// at Factory, which takes nothing else); the owner named by id is protected where the list
/// marks one (Telnyx, Aerospike). Nothing is sent for any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_patterns_hold_at_every_provider_whichever_way_a_row_names_them() {
    let safety = "[safety]\nprotected = [\"*+ext@corp.example\"]\n";
    for kind in ProviderKind::ALL {
        let double = Double::start(kind, Fault::None, &[]).await;
        let mut users: Vec<String> = (0..CONTRACTORS)
            .map(|i| match kind {
                Factory => contractor_email(i),
                _ => contractor_id(kind, i),
            })
            .collect();
        users.push(contractor_email(0).to_uppercase().replace("+EXT", "+ext"));
        if matches!(kind, Telnyx | Aerospike) {
            users.push(owner_id(kind));
        }
        users.push(email_of(3));
        let (code, stderr, lines) = run(kind, &double.server.uri(), &users, 4, safety).await;
        assert_eq!(
            code,
            Some(1),
            "{kind}: protected rows are not done: {stderr}"
        );
        for l in &lines {
            if l["user"] == email_of(3) {
                assert_eq!(l["outcome"], "removed", "{kind}: {l}");
            } else {
                assert_eq!(l["outcome"], "skipped_protected", "{kind}: {l}");
            }
        }
        let removals = double.removals();
        let expected = match kind {
            Factory => email_of(3),
            _ => id_of(kind, 3),
        };
        assert_eq!(removals, [expected], "{kind}: only the unprotected person");
    }
}

/// Aerospike's list read as its OpenAPI says (`limit` 1 to 100): an organization of twenty
/// thousand read a hundred at a time, every email row resolved and removed.
#[tokio::test]
async fn aerospike_reads_twenty_thousand_members_a_hundred_at_a_time() {
    let extra: Vec<(String, String)> = (0..18_000)
        .map(|i| {
            (
                id_of(Aerospike, 100_000 + i),
                format!("more{i}@corp.example"),
            )
        })
        .collect();
    let double = Double::start(Aerospike, Fault::None, &extra).await;
    let users = [
        email_of(0),
        email_of(1_999),
        "more17999@corp.example".to_owned(),
        "gone@corp.example".to_owned(),
    ];
    let (code, stderr, lines) = run(Aerospike, &double.server.uri(), &users, 4, "").await;
    assert_eq!(code, Some(0), "{stderr}");
    let outcomes: Vec<&str> = lines
        .iter()
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "removed").count(),
        3,
        "{lines:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "already_absent").count(),
        1
    );
    let lists: Vec<Request> = double
        .server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "GET")
        .collect();
    assert!(
        lists
            .iter()
            .all(|r| param(r, "limit").as_deref() == Some("100")),
        "every page asks limit=100"
    );
    let members = PEOPLE + CONTRACTORS + 1 + extra.len();
    assert!(
        lists.len() >= members.div_ceil(100),
        "the whole list was read: {} pages",
        lists.len()
    );
}

/// A Telnyx success that names another user than the one asked for is not a removal.
#[tokio::test]
async fn a_telnyx_success_naming_another_user_is_no_removal() {
    let double = Double::start(Telnyx, Fault::NamesOther, &[]).await;
    let users = [id_of(Telnyx, 11)];
    let (code, stderr, lines) = run(Telnyx, &double.server.uri(), &users, 1, "").await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(lines[0]["outcome"], "failed", "{}", lines[0]);
    assert_eq!(
        lines[0]["error"]["code"], "other_user_named",
        "{}",
        lines[0]
    );
}

/// Aitronos' 422 CONFIRMATION_REQUIRED, though we always send `confirm: true`: the body was lost
/// on the way, so the lane halts with that explanation after the first answer.
#[tokio::test]
async fn aitronos_confirmation_required_halts_the_lane() {
    let double = Double::start(Aitronos, Fault::BodyLost, &[]).await;
    let users: Vec<String> = (0..6).map(|i| id_of(Aitronos, i)).collect();
    let (code, stderr, lines) = run(Aitronos, &double.server.uri(), &users, 1, "").await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        double.removals().len(),
        1,
        "one request, then the lane halted"
    );
    let failed: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert_eq!(failed[0]["reason"], "request_body_lost", "{}", failed[0]);
    for l in lines.iter().filter(|l| l["outcome"] != "failed") {
        assert_eq!(l["outcome"], "not_attempted", "{l}");
        assert_eq!(l["reason"], "request_body_lost", "{l}");
        let m = l["error"]["message"].as_str().unwrap();
        assert!(m.contains("body was lost"), "{l}");
    }
}

/// A Cognee tenant it does not know is a wrong tenant, and the message says so.
#[tokio::test]
async fn an_unknown_cognee_tenant_is_named_as_such() {
    let double = Double::start(Cognee, Fault::None, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let other = "11111111-2222-4333-8444-555555555555";
    let csv = dir.path().join("rows.csv");
    std::fs::write(
        &csv,
        format!(
            "provider,user,organization\ncognee,{},{other}\n",
            email_of(1)
        ),
    )
    .unwrap();
    let config_path = dir.path().join("offboard.toml");
    std::fs::write(&config_path, config(Cognee, &double.server.uri(), 1, "")).unwrap();
    let report = dir.path().join("report.jsonl");
    let out = crate::support::run_csv(
        &[("DOUBLE_KEY", "k3y".to_owned())],
        &csv,
        &config_path,
        &report,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let lines = report_lines(&report);
    assert_eq!(lines[0]["reason"], "preflight_failed", "{}", lines[0]);
    let m = lines[0]["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("does not know this organization or tenant")
            && m.contains("TenantNotFoundError")
            && !m.contains("check base_url"),
        "{m}"
    );
}
