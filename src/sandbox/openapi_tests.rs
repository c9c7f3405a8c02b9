//! The sandbox's answers against the providers' own OpenAPI schemas.
//!
//! `tests/fixtures/openapi/` in this repository holds each provider's OpenAPI document: for
//! Factory, Telnyx and Cognee the ```` ```yaml ```` block of its API page, verbatim; for Aerospike
//! the vendor's own extract of its two organization-member operations. Each file's first comment
//! line says where it came from. The tests load one, inline its `$ref`s (response and schema
//! components), turn OpenAPI 3.0's `nullable` into JSON Schema's `null` type (3.1's
//! `type: [string, 'null']` is JSON Schema already) and validate, with JSON Schema 2020-12, the
//! body of every answer the sandbox gives at the documented endpoint against the schema of its
//! status. If one fails, the sandbox is wrong, not the schema.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::tests::{client, env};
use super::*;

const TENANT: &str = "0b7e6f3a-52c1-4d8e-9f10-2a3b4c5d6e7f";

/// The OpenAPI document of a provider, from `tests/fixtures/openapi/{page}.yaml`.
fn openapi(page: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openapi")
        .join(format!("{page}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
}

/// What a local `$ref` (`#/components/...`) points at.
fn target<'d>(doc: &'d Value, reference: &str) -> &'d Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("only local $refs are expected: {reference}"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("unresolved $ref {reference}"))
}

/// An OpenAPI object (response, media type...) with its own `$ref` followed.
fn deref<'d>(doc: &'d Value, mut v: &'d Value) -> &'d Value {
    for _ in 0..16 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => v = target(doc, r),
            None => return v,
        }
    }
    panic!("a $ref chain longer than 16")
}

/// An OpenAPI schema as a self-contained JSON Schema: `$ref`s inlined (the pages have no cycles;
/// `depth` catches one), `nullable: true` as a `null` type, the 3.0 `example` keyword dropped.
/// Property names are never taken for keywords.
fn schema(doc: &Value, v: &Value, depth: usize) -> Value {
    assert!(depth < 64, "a $ref cycle");
    let Value::Object(m) = v else {
        return v.clone();
    };
    if let Some(Value::String(r)) = m.get("$ref") {
        return schema(doc, target(doc, r), depth + 1);
    }
    let sub = |x: &Value| schema(doc, x, depth + 1);
    let mut out = Map::new();
    for (k, x) in m {
        let converted = match k.as_str() {
            "example" | "nullable" => continue,
            "properties" | "patternProperties" | "$defs" | "dependentSchemas" => match x {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(name, s)| (name.clone(), sub(s)))
                        .collect(),
                ),
                _ => x.clone(),
            },
            "allOf" | "anyOf" | "oneOf" | "prefixItems" => match x {
                Value::Array(all) => Value::Array(all.iter().map(sub).collect()),
                _ => x.clone(),
            },
            "items"
            | "additionalProperties"
            | "not"
            | "contains"
            | "if"
            | "then"
            | "else"
            | "propertyNames"
            | "unevaluatedProperties"
            | "unevaluatedItems" => sub(x),
            _ => x.clone(),
        };
        out.insert(k.clone(), converted);
    }
    if m.get("nullable") == Some(&Value::Bool(true)) {
        match out.get_mut("type") {
            Some(Value::String(t)) => {
                let t = t.clone();
                out.insert("type".into(), json!([t, "null"]));
            }
            Some(Value::Array(ts)) if !ts.contains(&json!("null")) => ts.push(json!("null")),
            _ => {}
        }
        if let Some(Value::Array(e)) = out.get_mut("enum") {
            e.push(Value::Null);
        }
    }
    Value::Object(out)
}

/// One documented endpoint of a page.
struct Endpoint {
    page: &'static str,
    doc: Value,
    path: &'static str,
    method: &'static str,
}

impl Endpoint {
    fn new(page: &'static str, path: &'static str, method: &'static str) -> Endpoint {
        let doc = openapi(page);
        assert!(
            doc.pointer(&format!("/paths/{}/{method}", path.replace('/', "~1")))
                .is_some(),
            "{page}: no {method} {path}"
        );
        Endpoint {
            page,
            doc,
            path,
            method,
        }
    }

    /// The JSON Schema of the JSON body documented for that status.
    fn schema(&self, status: u16) -> Value {
        let responses = &self.doc["paths"][self.path][self.method]["responses"];
        let response = responses
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{}: no documented {status}", self.page));
        let media = deref(&self.doc, response)
            .pointer("/content/application~1json/schema")
            .unwrap_or_else(|| panic!("{}: {status} has no JSON schema", self.page));
        schema(&self.doc, media, 0)
    }

