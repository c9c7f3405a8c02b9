//! No answer: timeout, connection refused.

use super::*;

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
        // Before the answer the server holds back for 2 s: the client's own timeout ended it.
        assert!(started.elapsed() < Duration::from_secs(2), "{kind}");
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
