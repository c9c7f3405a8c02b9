//! Every documented answer, read and classified.

use super::*;

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
                // The page gives the 404 no meaning: absent only once the member list agrees.
                "404 not a member",
                error_body(k, 404, "Not Found", "User not found in organization"),
                Want::Unconfirmed,
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
                // We always send `confirm: true`: the body was lost on the way.
                Want::Fail(FailReason::BodyLost),
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
                // Not on the page (a typo'd id may answer the same): absent only once the member
                // list agrees.
                "404 USER_NOT_FOUND",
                error_body(k, 404, "USER_NOT_FOUND", "User not found."),
                Want::Unconfirmed,
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
                // What the page says it is: our key lacks the permission. A credential failure
                // (the circuit counts it); the owner is protected before sending instead.
                Want::Fail(FailReason::Forbidden),
            ),
            case(
                "404 10005",
                error_body(
                    k,
                    404,
                    "10005",
                    "The requested resource or URL could not be found.",
                ),
                // "The requested resource or URL could not be found": believed only once the
                // member list agrees.
                Want::Unconfirmed,
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
