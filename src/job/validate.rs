//! The only way from a raw job to a job: the directory of configured entries checks every field
//! against its provider's id formats and refuses protected accounts.

use std::collections::HashMap;
use std::sync::Arc;

use super::invalid::bad;
use super::raw::field;
use super::target::{no_organization, target};
use super::{
    Email, Invalid, Job, LaneId, PrefixedId, ProviderKind, RawJob, SchedulePolicy, Subject, Uuid,
};
use crate::safety::Protected;

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
    schedule: Arc<SchedulePolicy>,
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
            schedule: Arc::default(),
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

    /// The same directory, resolving due times with `policy` (`[schedule]`).
    pub fn scheduling(mut self, policy: SchedulePolicy) -> Directory {
        self.schedule = Arc::new(policy);
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
        let due = match field(&raw.due_at) {
            // Resolved by its publisher, the offset applied: taken as it is.
            Some(at) if field(&raw.not_before).is_none() && field(&raw.last_day).is_none() => Some(
                at.parse::<jiff::Timestamp>()
                    .map_err(|_| bad("due_at", format!("`{at}` is not an RFC 3339 instant")))?,
            ),
            Some(_) => {
                return Err(bad(
                    "due_at",
                    "is given with `not_before` or `last_day`: give one",
                ));
            }
            None => super::due(
                field(&raw.not_before),
                field(&raw.last_day),
                field(&raw.time_zone),
                &self.schedule,
            )?,
        };
        Ok(Job {
            id,
            line,
            lane,
            provider: name.clone(),
            subject,
            reason: field(&raw.reason).map(Into::into),
            requested_by: field(&raw.requested_by).map(Into::into),
            due,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::*;

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
        assert!(matches!(e, Invalid::NotApplicable { .. }), "{e:?}");
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
        use std::hash::{DefaultHasher, Hasher};
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
