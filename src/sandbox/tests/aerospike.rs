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
async fn aerospike_lists_every_member() {
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
    // Paging is "currently disabled": the full set, and meta says so.
    assert_eq!(v["count"], 5);
    assert_eq!(v["meta"], json!({"total": 5, "limit": 5, "offset": 0}));
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
    assert_eq!(
        members.iter().find(|m| m["email"] == JOANN),
        Some(&json!({
            "id": joann,
            "email": JOANN,
            "role": "member",
            "firstName": "JoAnn",
            "lastName": "",
            "createdAt": created_at(joann),
        }))
    );
    let owner = members.iter().find(|m| m["id"] == OWNER_UUID).unwrap();
    assert_eq!(owner["role"], "owner");
    // limit and offset are ignored while paging is disabled.
    let v: Value = aerospike_list_q(&sb, &token, &[("limit", "2"), ("offset", "1")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["count"], 5);
    assert_eq!(v["meta"], json!({"total": 5, "limit": 5, "offset": 0}));

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

#[tokio::test]
async fn aerospike_honours_limit_and_offset_when_paging_is_on() {
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
    // Above the page size: clamped, and meta says so.
    let (_, v) = list(&[("limit", "1000")]).await;
    assert_eq!(v["meta"], json!({"total": 5, "limit": 2, "offset": 0}));
    let (_, v) = list(&[("limit", "1"), ("offset", "4")]).await;
    assert_eq!(v["count"], 1);
    assert_eq!(v["meta"], json!({"total": 5, "limit": 1, "offset": 4}));
    let (_, v) = list(&[("offset", "9")]).await;
    assert_eq!((&v["count"], &v["members"]), (&json!(0), &json!([])));

    // Following meta reaches every member once.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let o = offset.to_string();
        let (_, v) = list(&[("offset", &o)]).await;
        seen.extend(emails_in(&v["members"]));
        offset += v["count"].as_u64().unwrap() as usize;
        if offset >= v["meta"]["total"].as_u64().unwrap() as usize {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);

    for bad in [("limit", "0"), ("limit", "ten"), ("offset", "-1")] {
        let (status, v) = list(&[bad]).await;
        assert_eq!(status, 400, "{bad:?}");
        assert_eq!(v["type"], "urn:aerospike:errors:request:invalid");
    }
}
