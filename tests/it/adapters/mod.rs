//! The five adapters against real HTTP on loopback (wiremock): the exact request each API page asks
//! for, how every documented answer is read and classified, Aerospike's token, transport failures,
//! and the lane's attempt loop: one file per concern, the fixtures here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use offboard::job::{
    Email, Job, LaneId, OpaqueId, PrefixedId, ProviderKind, Subject, Target, Uuid,
};
use offboard::lane::{Lane, LaneSettings};
use offboard::metrics::Metrics;
use offboard::outcome::{Outcome, Record};
use offboard::providers::auth::{TokenBody, TokenSource};
use offboard::providers::{self, Answer, Auth, Hint, Provider, Transport};
use offboard::retry::{Decision, FailReason, OnConflict, Policy, RetryReason, classify};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{body_json, body_string, header, method, path, query_param};
use wiremock::{Match, Mock, MockBuilder, MockServer, Request, Respond, ResponseTemplate};

use ProviderKind::{Aerospike, Aitronos, Cognee, Factory, Telnyx};

const KEY: &str = "k3y-for-tests";
const UA: &str = concat!("offboard/", env!("CARGO_PKG_VERSION"));
const EMAIL: &str = "jane.doe+offboard@example.com";
const ORG: &str = "org_xyz789";
const USR: &str = "usr_abc123";
const DEPT: &str = "dept_eng001";
const TELNYX_USER: &str = "6a09cdc3-8948-47f0-aa62-74ac943d6c58";
const USER_UUID: &str = "3f0b7a52-1c4e-4d8a-9b6f-2e5d8c1a7b90";
const TENANT_UUID: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
const TOKEN_PATH: &str = "/oauth/token";
const CLIENT_ID: &str = "key-id-1";
/// Holds characters a form body must escape.
const CLIENT_SECRET: &str = "s3cr+t/=";

mod answers;
mod attempts;
mod requests;
mod tokens;
mod transport;

// ---------------------------------------------------------------------------------------------
// Fixtures: one provider's target, route, credentials and success answer.
// ---------------------------------------------------------------------------------------------

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn target(kind: ProviderKind) -> Target {
    match kind {
        Factory => Target::Factory {
            email: Email::parse("user", EMAIL).unwrap(),
        },
        Aitronos => Target::Aitronos {
            organization: PrefixedId::parse("organization", "org_", ORG).unwrap(),
            user: PrefixedId::parse("user", "usr_", USR).unwrap(),
            transfer_to: None,
        },
        Telnyx => Target::Telnyx {
            user: OpaqueId::parse("user", TELNYX_USER).unwrap(),
        },
        Aerospike => Target::Aerospike {
            user: Uuid::parse("user", USER_UUID).unwrap(),
        },
        Cognee => Target::Cognee {
            tenant: Uuid::parse("organization", TENANT_UUID).unwrap(),
            user: Uuid::parse("user", USER_UUID).unwrap(),
        },
    }
}

/// Method and path of the removal, as the page documents them. Aerospike's base URL carries a
/// path (`/v1`), as its default does.
fn route(kind: ProviderKind) -> (&'static str, String) {
    match kind {
        Factory => ("DELETE", "/api/v0/organization/users".into()),
        Aitronos => ("DELETE", format!("/v1/organizations/{ORG}/users/{USR}")),
        Telnyx => (
            "POST",
            format!("/v2/organizations/users/{TELNYX_USER}/actions/remove"),
        ),
        Aerospike => ("DELETE", format!("/v1/organization/members/{USER_UUID}")),
        Cognee => (
            "DELETE",
            format!("/api/v1/permissions/tenants/{TENANT_UUID}/users/{USER_UUID}"),
        ),
    }
}

/// Method and path of the member list (the preflight's probe and the lookups).
fn list_route(kind: ProviderKind) -> (&'static str, String) {
    match kind {
        Factory => ("GET", "/api/v0/organization/users".into()),
        Aitronos => ("POST", format!("/v1/organizations/{ORG}/users")),
        Telnyx => ("GET", "/v2/organizations/users".into()),
        Aerospike => ("GET", "/v1/organization/members".into()),
        Cognee => (
            "GET",
            format!("/api/v1/permissions/tenants/{TENANT_UUID}/users"),
        ),
    }
}

/// The member list of an organization where only our credential's own member (an admin, not
/// the target) and, at Telnyx, the owner are left, in each page's documented shape: every
/// organization has at least one member.
fn admin_only_list(kind: ProviderKind) -> serde_json::Value {
    const ADMIN: &str = "it-admin@example.com";
    const ADMIN_UUID: &str = "9c0d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f";
    match kind {
        Factory => json!({"users": [{"id": "u-admin", "email": ADMIN}],
            "pagination": {"hasMore": false, "nextCursor": null}}),
        Aitronos => {
            json!({"users": [{"id": "orguser_admin", "user_id": "usr_admin", "email": ADMIN}],
            "total_users_count": 1, "skip": 0, "take": 100})
        }
        // With its one owner, as every Telnyx organization has.
        Telnyx => json!({"data": [
                {"id": "1d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a", "email": "owner@example.com",
                    "record_type": "organization_owner"},
                {"id": ADMIN_UUID, "email": ADMIN, "record_type": "organization_sub_user"}],
            "meta": {"page_number": 1, "page_size": 250, "total_pages": 1, "total_results": 2}}),
        Aerospike => json!({"count": 1, "meta": {"total": 1, "limit": 100, "offset": 0},
            "members": [{"id": ADMIN_UUID, "email": ADMIN, "role": "OrgAdmin", "firstName": "It",
                "lastName": "Admin", "createdAt": "2024-01-01T00:00:00Z"}]}),
        Cognee => json!([{"id": ADMIN_UUID, "email": ADMIN, "roles": []}]),
    }
}

