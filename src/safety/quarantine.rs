//! The quarantine in front of the automatic doors (Okta Event Hooks, SCIM, person-level broker
//! messages): every person who arrives is counted, waits `safety.settle`, and is sent only if, when
//! due, no more than `safety.max_people_per_window` people arrived within `safety.window`. Past
//! that, every person not yet sent is quarantined, and so is whoever arrives next, until an
//! operator approves by exact count or rejects.
//!
//! This is the pure half: a [`Ledger`] rebuilt from its [`Entry`]s and nothing else, so the worker
//! that keeps the log (in the broker, see `worker::gate`) and any replica that takes over from it
//! reach the same state. The ledger never reads a clock: every decision is given `now`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The automatic doors, as the counts and metrics name them.
pub const DOORS: [&str; 3] = ["okta", "scim", "amqp"];

/// Milliseconds since the Unix epoch: when an entry was written.
pub type Millis = u64;

/// The wall clock, for the entries the gate writes.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// One line of the gate's log. Only these change a [`Ledger`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    /// A person arrived through an automatic door. `payload` is the door's message, opaque here.
    Arrived {
        event: String,
        door: String,
        person: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shadow: bool,
        at: Millis,
        payload: serde_json::Value,
    },
    /// These people are quarantined: a new quarantine opens, or they join the open one.
    Quarantined {
        quarantine: String,
        events: Vec<String>,
        at: Millis,
    },
    /// These people's jobs may be sent: settled under the threshold (`by` unset), or approved.
    Released {
        events: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quarantine: Option<String>,
        at: Millis,
    },
    /// An operator rejected these people: nothing of theirs is sent.
    Rejected {
        events: Vec<String>,
        by: String,
        quarantine: String,
        at: Millis,
    },
    /// This person's jobs were published (or recorded, when rejected or in shadow mode).
    Done { event: String },
    /// Written by a gate that takes over, to know where the log it replays ends.
    Mark { nonce: String },
}

/// Where a person stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Waiting out `settle`.
    Settling,
    Quarantined(String),
    /// To be sent (published to the lanes, or recorded as shadow).
    Releasing,
    /// To be recorded as rejected by an operator, nothing sent.
    Rejecting {
        by: String,
        quarantine: String,
    },
    Done,
}

/// What the gate must do for a person whose fate is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Send,
    Reject { by: String, quarantine: String },
}

#[derive(Debug, Clone)]
pub struct Person {
    pub event: String,
    pub door: String,
    /// The person's key (the login or email, lowercased): two events for one person count once.
    pub person: String,
    pub shadow: bool,
    pub at: Millis,
    pub payload: serde_json::Value,
    pub stage: Stage,
    /// Whether this person counts toward the window: not once an operator decided on them.
    counted: bool,
}

/// The limits, from `[safety]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub settle: Duration,
    pub window: Duration,
    pub max_people: usize,
}

/// The state of the gate, as its log says.
#[derive(Debug)]
pub struct Ledger {
    limits: Limits,
    people: BTreeMap<String, Person>,
    /// The open quarantine and when it opened.
    open: Option<(String, Millis)>,
}

/// An operator's decision that the ledger refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("there is no open quarantine")]
    NoneOpen,
    #[error(
        "the quarantine holds {held} people, not {asked}: nothing was decided (list it again; people may have joined since)"
    )]
    CountDiffers { held: usize, asked: usize },
}

/// One quarantine as `offboard quarantine list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineView {
    pub id: String,
    pub opened_at: Millis,
    /// Distinct people: what `approve --count` must name.
    pub people: usize,
    pub by_door: BTreeMap<String, usize>,
    /// The first people, by arrival.
    pub first: Vec<String>,
    pub first_arrival: Millis,
    pub last_arrival: Millis,
    pub shadow: usize,
}

