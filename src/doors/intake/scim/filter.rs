//! SCIM filters (RFC 7644 §3.4.2.2) and attribute paths, over a user held as a JSON map.
//!
//! Attribute names match without case (RFC 7643 §2.1); string values too, except for the
//! case-exact `id` and `externalId`. Paths may carry the core or the enterprise schema's URN.

use serde_json::{Map, Value};

/// The enterprise extension's URN: its attributes live in an object under this key.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Hostile input is refused before it costs anything.
const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(msg.into()))
}

/// An attribute the store keeps an index on, for [`Filter::equality`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    UserName,
    ExternalId,
    Id,
}

/// `name` or `name.sub`, in the core schema or the enterprise extension.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub extension: bool,
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, Op, Value),
    /// `emails[type eq "work"]`: some element of a multi-valued attribute matches the inner filter.
    Within(AttrPath, Box<Filter>),
}

/// Splits a schema URN prefix off an attribute path: (in the extension, the rest).
fn strip_urn(text: &str) -> (bool, &str) {
    let lower = text.to_ascii_lowercase();
    for (urn, ext) in [(ENTERPRISE, true), (CORE, false)] {
        let prefix = format!("{}:", urn.to_ascii_lowercase());
        if lower.starts_with(&prefix) {
            return (ext, &text[prefix.len()..]);
        }
    }
    (false, text)
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

/// Parses `name`, `name.sub`, or either behind a schema URN.
pub fn parse_attr(text: &str) -> Result<AttrPath, FilterError> {
    let (extension, rest) = strip_urn(text.trim());
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    if !valid_name(name) || sub.is_some_and(|s| !valid_name(s)) {
        return err(format!("`{text}` is not an attribute path"));
    }
    Ok(AttrPath {
        extension,
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Str(String),
    Word(String),
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' | '[' | ']' => {
                out.push((
                    at,
                    match c {
                        '(' => Token::Open,
                        ')' => Token::Close,
                        '[' => Token::OpenBracket,
                        _ => Token::CloseBracket,
                    },
                ));
                i += 1;
            }
            '"' => {
                // A JSON string: find its end, then let serde_json read the escapes.
                let mut j = i + 1;
                let mut escaped = false;
                while j < chars.len() {
                    match chars[j].1 {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return err(format!("unterminated string at {at}"));
                }
                let end = chars[j].0 + 1;
                let s: String = serde_json::from_str(&text[at..end])
                    .map_err(|e| FilterError(format!("bad string at {at}: {e}")))?;
                out.push((at, Token::Str(s)));
                i = j + 1;
            }
            _ => {
                let mut j = i;
                while j < chars.len()
                    && !chars[j].1.is_whitespace()
                    && !matches!(chars[j].1, '(' | ')' | '[' | ']' | '"')
                {
                    j += 1;
                }
                let end = chars.get(j).map_or(text.len(), |c| c.0);
                out.push((at, Token::Word(text[at..end].to_owned())));
                i = j;
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }
    fn position(&self) -> usize {
        self.tokens.get(self.at).map_or(usize::MAX, |(p, _)| *p)
    }
    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(k))
    }
    fn expect(&mut self, t: Token, what: &str) -> Result<(), FilterError> {
        if self.peek() == Some(&t) {
            self.at += 1;
            Ok(())
        } else {
            err(format!("expected {what} at {}", self.describe()))
        }
    }
    fn describe(&self) -> String {
        match self.tokens.get(self.at) {
            Some((p, Token::Word(w))) => format!("{p} (found \"{w}\")"),
            Some((p, Token::Str(s))) => format!("{p} (found \"{s}\")"),
            Some((p, t)) => format!("{p} (found {t:?})"),
            None => "the end".into(),
        }
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err("the filter nests too deeply");
        }
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.keyword("not") && self.tokens.get(self.at + 1).map(|t| &t.1) == Some(&Token::Open) {
            self.at += 2;
            let inner = self.or()?;
            self.expect(Token::Close, "`)`")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Token::Close, "`)`")?;
            return Ok(inner);
        }
        let Some(Token::Word(word)) = self.peek().cloned() else {
            return err(format!("expected an attribute at {}", self.describe()));
        };
        let path =
            parse_attr(&word).map_err(|e| FilterError(format!("{e} at {}", self.position())))?;
        self.at += 1;
        if self.peek() == Some(&Token::OpenBracket) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Token::CloseBracket, "`]`")?;
            return Ok(Filter::Within(path, Box::new(inner)));
        }
        let Some(Token::Word(op)) = self.peek().cloned() else {
            return err(format!("expected an operator at {}", self.describe()));
        };
        let op = match op.to_ascii_lowercase().as_str() {
            "pr" => {
                self.at += 1;
                return Ok(Filter::Present(path));
            }
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "lt" => Op::Lt,
            "ge" => Op::Ge,
            "le" => Op::Le,
            _ => return err(format!("unknown operator at {}", self.describe())),
        };
        self.at += 1;
        let value = match self.peek().cloned() {
            Some(Token::Str(s)) => Value::String(s),
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => match serde_json::from_str::<serde_json::Number>(&w) {
                    Ok(n) => Value::Number(n),
                    Err(_) => return err(format!("expected a value at {}", self.describe())),
                },
            },
            _ => return err(format!("expected a value at {}", self.describe())),
        };
        self.at += 1;
        Ok(Filter::Compare(path, op, value))
    }
}

