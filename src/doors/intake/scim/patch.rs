//! SCIM PATCH (RFC 7644 §3.5.2) on a user held as a JSON map, in every form Entra and Okta send:
//! `op` in any case, with or without a path, dotted and URN-qualified paths, value filters, and
//! `active` as a bool or Entra's strings "True"/"False". All or nothing: a failing operation
//! leaves the user as it was. Lenient where the RFC lets a client be: removing what is not there
//! succeeds, and a filtered add/replace that matches nothing adds a matching element (Entra
//! replaces `emails[type eq "work"].value` on users without a work email).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::filter::{self, AttrPath, ENTERPRISE, Filter};

#[derive(Debug, Deserialize)]
pub struct PatchRequest {
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(rename = "Operations", alias = "operations")]
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Operation {
    #[serde(alias = "Op")]
    pub op: String,
    #[serde(default, alias = "Path")]
    pub path: Option<String>,
    #[serde(default, alias = "Value")]
    pub value: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct PatchError {
    /// RFC 7644 §3.12: invalidSyntax, invalidPath, noTarget, invalidValue, mutability.
    pub scim_type: &'static str,
    pub detail: String,
}

fn fail<T>(scim_type: &'static str, detail: impl Into<String>) -> Result<T, PatchError> {
    Err(PatchError {
        scim_type,
        detail: detail.into(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Replace,
    Remove,
}

/// Where an operation points.
#[derive(Debug)]
enum Target {
    /// The enterprise extension's object as a whole.
    Extension,
    Attr {
        path: AttrPath,
        filter: Option<Filter>,
    },
}

const READ_ONLY: [&str; 3] = ["id", "meta", "schemas"];

fn parse_target(text: &str) -> Result<Target, PatchError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case(ENTERPRISE) {
        return Ok(Target::Extension);
    }
    let invalid = |e: filter::FilterError| PatchError {
        scim_type: "invalidPath",
        detail: format!("path `{text}`: {e}"),
    };
    let (path, filter) = match text.find('[') {
        None => (filter::parse_attr(text).map_err(invalid)?, None),
        Some(open) => {
            let close = text
                .rfind(']')
                .filter(|c| *c > open)
                .ok_or_else(|| invalid(filter::FilterError("no closing `]`".into())))?;
            let inner = filter::parse(&text[open + 1..close]).map_err(invalid)?;
            let after = &text[close + 1..];
            let joined = match after.strip_prefix('.') {
                Some(sub) => format!("{}.{sub}", &text[..open]),
                None if after.is_empty() => text[..open].to_owned(),
                None => {
                    return Err(invalid(filter::FilterError(format!(
                        "unexpected `{after}`"
                    ))));
                }
            };
            (filter::parse_attr(&joined).map_err(invalid)?, Some(inner))
        }
    };
    if !path.extension && READ_ONLY.iter().any(|r| path.name.eq_ignore_ascii_case(r)) {
        return fail(
            "mutability",
            format!("`{}` is set by the server", path.name),
        );
    }
    Ok(Target::Attr { path, filter })
}

/// The key `name` has in `m` (its own case, if present), else `name`.
fn key(m: &Map<String, Value>, name: &str) -> String {
    m.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// The object holding `path`'s attribute: the user, or its extension object (made if asked).
fn container(
    user: &mut Map<String, Value>,
    extension: bool,
    create: bool,
) -> Option<&mut Map<String, Value>> {
    if !extension {
        return Some(user);
    }
    let k = key(user, ENTERPRISE);
    if create && !matches!(user.get(&k), Some(Value::Object(_))) {
        user.insert(k.clone(), Value::Object(Map::new()));
    }
    user.get_mut(&k).and_then(Value::as_object_mut)
}

/// Sets `value` at `name` in `m`: objects merge into objects, `add` appends to arrays.
fn put(m: &mut Map<String, Value>, name: &str, value: Value, kind: Kind) {
    let k = key(m, name);
    match (m.get_mut(&k), value) {
        (Some(Value::Object(have)), Value::Object(new)) => {
            for (n, v) in new {
                put(have, &n, v, kind);
            }
        }
        (Some(Value::Array(have)), new) if kind == Kind::Add => {
            let new = match new {
                Value::Array(a) => a,
                v => vec![v],
            };
            for v in new {
                if !have.contains(&v) {
                    have.push(v);
                }
            }
        }
        (_, new) => {
            m.insert(k, new);
        }
    }
}

fn set(
    user: &mut Map<String, Value>,
    target: Target,
    value: Value,
    kind: Kind,
) -> Result<(), PatchError> {
    let (path, filter) = match target {
        Target::Extension => {
            let Value::Object(v) = value else {
                return fail("invalidValue", "the enterprise extension takes an object");
            };
            let ext = container(user, true, true).expect("made");
            for (n, v) in v {
                put(ext, &n, v, kind);
            }
            return Ok(());
        }
        Target::Attr { path, filter } => (path, filter),
    };
    let m = container(user, path.extension, true).expect("made");
    // Entra sends the manager as a bare id.
    let value = match value {
        Value::String(s)
            if path.extension
                && path.name.eq_ignore_ascii_case("manager")
                && path.sub.is_none() =>
        {
            serde_json::json!({ "value": s })
        }
        v => v,
    };
    let Some(filter) = filter else {
        match &path.sub {
            None => put(m, &path.name, value, kind),
            Some(sub) => {
                let k = key(m, &path.name);
                match m.get_mut(&k) {
                    Some(Value::Object(o)) => put(o, sub, value, kind),
                    Some(Value::Array(a)) if !a.is_empty() => {
                        for e in a.iter_mut().filter_map(Value::as_object_mut) {
                            put(e, sub, value.clone(), kind);
                        }
                    }
                    _ => {
                        let mut o = Map::new();
                        o.insert(sub.clone(), value);
                        m.insert(k, Value::Object(o));
                    }
                }
            }
        }
        return Ok(());
    };
    let k = key(m, &path.name);
    if !matches!(m.get(&k), Some(Value::Array(_))) {
        m.insert(k.clone(), Value::Array(vec![]));
    }
    let Some(Value::Array(elements)) = m.get_mut(&k) else {
        unreachable!("made an array above")
    };
    let mut matched = false;
    for e in elements.iter_mut() {
        let Some(o) = e.as_object_mut() else { continue };
        if !filter.matches(o) {
            continue;
        }
        matched = true;
        match (&path.sub, &value) {
            (Some(sub), v) => put(o, sub, v.clone(), kind),
            (None, Value::Object(v)) if kind == Kind::Add => {
                for (n, x) in v {
                    put(o, n, x.clone(), kind);
                }
            }
            (None, v) => *e = v.clone(),
        }
    }
    if !matched {
        let mut made = Map::new();
        for (n, v) in filter.equalities() {
            made.insert(n, v);
        }
        match (&path.sub, value) {
            (Some(sub), v) => {
                made.insert(sub.clone(), v);
            }
            (None, Value::Object(v)) => made.extend(v),
            (None, _) => {
                return fail(
                    "invalidValue",
                    "a filtered path without a sub-attribute takes an object",
                );
            }
        }
        elements.push(Value::Object(made));
    }
    Ok(())
}

fn remove(user: &mut Map<String, Value>, target: Target, value: Option<Value>) {
    let (path, filter) = match target {
        Target::Extension => {
            let k = key(user, ENTERPRISE);
            user.remove(&k);
            return;
        }
        Target::Attr { path, filter } => (path, filter),
    };
    let Some(m) = container(user, path.extension, false) else {
        return;
    };
    let k = key(m, &path.name);
    match (filter, &path.sub, m.get_mut(&k)) {
        (None, None, Some(Value::Array(a))) if value.is_some() => {
            // `remove` with values: drop the elements equal to them (by `value`, without case).
            let drop: Vec<Value> = match value {
                Some(Value::Array(v)) => v,
                Some(v) => vec![v],
                None => vec![],
            };
            let id = |v: &Value| match v {
                Value::Object(o) => filter::get(o, "value").cloned(),
                v => Some(v.clone()),
            };
            let same = |a: &Value, b: &Value| match (id(a), id(b)) {
                (Some(Value::String(x)), Some(Value::String(y))) => x.eq_ignore_ascii_case(&y),
                (x, y) => x == y,
            };
            a.retain(|e| !drop.iter().any(|d| same(e, d)));
        }
        (None, None, _) => {
            m.remove(&k);
        }
        (None, Some(sub), Some(Value::Object(o))) => {
            let s = key(o, sub);
            o.remove(&s);
        }
        (None, Some(sub), Some(Value::Array(a))) => {
            for o in a.iter_mut().filter_map(Value::as_object_mut) {
                let s = key(o, sub);
                o.remove(&s);
            }
        }
        (Some(f), None, Some(Value::Array(a))) => {
            a.retain(|e| !e.as_object().is_some_and(|o| f.matches(o)));
            if a.is_empty() {
                m.remove(&k);
            }
        }
        (Some(f), Some(sub), Some(Value::Array(a))) => {
            for o in a.iter_mut().filter_map(Value::as_object_mut) {
                if f.matches(o) {
                    let s = key(o, sub);
                    o.remove(&s);
                }
            }
        }
        _ => {}
    }
}

fn apply_one(user: &mut Map<String, Value>, op: &Operation) -> Result<(), PatchError> {
    let kind = match op.op.to_ascii_lowercase().as_str() {
        "add" => Kind::Add,
        "replace" => Kind::Replace,
        "remove" => Kind::Remove,
        other => return fail("invalidSyntax", format!("unknown op `{other}`")),
    };
    let path = op.path.as_deref().map(str::trim).filter(|p| !p.is_empty());
    match (kind, path) {
        (Kind::Remove, None) => fail("noTarget", "remove needs a path"),
        (Kind::Remove, Some(p)) => {
            remove(user, parse_target(p)?, op.value.clone());
            Ok(())
        }
        // RFC 7643 §2.5: null is unassigned (serde reads a null value as none). Entra clears a
        // manager so.
        (Kind::Replace, Some(p)) if op.value.is_none() => {
            remove(user, parse_target(p)?, None);
            Ok(())
        }
        (_, Some(p)) => {
            let Some(value) = op.value.clone() else {
                return fail(
                    "invalidValue",
                    format!("{} of `{p}` without a value", op.op),
                );
            };
            set(user, parse_target(p)?, value, kind)
        }
        (_, None) => {
            let Some(Value::Object(values)) = op.value.clone() else {
                return fail(
                    "invalidValue",
                    "an operation without a path takes an object",
                );
            };
            for (name, value) in values {
                // Okta repeats the read-only `id`; it changes nothing.
                if READ_ONLY.iter().any(|r| name.eq_ignore_ascii_case(r)) {
                    continue;
                }
                set(user, parse_target(&name)?, value, kind)?;
            }
            Ok(())
        }
    }
}

/// Applies every operation, or none.
pub fn apply(user: &mut Map<String, Value>, ops: &[Operation]) -> Result<(), PatchError> {
    if ops.is_empty() {
        return fail("invalidValue", "no Operations");
    }
    let mut work = user.clone();
    for op in ops {
        apply_one(&mut work, op)?;
    }
    normalize_active(&mut work)?;
    *user = work;
    Ok(())
}

/// Makes `active` a bool (Entra sends "True"/"False"), under that exact key.
pub fn normalize_active(user: &mut Map<String, Value>) -> Result<(), PatchError> {
    let k = key(user, "active");
    let Some(v) = user.remove(&k) else {
        return Ok(());
    };
    let active = match &v {
        Value::Bool(b) => *b,
        Value::String(s) if s.eq_ignore_ascii_case("true") => true,
        Value::String(s) if s.eq_ignore_ascii_case("false") => false,
        other => {
            return fail(
                "invalidValue",
                format!("active must be true or false, got {other}"),
            );
        }
    };
    user.insert("active".into(), Value::Bool(active));
    Ok(())
}

/// Whether the user is active (absent: yes).
pub fn is_active(user: &Map<String, Value>) -> bool {
    !matches!(filter::get(user, "active"), Some(Value::Bool(false)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Map<String, Value> {
        json!({
            "userName": "jane@acme.example", "active": true, "displayName": "Jane",
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "jane@acme.example", "type": "work", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "42"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn ops(v: Value) -> Vec<Operation> {
        serde_json::from_value(v).unwrap()
    }

    fn patched(v: Value) -> Map<String, Value> {
        let mut u = user();
        apply(&mut u, &ops(v)).unwrap_or_else(|e| panic!("{e}"));
        u
    }

    #[test]
    fn entra_deactivates_with_the_string_false_and_okta_without_a_path() {
        let u = patched(json!([{"op": "Replace", "path": "active", "value": "False"}]));
        assert_eq!(u["active"], json!(false));
        assert!(!is_active(&u));
        let u = patched(json!([{"op": "replace", "value": {"id": "x", "active": false}}]));
        assert_eq!(u["active"], json!(false));
        assert!(u.get("id").is_none(), "Okta's read-only id is ignored");
        let u = patched(json!([{"op": "replace", "path": "active", "value": false}]));
        assert!(!is_active(&u));
        let u = patched(json!([{"op": "REPLACE", "path": "ACTIVE", "value": "true"}]));
        assert!(is_active(&u));
        assert_eq!(u["active"], json!(true));
    }

    #[test]
    fn paths_dotted_urn_and_filtered() {
        let u = patched(json!([
            {"op": "Replace", "path": "name.givenName", "value": "Janet"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:displayName", "value": "J"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "m-1"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "janet@acme.example"}
        ]));
        assert_eq!(
            u["name"],
            json!({"givenName": "Janet", "familyName": "Doe"})
        );
        assert_eq!(u["displayName"], "J");
        let ext = &u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
        assert_eq!(ext["manager"], json!({"value": "m-1"}));
        assert_eq!(ext["employeeNumber"], "42");
        assert_eq!(u["emails"].as_array().unwrap().len(), 1);
        assert_eq!(u["emails"][0]["value"], "janet@acme.example");
        assert_eq!(u["emails"][0]["primary"], true);
    }

    #[test]
    fn a_filtered_path_matching_nothing_adds_a_matching_element() {
        let u = patched(json!([
            {"op": "Add", "path": "emails[type eq \"home\"].value", "value": "j@home.example"},
            {"op": "replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"}
        ]));
        assert_eq!(
            u["emails"][1],
            json!({"type": "home", "value": "j@home.example"})
        );
        assert_eq!(
            u["phoneNumbers"],
            json!([{"type": "mobile", "value": "+1 555"}])
        );
    }

    #[test]
    fn add_without_a_path_takes_attributes_and_dotted_names() {
        let u = patched(json!([{"op": "Add", "value": {
            "nickName": "JJ", "name.familyName": "Dough",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Finance",
            "emails": [{"value": "jj@acme.example", "type": "other"}]
        }}]));
        assert_eq!(u["nickName"], "JJ");
        assert_eq!(u["name"]["familyName"], "Dough");
        assert_eq!(u["name"]["givenName"], "Jane");
        assert_eq!(
            u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
            "Finance"
        );
        assert_eq!(u["emails"].as_array().unwrap().len(), 2, "add appends");
        let u = patched(
            json!([{"op": "replace", "value": {"emails": [{"value": "only@acme.example"}]}}]),
        );
        assert_eq!(u["emails"].as_array().unwrap().len(), 1, "replace replaces");
    }

    #[test]
    fn remove_by_path_filter_and_value_and_of_what_is_not_there() {
        let u = patched(json!([
            {"op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"},
            {"op": "Remove", "path": "name.givenName"},
            {"op": "Remove", "path": "title"},
            {"op": "Remove", "path": "emails[type eq \"home\"]"}
        ]));
        let ext = &u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
        assert!(ext.get("employeeNumber").is_none());
        assert_eq!(u["name"], json!({"familyName": "Doe"}));
        assert_eq!(
            u["emails"].as_array().unwrap().len(),
            1,
            "no home email: nothing removed"
        );
        let u = patched(json!([{"op": "Remove", "path": "emails[type eq \"work\"]"}]));
        assert!(u.get("emails").is_none());
        let u = patched(
            json!([{"op": "Remove", "path": "emails", "value": [{"value": "JANE@acme.example"}]}]),
        );
        assert_eq!(u["emails"], json!([]));
        // A replace with null unassigns (RFC 7643 §2.5).
        let u = patched(
            json!([{"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": null}]),
        );
        let ext = &u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
        assert!(ext.get("employeeNumber").is_none(), "{u:?}");
    }

    #[test]
    fn refusals_leave_the_user_as_it_was() {
        for (v, kind) in [
            (json!([{"op": "remove"}]), "noTarget"),
            (
                json!([{"op": "move", "path": "x", "value": 1}]),
                "invalidSyntax",
            ),
            (
                json!([{"op": "replace", "path": "id", "value": "x"}]),
                "mutability",
            ),
            (
                json!([{"op": "replace", "path": "emails[type eq", "value": "x"}]),
                "invalidPath",
            ),
            (
                json!([{"op": "replace", "path": "active", "value": "maybe"}]),
                "invalidValue",
            ),
            (json!([{"op": "add", "path": "nickName"}]), "invalidValue"),
            (
                json!([{"op": "add", "value": "not an object"}]),
                "invalidValue",
            ),
            (json!([]), "invalidValue"),
        ] {
            let mut u = user();
            let e = apply(&mut u, &ops(v.clone())).expect_err(&v.to_string());
            assert_eq!(e.scim_type, kind, "{v}: {e}");
            assert_eq!(u, user(), "{v}: unchanged");
        }
        // All or nothing: the first operation is undone when the second fails.
        let mut u = user();
        let two = ops(json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "meta", "value": {}}
        ]));
        assert!(apply(&mut u, &two).is_err());
        assert_eq!(u["displayName"], "Jane");
    }

    #[test]
    fn patch_requests_read_either_spelling_of_operations() {
        let r: PatchRequest = serde_json::from_value(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
        }))
        .unwrap();
        assert_eq!(r.operations.len(), 1);
        let r: PatchRequest = serde_json::from_value(
            json!({"schemas": [], "operations": [{"op": "add", "value": {}}]}),
        )
        .unwrap();
        assert_eq!(r.operations[0].op, "add");
    }
}
