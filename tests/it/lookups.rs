//! Finding a member's id from an email, against each provider's search or list endpoint on
//! wiremock: their matches are partial, ours exact and case-insensitive.

use std::time::Duration;

use offboard::job::ProviderKind;
use offboard::providers::lookup::Resolution;
use offboard::providers::{self, Auth, Hint, Provider};
use offboard::retry::{Decision, FailReason, classify};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "7b09cdc3-8948-47f0-aa62-74ac943d6c59";

async fn provider(kind: ProviderKind) -> (MockServer, Provider) {
    let server = MockServer::start().await;
    let base = match kind {
        ProviderKind::Aerospike => format!("{}/v1", server.uri()),
        _ => server.uri(),
    };
    let auth = Auth::bearer(&SecretString::from("tok".to_owned())).unwrap();
    let p = Provider::new(
        providers::adapter(kind, &base),
        auth,
        providers::client(Duration::from_secs(5)).unwrap(),
    );
    (server, p)
}

fn user(id: &str, email: &str) -> serde_json::Value {
    json!({"id": id, "email": email, "record_type": "organization_sub_user"})
}

#[tokio::test]
async fn telnyx_pages_through_partial_matches_to_the_exact_one() {
    let (server, p) = provider(ProviderKind::Telnyx).await;
    let page = |n: &str, data: serde_json::Value| {
        Mock::given(method("GET"))
            .and(path("/v2/organizations/users"))
            .and(query_param("filter[email]", "Ann@Acme.example"))
            .and(query_param("page[size]", "250"))
            .and(query_param("page[number]", n))
            .and(header("authorization", "Bearer tok"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "data": data,
                "meta": {"page_number": n.parse::<u32>().unwrap(), "page_size": 250, "total_pages": 2, "total_results": 3}
            })))
            .expect(1)
    };
    page(
        "1",
        json!([
            user("u-joann", "joann@acme.example"),
            user("u-anne", "ann@acme.example.org")
        ]),
    )
    .mount(&server)
    .await;
    page("2", json!([user("u-ann", "ann@acme.example")]))
        .mount(&server)
        .await;
    assert_eq!(
        p.find(None, "Ann@Acme.example").await.unwrap(),
        Resolution::Found {
            id: "u-ann".into(),
            owner: false
        }
    );
}

#[tokio::test]
async fn no_exact_match_is_no_member_and_two_are_ambiguous() {
    let (server, p) = provider(ProviderKind::Telnyx).await;
    Mock::given(method("GET"))
        .and(path("/v2/organizations/users"))
        .and(query_param("filter[email]", "bo@acme.example"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [user("u-1", "bob@acme.example")], "meta": {"page_number": 1, "total_pages": 1, "total_results": 1}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/organizations/users"))
        .and(query_param("filter[email]", "sam@acme.example"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [user("u-2", "sam@acme.example"), user("u-3", "SAM@acme.example")], "meta": {"page_number": 1, "total_pages": 1, "total_results": 2}
        })))
        .mount(&server)
        .await;
    assert_eq!(
        p.find(None, "bo@acme.example").await.unwrap(),
        Resolution::NoMember
    );
    assert_eq!(
        p.find(None, "sam@acme.example").await.unwrap(),
        Resolution::Ambiguous(vec!["u-2".into(), "u-3".into()])
    );
}

#[tokio::test]
async fn aitronos_searches_its_organization_a_hundred_at_a_time() {
    let (server, p) = provider(ProviderKind::Aitronos).await;
    let filler: Vec<_> = (0..100)
        .map(|i| json!({"user_id": format!("usr_f{i}"), "email": format!("x{i}ann@acme.example")}))
        .collect();
    Mock::given(method("POST"))
        .and(path("/v1/organizations/org_acme/users"))
        .and(body_json(
            json!({"search_term": "ann@acme.example", "take": 100, "skip": 0}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"users": filler, "total_users_count": 101})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/organizations/org_acme/users"))
        .and(body_json(
            json!({"search_term": "ann@acme.example", "take": 100, "skip": 100}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "users": [{"user_id": "usr_ann", "email": "Ann@acme.example"}], "total_users_count": 101
        })))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        p.find(Some("org_acme"), "ann@acme.example").await.unwrap(),
        Resolution::Found {
            id: "usr_ann".into(),
            owner: false
        }
    );
}

