//! The five adapters against real HTTP on loopback (wiremock): the exact request each API page asks
//! for, how every documented answer is read and classified, Aerospike's token, transport failures,
//! and the lane's attempt loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use offboard::job::{
    Email, Job, LaneId, OpaqueId, PrefixedId, ProviderKind, Subject, Target, Uuid,
};
use offboard::lane::{Lane, LaneSettings};
use offboard::metrics::Metrics;
use offboard::providers::auth::{TokenBody, TokenSource};
use offboard::providers::{self, Answer, Auth, Hint, Provider, Transport};
use offboard::report::{Outcome, Record};
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

/// An empty member list in each page's documented shape.
fn empty_list(kind: ProviderKind) -> serde_json::Value {
    match kind {
        Factory => json!({"users": [], "pagination": {"hasMore": false, "nextCursor": null}}),
        Aitronos => json!({"users": [], "total_users_count": 0, "skip": 0, "take": 1}),
        Telnyx => {
            json!({"data": [], "meta": {"page_number": 1, "page_size": 1, "total_pages": 0, "total_results": 0}})
        }
        Aerospike => {
            json!({"count": 0, "meta": {"total": 0, "limit": 1, "offset": 0}, "members": []})
        }
        Cognee => json!([]),
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
    // The member list every lane reads first (its preflight), in the page's shape, empty.
    let (m, p) = list_route(kind);
    Mock::given(method(m))
        .and(path(p))
        .respond_with(ResponseTemplate::new(200).set_body_json(empty_list(kind)))
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

// ---------------------------------------------------------------------------------------------
// 1. The exact request.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn each_adapter_sends_exactly_the_request_its_page_documents() {
    for kind in ProviderKind::ALL {
        let rig = rig(kind).await;
        let mock = match kind {
            Factory => removal(kind).and(query_param("email", EMAIL)),
            Aitronos => removal(kind)
                .and(header("content-type", "application/json"))
                .and(body_json(json!({"confirm": true}))),
            _ => removal(kind),
        };
        mock.respond_with(success(kind))
            .expect(1)
            .mount(&rig.server)
            .await;

        let result = rig.provider.remove(&target(kind)).await;
        assert_eq!(classify(&result, false), Decision::Removed, "{kind}");
        rig.server.verify().await;

        let sent = received(&rig.server, &route(kind).1).await;
        assert_eq!(sent.len(), 1, "{kind}: one removal request");
        let sent = &sent[0];
        match kind {
            // `+` and `@` percent-encoded: a raw `+` would reach the server as a space.
            Factory => assert_eq!(
                sent.url.query(),
                Some("email=jane.doe%2Boffboard%40example.com")
            ),
            _ => assert_eq!(sent.url.query(), None, "{kind}: no query"),
        }
        if kind != Aitronos {
            assert!(sent.body.is_empty(), "{kind}: no body, got {:?}", sent.body);
            assert!(
                sent.headers.get("content-type").is_none(),
                "{kind}: no content type without a body"
            );
        }
        let other_auth = if auth_header(kind).0 == "authorization" {
            "x-api-key"
        } else {
            "authorization"
        };
        assert!(
            sent.headers.get(other_auth).is_none(),
            "{kind}: only one credential header"
        );
        if kind == Aerospike {
            assert_eq!(rig.grants(), 1);
            assert_eq!(received(&rig.server, TOKEN_PATH).await.len(), 1);
        }
    }
}

#[tokio::test]
async fn aitronos_sends_the_transfer_department_when_given() {
    let rig = rig(Aitronos).await;
    removal(Aitronos)
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({"confirm": true, "transfer_resources_to_department_id": DEPT}),
        ))
        .respond_with(success(Aitronos))
        .expect(1)
        .mount(&rig.server)
        .await;
    let Target::Aitronos {
        organization, user, ..
    } = target(Aitronos)
    else {
        unreachable!()
    };
    let with_transfer = Target::Aitronos {
        organization,
        user,
        transfer_to: Some(PrefixedId::parse("transfer_to", "dept_", DEPT).unwrap()),
    };
    let result = rig.provider.remove(&with_transfer).await;
    assert_eq!(classify(&result, false), Decision::Removed);
}

// ---------------------------------------------------------------------------------------------
// 2. Every documented answer, read and classified.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Want {
    Removed,
    Absent,
    Fail(FailReason),
    /// A 404 the page does not document: absent only once the member list agrees.
    Unconfirmed,
    /// Retry for this reason, whatever the wait.
    Retry(RetryReason),
    /// Retry for this reason after a wait within `[lo, hi]`.
    RetryAfter(RetryReason, Duration, Duration),
}

