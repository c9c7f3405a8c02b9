//! The telnyx sandbox against its page: real HTTP on loopback.

use super::*;

#[tokio::test]
async fn telnyx_success_owner_and_not_found() {
    let owner = "11111111-2222-4333-8444-555555555555";
    let sb = plain(seed_one_each().owner(ProviderKind::Telnyx, None, owner)).await;
    let id = "6a09cdc3-8948-47f0-aa62-74ac943d6c58";
    let r = remove(&sb, ProviderKind::Telnyx, None, id).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let d = &v["data"];
    assert_eq!(d["id"], id);
    assert_eq!(d["record_type"], "organization_sub_user");
    assert!(d["email"].as_str().unwrap().contains('@'));
    assert_eq!(d["user_status"], "enabled");
    assert!(d["created_at"].is_string());

    let first_error = |v: Value| v["errors"][0].clone();
    let r = remove(&sb, ProviderKind::Telnyx, None, id).await;
    assert_eq!(r.status(), 404);
    let e = first_error(r.json().await.unwrap());
    assert_eq!(e["code"], "10005");
    assert_eq!(e["title"], "Resource not found");

    let r = remove(&sb, ProviderKind::Telnyx, None, owner).await;
    assert_eq!(r.status(), 403);
    assert_eq!(first_error(r.json().await.unwrap())["code"], "10010");

    let r = client()
        .post(format!(
            "{}/v2/organizations/users/{id}/actions/remove",
            sb.base_url(ProviderKind::Telnyx)
        ))
        .bearer_auth("KEYwrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(first_error(r.json().await.unwrap())["code"], "10009");
}

#[tokio::test]
async fn telnyx_filter_is_partial_case_insensitive_and_paged() {
    let sb = plain(seed_listed()).await;
    let token = env(&sb, "SANDBOX_TELNYX_TOKEN");

    let r = telnyx_list(&sb, &[("filter[email]", "ann")], "KEYwrong").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["code"],
        "10009"
    );

    let r = telnyx_list(
        &sb,
        &[("filter[email]", "ANN"), ("page[size]", "250")],
        &token,
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(emails_in(&v["data"]), [ANN, JOANN]);
    let first = &v["data"][0];
    assert_eq!(first["id"], user_of(ProviderKind::Telnyx, ANN));
    assert_eq!(first["record_type"], "organization_sub_user");
    assert_eq!(
        v["meta"],
        json!({"page_number": 1, "page_size": 250, "total_pages": 1, "total_results": 2})
    );

    // Page 2 of size 1.
    let q = [
        ("filter[email]", "ann"),
        ("page[size]", "1"),
        ("page[number]", "2"),
    ];
    let v: Value = telnyx_list(&sb, &q, &token).await.json().await.unwrap();
    assert_eq!(emails_in(&v["data"]), [JOANN]);
    assert_eq!(
        v["meta"],
        json!({"page_number": 2, "page_size": 1, "total_pages": 2, "total_results": 2})
    );

    // Defaults, every member.
    let v: Value = telnyx_list(&sb, &[], &token).await.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 5);
    assert_eq!(
        v["meta"],
        json!({"page_number": 1, "page_size": 20, "total_pages": 1, "total_results": 5})
    );

    let r = telnyx_list(&sb, &[("page[size]", "251")], &token).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["code"],
        "10015"
    );

    let joann = user_of(ProviderKind::Telnyx, JOANN);
    assert_eq!(
        remove(&sb, ProviderKind::Telnyx, None, joann)
            .await
            .status(),
        200
    );
    let v: Value = telnyx_list(&sb, &[("filter[email]", "ann")], &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(emails_in(&v["data"]), [ANN]);
    assert_eq!(v["meta"]["total_results"], 1);

    assert_eq!(
        lookups(&sb),
        [
            (ProviderKind::Telnyx, "ANN".to_owned(), 200),
            (ProviderKind::Telnyx, "ann".to_owned(), 200),
            (ProviderKind::Telnyx, String::new(), 200),
            (ProviderKind::Telnyx, String::new(), 400),
            (ProviderKind::Telnyx, "ann".to_owned(), 200),
        ]
    );
}

#[tokio::test]
async fn telnyx_list_marks_the_owner_and_adds_groups_when_asked() {
    let sb = plain(seed_listed()).await;
    let token = env(&sb, "SANDBOX_TELNYX_TOKEN");
    let v: Value = telnyx_list(&sb, &[], &token).await.json().await.unwrap();
    let data = v["data"].as_array().unwrap();
    let owner = data.iter().find(|u| u["id"] == OWNER_UUID).unwrap();
    assert_eq!(owner["record_type"], "organization_owner");
    assert!(
        data.iter()
            .filter(|u| u["id"] != OWNER_UUID)
            .all(|u| u["record_type"] == "organization_sub_user")
    );
    assert!(data.iter().all(|u| u.get("groups").is_none()));
    let v: Value = telnyx_list(&sb, &[("include_groups", "true")], &token)
        .await
        .json()
        .await
        .unwrap();
    for u in v["data"].as_array().unwrap() {
        let g = &u["groups"][0];
        assert!(g["id"].is_string() && g["name"].is_string(), "{u}");
    }
}
