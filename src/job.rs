//! Jobs: what one removal is, and the only way to get one from outside input.
//!
//! A door (CSV row, queue message) yields a [`RawJob`] of borrowed strings; [`Directory::validate`]
//! is the only way to turn it into a [`Job`], whose [`Target`] is already in the exact id format its
//! provider's API page asks for. Everything downstream can then trust the job without re-checking.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The five provider APIs this tool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Factory,
    Aitronos,
    Telnyx,
    Aerospike,
    Cognee,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 5] = [
        ProviderKind::Factory,
        ProviderKind::Aitronos,
        ProviderKind::Telnyx,
        ProviderKind::Aerospike,
        ProviderKind::Cognee,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Factory => "factory",
            ProviderKind::Aitronos => "aitronos",
            ProviderKind::Telnyx => "telnyx",
            ProviderKind::Aerospike => "aerospike",
            ProviderKind::Cognee => "cognee",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ProviderKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown provider kind `{s}` (expected factory, aitronos, telnyx, aerospike or cognee)"))
    }
}

/// A job as a door received it: strings as given, nothing checked yet.
///
/// Borrowed where the door allows it (a CSV record, a JSON message without escapes), so reading a row
/// costs no allocation until validation keeps what it needs.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawJob<'a> {
    #[serde(borrow, default)]
    pub provider: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub organization: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub transfer_to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub job_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub requested_by: Option<Cow<'a, str>>,
}

/// A field of a raw job, trimmed, with empty meaning absent.
fn field<'s>(v: &'s Option<Cow<'_, str>>) -> Option<&'s str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Why a raw job is not a job. Its `Display` names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("unknown provider `{0}`: not an entry of the config")]
    UnknownProvider(String),
    #[error("field `{field}`: {reason}")]
    Format { field: &'static str, reason: String },
    #[error("field `{field}` must be empty for {kind} ({why})")]
    NotApplicable {
        field: &'static str,
        kind: ProviderKind,
        why: &'static str,
    },
    #[error("unreadable row: {0}")]
    Unreadable(String),
    #[error("duplicate of line {first_line} (same provider, organization and user)")]
    Duplicate { first_line: u64 },
    #[error(
        "duplicate of job {job_id} within safety.window (same provider, organization and user)"
    )]
    DuplicateOf { job_id: String },
    /// Not invalid, but never to be removed: it matches `safety.protected`.
    #[error("protected account (matches `{pattern}` in safety.protected): never removed")]
    Protected { pattern: String },
}

impl Invalid {
    /// The outcome a job refused for this reason ends with.
    pub fn outcome(&self) -> crate::report::Outcome {
        match self {
            Invalid::Protected { .. } => crate::report::Outcome::SkippedProtected,
            _ => crate::report::Outcome::Invalid,
        }
    }

    /// A short stable code for reports and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Invalid::Missing(_) => "missing_field",
            Invalid::UnknownProvider(_) => "unknown_provider",
            Invalid::Format { .. } => "bad_format",
            Invalid::NotApplicable { .. } => "not_applicable",
            Invalid::Unreadable(_) => "unreadable_row",
            Invalid::Duplicate { .. } | Invalid::DuplicateOf { .. } => "duplicate",
            Invalid::Protected { .. } => "protected",
        }
    }
}

fn bad(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid::Format {
        field,
        reason: reason.into(),
    }
}

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

/// Whom to remove from where, in the exact form its provider's API takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `DELETE /api/v0/organization/users?email=E`; the API key picks the organization.
    Factory { email: Email },
    /// `DELETE /v1/organizations/{org_*}/users/{usr_*}` with `{"confirm": true, ...}`.
    Aitronos {
        organization: PrefixedId,
        user: PrefixedId,
        transfer_to: Option<PrefixedId>,
    },
    /// `POST /v2/organizations/users/{id}/actions/remove`; the API key picks the organization.
    Telnyx { user: OpaqueId },
    /// `DELETE /organization/members/{uuid}`; the API key picks the organization.
    Aerospike { user: Uuid },
    /// `DELETE /api/v1/permissions/tenants/{tenant}/users/{user}`.
    Cognee { tenant: Uuid, user: Uuid },
}

impl Target {
    pub fn kind(&self) -> ProviderKind {
        match self {
            Target::Factory { .. } => ProviderKind::Factory,
            Target::Aitronos { .. } => ProviderKind::Aitronos,
            Target::Telnyx { .. } => ProviderKind::Telnyx,
            Target::Aerospike { .. } => ProviderKind::Aerospike,
            Target::Cognee { .. } => ProviderKind::Cognee,
        }
    }