    /// Whether `body` is a valid answer of that status; `Err` lists why not. An empty body is
    /// valid only for 204 (No Content), whatever its schema.
    fn check(&self, status: u16, body: &[u8]) -> Result<(), String> {
        if body.is_empty() && status == 204 {
            return Ok(());
        }
        let instance: Value = serde_json::from_slice(body).map_err(|e| {
            format!(
                "{} {status}: not JSON ({e}): {}",
                self.page,
                String::from_utf8_lossy(body)
            )
        })?;
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&self.schema(status))
            .unwrap_or_else(|e| panic!("{} {status}: the schema compiles: {e}", self.page));
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} {status}: {instance} violates the page: {}",
                self.page,
                errors.join("; ")
            ))
        }
    }

    /// Asserts the answer has the status and a body valid for it; returns the body.
    async fn expect(&self, r: reqwest::Response, status: u16) -> Vec<u8> {
        assert_eq!(r.status().as_u16(), status, "{}", self.page);
        let body = r.bytes().await.expect("body").to_vec();
        if let Err(e) = self.check(status, &body) {
            panic!("{e}");
        }
        body
    }

    /// Asserts the body does NOT pass as an answer of that status (the tests can fail).
    fn reject(&self, status: u16, body: &Value) {
        let bytes = body.to_string().into_bytes();
        assert!(
            self.check(status, &bytes).is_err(),
            "{} {status}: {body} should violate the page",
            self.page
        );
    }
}

#[test]
fn nullable_and_refs_become_json_schema() {
    let doc = json!({
        "components": {"schemas": {
            "Name": {"type": "string", "nullable": true, "example": "x"},
            "Holder": {"type": "object", "properties": {
                "name": {"$ref": "#/components/schemas/Name"},
                "example": {"type": "integer"}
            }}
        }}
    });
    let s = schema(&doc, &json!({"$ref": "#/components/schemas/Holder"}), 0);
    assert_eq!(
        s,
        json!({"type": "object", "properties": {
            "name": {"type": ["string", "null"]},
            "example": {"type": "integer"}
        }}),
        "a property called example is kept"
    );
    let v = jsonschema::validator_for(&s).unwrap();
    assert!(v.is_valid(&json!({"name": null, "example": 1})));
    assert!(!v.is_valid(&json!({"name": 3})));
    assert!(!v.is_valid(&json!({"example": "one"})));
}

