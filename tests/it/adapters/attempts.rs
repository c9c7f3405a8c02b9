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