    /// The organization as written in reports (empty where the credential picks it).
    pub fn organization(&self) -> Option<String> {
        match self {
            Target::Aitronos { organization, .. } => Some(organization.as_str().to_owned()),
            Target::Cognee { tenant, .. } => Some(tenant.to_string()),
            _ => None,
        }
    }

    /// The user as written in reports.
    pub fn user(&self) -> String {
        match self {
            Target::Factory { email } => email.as_str().to_owned(),
            Target::Aitronos { user, .. } => user.as_str().to_owned(),
            Target::Telnyx { user } => user.as_str().to_owned(),
            Target::Aerospike { user } => user.to_string(),
            Target::Cognee { user, .. } => user.to_string(),
        }
    }

    /// Feeds the identity of this removal (organization and user, case-folded) to a hasher: two
    /// targets that remove the same membership hash alike, whatever the spelling.
    pub fn hash_identity<H: Hasher>(&self, h: &mut H) {
        fn folded<H: Hasher>(s: &str, h: &mut H) {
            for b in s.bytes() {
                h.write_u8(b.to_ascii_lowercase());
            }
            h.write_u8(0xff);
        }
        match self {
            Target::Factory { email } => folded(email.as_str(), h),
            Target::Aitronos {
                organization, user, ..
            } => {
                folded(organization.as_str(), h);
                folded(user.as_str(), h);
            }
            Target::Telnyx { user } => folded(user.as_str(), h),
            Target::Aerospike { user } => user.hash(h),
            Target::Cognee { tenant, user } => {
                tenant.hash(h);
                user.hash(h);
            }
        }
    }
}

/// Whom a job names: an id in the provider's own format, or an email the lane looks up first
/// through the provider's member search (Factory takes emails directly, so it is always known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Known(Target),
    ByEmail {
        kind: ProviderKind,
        /// The Aitronos organization or Cognee tenant, validated, in canonical form.
        organization: Option<String>,
        transfer_to: Option<PrefixedId>,
        email: Email,
    },
}

impl Subject {
    pub fn kind(&self) -> ProviderKind {
        match self {
            Subject::Known(t) => t.kind(),
            Subject::ByEmail { kind, .. } => *kind,
        }
    }

    pub fn organization(&self) -> Option<String> {
        match self {
            Subject::Known(t) => t.organization(),
            Subject::ByEmail { organization, .. } => organization.clone(),
        }
    }

    /// The user as asked for: the id, or the email still to look up.
    pub fn user(&self) -> String {
        match self {
            Subject::Known(t) => t.user(),
            Subject::ByEmail { email, .. } => email.as_str().to_owned(),
        }
    }

    pub fn transfer_to(&self) -> Option<&PrefixedId> {
        match self {
            Subject::Known(Target::Aitronos { transfer_to, .. })
            | Subject::ByEmail { transfer_to, .. } => transfer_to.as_ref(),
            Subject::Known(_) => None,
        }
    }

    fn hash_identity<H: Hasher>(&self, h: &mut H) {
        match self {
            Subject::Known(t) => t.hash_identity(h),
            Subject::ByEmail {
                organization,
                email,
                ..
            } => {
                h.write_u8(b'@');
                for b in organization
                    .as_deref()
                    .unwrap_or("")
                    .bytes()
                    .chain([0xff])
                    .chain(email.as_str().bytes())
                {
                    h.write_u8(b.to_ascii_lowercase());
                }
            }
        }
    }

    /// The target once the provider's search found `id`: checked against the kind's id format like
    /// any id from a door, so a search answer cannot send a removal to a path nobody asked for.
    pub fn resolve(&self, id: &str) -> Result<Target, Invalid> {
        let Subject::ByEmail {
            kind,
            organization,
            transfer_to,
            ..
        } = self
        else {
            unreachable!("only email subjects are resolved")
        };
        let org = || {
            organization
                .as_deref()
                .ok_or(Invalid::Missing("organization"))
        };
        Ok(match kind {
            ProviderKind::Aitronos => Target::Aitronos {
                organization: PrefixedId::parse("organization", "org_", org()?)?,
                user: PrefixedId::parse("user", "usr_", id)?,
                transfer_to: transfer_to.clone(),
            },
            ProviderKind::Cognee => Target::Cognee {
                tenant: Uuid::parse("organization", org()?)?,
                user: Uuid::parse("user", id)?,
            },
            ProviderKind::Telnyx => Target::Telnyx {
                user: OpaqueId::parse("user", id)?,
            },
            ProviderKind::Aerospike => Target::Aerospike {
                user: Uuid::parse("user", id)?,
            },
            ProviderKind::Factory => unreachable!("Factory takes emails directly"),
        })
    }
}

