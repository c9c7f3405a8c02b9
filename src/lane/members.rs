//! Member lists through the lane: the preflight that proves an entry or organization before its
//! first removal, the protected accounts resolved to ids, email lookups, whole lists shared and
//! kept a while, and organizations that refused us.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::job::{Job, ProviderKind, Target};
use crate::providers::lookup::{Cursor, Member, Resolution, resolve};
use crate::providers::{Answer, Transport};
use crate::report::{Absence, Outcome, Record, Timestamp};
use crate::retry::{Decision, FailReason};

use super::attempt::{Budget, Verdict, status_label};
use super::{Lane, Proof};

/// A read (list, search, probe) that ended without a usable answer.
pub(super) struct ReadFailure {
    pub(super) reason: FailReason,
    /// What the provider last answered, or why nothing came.
    pub(super) last: Option<Result<Answer, Transport>>,
    /// Set when the lane halted while the read waited: why.
    pub(super) halted: Option<String>,
}

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
    match &f.last {
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
            "the member list answer is not the documented one: check base_url ({})",
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

/// A whole member list, when its read began, and the list.
pub(super) type CachedList = (Instant, Arc<Vec<Member>>);

/// How long a whole member list serves lookups before it is read again.
pub const LIST_CACHE_TTL: Duration = Duration::from_secs(60);

impl Lane {
    /// The key of an organization in the lane's maps: "" where the API key picks it.
    pub(super) fn org_key(&self, organization: Option<&str>) -> String {
        organization.unwrap_or("").to_ascii_lowercase()
    }

    /// Proves the entry (where the key picks the organization) or one organization before any
    /// removal is sent there: one read-only request, then the protected accounts resolved to ids.
    /// Runs once per organization; `Err` says why nothing may be sent there.
    pub async fn preflight(&self, organization: Option<&str>) -> Result<(), String> {
        self.proof(organization).await.map(|_| ())
    }

    pub(super) async fn proof(
        &self,
        organization: Option<&str>,
    ) -> Result<Arc<HashMap<String, String>>, String> {
        let cell = {
            let mut proofs = self.proofs.lock().expect("proofs lock");
            proofs
                .entry(self.org_key(organization))
                .or_default()
                .clone()
        };
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
            Proof::Proven { protected } => Ok(protected.clone()),
            Proof::Failed(reason) => Err(reason.clone()),
        }
    }

    pub(super) async fn prove(&self, organization: Option<&str>) -> Proof {
        let place = match organization {
            Some(o) => format!("provider entry `{}`, organization {o}", self.name),
            None => format!("provider entry `{}`", self.name),
        };
        let mut requests = 0;
        // Where the list comes whole anyway (Aerospike's paging is "currently disabled", a
        // Cognee tenant's list has none), the probe is the whole list, kept for the lookups.
        let probe = if self.provider.whole_list() && self.kind() != ProviderKind::Factory {
            self.whole_list(organization, None, &mut requests)
                .await
                .map(|_| ())
        } else {
            self.read_pages(organization, None, true, &mut requests)
                .await
                .map(|_| ())
        };
        if let Err(f) = probe {
            let reason = format!("{place}: {}", preflight_words(&f));
            // A refused credential, or an entry whose key picks the organization: the whole entry
            // is unusable. A 403 or 404 for one named organization concerns that one only.
            let entry_wide = organization.is_none()
                || matches!(&f.last, Some(Ok(a)) if a.status == StatusCode::UNAUTHORIZED)
                || f.halted.is_some();
            if entry_wide {
                self.fail_entry(reason.clone());
            }
            return Proof::Failed(reason);
        }
        match self.protected_ids(organization, &mut requests).await {
            Ok(protected) => Proof::Proven {
                protected: Arc::new(protected),
            },
            Err(e) => Proof::Failed(format!(
                "{place}: cannot resolve the protected accounts to ids, so none of its removals may be sent: {}",
                preflight_words(&e)
            )),
        }
    }

    /// The ids of `safety.protected` accounts in this organization: every member of a whole list
    /// whose email a pattern matches; for a searching API, each protected email that is a plain
    /// address, looked up (a glob cannot be searched for: rows naming ids are then checked
    /// against the patterns as written, and a warning says so).
    pub(super) async fn protected_ids(
        &self,
        organization: Option<&str>,
        requests: &mut u32,
    ) -> Result<HashMap<String, String>, ReadFailure> {
        let mut out = HashMap::new();
        let emails: Vec<&str> = self
            .protected
            .patterns()
            .iter()
            .map(|p| p.trim())
            .filter(|p| p.contains('@'))
            .collect();
        if emails.is_empty() || self.kind() == ProviderKind::Factory {
            // Factory takes emails, matched against the patterns at validation.
            return Ok(out);
        }
        if self.provider.whole_list() {
            let members = self.whole_list(organization, None, requests).await?;
            for m in members.iter() {
                if let Some(pattern) = self.protected.matches(&m.email) {
                    out.insert(m.id.to_ascii_lowercase(), pattern.to_owned());
                }
            }
            return Ok(out);
        }
        for email in emails {
            if email.contains(['*', '?', '[']) {
                tracing::warn!(provider = %self.name, pattern = email, "a protected email pattern cannot be searched for at this provider: rows naming its members by id are checked against the patterns as written only");
                continue;
            }
            let members = self
                .read_pages(organization, Some(email), false, requests)
                .await?;
            // Every member with exactly this email: two of them would both be protected.
            for m in members
                .iter()
                .filter(|m| m.email.trim().eq_ignore_ascii_case(email))
            {
                out.insert(m.id.to_ascii_lowercase(), email.to_owned());
            }
        }
        Ok(out)
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
        let words = |f: ReadFailure| preflight_words(&f);
        if by_email && !self.provider.whole_list() {
            let members = self
                .read_pages(organization, Some(user), false, &mut requests)
                .await
                .map_err(words)?;
            let found = !matches!(resolve(user, members.iter()), Resolution::NoMember);
            return Ok((found, "search"));
        }
        let members = self
            .whole_list(organization, None, &mut requests)
            .await
            .map_err(words)?;
        let found = members.iter().any(|m| {
            if by_email {
                m.email.trim().eq_ignore_ascii_case(user.trim())
            } else {
                m.id.eq_ignore_ascii_case(user.trim())
            }
        });
        Ok((found, "member_list"))
    }

    /// The whole member list of an organization, read at or after `not_before` (a list read
    /// before an answer cannot confirm it), shared by concurrent jobs and kept a while.
    pub(super) async fn whole_list(
        &self,
        organization: Option<&str>,
        not_before: Option<Instant>,
        requests: &mut u32,
    ) -> Result<Arc<Vec<Member>>, ReadFailure> {
        let key = self.org_key(organization);
        let _one_read = self.list_read.lock().await;
        let usable = |(at, _): &CachedList| {
            at.elapsed() < LIST_CACHE_TTL && not_before.is_none_or(|t| *at >= t)
        };
        if let Some((_, list)) = self
            .lists
            .lock()
            .expect("lists lock")
            .get(&key)
            .filter(|c| usable(c))
        {
            return Ok(list.clone());
        }
        let started = Instant::now();
        let list = Arc::new(self.read_pages(organization, None, false, requests).await?);
        self.lists
            .lock()
            .expect("lists lock")
            .insert(key, (started, list.clone()));
        Ok(list)
    }

    /// Reads every page of a list (or of the search for `email`), or only the probe, each page
    /// paced and retried like any request. Counts each request in `requests`.
    pub(super) async fn read_pages(
        &self,
        organization: Option<&str>,
        email: Option<&str>,
        probe: bool,
        requests: &mut u32,
    ) -> Result<Vec<Member>, ReadFailure> {
        let operation = if probe { "preflight" } else { "lookup" };
        let mut members = Vec::new();
        let mut at = Cursor::default();
        let mut budget = Budget::new();
        let mut last: Option<Result<Answer, Transport>> = None;
        loop {
            if let Some((_, reason)) = self.halt() {
                return Err(ReadFailure {
                    reason: FailReason::LaneHalted,
                    last,
                    halted: Some(reason),
                });
            }
            let prepared = if probe {
                self.provider.prepare_probe(organization).await
            } else {
                self.provider.prepare_list(organization, email, &at).await
            };
            let (result, generation) = match prepared {
                Err(result) => (result, 0),
                Ok(p) => {
                    self.admit().await;
                    *requests += 1;
                    let start = Instant::now();
                    let sent = {
                        let _flying = self.fly();
                        self.provider.send_list(p.request, &at).await
                    };
                    self.observed(start, sent.as_ref().ok().map(|(a, _)| a));
                    self.metrics.request(
                        operation,
                        status_label(&sent.as_ref().map(|(a, _)| a)),
                        start.elapsed(),
                    );
                    match sent {
                        Ok((answer, Some(page))) => {
                            self.circuit.ok();
                            let next = crate::providers::lookup::extend(&mut members, page);
                            match next {
                                Some(next) if !probe => {
                                    at = next;
                                    budget = Budget::new();
                                    last = Some(Ok(answer));
                                    continue;
                                }
                                _ => return Ok(members),
                            }
                        }
                        Ok((answer, None)) => (Ok(answer), p.generation),
                        Err(t) => (Err(t), p.generation),
                    }
                }
            };
            match self.judge(&mut budget, &result, generation, organization, None) {
                Verdict::Retry(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    last = Some(result);
                }
                Verdict::Final(Decision::Fail { reason }) => {
                    return Err(ReadFailure {
                        reason,
                        last: Some(result),
                        halted: None,
                    });
                }
                // A list answer never reads as a removal; an unreadable 2xx is Unexpected.
                Verdict::Final(_) => {
                    return Err(ReadFailure {
                        reason: FailReason::Unexpected,
                        last: Some(result),
                        halted: None,
                    });
                }
            }
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
        let read = if self.provider.whole_list() {
            self.whole_list(org, None, attempts).await
        } else {
            self.read_pages(org, Some(email), false, attempts)
                .await
                .map(Arc::new)
        };
        let members = match read {
            Ok(m) => m,
            Err(f) => return Err(Box::new(self.read_failed(job, started, *attempts, f))),
        };
        let done = |outcome, code: &'static str, message: String| {
            let mut r = self.not_sent(job, started, outcome, code, message);
            r.attempts = *attempts;
            Box::new(r)
        };
        match resolve(email, members.iter()) {
            Resolution::Found(id) => job.subject.resolve(&id).map_err(|e| {
                done(
                    Outcome::Failed,
                    "bad_lookup",
                    format!("the search answered an id we cannot use: {e}"),
                )
            }),
            Resolution::NoMember => {
                let mut r = done(
                    Outcome::AlreadyAbsent,
                    "no_member",
                    "no member with this email in the provider's member list".into(),
                );
                r.reason = None;
                r.absence = Some(Absence::NoMember);
                Err(r)
            }
            Resolution::Ambiguous(ids) => Err(done(
                Outcome::Failed,
                "ambiguous",
                format!(
                    "{} members have exactly this email; nothing was removed",
                    ids.len()
                ),
            )),
        }
    }

    /// Closes one organization after a refusal scoped to it.
    pub(super) fn refuse_organization(
        &self,
        org: Option<&str>,
        result: &Result<Answer, Transport>,
    ) {
        let words = match result {
            Ok(a) => a
                .error
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
            Err(t) => t.to_string(),
        };
        let mut refused = self.refused.lock().expect("refused lock");
        if let std::collections::hash_map::Entry::Vacant(slot) = refused.entry(self.org_key(org)) {
            let reason = format!(
                "provider entry `{}` refused access to organization {} ({words}): its jobs are not sent; the entry's other organizations go on",
                self.name,
                org.unwrap_or("")
            );
            tracing::error!(provider = %self.name, organization = org.unwrap_or(""), reason = %reason, "organization refused");
            slot.insert(reason);
        }
    }

    pub(super) fn organization_refused(&self, org: Option<&str>) -> Option<String> {
        self.refused
            .lock()
            .expect("refused lock")
            .get(&self.org_key(org))
            .cloned()
    }
}