impl Want {
    fn matches(self, d: Decision) -> bool {
        match (self, d) {
            (Want::Removed, Decision::Removed)
            | (Want::Absent, Decision::AlreadyAbsent)
            | (Want::Unconfirmed, Decision::AbsentUnconfirmed) => true,
            (Want::Fail(w), Decision::Fail { reason }) => w == reason,
            (Want::Retry(w), Decision::Retry { reason, .. }) => w == reason,
            (Want::RetryAfter(w, lo, hi), Decision::Retry { reason, after }) => {
                w == reason && after.is_some_and(|a| lo <= a && a <= hi)
            }
            _ => false,
        }
    }
}

struct Case {
    name: &'static str,
    /// Made when the case runs, so a reply that names a moment (an epoch reset, an HTTP date)
    /// is always that far ahead, however long the cases before it took.
    reply: Box<dyn Fn() -> ResponseTemplate>,
    want: Want,
    /// The error read from the body: code, and a part of the message.
    error: Option<(Option<&'static str>, &'static str)>,
    request_id: Option<&'static str>,
}

fn case(name: &'static str, reply: ResponseTemplate, want: Want) -> Case {
    timed(name, move || reply.clone(), want)
}

/// A case whose reply is made when it runs (see [`Case::reply`]).
fn timed(name: &'static str, reply: impl Fn() -> ResponseTemplate + 'static, want: Want) -> Case {
    Case {
        name,
        reply: Box::new(reply),
        want,
        error: None,
        request_id: None,
    }
}

impl Case {
    fn error(mut self, code: Option<&'static str>, message: &'static str) -> Case {
        self.error = Some((code, message));
        self
    }

