//! The aerospike sandbox against its page: real HTTP on loopback.

use super::*;

#[tokio::test]
async fn aerospike_tokens_form_and_json_then_removal() {
    let sb = plain(seed_one_each()).await;
    let id = env(&sb, "SANDBOX_AEROSPIKE_CLIENT_ID");
    let secret = env(&sb, "SANDBOX_AEROSPIKE_CLIENT_SECRET");

    let r = client()
        .post(sb.token_url())
        .json(
            &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 300);
    let json_token = v["access_token"].as_str().unwrap().to_owned();
    let form_token = aerospike_token(&sb).await;
    assert_ne!(json_token, form_token);
    assert_eq!(sb.tokens_issued(), 2);

    let r = client()
        .post(sb.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "invalid_client"})
    );
    assert_eq!(sb.tokens_issued(), 2);

    let url = |u: &str| {
        format!(
            "{}/organization/members/{u}",
            sb.base_url(ProviderKind::Aerospike)
        )
    };
    let user = "B0658B67-8EA3-46DE-A3B8-18C3F5347DEF";
    // The older token is still valid.
    let r = client()
        .delete(url(user))
        .bearer_auth(&json_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers().contains_key("x-request-id"));
    assert!(!sb.is_member(ProviderKind::Aerospike, None, &user.to_lowercase()));

    let r = client()
        .delete(url(user))
        .bearer_auth(&form_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "urn:aerospike:errors:resource:not-found");
    assert_eq!(v["status"], 404);
    assert!(v["title"].is_string() && v["detail"].is_string() && v["message"].is_string());

    let r = client()
        .delete(url(user))
        .bearer_auth("made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(sb.log().len(), 2, "unauthenticated requests are not logged");
}

