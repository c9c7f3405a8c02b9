//! The lane's attempt loop.

use super::*;

// ---------------------------------------------------------------------------------------------
// 5. The lane's attempt loop.
// ---------------------------------------------------------------------------------------------

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
            // The preflight's read (where the list comes whole or marks the owner, the list
            // itself), then the two removal attempts.
            format!(
                "offboard_provider_requests_total{{operation=\"{}\",provider=\"{kind}\",status=\"200\"}} 1",
                if matches!(kind, Aerospike | Cognee | Telnyx) {
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
    assert_eq!(lane.counts().2, 1, "one 429 answered");
    let at = seq.arrivals();
    assert_eq!(at.len(), 2);
    let gap = at[1] - at[0];
    assert!(
        // At least the 1 s asked for; far less than a backoff cap or a second wait.
        gap >= Duration::from_millis(950) && gap < Duration::from_secs(5),
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
    assert_eq!(fourth.reason.map(|r| r.as_str()), Some("circuit_open"));
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

/// Every request of one organization as it arrived: (when, method, offset asked or user).
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(Instant, String, String)>>>);

/// Aerospike's list, 250 members a hundred to a page and slow, and its removals: a 404 for
/// `USER_UUID` (not on the list, so it is confirmed by a whole read), a slow 204 for others.
struct SlowOrg(Arrivals);

impl Respond for SlowOrg {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let m = r.method.as_str().to_owned();
        if m == "GET" {
            let offset: usize = r
                .url
                .query_pairs()
                .find(|(k, _)| k == "offset")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            self.0
                .0
                .lock()
                .unwrap()
                .push((Instant::now(), m, offset.to_string()));
            let members: Vec<_> = (offset..(offset + 100).min(250))
                .map(|i| json!({"id": format!("00000000-0000-4000-8000-{i:012}"),
                    "email": format!("p{i}@example.com"), "role": if i == 0 { "OrgOwner" } else { "OrgAdmin" },
                    "firstName": "A", "lastName": "B", "createdAt": "2024-01-01T00:00:00Z"}))
                .collect();
            return ResponseTemplate::new(200)
                .set_body_json(json!({"count": members.len(),
                    "meta": {"total": 250, "limit": 100, "offset": offset}, "members": members}))
                .set_delay(Duration::from_millis(150));
        }
        let user = r.url.path().rsplit('/').next().unwrap().to_owned();
        self.0
            .0
            .lock()
            .unwrap()
            .push((Instant::now(), m, user.clone()));
        if user == USER_UUID {
            return error_body(
                Aerospike,
                404,
                "urn:aerospike:errors:resource:not-found",
                "not found",
            );
        }
        success(Aerospike).set_delay(Duration::from_millis(100))
    }
}

/// While a whole member list is read to confirm a 404, the organization sends no removal: one
/// between two pages would shift the pages after it and pass a member by unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_removal_is_sent_while_a_whole_list_is_read() {
    let rig = rig(Aerospike).await;
    let arrivals = Arrivals::default();
    Mock::given(wiremock::matchers::path_regex("^/v1/organization/members"))
        .respond_with(SlowOrg(arrivals.clone()))
        .with_priority(1)
        .mount(&rig.server)
        .await;
    let lane = Arc::new(lane(rig.provider, policy()));
    // The preflight's read first, so what follows is the confirmation's.
    lane.preflight(None).await.unwrap();
    let absent = job(Aerospike, 0);
    let mut others = Vec::new();
    for i in 1..=12u32 {
        let mut j = job(Aerospike, i);
        j.subject = Subject::Known(Target::Aerospike {
            user: Uuid::parse("user", &format!("00000000-0000-4000-8000-{:012}", i)).unwrap(),
        });
        others.push(j);
    }
    // The others start once the confirmation's read has begun (its first page asked for).
    let reading = || {
        let seen = arrivals.0.lock().unwrap();
        seen.iter()
            .position(|(_, m, u)| m == "DELETE" && u == USER_UUID)
            .is_some_and(|at| seen[at..].iter().any(|(_, m, _)| m == "GET"))
    };
    let (first, rest) = tokio::join!(lane.execute(&absent), async {
        let start = Instant::now();
        while !reading() {
            assert!(start.elapsed() < Duration::from_secs(10), "no read began");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        futures_util::future::join_all(others.iter().map(|j| lane.execute(j))).await
    });
    assert_eq!(first.outcome, Outcome::AlreadyAbsent, "{first:?}");
    assert!(
        rest.iter().all(|r| r.outcome == Outcome::Removed),
        "{rest:?}"
    );
    let seen = arrivals.0.lock().unwrap().clone();
    // The confirmation's pages: the GETs after the 404.
    let asked = seen
        .iter()
        .position(|(_, m, u)| m == "DELETE" && u == USER_UUID)
        .unwrap();
    let pages: Vec<Instant> = seen[asked..]
        .iter()
        .filter(|(_, m, _)| m == "GET")
        .map(|(at, _, _)| *at)
        .collect();
    assert_eq!(pages.len(), 3, "one whole read of three pages: {seen:?}");
    let (from, to) = (pages[0], pages[2] + Duration::from_millis(150));
    let during: Vec<_> = seen
        .iter()
        .filter(|(at, m, _)| m == "DELETE" && *at > from && *at < to)
        .collect();
    assert!(
        during.is_empty(),
        "removals sent while the list was read: {during:?}"
    );
    // They were asked for during the read, and sent once it ended.
    assert!(
        seen.iter()
            .any(|(at, m, u)| m == "DELETE" && u != USER_UUID && *at >= to),
        "{seen:?}"
    );
}