    fn request_id(mut self, id: &'static str) -> Case {
        self.request_id = Some(id);
        self
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Answers every provider can give: server errors, a conflict, and a bare 404 from a wrong URL.
fn common_cases(kind: ProviderKind) -> Vec<Case> {
    let id = if kind == Aitronos {
        "trace-500"
    } else {
        "req-500"
    };
    vec![
        case(
            "500",
            error_body(kind, 500, "internal_error", "Internal Server Error"),
            Want::Retry(RetryReason::ServerError),
        )
        .request_id(id),
        case(
            "503",
            error_body(kind, 503, "unavailable", "Service Unavailable"),
            Want::Retry(RetryReason::ServerError),
        )
        .error(Some("unavailable"), "Service Unavailable"),
        case(
            "409",
            error_body(kind, 409, "conflict", "Conflict"),
            Want::Retry(RetryReason::Conflict),
        ),
        case(
            "bare 404 (wrong URL)",
            ResponseTemplate::new(404),
            Want::Fail(FailReason::NotFound),
        )
        .error(None, "Not Found"),
    ]
}

async fn run_cases(kind: ProviderKind, specific: Vec<Case>) {
    for c in specific.into_iter().chain(common_cases(kind)) {
        let rig = rig(kind).await;
        removal(kind)
            .respond_with((c.reply)())
            .expect(1)
            .mount(&rig.server)
            .await;
        let result = rig.provider.remove(&target(kind)).await;
        let decision = classify(&result, false);
        let label = format!("{kind} {}", c.name);
        assert!(
            c.want.matches(decision),
            "{label}: got {decision:?}, want {:?}",
            c.want
        );
        let answer: Answer = result.unwrap_or_else(|e| panic!("{label}: no answer: {e}"));
        match c.error {
            Some((code, message)) => {
                let e = answer
                    .error
                    .as_ref()
                    .unwrap_or_else(|| panic!("{label}: no error read"));
                assert_eq!(e.code.as_deref(), code, "{label}: error code");
                assert!(
                    e.message.contains(message),
                    "{label}: message {:?} lacks {message:?}",
                    e.message
                );
            }
            None if matches!(c.want, Want::Removed) => {
                assert!(answer.error.is_none(), "{label}: {:?}", answer.error)
            }
            None => assert!(answer.error.is_some(), "{label}: an error is recorded"),
        }
        if let Some(id) = c.request_id {
            assert_eq!(
                answer.request_id.as_deref(),
                Some(id),
                "{label}: request id"
            );
        }
        rig.server.verify().await;
    }
}

#[tokio::test]
async fn factory_answers() {
    let k = Factory;
    run_cases(
        k,
        vec![
            case("204", success(k), Want::Removed),
            case(
                "204 with {}",
                ResponseTemplate::new(204).set_body_json(json!({})),
                Want::Removed,
            ),
            case(
                "400",
                error_body(k, 400, "Bad Request", "Invalid email"),
                Want::Fail(FailReason::Rejected),
            )
            .error(Some("Bad Request"), "Invalid email"),
            case(
                "401",
                error_body(k, 401, "Unauthorized", "Invalid API key"),
                Want::Fail(FailReason::Unauthorized),
            )
            .error(Some("Unauthorized"), "Invalid API key"),
            case(
                "403",
                error_body(k, 403, "Forbidden", "Admin role required"),
                Want::Fail(FailReason::Forbidden),
            ),
            case(
                "404 not a member",
                error_body(k, 404, "Not Found", "User not found in organization"),
                Want::Absent,
            )
            .error(Some("Not Found"), "User not found in organization")
            .request_id("req-404"),
            case(
                "404 from something else (FastAPI's default)",
                ResponseTemplate::new(404).set_body_json(json!({"detail": "Not Found"})),
                Want::Fail(FailReason::NotFound),
            ),
            case(
                "429 Retry-After: 3",
                error_body(k, 429, "Too Many Requests", "Slow down")
                    .insert_header("retry-after", "3"),
                Want::RetryAfter(RetryReason::RateLimited, secs(3.0), secs(3.0)),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn aitronos_answers() {
    let k = Aitronos;
    run_cases(
        k,
        vec![
            case("204", success(k), Want::Removed),
            case(
                "422 CONFIRMATION_REQUIRED",
                error_body(
                    k,
                    422,
                    "CONFIRMATION_REQUIRED",
                    "Please confirm this action by setting confirm to true.",
                ),
                Want::Fail(FailReason::Rejected),
            )
            .error(Some("CONFIRMATION_REQUIRED"), "Please confirm")
            .request_id("trace-422"),
            case(
                "401 INVALID_API_KEY",
                error_body(k, 401, "INVALID_API_KEY", "The API key is invalid."),
                Want::Fail(FailReason::Unauthorized),
            )
            .error(Some("INVALID_API_KEY"), "invalid"),
            case(
                "401 API_KEY_EXPIRED",
                error_body(k, 401, "API_KEY_EXPIRED", "The API key expired."),
                Want::Fail(FailReason::Unauthorized),
            ),
            case(
                "403 CANNOT_DELETE_OWNER",
                error_body(
                    k,
                    403,
                    "CANNOT_DELETE_OWNER",
                    "The owner cannot be removed.",
                ),
                Want::Fail(FailReason::Refused),
            )
            .error(Some("CANNOT_DELETE_OWNER"), "owner"),
            case(
                "403 INSUFFICIENT_PERMISSIONS",
                error_body(k, 403, "INSUFFICIENT_PERMISSIONS", "Missing permission."),
                Want::Fail(FailReason::Forbidden),
            )
            .error(Some("INSUFFICIENT_PERMISSIONS"), "Missing permission."),
            case(
                "403 ORGANIZATION_ACCESS_DENIED",
                error_body(k, 403, "ORGANIZATION_ACCESS_DENIED", "No access."),
                // Scoped to this organization: the key's other organizations go on.
                Want::Fail(FailReason::OrganizationForbidden),
            ),
            case(
                "404 USER_NOT_FOUND",
                error_body(k, 404, "USER_NOT_FOUND", "User not found."),
                Want::Absent,
            )
            .request_id("trace-404"),
            case(
                "404 ORGANIZATION_NOT_FOUND",
                error_body(k, 404, "ORGANIZATION_NOT_FOUND", "Organization not found."),
                Want::Fail(FailReason::NotFound),
            ),
            timed(
                "429 X-RateLimit-Reset (epoch)",
                move || {
                    let reset = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                        + 5;
                    error_body(k, 429, "RATE_LIMIT_EXCEEDED", "Too many requests.")
                        .insert_header("x-ratelimit-reset", reset.to_string())
                },
                Want::RetryAfter(RetryReason::RateLimited, secs(3.5), secs(5.0)),
            ),
            case(
                "429 x-ratelimit-reset-requests",
                error_body(k, 429, "RATE_LIMIT_EXCEEDED", "Too many requests.")
                    .insert_header("x-ratelimit-reset-requests", "1.5s"),
                Want::RetryAfter(RetryReason::RateLimited, secs(1.5), secs(1.5)),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn telnyx_answers() {
    let k = Telnyx;
    run_cases(
        k,
        vec![
            case("200 with the user", success(k), Want::Removed),
            case(
                "400 10015",
                error_body(
                    k,
                    400,
                    "10015",
                    "The request failed because it was not well-formed.",
                ),
                Want::Fail(FailReason::Rejected),
            )
            .error(Some("10015"), "not well-formed"),
            case(
                "401 10009",
                error_body(
                    k,
                    401,
                    "10009",
                    "Could not understand the provided credentials.",
                ),
                Want::Fail(FailReason::Unauthorized),
            )
            .error(Some("10009"), "provided credentials"),
            case(
                "403 10010",
                error_body(
                    k,
                    403,
                    "10010",
                    "You are not authorized to access the requested resource.",
                ),
                // The page's 403 for this call, what the organization's owner gets: about this
                // user, never a reason to halt the lane.
                Want::Fail(FailReason::Refused),
            ),
            case(
                "404 10005",
                error_body(
                    k,
                    404,
                    "10005",
                    "The requested resource or URL could not be found.",
                ),
                Want::Absent,
            )
            .error(Some("10005"), "could not be found")
            .request_id("req-404"),
            case(
                "429 10011 x-ratelimit-reset: 4",
                error_body(k, 429, "10011", "Too many requests")
                    .insert_header("x-ratelimit-limit", "100")
                    .insert_header("x-ratelimit-remaining", "0")
                    .insert_header("x-ratelimit-reset", "4"),
                Want::RetryAfter(RetryReason::RateLimited, secs(4.0), secs(4.0)),
            )
            .error(Some("10011"), "Too many requests"),
        ],
    )
    .await;
}

#[tokio::test]
async fn aerospike_answers() {
    let k = Aerospike;
    run_cases(
        k,
        vec![
            case("204", success(k), Want::Removed)
                .request_id("b0658b67-8ea3-46de-a3b8-18c3f5347def"),
            case(
                "400 {code, message}",
                error_body(k, 400, "invalid_input", "userId must be a UUID"),
                Want::Fail(FailReason::Rejected),
            )
            .error(Some("invalid_input"), "userId must be a UUID"),
            case(
                "401 invalid_token (no refresh left)",
                error_body(k, 401, "invalid_token", "The access token expired."),
                Want::Fail(FailReason::Unauthorized),
            )
            .error(Some("invalid_token"), "expired"),
            case(
                "403",
                error_body(k, 403, "forbidden", "Missing scope update:org"),
                Want::Fail(FailReason::Forbidden),
            ),
            case(
                "404 problem not-found",
                error_body(
                    k,
                    404,
                    "urn:aerospike:errors:resource:not-found",
                    "No such member",
                ),
                // Not on the page: believed only once the member list agrees (the lane's job).
                Want::Unconfirmed,
            )
            .error(
                Some("urn:aerospike:errors:resource:not-found"),
                "No such member",
            )
            .request_id("req-404"),
            case(
                "404 {code, message}",
                error_body(k, 404, "not_found", "Member not found"),
                Want::Unconfirmed,
            ),
            timed(
                "429 problem with Retry-After as an HTTP date",
                move || {
                    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
                    error_body(
                        k,
                        429,
                        "urn:aerospike:errors:ratelimit:exceeded",
                        "Rate limit exceeded",
                    )
                    .insert_header("retry-after", date.as_str())
                },
                Want::RetryAfter(RetryReason::RateLimited, secs(3.5), secs(5.0)),
            )
            .error(
                Some("urn:aerospike:errors:ratelimit:exceeded"),
                "Rate limit",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn cognee_answers() {
    let k = Cognee;
    run_cases(
        k,
        vec![
            case("200 with a message", success(k), Want::Removed),
            case(
                "400 tenant owner",
                error_body(
                    k,
                    400,
                    "CogneeValidationError",
                    "Cannot remove the tenant owner from their own tenant.",
                ),
                Want::Fail(FailReason::Refused),
            )
            .error(Some("CogneeValidationError"), "tenant owner"),
            case(
                "401",
                error_body(k, 401, "", "Unauthorized"),
                Want::Fail(FailReason::Unauthorized),
            )
            .error(None, "Unauthorized"),
            case(
                "403",
                error_body(
                    k,
                    403,
                    "PermissionDeniedError",
                    "User does not have permission.",
                ),
                // Permission is per tenant: the entry's other tenants go on.
                Want::Fail(FailReason::OrganizationForbidden),
            )
            .error(Some("PermissionDeniedError"), "does not have permission"),
            case(
                "404 tenant not found",
                error_body(k, 404, "TenantNotFoundError", "Tenant not found."),
                Want::Fail(FailReason::NotFound),
            )
            .error(Some("TenantNotFoundError"), "Tenant not found."),
            case(
                "404 user not found",
                error_body(k, 404, "UserNotFoundError", "User not found."),
                Want::Fail(FailReason::NotFound),
            ),
            case(
                "404 user not in this tenant",
                error_body(k, 404, "", "User not found in this tenant."),
                Want::Absent,
            )
            .error(None, "User not found in this tenant.")
            .request_id("req-404"),
            case(
                "422 validation list",
                ResponseTemplate::new(422).set_body_json(json!({"detail": [{
                    "loc": ["path", "user_id"], "msg": "Input should be a valid UUID",
                    "type": "uuid_parsing"
                }]})),
                Want::Fail(FailReason::Rejected),
            )
            .error(
                Some("validation_error"),
                "path.user_id: Input should be a valid UUID",
            ),
            case(
                "429 Retry-After: 3",
                error_body(k, 429, "", "Too many requests").insert_header("retry-after", "3"),
                Want::RetryAfter(RetryReason::RateLimited, secs(3.0), secs(3.0)),
            ),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Aerospike's token.
// ---------------------------------------------------------------------------------------------

/// An Aerospike removal carrying `Bearer <token>`.
fn aerospike_removal_with(token: &str) -> MockBuilder {
    Mock::given(method("DELETE"))
        .and(path(route(Aerospike).1))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .and(header("user-agent", UA))
}

fn token_mock() -> MockBuilder {
    Mock::given(method("POST")).and(path(TOKEN_PATH))
}

#[tokio::test]
async fn aerospike_token_is_fetched_once_for_concurrent_removals() {
    let rig = rig(Aerospike).await;
    // Slow enough that all 20 removals want a token while the first grant is in flight.
    token_mock()
        .respond_with(TokenIssuer {
            delay: Duration::from_millis(200),
            ..token_issuer(3600.0)
        })
        .with_priority(1)
        .expect(1)
        .mount(&rig.server)
        .await;
    removal(Aerospike)
        .respond_with(success(Aerospike).set_delay(Duration::from_millis(50)))
        .expect(20)
        .mount(&rig.server)
        .await;
    let provider = Arc::new(rig.provider);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { classify(&p.remove(&target(Aerospike)).await, true) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Decision::Removed);
    }
    assert_eq!(rig.tokens.as_ref().unwrap().grants(), 1);
    assert_eq!(received(&rig.server, TOKEN_PATH).await.len(), 1);
    rig.server.verify().await;
}

async fn token_request_is(body: TokenBody, content_type: &str, matcher: impl Match + 'static) {
    let rig = rig_with(Aerospike, Duration::from_secs(5), body, 3600.0).await;
    token_mock()
        .and(header("content-type", content_type))
        .and(matcher)
        .respond_with(token_issuer(3600.0))
        .with_priority(1)
        .expect(1)
        .mount(&rig.server)
        .await;
    removal(Aerospike)
        .respond_with(success(Aerospike))
        .expect(1)
        .mount(&rig.server)
        .await;
    let result = rig.provider.remove(&target(Aerospike)).await;
    assert_eq!(classify(&result, true), Decision::Removed, "{body:?}");
    rig.server.verify().await;
}

#[tokio::test]
async fn aerospike_token_request_is_a_form_by_default_and_json_when_asked() {
    token_request_is(
        TokenBody::Form,
        "application/x-www-form-urlencoded",
        body_string(
            "grant_type=client_credentials&client_id=key-id-1&client_secret=s3cr%2Bt%2F%3D",
        ),
    )
    .await;
    token_request_is(
        TokenBody::Json,
        "application/json",
        body_json(json!({
            "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET
        })),
    )
    .await;
}

#[tokio::test]
async fn aerospike_token_is_renewed_when_it_runs_short() {
    let rig = rig_with(Aerospike, Duration::from_secs(5), TokenBody::Form, 1.0).await;
    removal(Aerospike)
        .respond_with(success(Aerospike))
        .expect(2)
        .mount(&rig.server)
        .await;
    aerospike_removal_with("tok-2")
        .respond_with(success(Aerospike))
        .expect(1)
        .mount(&rig.server)
        .await;
    for _ in 0..2 {
        let r = rig.provider.remove(&target(Aerospike)).await;
        assert_eq!(classify(&r, true), Decision::Removed);
    }
    assert_eq!(rig.grants(), 1, "a fresh token is reused");
    // expires_in 1: renewed a tenth of its life early, so stale after 0.9 s.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = rig.provider.remove(&target(Aerospike)).await;
    assert_eq!(classify(&r, true), Decision::Removed);
    assert_eq!(rig.grants(), 2, "a token near its expiry is renewed");
    rig.server.verify().await;
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

#[tokio::test]
async fn aerospike_401_drops_the_refused_token_generation_only() {
    // The token was cached by an earlier removal, then revoked by the provider.
    let rig = expiring_token_rig(1).await;
    let t = target(Aerospike);
    assert_eq!(
        classify(&rig.provider.remove(&t).await, true),
        Decision::Removed
    );

    // The first token fetched is generation 1: the refused request carried it.
    let sent = 1;
    let refused = rig.provider.remove(&t).await;
    let answer = refused.as_ref().unwrap();
    assert_eq!(answer.status.as_u16(), 401);
    assert_eq!(answer.hint, Hint::TokenExpired);
    assert_eq!(
        classify(&refused, true),
        Decision::Retry {
            reason: RetryReason::TokenRefresh,
            after: Some(Duration::ZERO)
        }
    );
    assert_eq!(
        classify(&refused, false),
        Decision::Fail {
            reason: FailReason::Unauthorized
        },
        "once a job's refreshes are spent, a 401 is final"
    );

    rig.provider.invalidate_token(sent);
    let again = rig.provider.remove(&t).await;
    assert_eq!(classify(&again, false), Decision::Removed);
    assert_eq!(rig.grants(), 2, "a new token was fetched");

    // A late refusal of the old token (generation 1) keeps the new one (generation 2).
    rig.provider.invalidate_token(sent);
    let third = rig.provider.remove(&t).await;
    assert_eq!(classify(&third, false), Decision::Removed);
    assert_eq!(
        rig.grants(),
        2,
        "the new token survives a stale invalidation"
    );
}

#[tokio::test]
async fn aerospike_token_endpoint_refusal_is_final_not_a_refresh_loop() {
    let rig = rig(Aerospike).await;
    token_mock()
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
        ))
        .with_priority(1)
        .expect(2)
        .mount(&rig.server)
        .await;
    removal(Aerospike)
        .respond_with(success(Aerospike))
        .expect(0)
        .mount(&rig.server)
        .await;
    let result = rig.provider.remove(&target(Aerospike)).await;
    let answer = result
        .as_ref()
        .expect("the token endpoint's refusal is an answer");
    assert_eq!(answer.status.as_u16(), 401);
    assert_eq!(answer.hint, Hint::TokenDenied);
    let message = &answer.error.as_ref().unwrap().message;
    assert!(message.contains("invalid_client"), "{message}");
    assert_eq!(
        classify(&result, true),
        Decision::Fail {
            reason: FailReason::Unauthorized
        }
    );
    assert_eq!(rig.grants(), 0);

    // Through the lane: its preflight asks for one token, is refused, and halts the entry
    // before any removal; no refresh loop.
    let lane = lane(rig.provider, policy());
    let record = lane.execute(&job(Aerospike, 1)).await;
    assert_eq!(record.outcome, Outcome::NotAttempted, "{record:?}");
    assert_eq!(record.reason, Some("preflight_failed"));
    assert_eq!(record.attempts, 0);
    let message = &record.error.as_ref().unwrap().message;
    assert!(message.contains("invalid_client"), "{message}");
    assert!(lane.halted().is_some());
    assert_eq!(
        received(&rig.server, TOKEN_PATH).await.len(),
        2,
        "one token request per attempt, no refresh loop"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. No answer: timeout, connection refused.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_slow_provider_times_out_for_every_adapter() {
    for kind in ProviderKind::ALL {
        let rig = rig_with(kind, Duration::from_millis(300), TokenBody::Form, 3600.0).await;
        removal(kind)
            .respond_with(success(kind).set_delay(Duration::from_secs(2)))
            .mount(&rig.server)
            .await;
        let started = Instant::now();
        let result = rig.provider.remove(&target(kind)).await;
        assert!(
            matches!(result, Err(Transport::Timeout(_))),
            "{kind}: {result:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(1500), "{kind}");
        assert!(matches!(
            classify(&result, true),
            Decision::Retry {
                reason: RetryReason::Timeout,
                ..
            }
        ));
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_connection_retry_for_every_adapter() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    for kind in ProviderKind::ALL {
        let http = providers::client(Duration::from_secs(2)).unwrap();
        let auth = match kind {
            Aerospike => Auth::OAuth(Arc::new(TokenSource::new(
                http.clone(),
                format!("{base}{TOKEN_PATH}"),
                secret(CLIENT_ID),
                secret(CLIENT_SECRET),
                TokenBody::Form,
            ))),
            _ => Auth::bearer(&secret(KEY)).unwrap(),
        };
        let provider = Provider::new(providers::adapter(kind, &base), auth, http);
        let result = provider.remove(&target(kind)).await;
        assert!(
            matches!(result, Err(Transport::Connect(_))),
            "{kind}: {result:?}"
        );
        assert_eq!(
            classify(&result, true),
            Decision::Retry {
                reason: RetryReason::Connection,
                after: None
            },
            "{kind}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. The lane's attempt loop.
// ---------------------------------------------------------------------------------------------

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
            rate_per_second: 1000.0,
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
    }
}

fn assert_failed(record: &Record, reason: &str, attempts: u32) {
    assert_eq!(record.outcome, Outcome::Failed, "{record:?}");
    assert_eq!(record.reason, Some(reason), "{record:?}");
    assert_eq!(record.attempts, attempts, "{record:?}");
}

#[tokio::test]
async fn lane_retries_a_503_then_records_the_removal_for_every_adapter() {
    for kind in ProviderKind::ALL {
        let rig = rig(kind).await;
        removal(kind)
            .respond_with(error_body(kind, 503, "unavailable", "try later"))
            .up_to_n_times(1)
            .with_priority(1)
            .expect(1)
            .mount(&rig.server)
            .await;
        removal(kind)
            .respond_with(success(kind))
            .expect(1)
            .mount(&rig.server)
            .await;
        let metrics = Metrics::new();
        let lane = lane_with_metrics(rig.provider, policy(), &metrics);
        let record = lane.execute(&job(kind, 1)).await;
        assert_eq!(record.outcome, Outcome::Removed, "{kind}: {record:?}");
        assert_eq!(record.attempts, 2, "{kind}");
        // Each event moved its metric: one 503, one success, one retry, two waits, none in flight.
        let text = metrics.render();
        let ok = if matches!(kind, Telnyx | Cognee) {
            200
        } else {
            204
        };
        for line in [
            format!(
                "offboard_provider_requests_total{{operation=\"remove\",provider=\"{kind}\",status=\"503\"}} 1"
            ),
            format!(
                "offboard_provider_requests_total{{operation=\"remove\",provider=\"{kind}\",status=\"{ok}\"}} 1"
            ),
            format!("offboard_retries_total{{provider=\"{kind}\",reason=\"server_error\"}} 1"),
            format!("offboard_retries_total{{provider=\"{kind}\",reason=\"rate_limited\"}} 0"),
            // The preflight's read (where the list comes whole, the list itself), then the two
            // removal attempts.
            format!(
                "offboard_provider_requests_total{{operation=\"{}\",provider=\"{kind}\",status=\"200\"}} 1",
                if matches!(kind, Aerospike | Cognee) {
                    "lookup"
                } else {
                    "preflight"
                }
            ),
            format!("offboard_provider_request_duration_seconds_count{{provider=\"{kind}\"}} 3"),
            format!("offboard_rate_limit_wait_seconds_count{{provider=\"{kind}\"}} 3"),
            format!("offboard_jobs_in_flight{{provider=\"{kind}\"}} 0"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{kind}: no `{line}` in\n{text}"
            );
        }
        assert_eq!(record.reason, None, "{kind}");
        assert!(record.error.is_none(), "{kind}: {record:?}");
        assert_eq!(
            record.http_status,
            Some(if matches!(kind, Telnyx | Cognee) {
                200
            } else {
                204
            }),
            "{kind}"
        );
        rig.server.verify().await;
    }
}

#[tokio::test]
async fn lane_waits_out_retry_after_before_the_next_request() {
    let rig = rig(Factory).await;
    let seq = Sequence::new(vec![
        error_body(Factory, 429, "Too Many Requests", "Slow down")
            .insert_header("retry-after", "1"),
        success(Factory),
    ]);
    removal(Factory)
        .and(query_param("email", EMAIL))
        .respond_with(seq.clone())
        .expect(2)
        .mount(&rig.server)
        .await;
    let lane = lane(rig.provider, policy());
    let record = lane.execute(&job(Factory, 1)).await;
    assert_eq!(record.outcome, Outcome::Removed, "{record:?}");
    assert_eq!(record.attempts, 2);
    assert_eq!(lane.stats.rate_limited.load(Ordering::Relaxed), 1);
    let at = seq.arrivals();
    assert_eq!(at.len(), 2);
    let gap = at[1] - at[0];
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_millis(2500),
        "second request {gap:?} after the first"
    );
    rig.server.verify().await;
}

#[tokio::test]
async fn lane_opens_its_circuit_after_three_401s_and_sends_nothing_more() {
    let rig = rig(Factory).await;
    removal(Factory)
        .respond_with(error_body(Factory, 401, "Unauthorized", "Invalid API key"))
        .expect(3)
        .mount(&rig.server)
        .await;
    let lane = lane(rig.provider, policy());
    for n in 1..=3 {
        let record = lane.execute(&job(Factory, n)).await;
        assert_failed(&record, "unauthorized", 1);
        assert_eq!(record.http_status, Some(401));
    }
    assert!(lane.halted().is_some(), "circuit open");
    let fourth = lane.execute(&job(Factory, 4)).await;
    assert_eq!(fourth.outcome, Outcome::NotAttempted, "{fourth:?}");
    assert_eq!(fourth.reason, Some("circuit_open"));
    assert_eq!(fourth.attempts, 0);
    // The preflight's read, then the three refused removals.
    assert_eq!(rig.server.received_requests().await.unwrap().len(), 4);
    rig.server.verify().await;
}

#[tokio::test]
async fn lane_conflict_fails_at_once_with_on_conflict_fail_and_retries_by_default() {
    let strict = rig(Factory).await;
    removal(Factory)
        .respond_with(error_body(
            Factory,
            409,
            "Conflict",
            "Membership is changing",
        ))
        .expect(1)
        .mount(&strict.server)
        .await;
    let fail_on_conflict = Policy {
        on_conflict: OnConflict::Fail,
        ..policy()
    };
    let record = lane(strict.provider, fail_on_conflict)
        .execute(&job(Factory, 1))
        .await;
    assert_failed(&record, "conflict", 1);
    assert_eq!(record.http_status, Some(409));
    strict.server.verify().await;

    let rig = rig(Factory).await;
    let seq = Sequence::new(vec![
        error_body(Factory, 409, "Conflict", "Membership is changing"),
        success(Factory),
    ]);
    removal(Factory)
        .respond_with(seq.clone())
        .expect(2)
        .mount(&rig.server)
        .await;
    let record = lane(rig.provider, policy()).execute(&job(Factory, 2)).await;
    assert_eq!(record.outcome, Outcome::Removed, "{record:?}");
    assert_eq!(record.attempts, 2);
}

#[tokio::test]
async fn lane_gives_up_after_max_attempts_of_503() {
    let rig = rig(Factory).await;
    removal(Factory)
        .respond_with(error_body(Factory, 503, "Service Unavailable", "down"))
        .expect(3)
        .mount(&rig.server)
        .await;
    let three = Policy {
        max_attempts: 3,
        ..policy()
    };
    let record = lane(rig.provider, three).execute(&job(Factory, 1)).await;
    assert_failed(&record, "retries_exhausted", 3);
    assert_eq!(record.http_status, Some(503));
    assert_eq!(record.provider_request_id.as_deref(), Some("req-503"));
    rig.server.verify().await;
}

#[tokio::test]
async fn lane_refreshes_a_revoked_aerospike_token_and_succeeds() {
    let rig = expiring_token_rig(1).await;
    let tokens = rig.tokens.clone().unwrap();
    let lane = lane(rig.provider, policy());
    let first = lane.execute(&job(Aerospike, 1)).await;
    assert_eq!(first.outcome, Outcome::Removed, "{first:?}");
    let second = lane.execute(&job(Aerospike, 2)).await;
    assert_eq!(second.outcome, Outcome::Removed, "{second:?}");
    assert_eq!(second.attempts, 2, "one refused, one with a new token");
    assert_eq!(tokens.grants(), 2);
}

#[tokio::test]
async fn lane_refreshes_a_token_refused_on_the_request_that_fetched_it() {
    // The first removal of a run fetches tok-1 itself and gets 401 token-expired.
    let rig = expiring_token_rig(0).await;
    let tokens = rig.tokens.clone().unwrap();
    let lane = lane(rig.provider, policy());
    let record = lane.execute(&job(Aerospike, 1)).await;
    assert_eq!(record.outcome, Outcome::Removed, "{record:?}");
    assert_eq!(record.attempts, 2);
    assert_eq!(tokens.grants(), 2);
}