/// Parses a filter.
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    if text.len() > MAX_LEN {
        return err(format!("the filter is longer than {MAX_LEN} characters"));
    }
    let mut p = Parser {
        tokens: tokenize(text)?,
        at: 0,
        depth: 0,
    };
    let f = p.or()?;
    if p.at < p.tokens.len() {
        return err(format!("unexpected text at {}", p.describe()));
    }
    Ok(f)
}

/// An attribute of `m` by name, without case.
pub fn get<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The values `path` names in `m` (each element's, for a multi-valued attribute).
fn values<'a>(m: &'a Map<String, Value>, path: &AttrPath) -> Vec<&'a Value> {
    let base = if path.extension {
        match get(m, ENTERPRISE) {
            Some(Value::Object(e)) => e,
            _ => return vec![],
        }
    } else {
        m
    };
    let Some(v) = get(base, &path.name) else {
        return vec![];
    };
    // Without a sub-attribute, a complex multi-valued attribute compares by its `value`.
    let sub = path.sub.as_deref().or(match v {
        Value::Array(a) if a.iter().any(Value::is_object) => Some("value"),
        _ => None,
    });
    let pick = |v: &'a Value| -> Option<&'a Value> {
        match (sub, v) {
            (Some(s), Value::Object(o)) => get(o, s),
            (Some(_), _) => None,
            (None, v) => Some(v),
        }
    };
    match v {
        Value::Array(a) => a.iter().filter_map(pick).collect(),
        v => pick(v).into_iter().collect(),
    }
}

fn case_exact(path: &AttrPath) -> bool {
    !path.extension
        && path.sub.is_none()
        && (path.name.eq_ignore_ascii_case("id") || path.name.eq_ignore_ascii_case("externalId"))
}