/// Index of a provider entry (a lane) in the configuration's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneId(pub usize);

/// A validated removal job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Box<str>,
    /// The CSV line it came from, when it came from a CSV.
    pub line: Option<u64>,
    pub lane: LaneId,
    /// The provider entry's name, shared with its lane.
    pub provider: Arc<str>,
    pub subject: Subject,
    pub reason: Option<Box<str>>,
    pub requested_by: Option<Box<str>>,
}

/// Accounts that are never removed (break-glass admins, service accounts, owners): emails, ids and
/// glob patterns (`*`, `?`, `[...]`), matched against a job's user without regard to case.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    patterns: Vec<String>,
    set: globset::GlobSet,
}

impl Protected {
    pub fn new(patterns: &[String]) -> Result<Protected, String> {
        let mut b = globset::GlobSetBuilder::new();
        for p in patterns {
            let glob = globset::GlobBuilder::new(p.trim())
                .case_insensitive(true)
                .literal_separator(false)
                .build()
                .map_err(|e| format!("`{p}` is not a pattern: {e}"))?;
            b.add(glob);
        }
        let set = b.build().map_err(|e| e.to_string())?;
        Ok(Protected {
            patterns: patterns.to_vec(),
            set,
        })
    }

    /// The patterns as configured.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The first pattern `user` matches.
    pub fn matches(&self, user: &str) -> Option<&str> {
        self.set
            .matches(user)
            .first()
            .map(|i| self.patterns[*i].as_str())
    }
}

impl Job {
    /// A 64-bit hash of the membership this job removes (lane, organization, user, case-folded):
    /// equal for two jobs that would remove the same person from the same place.
    pub fn identity(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.lane.hash(&mut h);
        self.subject.hash_identity(&mut h);
        h.finish()
    }
}

/// The configured provider entries by name, and the protected accounts: what validation needs to
/// know of the config.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    entries: HashMap<Box<str>, (LaneId, Arc<str>, ProviderKind)>,
    /// The organization or tenant an entry manages, for rows that leave theirs empty.
    organizations: HashMap<Box<str>, Box<str>>,
    /// Entry names in lane order, for rows addressed to every provider.
    order: Vec<Arc<str>>,
    protected: Arc<Protected>,
}

/// The `provider` of a row or event target addressed to every configured entry.
pub const EVERY_PROVIDER: &str = "*";

