//! Aerospike tokens that expire mid-run never fail a job while the token endpoint grants new ones:
//! a refused token is dropped by its generation, not by timing, and a job fetches a newer one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use offboard::job::{Job, LaneId, ProviderKind, Subject, Target, Uuid};
use offboard::lane::{Lane, LaneSettings};
use offboard::metrics::Metrics;
use offboard::outcome::Outcome;
use offboard::providers::auth::{TokenBody, TokenSource};
use offboard::providers::{self, Auth, Provider};
use offboard::retry::{OnConflict, Policy};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Tokens live this long at the server, whatever `expires_in` says: the provider may revoke early.
const LIFE: Duration = Duration::from_secs(1);

/// The token endpoint and the API in one: tokens `t-N` issued with their time; a request whose
/// token is older than [`LIFE`] gets Aerospike's 401 `token-expired`. Every `fault_every`th token
/// request is answered 429 or 503 instead (alternately), when set.
struct Provider2 {
    issued: Mutex<HashMap<String, Instant>>,
    token_requests: AtomicUsize,
    fault_every: usize,
    expired: AtomicUsize,
    removed: AtomicUsize,
}

struct Tokens(Arc<Provider2>);
struct Api(Arc<Provider2>);

impl Respond for Tokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let s = &self.0;
        let n = s.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
        if s.fault_every > 0 && n % s.fault_every == 0 {
            return if (n / s.fault_every) % 2 == 0 {
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "0")
                    .set_body_json(json!({"error": "slow_down"}))
            } else {
                ResponseTemplate::new(503)
                    .set_body_json(json!({"error": "temporarily_unavailable"}))
            };
        }
        let token = format!("t-{n}");
        s.issued
            .lock()
            .unwrap()
            .insert(token.clone(), Instant::now());
        // It claims a longer life than the server grants: revocation and clock skew look alike.
        ResponseTemplate::new(200).set_body_json(
            json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
        )
    }
}

impl Respond for Api {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let s = &self.0;
        let token = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let fresh = s
            .issued
            .lock()
            .unwrap()
            .get(token)
            .is_some_and(|at| at.elapsed() < LIFE);
        if !fresh {
            s.expired.fetch_add(1, Ordering::SeqCst);
            return ResponseTemplate::new(401).set_body_raw(
                json!({"type": "urn:aerospike:errors:auth:token-expired", "title": "Unauthorized",
                       "status": 401, "detail": "The access token expired."})
                .to_string(),
                "application/problem+json",
            );
        }
        if r.method.as_str() == "GET" {
            // The organization's owner, whom nobody removes: a list is never empty.
            return ResponseTemplate::new(200).set_body_json(json!({
                "count": 1, "meta": {"total": 1, "limit": 100, "offset": 0},
                "members": [{"id": "9c0d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f", "email": "owner@example.com",
                    "role": "OrgOwner", "firstName": "Org", "lastName": "Owner",
                    "createdAt": "2024-01-01T00:00:00Z"}]
            }));
        }
        s.removed.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(204).insert_header("x-request-id", "req")
    }
}

fn uuid(i: u32) -> Uuid {
    Uuid::parse("user", &format!("00000000-0000-4000-8000-{i:012}")).unwrap()
}

async fn run(jobs: u32, in_flight: usize, fault_every: usize) -> (Vec<Outcome>, Arc<Provider2>) {
    let server = MockServer::start().await;
    let state = Arc::new(Provider2 {
        issued: Default::default(),
        token_requests: AtomicUsize::new(0),
        fault_every,
        expired: AtomicUsize::new(0),
        removed: AtomicUsize::new(0),
    });
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(Tokens(state.clone()))
        .mount(&server)
        .await;
    Mock::given(path_regex("^/v1/organization/members"))
        .respond_with(Api(state.clone()))
        .mount(&server)
        .await;
    let http = providers::client(Duration::from_secs(5)).unwrap();
    let source = TokenSource::new(
        http.clone(),
        format!("{}/oauth/token", server.uri()),
        SecretString::from("id".to_owned()),
        SecretString::from("secret".to_owned()),
        TokenBody::Form,
    );
    let provider = Provider::new(
        providers::adapter(ProviderKind::Aerospike, &format!("{}/v1", server.uri())),
        Auth::OAuth(Arc::new(source)),
        http,
    );
    let lane = Arc::new(Lane::new(
        LaneId(0),
        Arc::from("aerospike"),
        provider,
        LaneSettings {
            // Fast enough that each token serves a few hundred requests, then expires under them.
            pace: offboard::lane::adapt::Start::Fixed(800.0),
            burst: 16,
            max_in_flight: in_flight as u32,
            circuit_after: 3,
            policy: Policy {
                max_attempts: 5,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(50),
                max_elapsed: Duration::from_secs(30),
                on_conflict: OnConflict::Retry,
                max_conflict_retries: 3,
                max_rate_limit_wait: Duration::from_secs(30),
            },
            protected: Default::default(),
        },
        Metrics::new().lane("aerospike"),
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (lane, next, outcomes) = (lane.clone(), next.clone(), outcomes.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as u32;
                if i >= jobs {
                    return;
                }
                let job = Job {
                    id: format!("job-{i}").into(),
                    line: None,
                    lane: LaneId(0),
                    provider: Arc::from("aerospike"),
                    subject: Subject::Known(Target::Aerospike { user: uuid(i) }),
                    reason: None,
                    requested_by: None,
                    due: None,
                };
                let r = lane.execute(&job).await;
                assert!(
                    r.outcome == Outcome::Removed,
                    "job {i} ended {:?}: {:?}",
                    r.outcome,
                    r.error
                );
                outcomes.lock().unwrap().push(r.outcome);
            }
        });
    }
    let deadline = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(done) = workers.join_next().await {
            done.expect("no job failed");
        }
    });
    deadline.await.expect("2,000 jobs within two minutes");
    let outcomes = outcomes.lock().unwrap().clone();
    (outcomes, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expiring_every_second_fail_no_job() {
    let (outcomes, state) = run(2000, 8, 0).await;
    assert_eq!(outcomes.len(), 2000);
    assert_eq!(state.removed.load(Ordering::SeqCst), 2000);
    assert!(
        state.expired.load(Ordering::SeqCst) > 0,
        "the test must see tokens expire under requests in flight"
    );
    assert!(
        state.token_requests.load(Ordering::SeqCst) >= 2,
        "tokens were renewed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_answering_429_and_503_now_and_then_fails_no_job() {
    let (outcomes, state) = run(2000, 8, 3).await;
    assert_eq!(outcomes.len(), 2000);
    assert_eq!(state.removed.load(Ordering::SeqCst), 2000);
    assert!(state.expired.load(Ordering::SeqCst) > 0);
    assert!(
        state.token_requests.load(Ordering::SeqCst) >= 3,
        "faults were met"
    );
}
