//! The cognee sandbox against its page: real HTTP on loopback.

use super::*;

#[tokio::test]
async fn cognee_checks_in_order() {
    let user = "7b09cdc3-8948-47f0-aa62-74ac943d6c59";
    let owner = "22222222-3333-4444-8555-666666666666";
    let elsewhere = "33333333-4444-4555-8666-777777777777";
    let seed = seed_one_each()
        .owner(ProviderKind::Cognee, Some(TENANT), owner)
        .member(ProviderKind::Cognee, Some(OTHER_TENANT), elsewhere);
    let sb = plain(seed).await;
    let detail = |v: Value| v["detail"].clone();

    let r = remove(
        &sb,
        ProviderKind::Cognee,
        Some(TENANT),
        &user.to_uppercase(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "User removed from tenant"
    );
    assert!(!sb.is_member(ProviderKind::Cognee, Some(TENANT), user));

    let r = remove(&sb, ProviderKind::Cognee, Some(TENANT), user).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        detail(r.json().await.unwrap()),
        "User not found in this tenant."
    );

    let r = remove(&sb, ProviderKind::Cognee, Some(TENANT), elsewhere).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        detail(r.json().await.unwrap()),
        "User not found in this tenant."
    );

    let r = remove(
        &sb,
        ProviderKind::Cognee,
        Some(TENANT),
        "44444444-5555-4666-8777-888888888888",
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        detail(r.json().await.unwrap()),
        "User not found. [EntityNotFoundError]"
    );

    let r = remove(&sb, ProviderKind::Cognee, Some(TENANT), owner).await;
    assert_eq!(r.status(), 400);
    assert!(
        detail(r.json().await.unwrap())
            .as_str()
            .unwrap()
            .starts_with("Cannot remove the tenant owner.")
    );

    let unknown_tenant = "55555555-6666-4777-8888-999999999999";
    let r = remove(&sb, ProviderKind::Cognee, Some(unknown_tenant), owner).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        detail(r.json().await.unwrap()),
        "Tenant not found. [TenantNotFoundError]"
    );

    let r = remove(&sb, ProviderKind::Cognee, Some("acme"), owner).await;
    assert_eq!(r.status(), 422);
    let v = detail(r.json().await.unwrap());
    assert_eq!(v[0]["loc"], json!(["path", "tenant_id"]));

    let r = client()
        .delete(format!(
            "{}/api/v1/permissions/tenants/{TENANT}/users/{owner}",
            sb.base_url(ProviderKind::Cognee)
        ))
        .header("X-Api-Key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Unauthorized"})
    );
    let statuses: Vec<u16> = sb.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, [200, 404, 404, 404, 400, 404, 422]);
}

#[tokio::test]
async fn cognee_lists_a_tenants_members() {
    let sb = plain(seed_listed()).await;
    let key = env(&sb, "SANDBOX_COGNEE_API_KEY");
    let r = cognee_list(&sb, TENANT, "wrong").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Unauthorized"})
    );

    let r = cognee_list(&sb, &TENANT.to_uppercase(), &key).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let emails = emails_in(&v);
    assert_eq!(emails.len(), 5);
    let ann: Vec<_> = emails
        .iter()
        .filter(|e| e.to_lowercase().contains("ann"))
        .collect();
    assert_eq!(ann, [ANN, JOANN], "the other tenant's anna is not listed");
    let joann = user_of(ProviderKind::Cognee, JOANN);
    assert!(
        v.as_array()
            .unwrap()
            .contains(&json!({"id": joann, "email": JOANN, "roles": []}))
    );

    let v: Value = cognee_list(&sb, OTHER_TENANT, &key)
        .await
        .json()
        .await
        .unwrap();
    // The seed names no owner there: the sandbox adds one, as every tenant has.
    assert_eq!(emails_in(&v), ["anna@y.example", "owner@sandbox.example"]);

    let r = cognee_list(&sb, "55555555-6666-4777-8888-999999999999", &key).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Tenant not found. [TenantNotFoundError]"})
    );
    let r = cognee_list(&sb, "acme", &key).await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["detail"][0]["loc"],
        json!(["path", "tenant_id"])
    );

    assert_eq!(
        remove(&sb, ProviderKind::Cognee, Some(TENANT), joann)
            .await
            .status(),
        200
    );
    let v: Value = cognee_list(&sb, TENANT, &key).await.json().await.unwrap();
    assert_eq!(emails_in(&v).len(), 4);
    assert!(!emails_in(&v).contains(&JOANN.to_owned()));

    let statuses: Vec<u16> = lookups(&sb).iter().map(|l| l.2).collect();
    assert_eq!(statuses, [200, 200, 404, 422, 200]);
    assert!(
        lookups(&sb)
            .iter()
            .all(|l| l.0 == ProviderKind::Cognee && l.1.is_empty())
    );
}

#[tokio::test]
async fn cognee_forbidden_tenant_answers_403_to_everything_in_it() {
    let unknown = "55555555-6666-4777-8888-999999999999";
    let mut opts = SandboxOptions::plain(seed_listed());
    opts.cognee_forbidden_tenants = vec![TENANT.to_uppercase(), unknown.to_owned()];
    let sb = Sandbox::start(opts).await.unwrap();
    let key = env(&sb, "SANDBOX_COGNEE_API_KEY");
    let denied = json!({
        "detail": "User does not have permission to manage users in the tenant. [PermissionDeniedError]"
    });

    let r = cognee_list(&sb, TENANT, &key).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap(), denied);
    let joann = user_of(ProviderKind::Cognee, JOANN);
    // A member, the owner (permission comes before the owner check) and a stranger alike.
    for user in [joann, OWNER_UUID, "44444444-5555-4666-8777-888888888888"] {
        let r = remove(&sb, ProviderKind::Cognee, Some(TENANT), user).await;
        assert_eq!(r.status(), 403, "{user}");
        assert_eq!(r.json::<Value>().await.unwrap(), denied);
    }
    assert!(sb.is_member(ProviderKind::Cognee, Some(TENANT), joann));

    // The tenant check comes first; other tenants are unaffected.
    let r = remove(&sb, ProviderKind::Cognee, Some(unknown), joann).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Tenant not found. [TenantNotFoundError]"})
    );
    assert_eq!(cognee_list(&sb, unknown, &key).await.status(), 404);
    assert_eq!(cognee_list(&sb, OTHER_TENANT, &key).await.status(), 200);
    let r = remove(
        &sb,
        ProviderKind::Cognee,
        Some(OTHER_TENANT),
        "f6f6f6f6-0000-4000-8000-000000000001",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "User removed from tenant"})
    );
    let statuses: Vec<u16> = sb.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, [403, 403, 403, 403, 404, 404, 200, 200]);
}