impl Directory {
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, ProviderKind)>) -> Directory {
        let entries: HashMap<Box<str>, (LaneId, Arc<str>, ProviderKind)> = entries
            .into_iter()
            .enumerate()
            .map(|(i, (name, kind))| (name.into(), (LaneId(i), Arc::from(name), kind)))
            .collect();
        let mut order: Vec<(LaneId, Arc<str>)> = entries
            .values()
            .map(|(id, n, _)| (*id, n.clone()))
            .collect();
        order.sort();
        Directory {
            entries,
            organizations: HashMap::new(),
            order: order.into_iter().map(|(_, n)| n).collect(),
            protected: Arc::default(),
        }
    }

    /// The same directory, with `name` managing `organization` (its rows may leave it empty).
    pub fn managing(mut self, name: &str, organization: &str) -> Directory {
        self.organizations.insert(name.into(), organization.into());
        self
    }

    /// Validates a row or target: one job, or one per configured entry when its provider is `*`
    /// (each with that entry's name, for the report). Such a row names a person by email, since ids
    /// differ from provider to provider.
    pub fn validate_each(
        &self,
        raw: &RawJob<'_>,
        line: Option<u64>,
    ) -> Vec<(Option<String>, Result<Job, Invalid>)> {
        if field(&raw.provider) != Some(EVERY_PROVIDER) {
            let name = field(&raw.provider).map(str::to_owned);
            return vec![(name, self.validate(raw, line))];
        }
        self.order
            .iter()
            .map(|name| (Some(name.to_string()), self.validate_as(raw, line, name)))
            .collect()
    }

    /// Validates a row for entry `name`: the row's own provider, or `*`.
    pub fn validate_as(
        &self,
        raw: &RawJob<'_>,
        line: Option<u64>,
        name: &str,
    ) -> Result<Job, Invalid> {
        if field(&raw.provider) != Some(EVERY_PROVIDER) {
            return self.validate(raw, line);
        }
        if field(&raw.user).is_some_and(|u| !u.contains('@')) {
            return Err(bad(
                "user",
                "a row for every provider (`*`) names the person by email",
            ));
        }
        let (_, _, kind) = self
            .lookup(name)
            .ok_or_else(|| Invalid::UnknownProvider(name.to_owned()))?;
        let mut one = raw.clone();
        one.provider = Some(name.into());
        if kind != ProviderKind::Aitronos {
            one.transfer_to = None; // only Aitronos transfers resources
        }
        // Each entry's own organization (from its config) applies, never one row-wide value.
        one.organization = None;
        if matches!(kind, ProviderKind::Aitronos | ProviderKind::Cognee)
            && !self.organizations.contains_key(name)
        {
            return Err(bad(
                "organization",
                format!(
                    "set providers.{name}.organization to send rows for every provider (`*`) there"
                ),
            ));
        }
        let mut job = self.validate(&one, line)?;
        if let Some(id) = field(&raw.job_id) {
            job.id = format!("{id}:{name}").into();
        }
        Ok(job)
    }

    /// The same directory, refusing to make a job of any protected account.
    pub fn protecting(mut self, protected: Protected) -> Directory {
        self.protected = Arc::new(protected);
        self
    }

    /// The entry name of a lane.
    pub fn name_of(&self, lane: LaneId) -> Option<&str> {
        self.entries
            .values()
            .find(|(id, _, _)| *id == lane)
            .map(|(_, n, _)| &**n)
    }

    pub fn lookup(&self, name: &str) -> Option<(LaneId, &Arc<str>, ProviderKind)> {
        self.entries.get(name).map(|(id, n, k)| (*id, n, *k))
    }

    /// The only way from a raw job to a job: checks every field against its provider's id formats,
    /// and refuses protected accounts, so no door can send their removal.
    pub fn validate(&self, raw: &RawJob<'_>, line: Option<u64>) -> Result<Job, Invalid> {
        let provider = field(&raw.provider).ok_or(Invalid::Missing("provider"))?;
        let (lane, name, kind) = self
            .lookup(provider)
            .ok_or_else(|| Invalid::UnknownProvider(provider.to_owned()))?;
        let user = field(&raw.user).ok_or(Invalid::Missing("user"))?;
        let organization =
            field(&raw.organization).or_else(|| self.organizations.get(provider).map(|o| &**o));
        let transfer_to = field(&raw.transfer_to);

        if transfer_to.is_some() && kind != ProviderKind::Aitronos {
            return Err(Invalid::NotApplicable {
                field: "transfer_to",
                kind,
                why: "only Aitronos transfers resources",
            });
        }
        let by_email = kind != ProviderKind::Factory && user.contains('@');
        let subject = if by_email {
            let organization = match kind {
                ProviderKind::Aitronos => Some(
                    PrefixedId::parse(
                        "organization",
                        "org_",
                        organization.ok_or(Invalid::Missing("organization"))?,
                    )?
                    .as_str()
                    .to_owned(),
                ),
                ProviderKind::Cognee => Some(
                    Uuid::parse(
                        "organization",
                        organization.ok_or(Invalid::Missing("organization"))?,
                    )?
                    .to_string(),
                ),
                other => {
                    no_organization(other, organization)?;
                    None
                }
            };
            Subject::ByEmail {
                kind,
                organization,
                transfer_to: transfer_to
                    .map(|t| PrefixedId::parse("transfer_to", "dept_", t))
                    .transpose()?,
                email: Email::parse("user", user)?,
            }
        } else {
            Subject::Known(target(kind, user, organization, transfer_to)?)
        };
        if let Some(pattern) = self.protected.matches(&subject.user()) {
            return Err(Invalid::Protected {
                pattern: pattern.to_owned(),
            });
        }
        let id = match field(&raw.job_id) {
            Some(id) if id.len() > 200 => return Err(bad("job_id", "longer than 200 characters")),
            Some(id) => id.into(),
            None => uuid::Uuid::new_v4()
                .hyphenated()
                .to_string()
                .into_boxed_str(),
        };
        Ok(Job {
            id,
            line,
            lane,
            provider: name.clone(),
            subject,
            reason: field(&raw.reason).map(Into::into),
            requested_by: field(&raw.requested_by).map(Into::into),
        })
    }
}

