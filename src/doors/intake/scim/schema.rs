//! SCIM discovery (RFC 7644 §4): what this server supports, its one resource type and its schemas.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{CORE, ENTERPRISE, LIST, MAX_RESULTS, ScimError, scim};

pub(super) async fn service_provider_config() -> Response {
    scim(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": MAX_RESULTS },
            "changePassword": { "supported": false },
            "sort": { "supported": false },
            "etag": { "supported": false },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "A long-lived Bearer token from the intake's configuration.",
                "primary": true
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": "/scim/v2/ServiceProviderConfig" }
        }),
    )
}

fn user_type() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A person an identity system provisions; deactivating them offboards them.",
        "schema": CORE,
        "schemaExtensions": [{ "schema": ENTERPRISE, "required": false }],
        "meta": { "resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/User" }
    })
}

fn list(resources: Vec<Value>) -> Response {
    scim(
        StatusCode::OK,
        json!({
            "schemas": [LIST],
            "totalResults": resources.len(),
            "startIndex": 1,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

pub(super) async fn resource_types() -> Response {
    list(vec![user_type()])
}

pub(super) async fn resource_type(Path(id): Path<String>) -> Response {
    if id == "User" {
        scim(StatusCode::OK, user_type())
    } else {
        ScimError::new(
            StatusCode::NOT_FOUND,
            None,
            format!("no resource type `{id}`"),
        )
        .into_response()
    }
}

fn attr(name: &str, kind: &str, multi: bool, case_exact: bool, uniqueness: &str) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": multi, "required": name == "userName",
        "caseExact": case_exact, "mutability": "readWrite", "returned": "default",
        "uniqueness": uniqueness
    })
}

fn schemas_known() -> Vec<Value> {
    let mut name = attr("name", "complex", false, false, "none");
    name["subAttributes"] = json!(
        ["formatted", "familyName", "givenName", "middleName"]
            .iter()
            .map(|n| attr(n, "string", false, false, "none"))
            .collect::<Vec<_>>()
    );
    let mut emails = attr("emails", "complex", true, false, "none");
    emails["subAttributes"] = json!([
        attr("value", "string", false, false, "none"),
        attr("type", "string", false, false, "none"),
        attr("primary", "boolean", false, false, "none"),
    ]);
    let mut manager = attr("manager", "complex", false, false, "none");
    manager["subAttributes"] = json!([attr("value", "string", false, false, "none")]);
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": CORE, "name": "User", "description": "User Account",
            "attributes": [
                attr("userName", "string", false, false, "server"),
                attr("externalId", "string", false, true, "none"),
                name,
                attr("displayName", "string", false, false, "none"),
                emails,
                attr("active", "boolean", false, false, "none"),
            ],
            "meta": { "resourceType": "Schema", "location": format!("/scim/v2/Schemas/{CORE}") }
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": ENTERPRISE, "name": "EnterpriseUser", "description": "Enterprise User",
            "attributes": [
                attr("employeeNumber", "string", false, false, "none"),
                attr("department", "string", false, false, "none"),
                manager,
            ],
            "meta": { "resourceType": "Schema", "location": format!("/scim/v2/Schemas/{ENTERPRISE}") }
        }),
    ]
}

pub(super) async fn schemas() -> Response {
    list(schemas_known())
}

pub(super) async fn schema(Path(id): Path<String>) -> Response {
    match schemas_known().into_iter().find(|s| s["id"] == id.as_str()) {
        Some(s) => scim(StatusCode::OK, s),
        None => {
            ScimError::new(StatusCode::NOT_FOUND, None, format!("no schema `{id}`")).into_response()
        }
    }
}
