//! The providers' id formats, one parser each: what a door's string must be to reach a URL path.

use std::fmt;

use super::Invalid;
use super::invalid::bad;

/// An email address, as Factory takes it. Kept as given (trimmed); compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(Box<str>);

impl Email {
    pub fn parse(field: &'static str, s: &str) -> Result<Email, Invalid> {
        let ok = s.len() <= 254
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>(),;:\"[]\\".contains(c))
            && match s.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains("..")
                }
                None => false,
            };
        if ok {
            Ok(Email(s.into()))
        } else {
            Err(bad(field, format!("`{s}` is not an email address")))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An id with a fixed prefix and a body of `[A-Za-z0-9_-]`, such as Aitronos `usr_*`.
///
/// The body's alphabet keeps ids safe to place in a URL path as they are: no `/`, `.`, `%`, `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixedId(Box<str>);

impl PrefixedId {
    pub fn parse(field: &'static str, prefix: &str, s: &str) -> Result<PrefixedId, Invalid> {
        match s.strip_prefix(prefix) {
            Some(body) if !body.is_empty() && body.len() <= 128 && body.bytes().all(is_id_byte) => {
                Ok(PrefixedId(s.into()))
            }
            _ => Err(bad(field, format!("`{s}` is not a `{prefix}*` id"))),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// A Telnyx organization user id: the API page types it as a string (its example is a UUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueId(Box<str>);

impl OpaqueId {
    pub fn parse(field: &'static str, s: &str) -> Result<OpaqueId, Invalid> {
        if !s.is_empty() && s.len() <= 128 && s.bytes().all(is_id_byte) {
            Ok(OpaqueId(s.into()))
        } else {
            Err(bad(
                field,
                format!("`{s}` is not a user id (letters, digits, `-` and `_` only)"),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A UUID, written back in its canonical hyphenated lowercase form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub uuid::Uuid);

impl Uuid {
    pub fn parse(field: &'static str, s: &str) -> Result<Uuid, Invalid> {
        // Only the hyphenated form: a braced or URN form in a spreadsheet is more likely a paste error.
        if s.len() == 36 {
            if let Ok(u) = uuid::Uuid::try_parse(s) {
                return Ok(Uuid(u));
            }
        }
        Err(bad(field, format!("`{s}` is not a UUID")))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}