/// The gate's state for the metrics and `quarantine list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateView {
    /// Distinct people who arrived within the window (and count toward it), by door.
    pub in_window: BTreeMap<String, usize>,
    pub in_window_total: usize,
    pub max_people_per_window: usize,
    pub window_s: u64,
    pub settle_s: u64,
    pub settling: usize,
    pub quarantine: Option<QuarantineView>,
}

impl GateView {
    /// What `offboard quarantine list` prints.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let at = |ms: Millis| {
            let t = std::time::UNIX_EPOCH + Duration::from_millis(ms);
            humantime::format_rfc3339_seconds(t).to_string()
        };
        let mut out = String::new();
        let doors: Vec<String> = self
            .in_window
            .iter()
            .map(|(d, n)| format!("{d} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "In the window ({} s): {} of at most {} people{}; {} settling ({} s).",
            self.window_s,
            self.in_window_total,
            self.max_people_per_window,
            if doors.is_empty() {
                String::new()
            } else {
                format!(" ({})", doors.join(", "))
            },
            self.settling,
            self.settle_s
        );
        match &self.quarantine {
            None => out.push_str("No open quarantine.\n"),
            Some(q) => {
                let doors: Vec<String> =
                    q.by_door.iter().map(|(d, n)| format!("{d} {n}")).collect();
                let _ = writeln!(out, "Quarantine {} (opened {})", q.id, at(q.opened_at));
                let _ = writeln!(out, "  people:  {} ({})", q.people, doors.join(", "));
                if q.shadow > 0 {
                    let _ = writeln!(
                        out,
                        "  shadow:  {} event(s) from an intake in shadow mode",
                        q.shadow
                    );
                }
                let more = q.people.saturating_sub(q.first.len());
                let _ = writeln!(
                    out,
                    "  first:   {}{}",
                    q.first.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
                let _ = writeln!(
                    out,
                    "  arrived: {} .. {}",
                    at(q.first_arrival),
                    at(q.last_arrival)
                );
                let _ = writeln!(
                    out,
                    "Decide: offboard quarantine approve --count {} | offboard quarantine reject",
                    q.people
                );
            }
        }
        out
    }
}

/// How many people `first` names.
const NAMED: usize = 10;

impl Ledger {
    pub fn new(limits: Limits) -> Ledger {
        Ledger {
            limits,
            people: BTreeMap::new(),
            open: None,
        }
    }

    /// The open quarantine's id.
    pub fn open(&self) -> Option<&str> {
        self.open.as_ref().map(|(q, _)| q.as_str())
    }

    /// Whether an event is known (a redelivery, or a copy), so it is not counted twice.
    pub fn knows(&self, event: &str) -> bool {
        self.people.contains_key(event)
    }

    pub fn person(&self, event: &str) -> Option<&Person> {
        self.people.get(event)
    }

