//! Removals due later: the schedule's log entries, what they fold to, and where a waiting job
//! goes next. Pure: no broker here (the wire is `doors::amqp::schedule`, the scheduler that acts
//! on it `worker::scheduler`).
//!
//! A scheduled job waits in the broker, never in a worker's memory: in delay tiers (quorum
//! queues whose messages expire after 2^k seconds into the scheduler's queue), hop by hop, until
//! less than a second is left. The log (a stream) says what was scheduled, cancelled and
//! released, for `offboard schedule list` and `cancel`; the scheduler keeps only hashes of which
//! jobs were decided and which wait, never the jobs.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// The delay tiers: tier k holds a message 2^k seconds, for k below this (2^22 s is 48 days; a
/// job due later takes the top tier again).
pub const TIERS: u32 = 23;

/// Where a job with `remaining` time to its due instant waits next: the tier whose delay is the
/// largest not past the due time, or `None` when less than a second is left (the scheduler then
/// holds it until the instant itself).
pub fn tier_for(remaining: SignedDuration) -> Option<u32> {
    let secs = remaining.as_secs();
    if secs < 1 {
        return None;
    }
    Some((63 - secs.leading_zeros()).min(TIERS - 1))
}

/// One entry of the schedule's log. Only these change a [`Book`] or a [`Ledger`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    /// A job waits for `due_at`. Written before the job enters its first tier.
    Scheduled {
        job_id: String,
        provider: String,
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        organization: Option<String>,
        due_at: Timestamp,
        at: Timestamp,
    },
    /// The scheduler cancelled it before its due time: it is never sent.
    Cancelled {
        job_id: String,
        by: String,
        /// The identity system's event that cancelled it (a reactivation), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
        at: Timestamp,
    },
    /// The scheduler handed it to its lane, at or after its due time.
    Released { job_id: String, at: Timestamp },
    /// A reader's own mark (see `doors::amqp::replay`): changes nothing.
    Mark { nonce: String },
}

/// A job that waits, as `schedule list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub job_id: String,
    pub provider: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    pub due_at: Timestamp,
    pub scheduled_at: Timestamp,
}

/// How a job's wait ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ended", rename_all = "snake_case")]
pub enum Ended {
    Cancelled { by: String, at: Timestamp },
    Released { at: Timestamp },
}

/// The whole log folded: every job that waits, and how the others ended. Built by `list` and
/// `cancel`, which read the log once; the scheduler itself keeps only a [`Ledger`].
#[derive(Debug, Default)]
pub struct Book {
    waiting: HashMap<String, Waiting>,
    ended: HashMap<String, Ended>,
}

impl Book {
    pub fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Scheduled {
                job_id,
                provider,
                user,
                organization,
                due_at,
                at,
            } => {
                // A job scheduled again after its wait ended (a file enqueued twice) stays ended:
                // its copy is acknowledged unsent when it comes due.
                if !self.ended.contains_key(&job_id) {
                    self.waiting.insert(
                        job_id.clone(),
                        Waiting {
                            job_id,
                            provider,
                            user,
                            organization,
                            due_at,
                            scheduled_at: at,
                        },
                    );
                }
            }
            Entry::Cancelled { job_id, by, at, .. } => {
                self.waiting.remove(&job_id);
                self.ended
                    .entry(job_id)
                    .or_insert(Ended::Cancelled { by, at });
            }
            Entry::Released { job_id, at } => {
                self.waiting.remove(&job_id);
                self.ended.entry(job_id).or_insert(Ended::Released { at });
            }
            Entry::Mark { .. } => {}
        }
    }

    /// How the wait of `job_id` ended, if it did.
    pub fn ended(&self, job_id: &str) -> Option<&Ended> {
        self.ended.get(job_id)
    }

    /// The waiting jobs `filter` selects, by due time.
    pub fn select(&self, filter: &Filter) -> Vec<&Waiting> {
        self.by_due_time(|w| filter.matches(w))
    }

    /// The waiting jobs `selector` names, by due time.
    pub fn targets(&self, selector: &Selector) -> Vec<&Waiting> {
        self.by_due_time(|w| selector.matches(w))
    }

    fn by_due_time(&self, keep: impl Fn(&Waiting) -> bool) -> Vec<&Waiting> {
        let mut out: Vec<&Waiting> = self.waiting.values().filter(|w| keep(w)).collect();
        out.sort_by(|a, b| (a.due_at, &a.job_id).cmp(&(b.due_at, &b.job_id)));
        out
    }

    /// What `schedule list` shows: counts per day (UTC) and per provider, and the first `show`.
    pub fn view(&self, filter: &Filter, show: usize) -> View {
        let selected = self.select(filter);
        let mut per_day: BTreeMap<String, u64> = BTreeMap::new();
        let mut per_provider: BTreeMap<String, u64> = BTreeMap::new();
        for w in &selected {
            *per_day
                .entry(w.due_at.strftime("%Y-%m-%d").to_string())
                .or_default() += 1;
            *per_provider.entry(w.provider.clone()).or_default() += 1;
        }
        View {
            waiting: selected.len() as u64,
            all_waiting: self.waiting.len() as u64,
            per_day,
            per_provider,
            first: selected.into_iter().take(show).cloned().collect(),
        }
    }
}

