//! Member lists through the lane: the preflight that proves an entry or organization before its
//! first removal, the protected accounts resolved to ids, email lookups, whole lists shared and
//! kept a while, and organizations that refused us.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;

use crate::job::{Job, ProviderKind, Target};
use crate::outcome::{Absence, Outcome, Reason, Record, Timestamp};
use crate::providers::lookup::{
    Collect, Cursor, Member, MemberPage, Resolution, Unreadable, resolve,
};
use crate::providers::{self, Answer, Transport};
use crate::retry::FailReason;

use super::Lane;
use super::organizations::Proof;
use super::request::{Budget, Final, Operation, ReadFailure, Step, Stop, Tried};

/// What a failed preflight read says, for a person fixing the config: which key to check.
fn preflight_words(f: &ReadFailure) -> String {
    if let Some(reason) = &f.halted {
        return reason.clone();
    }
    let words = |a: &Answer| {
        a.error
            .as_ref()
            .map(|e| match &e.code {
                Some(c) => format!("{c}: {}", e.message),
                None => e.message.clone(),
            })
            .unwrap_or_default()
    };
    let code = |a: &Answer| a.error.as_ref().and_then(|e| e.code.clone());
    match &f.last {
        // The provider's own answer for an organization or tenant it does not know (Cognee's
        // TenantNotFoundError, Aitronos' ORGANIZATION_* codes): the base URL answered, the
        // row's organization is the one to check.
        Some(Ok(a))
            if a.status == StatusCode::NOT_FOUND
                && code(a).is_some_and(|c| {
                    c == "TenantNotFoundError" || c.to_ascii_uppercase().contains("ORGANIZATION")
                }) =>
        {
            format!(
                "the provider does not know this organization or tenant: check the row's organization (the tenant id at Cognee); the base URL answers (the provider said: {})",
                words(a)
            )
        }
        Some(Ok(a)) if a.status == StatusCode::NOT_FOUND => format!(
            "the base URL answers 404 to the member list: check base_url (the provider said: {})",
            words(a)
        ),
        Some(Ok(a)) if a.status == StatusCode::UNAUTHORIZED => format!(
            "the credential is refused (401): check it (the provider said: {})",
            words(a)
        ),
        Some(Ok(a)) if a.status == StatusCode::FORBIDDEN => format!(
            "the credential may not read the member list here (403): check its scope or role (the provider said: {})",
            words(a)
        ),
        Some(Ok(a)) if a.status.is_success() => format!(
            "the member list cannot be read, so nothing it would prove is believed: check base_url and the organization ({})",
            words(a)
        ),
        Some(Ok(a)) => format!(
            "the member list answers {} ({}): {}",
            a.status.as_u16(),
            f.reason.as_str(),
            words(a)
        ),
        Some(Err(t @ Transport::TooLarge(_))) => t.to_string(),
        Some(Err(t)) => format!("cannot reach the provider ({}): {t}", f.reason.as_str()),
        None => f.reason.as_str().to_owned(),
    }
}

impl Lane {
    /// Proves the entry (where the key picks the organization) or one organization before any
    /// removal is sent there: one read-only request, then the protected accounts resolved to ids.
    /// Runs once per organization; `Err` says why nothing may be sent there.
    pub async fn preflight(&self, organization: Option<&str>) -> Result<(), String> {
        self.proof(organization).await.map(|_| ())
    }

    pub(super) async fn proof(&self, organization: Option<&str>) -> Result<(), String> {
        let cell = self.orgs.proof(organization);
        let proof = cell
            .get_or_init(|| async {
                let proof = self.prove(organization).await;
                if let Proof::Failed(reason) = &proof {
                    tracing::error!(provider = %self.name, organization = organization.unwrap_or(""), reason = %reason, "preflight failed: nothing is sent there");
                }
                proof
            })
            .await;
        match proof {
            Proof::Proven => Ok(()),
            Proof::Failed(reason) => Err(reason.clone()),
        }
    }

    pub(super) async fn prove(&self, organization: Option<&str>) -> Proof {
        let place = match organization {
            Some(o) => format!("provider entry `{}`, organization {o}", self.name),
            None => format!("provider entry `{}`", self.name),
        };
        let mut requests = 0;
        // Factory's rows name emails, matched against the patterns at validation: its probe is
        // enough. Elsewhere the whole list is read where it comes whole anyway (Aerospike, a
        // Cognee tenant), where it marks the owner, or where a protected pattern (which may
        // match any member's email) must be resolved to ids; it is kept for the lookups, and
        // the protected ids found are kept too (see `whole_list`).
        let whole = self.kind() != ProviderKind::Factory
            && (self.provider.whole_list()
                || self.provider.owner_listed()
                || !self.protected.patterns().is_empty());
        let read = if whole {
            self.whole_list(organization, Some(Instant::now()), &mut requests)
                .await
                .map(|_| ())
        } else {
            self.read_pages(organization, None, true, &mut requests)
                .await
                .map(|_| ())
        };
        match read {
            Ok(()) => Proof::Proven,
            Err(f) => {
                let reason = format!("{place}: {}", preflight_words(&f));
                // A refused credential, or an entry whose key picks the organization: the whole
                // entry is unusable. A 403 or 404 for one named organization concerns that one
                // only.
                let entry_wide = organization.is_none()
                    || matches!(&f.last, Some(Ok(a)) if a.status == StatusCode::UNAUTHORIZED)
                    || f.halted.is_some();
                if entry_wide {
                    self.fail_entry(reason.clone());
                }
                Proof::Failed(reason)
            }
        }
    }