#[tokio::test]
async fn aerospike_expired_token_is_401_token_expired() {
    let mut opts = SandboxOptions::plain(seed_one_each());
    opts.token_ttl = Duration::from_millis(300);
    let sb = Sandbox::start(opts).await.unwrap();
    let token = aerospike_token(&sb).await;
    let url = format!(
        "{}/organization/members/b0658b67-8ea3-46de-a3b8-18c3f5347def",
        sb.base_url(ProviderKind::Aerospike)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = client()
        .delete(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "urn:aerospike:errors:auth:token-expired");
    assert!(sb.is_member(
        ProviderKind::Aerospike,
        None,
        "b0658b67-8ea3-46de-a3b8-18c3f5347def"
    ));

    let fresh = aerospike_token(&sb).await;
    let r = client()
        .delete(&url)
        .bearer_auth(&fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(sb.tokens_issued(), 2);
}

#[tokio::test]
async fn aerospike_lists_members_a_page_at_a_time() {
    let sb = plain(seed_listed()).await;
    let r = aerospike_list(&sb, "made-up").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    let token = aerospike_token(&sb).await;
    let r = aerospike_list(&sb, &token).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.unwrap();
    // No limit: the spec's default of 10, more than the five there are.
    assert_eq!(v["count"], 5);
    assert_eq!(v["meta"], json!({"total": 5, "limit": 10, "offset": 0}));
    let emails = emails_in(&v["members"]);
    assert_eq!(emails.len(), 5);
    // No server-side filter: "ann" matches several, the client must match exactly.
    let ann: Vec<_> = emails
        .iter()
        .filter(|e| e.to_lowercase().contains("ann"))
        .collect();
    assert_eq!(ann, [ANN, JOANN]);
    let members = v["members"].as_array().unwrap();
    let joann = user_of(ProviderKind::Aerospike, JOANN);
    // A one-word local part: the domain's first label stands in for the (required) last name.
    assert_eq!(
        members.iter().find(|m| m["email"] == JOANN),
        Some(&json!({
            "id": joann,
            "email": JOANN,
            "role": "OrgAdmin",
            "firstName": "JoAnn",
            "lastName": "X",
            "createdAt": created_at(joann),
        }))
    );
    let owner = members.iter().find(|m| m["id"] == OWNER_UUID).unwrap();
    assert_eq!(owner["role"], "OrgOwner");
    // Ids are canonical (lowercase), however the seed spelled them.
    assert!(
        members
            .iter()
            .any(|m| m["id"] == NO_EMAIL_UUID.to_lowercase())
    );

    // limit and offset pick a window of the listing order (email, then user).
    let v: Value = aerospike_list_q(&sb, &token, &[("limit", "2"), ("offset", "1")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["count"], 2);
    assert_eq!(v["meta"], json!({"total": 5, "limit": 2, "offset": 1}));
    assert_eq!(&emails_in(&v["members"])[..], &emails[1..3]);

    let bob = user_of(ProviderKind::Aerospike, BOB);
    assert_eq!(
        remove(&sb, ProviderKind::Aerospike, None, bob)
            .await
            .status(),
        204
    );
    let v: Value = aerospike_list(&sb, &token).await.json().await.unwrap();
    assert_eq!(emails_in(&v["members"]).len(), 4);
    assert!(!emails_in(&v["members"]).contains(&BOB.to_owned()));
    assert_eq!((&v["count"], &v["meta"]["total"]), (&json!(4), &json!(4)));

    assert_eq!(
        lookups(&sb),
        [
            (ProviderKind::Aerospike, String::new(), 200),
            (ProviderKind::Aerospike, String::new(), 200),
            (ProviderKind::Aerospike, String::new(), 200),
        ]
    );
}

/// `limit` outside 1..=100 or not an integer, `offset` below 0 or not an integer: 400
/// `validation:failed`, naming the parameter, whatever the paging mode.
#[tokio::test]
async fn aerospike_refuses_a_limit_or_offset_outside_the_spec() {
    for disabled in [false, true] {
        let mut opts = SandboxOptions::plain(seed_listed());
        opts.aerospike_paging_disabled = disabled;
        let sb = Sandbox::start(opts).await.unwrap();
        let token = aerospike_token(&sb).await;
        for (bad, field, kind) in [
            (("limit", "0"), "/limit", "out-of-range"),
            (("limit", "101"), "/limit", "out-of-range"),
            (("limit", "1000"), "/limit", "out-of-range"),
            (("limit", "-3"), "/limit", "out-of-range"),
            (("limit", "ten"), "/limit", "failed"),
            (("limit", "2.5"), "/limit", "failed"),
            (("limit", ""), "/limit", "failed"),
            (("offset", "-1"), "/offset", "out-of-range"),
            (("offset", "abc"), "/offset", "failed"),
        ] {
            let r = aerospike_list_q(&sb, &token, &[bad]).await;
            assert_eq!(r.status(), 400, "{bad:?}");
            assert!(r.headers().contains_key("x-request-id"));
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["type"], "urn:aerospike:errors:validation:failed", "{v}");
            assert_eq!(
                (&v["status"], &v["code"]),
                (&json!(400), &json!("invalid_input"))
            );
            assert!(v["title"].is_string() && v["detail"].is_string() && v["message"].is_string());
            let invalid = &v["context"]["invalid"][0];
            assert_eq!(invalid["field"], field, "{v}");
            assert_eq!(
                invalid["type"],
                format!("urn:aerospike:errors:validation:{kind}"),
                "{v}"
            );
        }
        // The bounds themselves are fine.
        for ok in [("limit", "1"), ("limit", "100"), ("offset", "0")] {
            let r = aerospike_list_q(&sb, &token, &[ok]).await;
            assert_eq!(r.status(), 200, "{ok:?}");
        }
        assert_eq!(lookups(&sb).iter().filter(|l| l.2 == 400).count(), 9);
        sb.shutdown().await;
    }
}

#[tokio::test]
async fn aerospike_caps_a_page_at_its_page_size_and_meta_says_so() {
    let mut opts = SandboxOptions::plain(seed_listed());
    opts.aerospike_page_size = Some(2);
    let sb = Sandbox::start(opts).await.unwrap();
    let token = aerospike_token(&sb).await;
    let list = async |query: &[(&str, &str)]| -> (u16, Value) {
        let r = aerospike_list_q(&sb, &token, query).await;
        (r.status().as_u16(), r.json().await.unwrap())
    };

    let (status, v) = list(&[]).await;
    assert_eq!(status, 200);
    assert_eq!(v["count"], 2);
    assert_eq!(v["meta"], json!({"total": 5, "limit": 2, "offset": 0}));
    // A valid limit above the cap: the cap, and meta says so.
    let (_, v) = list(&[("limit", "100")]).await;
    assert_eq!(v["meta"], json!({"total": 5, "limit": 2, "offset": 0}));
    // One above the spec's maximum is still refused.
    let (status, _) = list(&[("limit", "1000")]).await;
    assert_eq!(status, 400);
    let (_, v) = list(&[("limit", "1"), ("offset", "4")]).await;
    assert_eq!(v["count"], 1);
    assert_eq!(v["meta"], json!({"total": 5, "limit": 1, "offset": 4}));
    let (_, v) = list(&[("offset", "9")]).await;
    assert_eq!((&v["count"], &v["members"]), (&json!(0), &json!([])));
    assert_eq!(v["meta"], json!({"total": 5, "limit": 2, "offset": 9}));

    // Following meta reaches every member once.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let o = offset.to_string();
        let (_, v) = list(&[("limit", "100"), ("offset", &o)]).await;
        seen.extend(emails_in(&v["members"]));
        offset += v["count"].as_u64().unwrap() as usize;
        if offset >= v["meta"]["total"].as_u64().unwrap() as usize {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);
}

#[tokio::test]
async fn aerospike_with_paging_disabled_answers_the_full_set_as_its_docs_say() {
    let mut opts = SandboxOptions::plain(seed_listed().many(ProviderKind::Aerospike, None, 150));
    opts.aerospike_paging_disabled = true;
    let sb = Sandbox::start(opts).await.unwrap();
    let token = aerospike_token(&sb).await;
    for query in [
        &[][..],
        &[("limit", "2"), ("offset", "1")][..],
        &[("limit", "100"), ("offset", "100")][..],
    ] {
        let v: Value = aerospike_list_q(&sb, &token, query)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["count"], 155, "{query:?}");
        assert_eq!(v["meta"], json!({"total": 155, "limit": 155, "offset": 0}));
        assert_eq!(emails_in(&v["members"]).len(), 155);
    }
}