#[tokio::test]
async fn aerospike_and_cognee_list_every_member() {
    let (server, p) = provider(ProviderKind::Aerospike).await;
    Mock::given(method("GET"))
        .and(path("/v1/organization/members"))
        .and(query_param("limit", "100"))
        .and(query_param("offset", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "count": 2,
            "meta": {"total": 2, "limit": 100, "offset": 0},
            "members": [
                {"id": "11111111-1111-1111-1111-111111111111", "email": "ann@acme.example", "role": "OrgAdmin"},
                {"id": "22222222-2222-2222-2222-222222222222", "email": "joann@acme.example", "role": "OrgOwner"}
            ]
        })))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        p.find(None, "ANN@acme.example").await.unwrap(),
        Resolution::Found {
            id: "11111111-1111-1111-1111-111111111111".into(),
            owner: false
        }
    );

    let (server, p) = provider(ProviderKind::Cognee).await;
    Mock::given(method("GET"))
        .and(path(format!("/api/v1/permissions/tenants/{TENANT}/users")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": "33333333-3333-3333-3333-333333333333", "email": "ann@acme.example", "roles": []}
        ])))
        .mount(&server)
        .await;
    assert_eq!(
        p.find(Some(TENANT), "ann@acme.example").await.unwrap(),
        Resolution::Found {
            id: "33333333-3333-3333-3333-333333333333".into(),
            owner: false
        }
    );
    assert_eq!(
        p.find(Some(TENANT), "bob@acme.example").await.unwrap(),
        Resolution::NoMember
    );
}

#[tokio::test]
async fn a_failed_search_is_classified_like_any_answer() {
    let (server, p) = provider(ProviderKind::Cognee).await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"detail": "Tenant not found. [TenantNotFoundError]"})),
        )
        .mount(&server)
        .await;
    let Err(answer) = p.find(Some(TENANT), "ann@acme.example").await else {
        panic!("a 404 is no resolution")
    };
    // A list's 404 says nothing about membership: the tenant or the URL is wrong.
    assert_eq!(answer.as_ref().unwrap().hint, Hint::None);
    assert_eq!(
        classify(&answer, false),
        Decision::Fail {
            reason: FailReason::NotFound
        }
    );

    let (server, p) = provider(ProviderKind::Telnyx).await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-reset", "3")
                .set_body_json(json!({"errors": [{"code": "10011"}]})),
        )
        .mount(&server)
        .await;
    let Err(answer) = p.find(None, "ann@acme.example").await else {
        panic!("a 429 is no resolution")
    };
    assert!(
        matches!(classify(&answer, false), Decision::Retry { after: Some(d), .. } if d == Duration::from_secs(3))
    );
}

#[tokio::test]
async fn factorys_list_is_paged_by_cursor() {
    let (server, p) = provider(ProviderKind::Factory).await;
    Mock::given(method("GET"))
        .and(path("/api/v0/organization/users"))
        .and(query_param("cursor", "c2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "users": [{"id": "u2", "email": "bob@acme.example"}],
            "pagination": {"hasMore": false, "nextCursor": null}
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v0/organization/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "users": [{"id": "u1", "email": "ann@acme.example"}],
            "pagination": {"hasMore": true, "nextCursor": "c2"}
        })))
        .with_priority(2)
        .mount(&server)
        .await;
    let members = p.members(None, None).await.unwrap();
    let emails: Vec<_> = members.iter().map(|m| m.email.as_str()).collect();
    assert_eq!(emails, ["ann@acme.example", "bob@acme.example"]);
}

/// A server that caps `take` below what was asked: the next page starts after what this one held,
/// so nobody in between goes unread (a search missing them would claim `no_member`).
#[tokio::test]
async fn aitronos_pages_by_what_each_page_held_when_the_server_caps_take() {
    let (server, p) = provider(ProviderKind::Aitronos).await;
    let page = |from: usize, n: usize| -> Vec<serde_json::Value> {
        (from..from + n)
            .map(|i| json!({"user_id": format!("usr_f{i}"), "email": format!("x{i}ann@acme.example")}))
            .collect()
    };
    for (skip, users) in [
        (0, page(0, 50)),
        (50, page(50, 50)),
        (
            100,
            vec![json!({"user_id": "usr_ann", "email": "ann@acme.example"})],
        ),
    ] {
        Mock::given(method("POST"))
            .and(path("/v1/organizations/org_acme/users"))
            .and(body_json(
                json!({"search_term": "ann@acme.example", "take": 100, "skip": skip}),
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"users": users, "total_users_count": 101})),
            )
            .expect(1)
            .mount(&server)
            .await;
    }
    assert_eq!(
        p.find(Some("org_acme"), "ann@acme.example").await.unwrap(),
        Resolution::Found {
            id: "usr_ann".into(),
            owner: false
        }
    );
}