fn base_url(kind: ProviderKind, uri: &str) -> String {
    match kind {
        // With a trailing slash: the adapter must not send `//organization`.
        Aerospike => format!("{uri}/v1/"),
        _ => uri.to_owned(),
    }
}

/// The credential header the removal must carry (Aerospike: the first token the endpoint issues).
fn auth_header(kind: ProviderKind) -> (&'static str, String) {
    match kind {
        Factory | Telnyx => ("authorization", format!("Bearer {KEY}")),
        Aitronos | Cognee => ("x-api-key", KEY.to_owned()),
        Aerospike => ("authorization", "Bearer tok-1".to_owned()),
    }
}

fn success(kind: ProviderKind) -> ResponseTemplate {
    match kind {
        Factory | Aitronos => ResponseTemplate::new(204),
        Aerospike => ResponseTemplate::new(204)
            .insert_header("x-request-id", "b0658b67-8ea3-46de-a3b8-18c3f5347def"),
        Telnyx => ResponseTemplate::new(200).set_body_json(json!({"data": {
            "id": TELNYX_USER, "record_type": "organization_sub_user", "email": "user@example.com",
            "user_status": "enabled", "organization_user_bypasses_sso": false,
            "created_at": "2018-02-02T22:25:27.521Z", "last_sign_in_at": null
        }})),
        Cognee => {
            ResponseTemplate::new(200).set_body_json(json!({"message": "User removed from tenant"}))
        }
    }
}

/// The provider's own error body for `status`, carrying `code` and `message`, with an
/// `X-Request-Id` of `req-<status>`.
fn error_body(kind: ProviderKind, status: u16, code: &str, message: &str) -> ResponseTemplate {
    let reply =
        ResponseTemplate::new(status).insert_header("x-request-id", format!("req-{status}"));
    match kind {
        Factory => reply.set_body_json(json!({"detail": message, "status": status, "title": code})),
        Aitronos => reply.set_body_json(json!({"success": false, "error": {
            "code": code, "message": message, "system_message": message.to_lowercase(),
            "type": "client_error", "status": status, "details": {"user_id": USR},
            "trace_id": format!("trace-{status}"), "timestamp": "2025-12-22T15:30:00Z"
        }})),
        Telnyx => reply.set_body_json(json!({"errors": [{
            "code": code, "title": "Error", "detail": message, "source": {"pointer": "/"},
            "meta": {"url": format!("https://developers.telnyx.com/docs/overview/errors/{code}")}
        }]})),
        Aerospike if code.starts_with("urn:") => reply.set_body_raw(
            json!({"type": code, "title": "Error", "status": status, "detail": message})
                .to_string(),
            "application/problem+json",
        ),
        Aerospike => reply.set_body_json(json!({"code": code, "message": message})),
        Cognee if code.is_empty() => reply.set_body_json(json!({"detail": message})),
        Cognee => reply.set_body_json(json!({"detail": format!("{message} [{code}]")})),
    }
}

/// Hands out `tok-1`, `tok-2`, ... valid for `expires_in` seconds, each after `delay`.
struct TokenIssuer {
    issued: AtomicUsize,
    expires_in: f64,
    delay: Duration,
}

impl Respond for TokenIssuer {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": self.expires_in
        }))
        .set_delay(self.delay)
    }
}

fn token_issuer(expires_in: f64) -> TokenIssuer {
    TokenIssuer {
        issued: AtomicUsize::new(0),
        expires_in,
        delay: Duration::ZERO,
    }
}

/// Answers with `replies` in turn (the last one forever) and notes when each request arrived.
#[derive(Clone)]
struct Sequence {
    replies: Arc<Vec<ResponseTemplate>>,
    arrived: Arc<Mutex<Vec<Instant>>>,
}

impl Sequence {
    fn new(replies: Vec<ResponseTemplate>) -> Sequence {
        Sequence {
            replies: Arc::new(replies),
            arrived: Arc::default(),
        }
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.arrived.lock().unwrap().clone()
    }
}

impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut arrived = self.arrived.lock().unwrap();
        let i = arrived.len().min(self.replies.len() - 1);
        arrived.push(Instant::now());
        self.replies[i].clone()
    }
}

/// A mock server and a provider pointed at it. For Aerospike, a token endpoint issuing `tok-1`,
/// `tok-2`, ... is mounted at low priority: a test may mount its own at priority 1.
struct Rig {
    server: MockServer,
    provider: Provider,
    tokens: Option<Arc<TokenSource>>,
}