/// Factory: `DELETE /api/v0/organization/users`, every status the sandbox produces there.
#[tokio::test]
async fn factory_removal_answers_match_the_page() {
    let api = Endpoint::new("factory", "/api/v0/organization/users", "delete");
    let seed = Seed::default()
        .member(ProviderKind::Factory, None, "ann@x.example")
        .member(ProviderKind::Factory, None, "cy@x.example")
        .owner(ProviderKind::Factory, None, "boss@x.example");
    let sb = Sandbox::start(SandboxOptions::plain(seed.clone()))
        .await
        .unwrap();
    let token = env(&sb, "SANDBOX_FACTORY_TOKEN");
    let url = format!(
        "{}/api/v0/organization/users",
        sb.base_url(ProviderKind::Factory)
    );
    let delete = |email: Option<&str>, token: &str| {
        let mut req = client().delete(&url).bearer_auth(token);
        if let Some(e) = email {
            req = req.query(&[("email", e)]);
        }
        req.send()
    };
    let mut seen = BTreeSet::new();
    let mut expect = async |r: reqwest::Response, status: u16| {
        seen.insert(status);
        api.expect(r, status).await
    };

    let body = expect(delete(Some("ann@x.example"), &token).await.unwrap(), 204).await;
    assert!(body.is_empty(), "204 has no body");
    expect(delete(Some("ann@x.example"), &token).await.unwrap(), 404).await;
    expect(delete(None, &token).await.unwrap(), 400).await;
    expect(delete(Some("jonas.jensen"), &token).await.unwrap(), 400).await;
    expect(
        delete(Some("boss@x.example"), "fk-wrong").await.unwrap(),
        401,
    )
    .await;
    expect(delete(Some("boss@x.example"), &token).await.unwrap(), 403).await;
    sb.shutdown().await;

    let mut opts = SandboxOptions::plain(seed);
    opts.faults.conflict_every = 1;
    let sb = Sandbox::start(opts).await.unwrap();
    let token = env(&sb, "SANDBOX_FACTORY_TOKEN");
    let url = format!(
        "{}/api/v0/organization/users",
        sb.base_url(ProviderKind::Factory)
    );
    let r = client()
        .delete(&url)
        .query(&[("email", "cy@x.example")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect(r, 409).await;
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [204, 400, 401, 403, 404, 409]
    );

    // The page allows `{}` for 204, nothing else; its errors need detail, status and title, so
    // the framework's bare 404 of an unknown URL is told apart from the API's.
    api.check(204, b"{}").unwrap();
    api.reject(204, &json!({"removed": true}));
    api.reject(404, &json!({"detail": "Not Found"}));
    api.reject(
        404,
        &json!({"detail": "x", "status": "404", "title": "Not Found"}),
    );
    api.reject(
        400,
        &json!({"detail": "x", "status": 400, "title": "Bad", "extra": 1}),
    );
    assert!(api.check(404, b"not json").is_err());
}

/// Telnyx: `POST /v2/organizations/users/{id}/actions/remove`, and OrganizationUser exactly as the
/// page has it, in the removal's answer and in the list.
#[tokio::test]
async fn telnyx_removal_answers_match_the_page() {
    let api = Endpoint::new("telnyx", "/organizations/users/{id}/actions/remove", "post");
    let user = "6a09cdc3-8948-47f0-aa62-74ac943d6c58";
    let owner = "11111111-2222-4333-8444-555555555555";
    let seed = Seed::default()
        .member_with_email(ProviderKind::Telnyx, None, user, "ann@x.example")
        .owner(ProviderKind::Telnyx, None, owner)
        .many(ProviderKind::Telnyx, None, 40);
    let sb = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let token = env(&sb, "SANDBOX_TELNYX_TOKEN");
    let base = sb.base_url(ProviderKind::Telnyx);
    let remove = |id: &str, token: &str, prefix: &str| {
        client()
            .post(format!(
                "{base}{prefix}/v2/organizations/users/{id}/actions/remove"
            ))
            .bearer_auth(token)
            .send()
    };

    let body = api
        .expect(remove(user, &token, "").await.unwrap(), 200)
        .await;
    let removed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(removed["data"]["id"], user);
    api.expect(remove(user, &token, "").await.unwrap(), 404)
        .await;
    // A base URL that already ends in /v2: the same documented 404.
    let body = api
        .expect(remove(owner, &token, "/v2").await.unwrap(), 404)
        .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errors"][0]["code"], "10005");
    api.expect(remove(owner, &token, "").await.unwrap(), 403)
        .await;
    api.expect(remove(owner, "KEYwrong", "").await.unwrap(), 401)
        .await;

    // OrganizationUser: only the page's properties (additional ones refused), groups only when
    // asked, and a never-signed-in user's null.
    let mut exact = schema(
        &api.doc,
        &json!({"$ref": "#/components/schemas/OrganizationUser"}),
        0,
    );
    exact["additionalProperties"] = json!(false);
    let strict = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&exact)
        .unwrap();
    assert!(strict.is_valid(&removed["data"]), "{removed}");
    assert!(!strict.is_valid(&json!({"id": "x", "name": "extra"})));
    let mut nulls = 0;
    for groups in ["false", "true"] {
        let v: Value = client()
            .get(format!("{base}/v2/organizations/users"))
            .query(&[("page[size]", "250"), ("include_groups", groups)])
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 41);
        for u in data {
            let errors: Vec<String> = strict.iter_errors(u).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{u}: {errors:?}");
            assert_eq!(u.get("groups").is_some(), groups == "true", "{u}");
            nulls += usize::from(u["last_sign_in_at"].is_null());
        }
        let owners: Vec<_> = data
            .iter()
            .filter(|u| u["record_type"] == "organization_owner")
            .collect();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0]["id"], owner);
    }
    assert!(nulls > 0, "some users never signed in");

    api.check(200, br#"{"data": {"last_sign_in_at": null}}"#)
        .unwrap();
    api.reject(200, &json!({"data": {"user_status": "deleted"}}));
    api.reject(200, &json!({"data": {"last_sign_in_at": 5}}));
    api.reject(404, &json!({"errors": [{"code": 10005}]}));
    api.reject(404, &json!({"errors": {"code": "10005"}}));
}

/// Cognee: `DELETE /api/v1/permissions/tenants/{tenant_id}/users/{user_id}`, 200 and 422.
#[tokio::test]
async fn cognee_removal_answers_match_the_page() {
    let api = Endpoint::new(
        "cognee",
        "/api/v1/permissions/tenants/{tenant_id}/users/{user_id}",
        "delete",
    );
    let user = "7b09cdc3-8948-47f0-aa62-74ac943d6c59";
    let seed = Seed::default().member(ProviderKind::Cognee, Some(TENANT), user);
    let sb = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let key = env(&sb, "SANDBOX_COGNEE_API_KEY");
    let base = sb.base_url(ProviderKind::Cognee);
    let remove = |tenant: &str, user: &str| {
        client()
            .delete(format!(
                "{base}/api/v1/permissions/tenants/{tenant}/users/{user}"
            ))
            .header("X-Api-Key", &key)
            .send()
    };

    let body = api.expect(remove(TENANT, user).await.unwrap(), 200).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["message"].is_string(), "200 carries a message: {v}");
    let body = api.expect(remove("acme", "x").await.unwrap(), 422).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["detail"].as_array().unwrap().len(), 2);
    api.expect(remove(TENANT, "not-a-uuid").await.unwrap(), 422)
        .await;

    api.reject(422, &json!({"detail": "Not Found"}));
    api.reject(422, &json!({"detail": [{"loc": ["path"], "msg": "bad"}]}));
    api.reject(
        422,
        &json!({"detail": [{"loc": [{}], "msg": "bad", "type": "x"}]}),
    );
    assert!(api.check(200, b"").is_err(), "200 has a JSON body");
}