/// Each adapter reads its own page's list and nothing else: what another page's shape, a missing
/// field or a count that does not add up would have made of it is an unreadable answer, with
/// words that name what is wrong.
#[tokio::test]
async fn each_reader_refuses_what_its_page_does_not_promise() {
    let cases: [(ProviderKind, serde_json::Value, &str); 12] = [
        (
            ProviderKind::Telnyx,
            json!({"data": [{"id": "u1", "email": "a@x.example"}],
                "meta": {"page_number": 1, "total_pages": 1, "total_results": 1}}),
            "data[0] has no `record_type`",
        ),
        (
            ProviderKind::Telnyx,
            json!({"data": [{"id": "u1", "email": "a@x.example", "record_type": "organization_sub_user"}],
                "meta": {"page_number": 1, "total_pages": 1, "total_results": 1}}),
            "0 `organization_owner` records",
        ),
        (
            ProviderKind::Aerospike,
            json!({"count": 1, "meta": null, "members": [{"id": "11111111-1111-1111-1111-111111111111",
                "email": "a@x.example", "role": "OrgAdmin"}]}),
            "`meta` is null",
        ),
        (
            ProviderKind::Aerospike,
            json!({"count": 1, "meta": {"total": 1, "limit": 100, "offset": 0},
                "members": [{"id": "11111111-1111-1111-1111-111111111111", "email": "a@x.example", "role": "owner"}]}),
            "neither OrgAdmin nor OrgOwner",
        ),
        (
            ProviderKind::Factory,
            json!({"users": [{"id": "u1", "email": "a@x.example"}], "pagination": {"hasMore": true}}),
            "nextCursor",
        ),
        (
            ProviderKind::Factory,
            json!({"users": [{"id": "u1"}], "pagination": {"hasMore": false}}),
            "users[0] has no `email`",
        ),
        (
            ProviderKind::Aitronos,
            json!({"users": [{"user_id": "usr_a", "email": "a@x.example"}], "total": 1}),
            "total_users_count",
        ),
        (
            ProviderKind::Aitronos,
            json!({"users": [{"id": "orguser_a", "email": "a@x.example"}], "total_users_count": 1}),
            "users[0] has no `user_id`",
        ),
        (
            ProviderKind::Telnyx,
            json!({"data": [{"id": "u1", "email": "a@x.example"}]}),
            "missing field `meta`",
        ),
        (
            ProviderKind::Aerospike,
            json!({"count": 2, "meta": {"total": 2, "limit": 100, "offset": 0},
                "members": [{"id": "11111111-1111-1111-1111-111111111111", "email": "a@x.example"}]}),
            "`count` is 2 but `members` holds 1",
        ),
        (
            ProviderKind::Aerospike,
            json!([{"id": "11111111-1111-1111-1111-111111111111", "email": "a@x.example"}]),
            "invalid type",
        ),
        (
            ProviderKind::Cognee,
            json!([{"email": "a@x.example", "roles": []}]),
            "user [0] has no `id`",
        ),
    ];
    for (kind, body, words) in cases {
        let (server, p) = provider(kind).await;
        Mock::given(method(if kind == ProviderKind::Aitronos {
            "POST"
        } else {
            "GET"
        }))
        .respond_with(ResponseTemplate::new(200).set_body_json(body.clone()))
        .mount(&server)
        .await;
        let org = match kind {
            ProviderKind::Aitronos => Some("org_acme"),
            ProviderKind::Cognee => Some(TENANT),
            _ => None,
        };
        let Err(Ok(answer)) = p.members(org, None).await else {
            panic!("{kind}: {body} was read as a list")
        };
        assert_eq!(answer.hint, Hint::Unreadable, "{kind}: {body}");
        let message = &answer.error.as_ref().unwrap().message;
        assert!(message.contains(words), "{kind}: {message}");
        assert_eq!(
            classify(&Ok(answer), false),
            Decision::Fail {
                reason: FailReason::UnreadableList
            }
        );
    }
}