    /// The one way the state changes: replaying the log, or after the gate wrote an entry.
    pub fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Arrived {
                event,
                door,
                person,
                shadow,
                at,
                payload,
            } => {
                self.people.entry(event.clone()).or_insert_with(|| Person {
                    event: event.clone(),
                    door: door.clone(),
                    person: person.clone(),
                    shadow: *shadow,
                    at: *at,
                    payload: payload.clone(),
                    stage: Stage::Settling,
                    counted: true,
                });
            }
            Entry::Quarantined {
                quarantine,
                events,
                at,
                ..
            } => {
                if self.open.is_none() {
                    self.open = Some((quarantine.clone(), *at));
                }
                self.each(events, |p| {
                    if p.stage == Stage::Settling {
                        p.stage = Stage::Quarantined(quarantine.clone());
                    }
                });
            }
            Entry::Released {
                events, quarantine, ..
            } => {
                self.close(quarantine.as_deref());
                let approved = quarantine.is_some();
                self.each(events, |p| {
                    if matches!(p.stage, Stage::Settling | Stage::Quarantined(_)) {
                        p.counted &= !approved;
                        p.stage = Stage::Releasing;
                    }
                });
            }
            Entry::Rejected {
                events,
                by,
                quarantine,
                ..
            } => {
                self.close(Some(quarantine));
                self.each(events, |p| {
                    if matches!(p.stage, Stage::Settling | Stage::Quarantined(_)) {
                        p.counted = false;
                        p.stage = Stage::Rejecting {
                            by: by.clone(),
                            quarantine: quarantine.clone(),
                        };
                    }
                });
            }
            Entry::Done { event } => {
                if let Some(p) = self.people.get_mut(event) {
                    p.stage = Stage::Done;
                }
            }
            Entry::Mark { .. } => {}
        }
    }

    /// Whether `p` counts toward the window ending at `now`.
    fn counts(&self, p: &Person, now: Millis) -> bool {
        p.counted && p.at.saturating_add(ms(self.limits.window)) > now
    }

    fn each(&mut self, events: &[String], mut f: impl FnMut(&mut Person)) {
        for e in events {
            if let Some(p) = self.people.get_mut(e) {
                f(p);
            }
        }
    }

    fn close(&mut self, quarantine: Option<&str>) {
        if quarantine.is_some() && self.open.as_ref().map(|(q, _)| q.as_str()) == quarantine {
            self.open = None;
        }
    }

    /// What to write for a person who just arrived: joining the open quarantine, if there is one.
    pub fn on_arrival(&self, event: &str, now: Millis) -> Option<Entry> {
        let (q, _) = self.open.as_ref()?;
        Some(Entry::Quarantined {
            quarantine: q.clone(),
            events: vec![event.to_owned()],
            at: now,
        })
    }

    /// When the next settling person is due.
    pub fn next_due(&self) -> Option<Millis> {
        self.people
            .values()
            .filter(|p| p.stage == Stage::Settling)
            .map(|p| p.at.saturating_add(ms(self.limits.settle)))
            .min()
    }

    /// What to write for the people due at `now`: a quarantine of everyone not yet sent when the
    /// window holds more than the threshold (or a quarantine is open), else their release.
    /// `new_id` names a quarantine that opens.
    pub fn on_due(&self, now: Millis, new_id: impl FnOnce() -> String) -> Option<Entry> {
        let settle = ms(self.limits.settle);
        let due: Vec<String> = self
            .people
            .values()
            .filter(|p| p.stage == Stage::Settling && p.at.saturating_add(settle) <= now)
            .map(|p| p.event.clone())
            .collect();
        if due.is_empty() {
            return None;
        }
        if let Some((q, _)) = &self.open {
            return Some(Entry::Quarantined {
                quarantine: q.clone(),
                events: due,
                at: now,
            });
        }
        if self.in_window_total(now) > self.limits.max_people {
            let everyone = self
                .people
                .values()
                .filter(|p| p.stage == Stage::Settling)
                .map(|p| p.event.clone())
                .collect();
            return Some(Entry::Quarantined {
                quarantine: new_id(),
                events: everyone,
                at: now,
            });
        }
        Some(Entry::Released {
            events: due,
            by: None,
            quarantine: None,
            at: now,
        })
    }

    /// People whose fate is decided and whose jobs are not yet published or recorded, by arrival.
    pub fn unfinished(&self) -> Vec<(&Person, Finish)> {
        let mut out: Vec<_> = self
            .people
            .values()
            .filter_map(|p| match &p.stage {
                Stage::Releasing => Some((p, Finish::Send)),
                Stage::Rejecting { by, quarantine } => Some((
                    p,
                    Finish::Reject {
                        by: by.clone(),
                        quarantine: quarantine.clone(),
                    },
                )),
                _ => None,
            })
            .collect();
        out.sort_by_key(|(p, _)| p.at);
        out
    }

    fn quarantined(&self) -> Option<(&str, Millis, Vec<&Person>)> {
        let (q, opened) = self.open.as_ref()?;
        let mut members: Vec<&Person> = self
            .people
            .values()
            .filter(|p| matches!(&p.stage, Stage::Quarantined(x) if x == q))
            .collect();
        members.sort_by_key(|p| p.at);
        Some((q, *opened, members))
    }

    /// An operator's approval of exactly `count` people: the entry that releases them.
    pub fn approve(&self, count: usize, by: &str, now: Millis) -> Result<Entry, Refusal> {
        let (q, _, members) = self.quarantined().ok_or(Refusal::NoneOpen)?;
        let held = distinct(&members);
        if held != count {
            return Err(Refusal::CountDiffers { held, asked: count });
        }
        Ok(Entry::Released {
            events: members.iter().map(|p| p.event.clone()).collect(),
            by: Some(by.to_owned()),
            quarantine: Some(q.to_owned()),
            at: now,
        })
    }

    /// An operator's rejection (of exactly `count` people, when given).
    pub fn reject(&self, count: Option<usize>, by: &str, now: Millis) -> Result<Entry, Refusal> {
        let (q, _, members) = self.quarantined().ok_or(Refusal::NoneOpen)?;
        let held = distinct(&members);
        if let Some(asked) = count.filter(|c| *c != held) {
            return Err(Refusal::CountDiffers { held, asked });
        }
        Ok(Entry::Rejected {
            events: members.iter().map(|p| p.event.clone()).collect(),
            by: by.to_owned(),
            quarantine: q.to_owned(),
            at: now,
        })
    }

    /// Distinct people who arrived within the window before `now` and count toward it, by door.
    /// One person through two doors counts in each; [`Ledger::in_window_total`] counts them once.
    pub fn in_window(&self, now: Millis) -> BTreeMap<String, usize> {
        let mut seen: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for p in self.people.values().filter(|p| self.counts(p, now)) {
            seen.entry(&p.door).or_default().insert(&p.person);
        }
        seen.into_iter()
            .map(|(d, s)| (d.to_owned(), s.len()))
            .collect()
    }

    /// Distinct people within the window before `now`: what the threshold is checked against.
    pub fn in_window_total(&self, now: Millis) -> usize {
        self.people
            .values()
            .filter(|p| self.counts(p, now))
            .map(|p| p.person.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    }

    pub fn view(&self, now: Millis) -> GateView {
        let quarantine = self.quarantined().map(|(id, opened_at, members)| {
            let mut by_door: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
            for p in &members {
                by_door.entry(p.door.clone()).or_default().insert(&p.person);
            }
            let mut first = Vec::new();
            for p in &members {
                if first.len() < NAMED && !first.contains(&p.person) {
                    first.push(p.person.clone());
                }
            }
            QuarantineView {
                id: id.to_owned(),
                opened_at,
                people: distinct(&members),
                by_door: by_door.into_iter().map(|(d, s)| (d, s.len())).collect(),
                first,
                first_arrival: members.first().map(|p| p.at).unwrap_or(opened_at),
                last_arrival: members.last().map(|p| p.at).unwrap_or(opened_at),
                shadow: members.iter().filter(|p| p.shadow).count(),
            }
        });
        GateView {
            in_window: self.in_window(now),
            in_window_total: self.in_window_total(now),
            max_people_per_window: self.limits.max_people,
            window_s: self.limits.window.as_secs(),
            settle_s: self.limits.settle.as_secs(),
            settling: self
                .people
                .values()
                .filter(|p| p.stage == Stage::Settling)
                .count(),
            quarantine,
        }
    }

    /// Forgets people who are done and out of the window (and of the time a redelivered copy
    /// could still arrive): the state stays the size of one window.
    pub fn trim(&mut self, now: Millis) {
        let keep = ms(self.limits.window).max(ms(REDELIVERY_MEMORY));
        self.people
            .retain(|_, p| p.stage != Stage::Done || p.at.saturating_add(keep) > now);
    }

    pub fn len(&self) -> usize {
        self.people.len()
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }
}