async fn rig(kind: ProviderKind) -> Rig {
    rig_with(kind, Duration::from_secs(5), TokenBody::Form, 3600.0).await
}

async fn rig_with(kind: ProviderKind, timeout: Duration, body: TokenBody, expires_in: f64) -> Rig {
    let server = MockServer::start().await;
    let http = providers::client(timeout).unwrap();
    let (auth, tokens) = match kind {
        Aerospike => {
            Mock::given(method("POST"))
                .and(path(TOKEN_PATH))
                .respond_with(token_issuer(expires_in))
                .with_priority(10)
                .mount(&server)
                .await;
            let source = Arc::new(TokenSource::new(
                http.clone(),
                format!("{}{TOKEN_PATH}", server.uri()),
                secret(CLIENT_ID),
                secret(CLIENT_SECRET),
                body,
            ));
            (Auth::OAuth(source.clone()), Some(source))
        }
        Aitronos | Cognee => (Auth::header("x-api-key", "", &secret(KEY)).unwrap(), None),
        Factory | Telnyx => (Auth::bearer(&secret(KEY)).unwrap(), None),
    };
    // The member list every lane reads first (its preflight), in the page's shape, where the
    // target is no longer listed.
    let (m, p) = list_route(kind);
    Mock::given(method(m))
        .and(path(p))
        .respond_with(ResponseTemplate::new(200).set_body_json(admin_only_list(kind)))
        .with_priority(20)
        .mount(&server)
        .await;
    let adapter = providers::adapter(kind, &base_url(kind, &server.uri()));
    Rig {
        provider: Provider::new(adapter, auth, http),
        server,
        tokens,
    }
}

impl Rig {
    fn grants(&self) -> u64 {
        self.tokens.as_ref().map_or(0, |t| t.grants())
    }
}

/// The requests `server` received on `path`.
async fn received(server: &MockServer, path: &str) -> Vec<Request> {
    let all = server.received_requests().await.unwrap_or_default();
    all.into_iter().filter(|r| r.url.path() == path).collect()
}

/// A mock for `kind`'s removal: method, path, credential header and User-Agent must all match.
fn removal(kind: ProviderKind) -> MockBuilder {
    let (m, p) = route(kind);
    let (name, value) = auth_header(kind);
    Mock::given(method(m))
        .and(path(p))
        .and(header(name, value.as_str()))
        .and(header("user-agent", UA))
}

fn policy() -> Policy {
    Policy {
        max_attempts: 5,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_elapsed: Duration::from_secs(10),
        on_conflict: OnConflict::Retry,
        max_conflict_retries: 3,
        max_rate_limit_wait: Duration::from_secs(10),
    }
}

fn lane(provider: Provider, policy: Policy) -> Lane {
    lane_with_metrics(provider, policy, &Metrics::new())
}

fn lane_with_metrics(provider: Provider, policy: Policy, metrics: &Metrics) -> Lane {
    let name: Arc<str> = Arc::from(provider.kind().as_str());
    let lane_metrics = metrics.lane(&name);
    Lane::new(
        LaneId(0),
        name,
        provider,
        LaneSettings {
            pace: offboard::lane::adapt::Start::Fixed(1000.0),
            burst: 100,
            max_in_flight: 10,
            circuit_after: 3,
            policy,
            protected: Default::default(),
        },
        lane_metrics,
    )
}

fn job(kind: ProviderKind, n: u32) -> Job {
    Job {
        id: format!("job-{n}").into(),
        line: None,
        lane: LaneId(0),
        provider: Arc::from(kind.as_str()),
        subject: Subject::Known(target(kind)),
        reason: None,
        requested_by: None,
        due: None,
    }
}

fn assert_failed(record: &Record, reason: &str, attempts: u32) {
    assert_eq!(record.outcome, Outcome::Failed, "{record:?}");
    assert_eq!(
        record.reason.map(|r| r.as_str()),
        Some(reason),
        "{record:?}"
    );
    assert_eq!(record.attempts, attempts, "{record:?}");
}

/// Removals with `tok-1` are refused as expired (after `tok1_ok` successes); `tok-2` works.
async fn expiring_token_rig(tok1_ok: u64) -> Rig {
    let rig = rig(Aerospike).await;
    let with = aerospike_removal_with;
    if tok1_ok > 0 {
        with("tok-1")
            .respond_with(success(Aerospike))
            .up_to_n_times(tok1_ok)
            .with_priority(1)
            .mount(&rig.server)
            .await;
    }
    with("tok-1")
        .respond_with(error_body(
            Aerospike,
            401,
            "urn:aerospike:errors:auth:token-expired",
            "The access token expired.",
        ))
        .with_priority(2)
        .mount(&rig.server)
        .await;
    with("tok-2")
        .respond_with(success(Aerospike))
        .mount(&rig.server)
        .await;
    rig
}

/// An Aerospike removal carrying `Bearer <token>`.
fn aerospike_removal_with(token: &str) -> MockBuilder {
    Mock::given(method("DELETE"))
        .and(path(route(Aerospike).1))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .and(header("user-agent", UA))
}
