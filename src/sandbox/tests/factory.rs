//! The factory sandbox against its page: real HTTP on loopback.

use super::*;

#[tokio::test]
async fn factory_success_then_not_found() {
    let sb = plain(seed_one_each()).await;
    assert!(sb.is_member(ProviderKind::Factory, None, "Ann.Lee@ACME.example"));
    let r = remove(&sb, ProviderKind::Factory, None, "Ann.Lee@acme.example").await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    assert!(!sb.is_member(ProviderKind::Factory, None, "ann.lee@acme.example"));

    let r = remove(&sb, ProviderKind::Factory, None, "ann.lee@acme.example").await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], 404);
    assert_eq!(v["title"], "Not Found");
    assert!(v["detail"].is_string());

    let base = sb.base_url(ProviderKind::Factory);
    let token = env(&sb, "SANDBOX_FACTORY_TOKEN");
    let r = client()
        .delete(format!("{base}/api/v0/organization/users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .delete(format!(
            "{base}/api/v0/organization/users?email=x@acme.example"
        ))
        .bearer_auth("fk-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["status"].as_u64(), v["title"].as_str()),
        (Some(401), Some("Unauthorized"))
    );

    let statuses: Vec<u16> = sb.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, [204, 404, 400], "401s are not logged");
    assert_eq!(sb.log()[0].user, "Ann.Lee@acme.example");
}

#[tokio::test]
async fn factory_lists_with_a_working_cursor() {
    let seed = Seed::default().many(ProviderKind::Factory, None, 45).owner(
        ProviderKind::Factory,
        None,
        "boss@acme.example",
    );
    let sb = plain(seed).await;
    let token = env(&sb, "SANDBOX_FACTORY_TOKEN");

    let r = factory_list(&sb, &[], "fk-wrong").await;
    assert_eq!(r.status(), 401);

    // Default page of 20, then follow the cursor.
    let mut emails = Vec::new();
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = Vec::new();
        if let Some(c) = &cursor {
            q.push(("cursor", c.as_str()));
        }
        let r = factory_list(&sb, &q, &token).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        pages += 1;
        let users = v["users"].as_array().unwrap();
        for u in users {
            assert!(ids.insert(u["id"].as_str().unwrap().to_owned()), "{u}");
        }
        emails.extend(emails_in(&v["users"]));
        let p = &v["pagination"];
        if p["hasMore"] == false {
            assert_eq!(p["nextCursor"], Value::Null);
            break;
        }
        assert_eq!(users.len(), 20);
        cursor = Some(p["nextCursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(pages, 3);
    assert_eq!(emails.len(), 46);
    assert_eq!(emails.iter().collect::<HashSet<_>>().len(), 46);
    assert!(emails.contains(&"boss@acme.example".to_owned()));

    let v: Value = factory_list(&sb, &[("limit", "100")], &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["users"].as_array().unwrap().len(), 46);
    assert_eq!(
        v["pagination"],
        json!({"hasMore": false, "nextCursor": null})
    );

    // The cursor survives the removal of the member it points after.
    let v: Value = factory_list(&sb, &[("limit", "2")], &token)
        .await
        .json()
        .await
        .unwrap();
    let page1 = emails_in(&v["users"]);
    let c = v["pagination"]["nextCursor"].as_str().unwrap().to_owned();
    let r = remove(&sb, ProviderKind::Factory, None, &page1[1]).await;
    assert_eq!(r.status(), 204);
    let v: Value = factory_list(&sb, &[("limit", "2"), ("cursor", &c)], &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(emails_in(&v["users"]), emails[2..4]);

    for bad in [
        ("limit", "0"),
        ("limit", "101"),
        ("limit", "ten"),
        ("cursor", "not-a-cursor"),
    ] {
        let r = factory_list(&sb, &[bad], &token).await;
        assert_eq!(r.status(), 400, "{bad:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (&v["status"], &v["title"]),
            (&json!(400), &json!("Bad Request"))
        );
    }
    let statuses: Vec<u16> = lookups(&sb).iter().map(|l| l.2).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 400, 400, 400, 400]);
}
