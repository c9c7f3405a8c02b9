//! Whom to remove from where: targets in each provider's own format, subjects still to look up,
//! and the validated job.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::{Email, Invalid, OpaqueId, PrefixedId, ProviderKind, Uuid};

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

    pub(crate) fn hash_identity<H: Hasher>(&self, h: &mut H) {
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
        target(
            *kind,
            id,
            organization.as_deref(),
            transfer_to.as_ref().map(PrefixedId::as_str),
        )
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
    /// When it is due, if not now: it is not sent before.
    pub due: Option<jiff::Timestamp>,
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

/// For the kinds whose API key picks the organization, a row must not name one: we could not check
/// it, and must not remove the person from whatever organization the key happens to belong to.
pub(super) fn no_organization(
    kind: ProviderKind,
    organization: Option<&str>,
) -> Result<(), Invalid> {
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
pub(super) fn target(
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