/// For the kinds whose API key picks the organization, a row must not name one: we could not check
/// it, and must not remove the person from whatever organization the key happens to belong to.
fn no_organization(kind: ProviderKind, organization: Option<&str>) -> Result<(), Invalid> {
    match organization {
        Some(_) => Err(Invalid::NotApplicable {
            field: "organization",
            kind,
            why: "its API key picks the organization",
        }),
        None => Ok(()),
    }
}

/// A target from an id in its provider's format.
fn target(
    kind: ProviderKind,
    user: &str,
    organization: Option<&str>,
    transfer_to: Option<&str>,
) -> Result<Target, Invalid> {
    let org = || organization.ok_or(Invalid::Missing("organization"));
    Ok(match kind {
        ProviderKind::Aitronos => Target::Aitronos {
            organization: PrefixedId::parse("organization", "org_", org()?)?,
            user: PrefixedId::parse("user", "usr_", user)?,
            transfer_to: transfer_to
                .map(|t| PrefixedId::parse("transfer_to", "dept_", t))
                .transpose()?,
        },
        ProviderKind::Cognee => Target::Cognee {
            tenant: Uuid::parse("organization", org()?)?,
            user: Uuid::parse("user", user)?,
        },
        other => {
            no_organization(other, organization)?;
            match other {
                ProviderKind::Factory => Target::Factory {
                    email: Email::parse("user", user)?,
                },
                ProviderKind::Telnyx => Target::Telnyx {
                    user: OpaqueId::parse("user", user)?,
                },
                _ => Target::Aerospike {
                    user: Uuid::parse("user", user)?,
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        Directory::new(ProviderKind::ALL.iter().map(|k| (k.as_str(), *k)))
    }

    fn raw<'a>(provider: &'a str, user: &'a str, org: &'a str) -> RawJob<'a> {
        RawJob {
            provider: Some(provider.into()),
            user: Some(user.into()),
            organization: Some(org.into()),
            ..RawJob::default()
        }
    }

    #[test]
    fn each_kind_takes_its_own_id_format() {
        let d = dir();
        let t = |p, u, o| {
            d.validate(&raw(p, u, o), None).map(|j| match j.subject {
                Subject::Known(t) => t,
                other => panic!("an id, not an email: {other:?}"),
            })
        };
        assert!(matches!(
            t("factory", "a@b.co", ""),
            Ok(Target::Factory { .. })
        ));
        assert!(t("factory", "not-an-email", "").is_err());
        assert!(t("aitronos", "usr_abc123", "org_xyz").is_ok());
        assert_eq!(
            t("aitronos", "usr_abc123", ""),
            Err(Invalid::Missing("organization"))
        );
        assert!(t("aitronos", "abc123", "org_xyz").is_err());
        assert!(t("aitronos", "usr_a/../b", "org_xyz").is_err());
        assert!(t("telnyx", "6a09cdc3-8948-47f0-aa62-74ac943d6c58", "").is_ok());
        assert!(t("telnyx", "../users", "").is_err());
        assert!(t("aerospike", "6a09cdc3-8948-47f0-aa62-74ac943d6c58", "").is_ok());
        assert!(t("aerospike", "6a09cdc3", "").is_err());
        assert!(
            t(
                "cognee",
                "6a09cdc3-8948-47f0-aa62-74ac943d6c58",
                "7b09cdc3-8948-47f0-aa62-74ac943d6c59"
            )
            .is_ok()
        );
        assert!(t("cognee", "6a09cdc3-8948-47f0-aa62-74ac943d6c58", "org_x").is_err());
    }

    #[test]
    fn organization_is_refused_where_the_key_picks_it() {
        let d = dir();
        let e = d
            .validate(&raw("factory", "a@b.co", "acme"), None)
            .unwrap_err();
        assert_eq!(e.code(), "not_applicable");
        assert!(e.to_string().contains("organization"), "{e}");
    }

    #[test]
    fn transfer_to_is_aitronos_only_and_checked() {
        let d = dir();
        let mut r = raw("aitronos", "usr_a", "org_b");
        r.transfer_to = Some("dept_eng".into());
        assert!(d.validate(&r, None).is_ok());
        r.transfer_to = Some("eng".into());
        assert!(matches!(
            d.validate(&r, None),
            Err(Invalid::Format {
                field: "transfer_to",
                ..
            })
        ));
        let mut r = raw("telnyx", "abc", "");
        r.transfer_to = Some("dept_eng".into());
        assert!(matches!(
            d.validate(&r, None),
            Err(Invalid::NotApplicable {
                field: "transfer_to",
                ..
            })
        ));
    }

    #[test]
    fn unknown_provider_and_missing_fields_are_named() {
        let d = dir();
        assert_eq!(
            d.validate(&raw("slack", "x", ""), None).unwrap_err(),
            Invalid::UnknownProvider("slack".into())
        );
        assert_eq!(
            d.validate(&raw("factory", "  ", ""), None).unwrap_err(),
            Invalid::Missing("user")
        );
        assert_eq!(
            d.validate(&RawJob::default(), None).unwrap_err(),
            Invalid::Missing("provider")
        );
    }

    #[test]
    fn an_email_where_an_id_is_expected_is_looked_up_then_checked_like_an_id() {
        let d = dir();
        let j = d
            .validate(&raw("aitronos", "Ann@Acme.example", "org_acme"), None)
            .unwrap();
        assert!(matches!(
            &j.subject,
            Subject::ByEmail {
                kind: ProviderKind::Aitronos,
                ..
            }
        ));
        assert_eq!(j.subject.user(), "Ann@Acme.example");
        assert_eq!(j.subject.organization().as_deref(), Some("org_acme"));
        let t = j.subject.resolve("usr_ann").unwrap();
        assert_eq!(t.user(), "usr_ann");
        // An id from a search answer passes the same checks as one from a door.
        assert!(j.subject.resolve("../admin").is_err());
        assert!(
            d.validate(&raw("aitronos", "ann@acme.example", ""), None)
                .is_err(),
            "still needs its organization"
        );
        assert!(
            d.validate(&raw("telnyx", "ann@acme.example", "org"), None)
                .is_err(),
            "no organization where the key picks it"
        );
        let f = d
            .validate(&raw("factory", "ann@acme.example", ""), None)
            .unwrap();
        assert!(
            matches!(f.subject, Subject::Known(Target::Factory { .. })),
            "Factory takes the email itself"
        );
        let c = d
            .validate(
                &raw(
                    "cognee",
                    "ann@acme.example",
                    "7B09CDC3-8948-47F0-AA62-74AC943D6C59",
                ),
                None,
            )
            .unwrap();
        assert_eq!(
            c.subject.organization().as_deref(),
            Some("7b09cdc3-8948-47f0-aa62-74ac943d6c59")
        );
        assert!(c.subject.resolve("not-a-uuid").is_err());
    }

    #[test]
    fn protected_accounts_never_become_jobs() {
        let patterns = [
            "breakglass@acme.example".to_owned(),
            "svc-*@*".to_owned(),
            "usr_owner?".to_owned(),
        ];
        let d = dir().protecting(Protected::new(&patterns).unwrap());
        let e = d
            .validate(&raw("factory", "BreakGlass@Acme.example", ""), None)
            .unwrap_err();
        assert_eq!(
            e,
            Invalid::Protected {
                pattern: "breakglass@acme.example".into()
            }
        );
        assert_eq!(e.code(), "protected");
        assert!(
            d.validate(&raw("factory", "svc-ci@acme.example", ""), None)
                .is_err()
        );
        assert!(
            d.validate(&raw("aitronos", "usr_owner1", "org_a"), None)
                .is_err()
        );
        assert!(
            d.validate(&raw("aitronos", "usr_owner12", "org_a"), None)
                .is_ok()
        );
        assert!(
            d.validate(&raw("factory", "ann@acme.example", ""), None)
                .is_ok()
        );
        assert!(Protected::new(&["[".to_owned()]).is_err());
    }

    #[test]
    fn identity_ignores_case_and_uuid_spelling() {
        use std::hash::DefaultHasher;
        let d = dir();
        let h = |p, u, o| {
            let mut s = DefaultHasher::new();
            d.validate(&raw(p, u, o), None)
                .unwrap()
                .subject
                .hash_identity(&mut s);
            s.finish()
        };
        assert_eq!(
            h("factory", "Ann@Example.com", ""),
            h("factory", "ann@example.com", "")
        );
        assert_eq!(
            h("aerospike", "6A09CDC3-8948-47F0-AA62-74AC943D6C58", ""),
            h("aerospike", "6a09cdc3-8948-47f0-aa62-74ac943d6c58", "")
        );
        assert_ne!(
            h("factory", "ann@example.com", ""),
            h("factory", "bob@example.com", "")
        );
    }
}
