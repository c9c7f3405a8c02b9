//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9): which attributes of a
//! resource an answer carries. Names are case-insensitive, may name a sub-attribute
//! (`name.givenName`, `emails.value`) and may be qualified by their schema's URN
//! (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`, or the extension's
//! URN alone for all of it). `id` and `schemas` are always returned.

use serde_json::{Map, Value};

const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:user:";
const ALWAYS: [&str; 2] = ["id", "schemas"];

/// What to return of each resource.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    only: Vec<Name>,
    except: Vec<Name>,
}

/// One attribute name: in the core schema or an extension (`urn`, lowercased), with its
/// sub-attribute. An extension's URN alone has no `attr`.
#[derive(Debug, Clone, PartialEq)]
struct Name {
    urn: Option<String>,
    attr: Option<String>,
    sub: Option<String>,
}

fn parse(name: &str, extensions: &[&str]) -> Name {
    let lower = name.trim().to_lowercase();
    let lower = lower.strip_prefix(CORE).unwrap_or(&lower).to_owned();
    for ext in extensions {
        let e = ext.to_lowercase();
        if lower == e {
            return Name {
                urn: Some(e),
                attr: None,
                sub: None,
            };
        }
        if let Some(rest) = lower.strip_prefix(&format!("{e}:")) {
            let (attr, sub) = split(rest);
            return Name {
                urn: Some(e),
                attr: Some(attr),
                sub,
            };
        }
    }
    let (attr, sub) = split(&lower);
    Name {
        urn: None,
        attr: Some(attr),
        sub,
    }
}

fn split(s: &str) -> (String, Option<String>) {
    match s.split_once('.') {
        Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
        None => (s.to_owned(), None),
    }
}

fn names(list: &[String], extensions: &[&str]) -> Vec<Name> {
    list.iter()
        .flat_map(|l| l.split(','))
        .filter(|n| !n.trim().is_empty())
        .map(|n| parse(n, extensions))
        .collect()
}

impl Projection {
    /// From the comma-separated query parameters (or a SearchRequest's arrays). `extensions`:
    /// the URNs of the schema extensions a resource may carry.
    pub fn new(attributes: &[String], excluded: &[String], extensions: &[&str]) -> Projection {
        Projection {
            only: names(attributes, extensions),
            except: names(excluded, extensions),
        }
    }

    /// Applies the projection to a rendered resource.
    pub fn apply(&self, resource: &mut Value) {
        let Value::Object(m) = resource else {
            return;
        };
        if !self.only.is_empty() {
            keep_only(m, &self.only);
        }
        for n in &self.except {
            remove(m, n);
        }
    }
}

/// The key of `m` that is `name` without regard to case.
fn key(m: &Map<String, Value>, name: &str) -> Option<String> {
    m.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// The object a name's attribute lives in: the resource, or its extension's object.
fn holder<'a>(m: &'a mut Map<String, Value>, n: &Name) -> Option<&'a mut Map<String, Value>> {
    match &n.urn {
        None => Some(m),
        Some(urn) => {
            let k = key(m, urn)?;
            m.get_mut(&k)?.as_object_mut()
        }
    }
}

fn remove(m: &mut Map<String, Value>, n: &Name) {
    let Some(attr) = &n.attr else {
        if let Some(k) = n.urn.as_deref().and_then(|u| key(m, u)) {
            m.remove(&k);
        }
        return;
    };
    if n.urn.is_none() && ALWAYS.contains(&attr.as_str()) {
        return;
    }
    let Some(h) = holder(m, n) else { return };
    let Some(k) = key(h, attr) else { return };
    match &n.sub {
        None => {
            h.remove(&k);
        }
        Some(sub) => match h.get_mut(&k) {
            Some(Value::Object(o)) => {
                if let Some(s) = key(o, sub) {
                    o.remove(&s);
                }
            }
            Some(Value::Array(items)) => {
                for o in items.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(s) = key(o, sub) {
                        o.remove(&s);
                    }
                }
            }
            _ => {}
        },
    }
}

