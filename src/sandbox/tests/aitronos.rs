//! The aitronos sandbox against its page: real HTTP on loopback.

use super::*;

#[tokio::test]
async fn aitronos_confirm_owner_and_not_found() {
    let seed = seed_one_each().owner(ProviderKind::Aitronos, Some("org_acme"), "usr_owner1");
    let sb = plain(seed).await;
    let url = |org: &str, usr: &str| {
        format!(
            "{}/v1/organizations/{org}/users/{usr}",
            sb.base_url(ProviderKind::Aitronos)
        )
    };
    let key = env(&sb, "SANDBOX_AITRONOS_API_KEY");

    for body in [None, Some(json!({"confirm": false})), Some(json!({}))] {
        let mut req = client()
            .delete(url("org_acme", "usr_abc123"))
            .header("X-API-Key", &key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 422);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["success"], false);
        let e = &v["error"];
        assert_eq!(e["code"], "CONFIRMATION_REQUIRED");
        assert_eq!(
            e["message"],
            "Please confirm this action by setting confirm to true."
        );
        assert_eq!(
            e["system_message"],
            "please confirm this action by setting confirm to true."
        );
        assert_eq!(e["type"], "client_error");
        assert_eq!(e["status"], 422);
        assert_eq!(e["details"]["user_id"], "usr_abc123");
        assert!(e["trace_id"].is_string() && e["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert!(sb.is_member(ProviderKind::Aitronos, Some("org_acme"), "usr_abc123"));

    let r = client()
        .delete(url("org_acme", "usr_abc123"))
        .header("X-API-Key", &key)
        .json(&json!({"confirm": true, "transfer_resources_to_department_id": "dept_eng001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!sb.is_member(ProviderKind::Aitronos, Some("org_acme"), "usr_abc123"));

    let code = |r: Value| r["error"]["code"].as_str().unwrap().to_owned();
    let r = remove(&sb, ProviderKind::Aitronos, Some("org_acme"), "usr_abc123").await;
    assert_eq!(r.status(), 404);
    assert_eq!(code(r.json().await.unwrap()), "USER_NOT_FOUND");
    let r = remove(&sb, ProviderKind::Aitronos, Some("org_nope"), "usr_abc123").await;
    assert_eq!(r.status(), 404);
    assert_eq!(code(r.json().await.unwrap()), "ORGANIZATION_NOT_FOUND");
    let r = remove(&sb, ProviderKind::Aitronos, Some("org_acme"), "usr_owner1").await;
    assert_eq!(r.status(), 403);
    assert_eq!(code(r.json().await.unwrap()), "CANNOT_DELETE_OWNER");
    assert!(sb.is_member(ProviderKind::Aitronos, Some("org_acme"), "usr_owner1"));
    let r = client()
        .delete(url("org_acme", "usr_owner1"))
        .header("X-API-Key", "ak_wrong")
        .json(&json!({"confirm": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(code(r.json().await.unwrap()), "INVALID_API_KEY");
}

#[tokio::test]
async fn aitronos_search_is_partial_case_insensitive_and_paged() {
    let sb = plain(seed_listed()).await;
    let key = env(&sb, "SANDBOX_AITRONOS_API_KEY");

    let r = aitronos_search(&sb, "org_acme", json!({"search_term": "ann"}), "ak_wrong").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "INVALID_API_KEY"
    );

    let r = aitronos_search(
        &sb,
        "org_acme",
        json!({"search_term": "ANN", "take": 100}),
        &key,
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (&v["total_users_count"], &v["skip"], &v["take"]),
        (&json!(2), &json!(0), &json!(100))
    );
    assert_eq!(emails_in(&v["users"]), [ANN, JOANN]);
    // `id` is the membership, `user_id` the user the removal takes.
    let membership = crate::sandbox::aitronos::membership_id("org_acme", "usr_ann");
    assert!(membership.starts_with("orguser_") && membership.len() == 20);
    assert_eq!(
        v["users"][0],
        json!({
            "id": membership,
            "user_id": "usr_ann",
            "organization_id": "org_acme",
            "email": ANN,
            "full_name": "Ann",
            "username": "ann",
            "role": {"id": "role_member", "name": "Member", "is_owner": false},
            "status": {"id": "active", "name": "Active"},
            "joined_at": created_at("usr_ann"),
        })
    );
    assert_eq!(v["users"][1]["user_id"], "usr_joann");
    assert_eq!(
        v["users"][1]["id"],
        crate::sandbox::aitronos::membership_id("org_acme", "usr_joann")
    );
    assert_ne!(v["users"][0]["id"], v["users"][1]["id"]);

    // Paging: skip/take, total counts every match.
    let r = aitronos_search(
        &sb,
        "org_acme",
        json!({"search_term": "x.EXAMPLE", "take": 1, "skip": 1}),
        &key,
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total_users_count"], 3);
    assert_eq!((&v["skip"], &v["take"]), (&json!(1), &json!(1)));
    assert_eq!(emails_in(&v["users"]), [BOB]);
    let v: Value = aitronos_search(
        &sb,
        "org_acme",
        json!({"search_term": "x.example", "skip": 3}),
        &key,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (
            v["total_users_count"].as_u64(),
            emails_in(&v["users"]).len()
        ),
        (Some(3), 0)
    );

    // Everyone, with the owner's role and the derived email.
    let v: Value = aitronos_search(&sb, "org_acme", json!({}), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["total_users_count"], 5);
    assert_eq!(v["take"], 10, "take defaults to 10");
    let users = v["users"].as_array().unwrap();
    assert_eq!(users.len(), 5);
    let owner = users
        .iter()
        .find(|u| u["user_id"] == OWNER_AITRONOS)
        .unwrap();
    assert_eq!(owner["role"]["id"], "role_owner");
    assert_eq!(owner["email"], "usr_owner1@members.example");

    let r = aitronos_search(
        &sb,
        "org_acme",
        json!({"search_term": "a", "take": 101}),
        &key,
    )
    .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "VALIDATION_ERROR"
    );

    let r = aitronos_search(&sb, "org_nope", json!({"search_term": "ann"}), &key).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "ORGANIZATION_NOT_FOUND");
    assert_eq!(v["error"]["status"], 404);
    assert_eq!(v["error"]["details"]["organization_id"], "org_nope");

    // A removed member is no longer found.
    let r = remove(&sb, ProviderKind::Aitronos, Some("org_acme"), "usr_joann").await;
    assert_eq!(r.status(), 204);
    let v: Value = aitronos_search(&sb, "org_acme", json!({"search_term": "ann"}), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["total_users_count"].as_u64(), emails_in(&v["users"])),
        (Some(1), vec![ANN.to_owned()])
    );

    let log = sb.log();
    assert_eq!(log.iter().filter(|l| l.operation == "remove").count(), 1);
    let searched: Vec<(String, u16)> = log
        .iter()
        .filter(|l| l.operation == "lookup")
        .map(|l| (l.user.clone(), l.status))
        .collect();
    assert_eq!(
        searched,
        [
            ("ANN".to_owned(), 200),
            ("x.EXAMPLE".to_owned(), 200),
            ("x.example".to_owned(), 200),
            (String::new(), 200),
            ("a".to_owned(), 422),
            ("ann".to_owned(), 404),
            ("ann".to_owned(), 200),
        ],
        "401s are not logged"
    );
    assert_eq!(log[5].organization.as_deref(), Some("org_nope"));
}