/// How long a finished person is remembered at least, so that a copy of their event (a
/// redelivery after a crash between the log and the acknowledgement) is not counted again.
const REDELIVERY_MEMORY: Duration = Duration::from_secs(3600);

fn ms(d: Duration) -> Millis {
    d.as_millis() as Millis
}

fn distinct(members: &[&Person]) -> usize {
    members
        .iter()
        .map(|p| p.person.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn ledger(max: usize) -> Ledger {
        Ledger::new(Limits {
            settle: Duration::from_secs(60),
            window: Duration::from_secs(3600),
            max_people: max,
        })
    }

    fn arrive(l: &mut Ledger, n: usize, door: &str, at: Millis) -> String {
        let event = format!("{door}:{n}");
        l.apply(&Entry::Arrived {
            event: event.clone(),
            door: door.into(),
            person: format!("p{n}@acme.example"),
            shadow: false,
            at,
            payload: serde_json::json!({"n": n}),
        });
        if let Some(join) = l.on_arrival(&event, at) {
            l.apply(&join);
        }
        event
    }

    /// Applies what is due at `now`, as the gate does.
    fn tick(l: &mut Ledger, now: Millis) -> Option<Entry> {
        let e = l.on_due(now, || format!("q{now}"))?;
        l.apply(&e);
        Some(e)
    }

    fn sent(l: &Ledger) -> usize {
        l.unfinished()
            .iter()
            .filter(|(_, f)| *f == Finish::Send)
            .count()
    }

    #[test]
    fn a_trickle_under_the_threshold_is_released_after_the_settle_delay() {
        let mut l = ledger(3);
        arrive(&mut l, 1, "okta", 0);
        assert_eq!(l.next_due(), Some(MIN));
        assert_eq!(tick(&mut l, MIN - 1), None, "nothing is due before settle");
        assert!(matches!(tick(&mut l, MIN), Some(Entry::Released { .. })));
        assert_eq!(sent(&l), 1);
        arrive(&mut l, 2, "scim", 10 * MIN);
        arrive(&mut l, 3, "okta", 20 * MIN);
        tick(&mut l, 21 * MIN);
        assert_eq!(sent(&l), 3);
        assert_eq!(
            l.in_window_total(21 * MIN),
            3,
            "three people, at the threshold"
        );
    }

    #[test]
    fn a_burst_over_the_threshold_quarantines_everyone_not_yet_sent_and_whoever_comes_next() {
        let mut l = ledger(50);
        for n in 0..200 {
            arrive(&mut l, n, "okta", n as Millis * 100); // 200 in 20 s
        }
        let q = tick(&mut l, MIN);
        assert!(
            matches!(&q, Some(Entry::Quarantined { events, .. }) if events.len() == 200),
            "all 200, due or not: {q:?}"
        );
        assert_eq!(sent(&l), 0, "nothing of theirs is sent");
        let late = arrive(&mut l, 999, "scim", 2 * MIN);
        assert!(matches!(
            l.person(&late).unwrap().stage,
            Stage::Quarantined(_)
        ));
        // Hours later, the quarantine still holds: only an operator ends it.
        assert_eq!(tick(&mut l, 10 * 60 * MIN), None);
        let v = l.view(10 * 60 * MIN).quarantine.unwrap();
        assert_eq!(
            (v.people, v.by_door["okta"], v.by_door["scim"]),
            (201, 200, 1)
        );
        assert_eq!(v.first.len(), NAMED);
        assert_eq!((v.first_arrival, v.last_arrival), (0, 2 * MIN));
    }

    #[test]
    fn approval_needs_the_exact_count_and_releases_exactly_those() {
        let mut l = ledger(2);
        for n in 0..5 {
            arrive(&mut l, n, "okta", 0);
        }
        tick(&mut l, MIN);
        assert_eq!(
            l.approve(4, "ops", MIN),
            Err(Refusal::CountDiffers { held: 5, asked: 4 })
        );
        let ok = l.approve(5, "ops", MIN).unwrap();
        l.apply(&ok);
        assert_eq!(sent(&l), 5);
        assert_eq!(l.view(MIN).quarantine, None, "closed");
        assert_eq!(l.approve(5, "ops", MIN), Err(Refusal::NoneOpen));
        // The approved people no longer count: the next one is not quarantined for them.
        arrive(&mut l, 9, "okta", 2 * MIN);
        assert!(matches!(
            tick(&mut l, 3 * MIN),
            Some(Entry::Released { .. })
        ));
    }

    #[test]
    fn rejection_sends_nothing_and_is_finished_as_rejected() {
        let mut l = ledger(1);
        for n in 0..3 {
            arrive(&mut l, n, "scim", 0);
        }
        tick(&mut l, MIN);
        assert_eq!(
            l.reject(Some(2), "ops", MIN),
            Err(Refusal::CountDiffers { held: 3, asked: 2 })
        );
        let r = l.reject(None, "ops", MIN).unwrap();
        l.apply(&r);
        let left = l.unfinished();
        assert_eq!(left.len(), 3);
        assert!(
            left.iter()
                .all(|(_, f)| matches!(f, Finish::Reject { by, .. } if by == "ops"))
        );
        let events: Vec<String> = left.iter().map(|(p, _)| p.event.clone()).collect();
        for event in events {
            l.apply(&Entry::Done { event });
        }
        assert!(l.unfinished().is_empty());
    }

    #[test]
    fn one_person_through_two_doors_counts_once() {
        let mut l = ledger(1);
        l.apply(&Entry::Arrived {
            event: "okta:1".into(),
            door: "okta".into(),
            person: "zoe@acme.example".into(),
            shadow: false,
            at: 0,
            payload: serde_json::Value::Null,
        });
        l.apply(&Entry::Arrived {
            event: "scim:1".into(),
            door: "scim".into(),
            person: "zoe@acme.example".into(),
            shadow: false,
            at: 1,
            payload: serde_json::Value::Null,
        });
        assert_eq!(l.in_window_total(2), 1);
        assert!(
            matches!(tick(&mut l, MIN + 1), Some(Entry::Released { events, .. }) if events.len() == 2)
        );
    }

    #[test]
    fn the_log_replayed_gives_the_same_state_and_a_copy_is_not_counted_again() {
        let mut l = ledger(2);
        let mut log = Vec::new();
        for n in 0..4 {
            let e = Entry::Arrived {
                event: format!("e{n}"),
                door: "okta".into(),
                person: format!("p{n}"),
                shadow: n == 3,
                at: n as Millis,
                payload: serde_json::Value::Null,
            };
            l.apply(&e);
            log.push(e);
        }
        let q = l.on_due(MIN + 10, || "q1".into()).unwrap();
        l.apply(&q);
        log.push(q);
        let mut again = ledger(2);
        for e in &log {
            let text = serde_json::to_string(e).unwrap();
            again.apply(&serde_json::from_str(&text).unwrap());
        }
        assert_eq!(again.view(MIN + 10), l.view(MIN + 10));
        assert_eq!(again.view(MIN + 10).quarantine.unwrap().shadow, 1);
        assert!(again.knows("e0"), "a redelivered copy is recognised");
    }

    #[test]
    fn out_of_the_window_people_stop_counting_and_finished_ones_are_forgotten() {
        let mut l = ledger(1);
        let e = arrive(&mut l, 1, "okta", 0);
        tick(&mut l, MIN);
        l.apply(&Entry::Done { event: e.clone() });
        assert_eq!(l.in_window_total(MIN), 1);
        assert_eq!(l.in_window_total(61 * MIN), 0);
        l.trim(61 * MIN);
        assert!(!l.knows(&e));
        assert!(l.is_empty());
    }
}