/// Which waiting jobs `schedule list` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
}

impl Filter {
    fn matches(&self, w: &Waiting) -> bool {
        self.before.is_none_or(|b| w.due_at < b)
            && self.provider.as_ref().is_none_or(|p| *p == w.provider)
            && self
                .person
                .as_ref()
                .is_none_or(|p| p.trim().eq_ignore_ascii_case(&w.user))
    }
}

/// Which waiting jobs a cancel names: people (by the user a job names, any provider), job ids,
/// or (provider, user) pairs, as the rows of a file give them (`*` for every provider).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub people: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<(String, String)>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.people.is_empty() && self.jobs.is_empty() && self.targets.is_empty()
    }

    fn matches(&self, w: &Waiting) -> bool {
        let user = |u: &String| u.trim().eq_ignore_ascii_case(&w.user);
        self.people.iter().any(user)
            || self.jobs.contains(&w.job_id)
            || self
                .targets
                .iter()
                .any(|(p, u)| (p == "*" || *p == w.provider) && user(u))
    }
}

/// A cancel sent to the scheduler through its own queue (a reactivation from an identity system,
/// forwarded by the gate), so that it is decided in order with the releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub person: String,
    pub event: String,
    pub by: String,
}

/// `schedule list`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// Jobs the filter selects.
    pub waiting: u64,
    /// Every job that waits.
    pub all_waiting: u64,
    pub per_day: BTreeMap<String, u64>,
    pub per_provider: BTreeMap<String, u64>,
    /// The first of them by due time.
    pub first: Vec<Waiting>,
}

/// `schedule cancel`'s answer: each job named either won (cancelled, never sent) or lost whole
/// (released to its lane before the cancel was taken).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    pub cancelled: Vec<Waiting>,
    /// Job ids named that had already been released, and when.
    pub too_late: Vec<(String, Timestamp)>,
    /// Job ids named that were never scheduled or were cancelled before.
    pub unknown: Vec<String>,
}

/// What the scheduler keeps: which jobs' waits ended, and how many wait per provider, by a
/// 64-bit hash of the job id (a hash-map entry a job, not the job).
#[derive(Debug, Default)]
pub struct Ledger {
    ended: HashMap<u64, bool>,
    waiting: HashMap<u64, u32>,
    providers: Vec<String>,
}

/// A job id's key in the [`Ledger`]: a 64-bit hash (two ids colliding is about 1 in 10^9 at
/// 100,000 jobs, and would keep one from being sent, never send one).
fn key(job_id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    job_id.hash(&mut h);
    h.finish()
}