fn compare(have: &Value, op: Op, want: &Value, exact: bool) -> bool {
    use std::cmp::Ordering;
    let fold = |s: &str| {
        if exact {
            s.to_owned()
        } else {
            s.to_lowercase()
        }
    };
    let ordering = match (have, want) {
        (Value::String(h), Value::String(w)) => {
            let (h, w) = (fold(h), fold(w));
            match op {
                Op::Co => return h.contains(&w),
                Op::Sw => return h.starts_with(&w),
                Op::Ew => return h.ends_with(&w),
                _ => Some(h.cmp(&w)),
            }
        }
        (Value::Number(h), Value::Number(w)) => h
            .as_f64()
            .zip(w.as_f64())
            .and_then(|(h, w)| h.partial_cmp(&w)),
        (Value::Bool(h), Value::Bool(w)) => Some(h.cmp(w)),
        // Entra may hold `active` as "True"/"False".
        (Value::String(h), Value::Bool(w)) => match h.to_ascii_lowercase().as_str() {
            "true" => Some(true.cmp(w)),
            "false" => Some(false.cmp(w)),
            _ => None,
        },
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match (op, ordering) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ne, Some(o)) => o != Ordering::Equal,
        (Op::Ne, None) => true,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        _ => false,
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

impl Filter {
    /// Whether the user (its attributes, with `id` and `active`) matches.
    pub fn matches(&self, m: &Map<String, Value>) -> bool {
        match self {
            Filter::And(a, b) => a.matches(m) && b.matches(m),
            Filter::Or(a, b) => a.matches(m) || b.matches(m),
            Filter::Not(f) => !f.matches(m),
            Filter::Present(p) => values(m, p).into_iter().any(present),
            Filter::Compare(p, op, want) => {
                let have = values(m, p);
                if have.is_empty() {
                    return *op == Op::Ne && !want.is_null();
                }
                let exact = case_exact(p);
                if *op == Op::Ne {
                    return have.iter().all(|h| compare(h, Op::Ne, want, exact));
                }
                have.iter().any(|h| compare(h, *op, want, exact))
            }
            Filter::Within(p, inner) => {
                let base = if p.extension {
                    match get(m, ENTERPRISE) {
                        Some(Value::Object(e)) => e,
                        _ => return false,
                    }
                } else {
                    m
                };
                match get(base, &p.name) {
                    Some(Value::Array(a)) => a
                        .iter()
                        .any(|e| e.as_object().is_some_and(|o| inner.matches(o))),
                    Some(Value::Object(o)) => inner.matches(o),
                    _ => false,
                }
            }
        }
    }

    /// `userName`, `externalId` or `id` `eq` a string, and nothing else: what an index answers.
    pub fn equality(&self) -> Option<(Attr, &str)> {
        let Filter::Compare(p, Op::Eq, Value::String(s)) = self else {
            return None;
        };
        if p.extension || p.sub.is_some() {
            return None;
        }
        let attr = match p.name.to_ascii_lowercase().as_str() {
            "username" => Attr::UserName,
            "externalid" => Attr::ExternalId,
            "id" => Attr::Id,
            _ => return None,
        };
        Some((attr, s))
    }

    /// The `attr eq value` comparisons an element must have to match (for making one that does).
    pub fn equalities(&self) -> Vec<(String, Value)> {
        match self {
            Filter::Compare(p, Op::Eq, v) if p.sub.is_none() => vec![(p.name.clone(), v.clone())],
            Filter::And(a, b) => {
                let mut out = a.equalities();
                out.extend(b.equalities());
                out
            }
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Map<String, Value> {
        json!({
            "id": "a1B2", "userName": "Jane.Doe@Acme.example", "externalId": "Ext-1", "active": true,
            "displayName": "Jane", "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "jane@acme.example", "type": "work", "primary": true},
                       {"value": "jd@home.example", "type": "home"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "42", "manager": {"value": "m-1"}}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn m(f: &str) -> bool {
        parse(f)
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .matches(&user())
    }

    #[test]
    fn every_operator() {
        assert!(m(r#"userName eq "jane.doe@acme.example""#));
        assert!(!m(r#"userName ne "JANE.DOE@acme.example""#));
        assert!(m(r#"userName co "doe@""#));
        assert!(m(r#"userName sw "jane""#));
        assert!(m(r#"userName ew ".EXAMPLE""#));
        assert!(m(r#"displayName gt "Ja""#));
        assert!(m(r#"displayName lt "K""#));
        assert!(m(r#"displayName ge "jane""#));
        assert!(m(r#"displayName le "jane""#));
        assert!(!m("title pr") && m("displayName pr"));
        assert!(m("active eq true") && !m("active eq false"));
        assert!(
            m(r#"userName EQ "jane.doe@acme.example""#),
            "operators without case"
        );
    }

    #[test]
    fn id_and_external_id_are_case_exact() {
        assert!(m(r#"id eq "a1B2""#) && !m(r#"id eq "A1b2""#));
        assert!(m(r#"externalId eq "Ext-1""#) && !m(r#"externalId eq "ext-1""#));
        assert!(
            m(r#"USERNAME eq "JANE.DOE@ACME.EXAMPLE""#),
            "names without case"
        );
    }

    #[test]
    fn logic_precedence_not_and_parentheses() {
        // and binds tighter: false or (true and true).
        assert!(m(
            r#"displayName eq "x" or userName sw "jane" and active eq true"#
        ));
        // (false or true) and false.
        assert!(!m(
            r#"(displayName eq "x" or userName sw "jane") and active eq false"#
        ));
        assert!(m(r#"not (displayName eq "x")"#));
        assert!(!m(r#"not(displayName eq "Jane")"#));
    }

    #[test]
    fn value_paths_sub_attributes_and_urns() {
        assert!(m(r#"emails[type eq "work" and primary eq true]"#));
        assert!(!m(r#"emails[type eq "other"]"#));
        assert!(m(r#"emails.value eq "jd@home.example""#));
        assert!(
            m(r#"emails eq "JANE@acme.example""#),
            "a complex attribute compares its value"
        );
        assert!(m(r#"name.familyName eq "doe""#));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "jane""#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42""#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m-1""#
        ));
    }

    #[test]
    fn strings_with_escapes_and_the_index_fast_path() {
        let f = parse(r#"userName eq "a\"b\\c""#).unwrap();
        assert_eq!(f.equality(), Some((Attr::UserName, "a\"b\\c")));
        assert_eq!(
            parse(r#"externalId eq "x""#).unwrap().equality(),
            Some((Attr::ExternalId, "x"))
        );
        assert_eq!(
            parse(r#"userName eq "x" and active eq true"#)
                .unwrap()
                .equality(),
            None
        );
        assert_eq!(parse(r#"displayName eq "x""#).unwrap().equality(), None);
    }

    #[test]
    fn malformed_filters_say_where() {
        for (f, says) in [
            (r#"userName eq "x"#, "unterminated string"),
            ("userName eq", "expected a value"),
            (r#"userName zz "x""#, "unknown operator"),
            (r#"userName eq "x" junk"#, "unexpected text"),
            (r#"(userName eq "x""#, "expected `)`"),
            (r#"emails[type eq "x""#, "expected `]`"),
            ("", "expected an attribute"),
            (r#"9abc eq "x""#, "not an attribute path"),
        ] {
            let e = parse(f).expect_err(f).0;
            assert!(e.contains(says), "{f}: {e}");
        }
        let deep = format!("{}a pr{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).unwrap_err().0.contains("deeply"));
        assert!(parse(&"a".repeat(5000)).unwrap_err().0.contains("longer"));
    }

    #[test]
    fn an_active_held_as_a_string_still_compares() {
        let mut u = user();
        u.insert("active".into(), json!("False"));
        assert!(parse("active eq false").unwrap().matches(&u));
    }
}