/// Keeps what `only` names (and what is always returned).
fn keep_only(m: &mut Map<String, Value>, only: &[Name]) {
    let original = std::mem::take(m);
    for (k, v) in original {
        let lk = k.to_lowercase();
        if ALWAYS.contains(&lk.as_str()) {
            m.insert(k, v);
            continue;
        }
        // An extension's object: kept whole, in part, or not at all.
        let in_ext: Vec<&Name> = only
            .iter()
            .filter(|n| n.urn.as_deref() == Some(lk.as_str()))
            .collect();
        if !in_ext.is_empty() {
            if in_ext.iter().any(|n| n.attr.is_none()) {
                m.insert(k, v);
            } else if let Value::Object(o) = v {
                let mut kept = Map::new();
                keep_only_core(o, &in_ext, &mut kept);
                m.insert(k, Value::Object(kept));
            }
            continue;
        }
        let core: Vec<&Name> = only.iter().filter(|n| n.urn.is_none()).collect();
        let mut one = Map::new();
        one.insert(k, v);
        keep_only_core(one, &core, m);
    }
}

/// Moves into `out` the attributes of `from` that `names` name (whole, or their sub-attributes).
fn keep_only_core(from: Map<String, Value>, names: &[&Name], out: &mut Map<String, Value>) {
    for (k, v) in from {
        let lk = k.to_lowercase();
        let wanted: Vec<&&Name> = names
            .iter()
            .filter(|n| n.attr.as_deref() == Some(lk.as_str()))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        if wanted.iter().any(|n| n.sub.is_none()) {
            out.insert(k, v);
            continue;
        }
        let subs: Vec<&str> = wanted.iter().filter_map(|n| n.sub.as_deref()).collect();
        let pick = |o: Map<String, Value>| -> Map<String, Value> {
            o.into_iter()
                .filter(|(sk, _)| subs.iter().any(|s| sk.eq_ignore_ascii_case(s)))
                .collect()
        };
        match v {
            Value::Object(o) => {
                out.insert(k, Value::Object(pick(o)));
            }
            Value::Array(items) => {
                let items = items
                    .into_iter()
                    .map(|i| match i {
                        Value::Object(o) => Value::Object(pick(o)),
                        other => other,
                    })
                    .collect();
                out.insert(k, Value::Array(items));
            }
            other => {
                out.insert(k, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
            "id": "u1",
            "userName": "zoe@acme.example",
            "name": {"givenName": "Zoe", "familyName": "Zhang"},
            "emails": [{"value": "zoe@acme.example", "type": "work", "primary": true}],
            "active": true,
            ENT: {"employeeNumber": "42", "department": "R&D"},
            "meta": {"resourceType": "User"}
        })
    }

    fn projected(only: &[&str], except: &[&str]) -> Value {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut u = user();
        Projection::new(&s(only), &s(except), &[ENT]).apply(&mut u);
        u
    }

    #[test]
    fn excluded_attributes_go_and_id_and_schemas_stay() {
        let u = projected(
            &[],
            &["NAME", "emails.type", "id", &format!("{ENT}:department")],
        );
        assert!(u.get("name").is_none());
        assert_eq!(
            u["emails"][0],
            json!({"value": "zoe@acme.example", "primary": true})
        );
        assert_eq!(u["id"], "u1", "always returned");
        assert_eq!(u[ENT], json!({"employeeNumber": "42"}));
        let u = projected(
            &[],
            &[ENT, "urn:ietf:params:scim:schemas:core:2.0:User:active"],
        );
        assert!(u.get(ENT).is_none() && u.get("active").is_none());
    }

    #[test]
    fn attributes_keep_only_what_they_name() {
        let u = projected(
            &["userName,name.givenName", &format!("{ENT}:employeeNumber")],
            &[],
        );
        assert_eq!(
            u,
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
                "id": "u1",
                "userName": "zoe@acme.example",
                "name": {"givenName": "Zoe"},
                ENT: {"employeeNumber": "42"}
            })
        );
        let u = projected(&["emails.value", ENT], &[]);
        assert_eq!(u["emails"], json!([{"value": "zoe@acme.example"}]));
        assert_eq!(u[ENT]["department"], "R&D");
        assert!(u.get("meta").is_none() && u.get("userName").is_none());
    }
}