impl Ledger {
    pub fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Scheduled {
                job_id, provider, ..
            } => {
                let k = key(job_id);
                if !self.ended.contains_key(&k) {
                    let p = match self.providers.iter().position(|p| p == provider) {
                        Some(i) => i,
                        None => {
                            self.providers.push(provider.clone());
                            self.providers.len() - 1
                        }
                    };
                    self.waiting.insert(k, p as u32);
                }
            }
            Entry::Cancelled { job_id, .. } => self.end(job_id, false),
            Entry::Released { job_id, .. } => self.end(job_id, true),
            Entry::Mark { .. } => {}
        }
    }

    fn end(&mut self, job_id: &str, released: bool) {
        let k = key(job_id);
        self.waiting.remove(&k);
        self.ended.entry(k).or_insert(released);
    }

    /// Whether the job's wait ended: `Some(true)` released, `Some(false)` cancelled.
    pub fn ended(&self, job_id: &str) -> Option<bool> {
        self.ended.get(&key(job_id)).copied()
    }

    /// Jobs waiting per provider, for `offboard_schedule_waiting`.
    pub fn waiting(&self) -> BTreeMap<&str, u64> {
        let mut out: BTreeMap<&str, u64> = self.providers.iter().map(|p| (p.as_str(), 0)).collect();
        for p in self.waiting.values() {
            *out.entry(self.providers[*p as usize].as_str()).or_default() += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn scheduled(id: &str, user: &str, due: &str) -> Entry {
        Entry::Scheduled {
            job_id: id.into(),
            provider: "factory".into(),
            user: user.into(),
            organization: None,
            due_at: at(due),
            at: at("2026-12-01T00:00:00Z"),
        }
    }

    #[test]
    fn a_job_waits_in_the_largest_tier_not_past_its_due_time() {
        let s = SignedDuration::from_secs;
        assert_eq!(tier_for(SignedDuration::from_millis(999)), None);
        assert_eq!(tier_for(s(-5)), None);
        assert_eq!(tier_for(s(1)), Some(0));
        assert_eq!(tier_for(s(3)), Some(1));
        assert_eq!(tier_for(s(4)), Some(2));
        assert_eq!(tier_for(s(86_400)), Some(16)); // 65,536 s
        assert_eq!(tier_for(s(400 * 86_400)), Some(TIERS - 1));
        // Every hop leaves less than the delay it took: a job is never held past its time.
        for secs in [1i64, 2, 5, 17, 1000, 86_399, 2_592_000] {
            let mut left = s(secs);
            let mut hops = 0;
            while let Some(k) = tier_for(left) {
                left -= s(1 << k);
                assert!(left >= SignedDuration::ZERO);
                hops += 1;
            }
            assert!(hops <= 23, "{secs}: {hops}");
        }
    }

    #[test]
    fn the_book_lists_what_waits_by_due_time_and_forgets_what_ended() {
        let mut b = Book::default();
        b.apply(scheduled("j2", "b@x.co", "2027-01-02T00:00:00Z"));
        b.apply(scheduled("j1", "a@x.co", "2027-01-01T12:00:00Z"));
        b.apply(scheduled("j3", "A@X.CO", "2027-01-01T13:00:00Z"));
        b.apply(Entry::Released {
            job_id: "j3".into(),
            at: at("2027-01-01T13:00:01Z"),
        });
        // Scheduled again after it was released: stays ended.
        b.apply(scheduled("j3", "a@x.co", "2027-01-01T13:00:00Z"));
        let v = b.view(&Filter::default(), 10);
        assert_eq!(v.waiting, 2);
        assert_eq!(
            v.first.iter().map(|w| &*w.job_id).collect::<Vec<_>>(),
            ["j1", "j2"]
        );
        assert_eq!(v.per_day.get("2027-01-01"), Some(&1));
        let before = Filter {
            before: Some(at("2027-01-02T00:00:00Z")),
            ..Filter::default()
        };
        assert_eq!(b.view(&before, 10).waiting, 1);
        let person = Selector {
            people: vec![" A@x.co ".into()],
            ..Selector::default()
        };
        assert_eq!(b.targets(&person).len(), 1);
        assert!(matches!(b.ended("j3"), Some(Ended::Released { .. })));
    }

    #[test]
    fn the_ledger_counts_what_waits_and_remembers_what_ended() {
        let mut l = Ledger::default();
        for e in [
            scheduled("j1", "a@x.co", "2027-01-01T00:00:00Z"),
            scheduled("j2", "b@x.co", "2027-01-01T00:00:00Z"),
            scheduled("j2", "b@x.co", "2027-01-01T00:00:00Z"),
            Entry::Cancelled {
                job_id: "j1".into(),
                by: "ops".into(),
                event: None,
                at: at("2026-12-02T00:00:00Z"),
            },
        ] {
            l.apply(&e);
        }
        assert_eq!(l.waiting().get("factory"), Some(&1));
        assert_eq!(l.ended("j1"), Some(false));
        assert_eq!(l.ended("j2"), None);
        l.apply(&Entry::Released {
            job_id: "j2".into(),
            at: at("2027-01-01T00:00:00Z"),
        });
        assert_eq!(l.ended("j2"), Some(true));
        assert_eq!(l.waiting().get("factory"), Some(&0));
    }
}
