//! Aerospike's token.

use super::*;

// ---------------------------------------------------------------------------------------------
// 3. Aerospike's token.
// ---------------------------------------------------------------------------------------------

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
    assert_eq!(record.reason.map(|r| r.as_str()), Some("preflight_failed"));
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
