//! The exact request each API page asks for.

use super::*;

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