    /// The members of a whole list who may never be removed, by lowercase id, with why: every
    /// member whose email a `safety.protected` pattern matches, and the owner where the list
    /// marks one.
    fn protected_in(&self, members: &[Member]) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for m in members {
            if let Some(pattern) = self.protected.matches(&m.email) {
                out.insert(
                    m.id.to_ascii_lowercase(),
                    format!("matches `{pattern}` in safety.protected"),
                );
            } else if m.owner {
                out.insert(
                    m.id.to_ascii_lowercase(),
                    "the organization's owner, as its member list says".to_owned(),
                );
            }
        }
        out
    }

    /// Whether `user` (an id in this provider's format, or an email when `by_email`) is still a
    /// member of `organization`, read through this lane's pacing and retries: for `offboard
    /// verify`. Answers how it was checked. Read-only: nothing is removed.
    pub async fn check_member(
        &self,
        organization: Option<&str>,
        user: &str,
        by_email: bool,
    ) -> Result<(bool, &'static str), String> {
        let mut requests = 0;
        // Always the whole list, read completely: a search that finds nobody proves nothing.
        let members = self
            .whole_list(organization, None, &mut requests)
            .await
            .map_err(|f| preflight_words(&f))?;
        let found = members.iter().any(|m| {
            if by_email {
                m.email.trim().eq_ignore_ascii_case(user.trim())
            } else {
                m.id.eq_ignore_ascii_case(user.trim())
            }
        });
        Ok((found, "member_list"))
    }

    /// The whole member list of `organization` (or the key's), read completely through this
    /// lane's pacing and retries, for `offboard reconcile`: the strict reader of the page, and
    /// the number of requests it took. Read-only.
    pub async fn read_members(
        &self,
        organization: Option<&str>,
    ) -> Result<(Arc<Vec<Member>>, u32), String> {
        let mut requests = 0;
        let members = self
            .whole_list(organization, Some(Instant::now()), &mut requests)
            .await
            .map_err(|f| preflight_words(&f))?;
        Ok((members, requests))
    }

    /// The whole member list of an organization, read at or after `not_before` (a list read
    /// before an answer cannot confirm it), shared by concurrent jobs and kept a while.
    pub(super) async fn whole_list(
        &self,
        organization: Option<&str>,
        not_before: Option<Instant>,
        requests: &mut u32,
    ) -> Result<Arc<Vec<Member>>, ReadFailure> {
        let reading = self.orgs.reading(organization);
        let _one_read = reading.one.lock().await;
        if let Some(list) = self.orgs.list(organization, not_before) {
            return Ok(list);
        }
        // While the pages are read, this organization sends no removal: one made between two
        // pages would shift the pages after it and pass a member by unread (the total check
        // would then refuse the whole read).
        let _quiet = reading.quiet.write().await;
        let started = Instant::now();
        let list = Arc::new(self.read_pages(organization, None, false, requests).await?);
        let found = self.protected_in(&list);
        self.orgs
            .keep_list(organization, started, list.clone(), found);
        Ok(list)
    }

    /// Reads every page of a list (or of the search for `email`), or only the probe, each page
    /// paced and retried like any request, and proves the read complete (see
    /// [`crate::providers::lookup::Collect`]). A probe proves only that one member is listed.
    /// Counts each request in `requests`.
    pub(super) async fn read_pages(
        &self,
        organization: Option<&str>,
        email: Option<&str>,
        probe: bool,
        requests: &mut u32,
    ) -> Result<Vec<Member>, ReadFailure> {
        let whole = !probe && (email.is_none() || self.provider.whole_list());
        let mut read = Collect::new(whole);
        let mut at = Cursor::default();
        let mut budget = Budget::new();
        let mut last: Option<Result<Answer, Transport>> = None;
        let step = Step {
            operation: if probe {
                Operation::Preflight
            } else {
                Operation::Lookup
            },
            organization,
            job: None,
            held: None,
            quiet: None,
        };
        loop {
            let prepare = async {
                if probe {
                    self.provider.prepare_probe(organization).await
                } else {
                    self.provider.prepare_list(organization, email, &at).await
                }
            };
            let send = async |request| self.provider.send_list(request, &at).await;
            let (answer, page) = match self
                .request(&step, &mut budget, requests, prepare, send)
                .await
            {
                Tried::Read(answer, page) => (answer, page),
                Tried::Again(result) => {
                    last = Some(result);
                    continue;
                }
                Tried::Stopped(stop) => {
                    let halted = match stop {
                        Stop::Halted(_, why) => why,
                        Stop::Lost => "the job's delivery was lost".to_owned(),
                    };
                    return Err(ReadFailure {
                        reason: FailReason::LaneHalted,
                        last,
                        halted: Some(halted),
                    });
                }
                Tried::Decided(Final::Failed(reason), result) => {
                    return Err(ReadFailure {
                        reason,
                        last: Some(result),
                        halted: None,
                    });
                }
                // A list answer never reads as a removal.
                Tried::Decided(_, result) => {
                    return Err(ReadFailure {
                        reason: FailReason::Unexpected,
                        last: Some(result),
                        halted: None,
                    });
                }
            };
            let step = if probe { probed(page) } else { read.add(page) };
            let read_all = match step {
                Ok(Some(next)) => {
                    at = next;
                    budget = Budget::new();
                    last = Some(Ok(answer));
                    continue;
                }
                // Complete: what the page promises of a whole list, then done.
                Ok(None) => {
                    let members = read.into_members();
                    let checked = match whole {
                        true => self.provider.check_whole(&members),
                        false => Ok(()),
                    };
                    checked.map(|()| members)
                }
                Err(why) => Err(why),
            };
            return read_all.map_err(|why| ReadFailure {
                reason: FailReason::UnreadableList,
                last: Some(Ok(providers::unreadable(answer, why.to_string()))),
                halted: None,
            });
        }
    }

    /// Finds the id of the member with exactly this email: a whole list (shared, cached) or the
    /// provider's search. `Err` holds the job's final record (no member, ambiguous, failed).
    pub(super) async fn look_up(
        &self,
        job: &Job,
        email: &str,
        started: Timestamp,
        attempts: &mut u32,
    ) -> Result<Target, Box<Record>> {
        let org = job.subject.organization();
        let org = org.as_deref();
        let failed = |f, attempts: u32| Box::new(self.read_failed(job, started, attempts, f));
        // An absence rests on a list read after the job asked; a member found in an older one
        // is found.
        let asked = Instant::now();
        let mut resolution = Resolution::NoMember;
        if !self.provider.whole_list() {
            // The search matches partially and its page says nothing of case: an exact match in
            // it is an answer, its silence is not. The lowercased address is searched too, and
            // then the whole list decides.
            let mut terms = vec![email.to_owned()];
            let lower = email.to_lowercase();
            if lower != email {
                terms.push(lower);
            }
            for term in terms {
                let found = self
                    .read_pages(org, Some(&term), false, attempts)
                    .await
                    .map_err(|f| failed(f, *attempts))?;
                resolution = resolve(email, found.iter());
                if resolution != Resolution::NoMember {
                    break;
                }
            }
        }
        let cached_first = self.provider.whole_list();
        for not_before in [None, Some(asked)] {
            if resolution != Resolution::NoMember || (not_before.is_none() && !cached_first) {
                continue;
            }
            let members = self
                .whole_list(org, not_before, attempts)
                .await
                .map_err(|f| failed(f, *attempts))?;
            resolution = resolve(email, members.iter());
        }
        let done = |outcome, code: Reason, message: String| {
            let mut r = self.not_sent(job, started, outcome, code, message);
            r.attempts = *attempts;
            Box::new(r)
        };
        match resolution {
            Resolution::Found { id, owner } => {
                let target = job.subject.resolve(&id).map_err(|e| {
                    done(
                        Outcome::Failed,
                        Reason::BadLookup,
                        format!("the search answered an id we cannot use: {e}"),
                    )
                })?;
                if owner {
                    let mut r = done(
                        Outcome::SkippedProtected,
                        Reason::Protected,
                        "protected account (the organization's owner, as its member list says): never removed".into(),
                    );
                    r.resolved_user = Some(id);
                    return Err(r);
                }
                Ok(target)
            }
            Resolution::NoMember => {
                // Absent, with its evidence: no reason, and the error field says how it was found.
                let mut r =
                    self.finished(job, started, *attempts, Outcome::AlreadyAbsent, None, None);
                r.absence = Some(Absence::NoMember);
                r.error = Some(crate::outcome::ErrorField {
                    code: "no_member".into(),
                    message: "no member with this email in the provider's whole member list, read completely".into(),
                });
                Err(Box::new(r))
            }
            Resolution::Ambiguous(ids) => Err(done(
                Outcome::Failed,
                Reason::Ambiguous,
                format!(
                    "{} members have exactly this email; nothing was removed",
                    ids.len()
                ),
            )),
        }
    }
}

/// A probe's page: it proves the list answers in its documented shape with at least one member
/// (an organization has at least its owner), nothing more.
fn probed(page: MemberPage) -> Result<Option<Cursor>, Unreadable> {
    if page.members.is_empty() {
        return Err(Unreadable::new(
            "the member list answers no member at all, which no organization has (it has at least its owner and the member our credential belongs to): wrong base URL or organization?",
        ));
    }
    Ok(None)
}
