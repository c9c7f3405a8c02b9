//! Adaptive pacing: the lane's pace, found from the provider's answers.
//!
//! 1. **What the provider says comes first.** When an answer names what is left of the window and
//!    when it resets, the pace spends what is left evenly until then (counting requests in
//!    flight as spent): the pace that draws no 429. Nothing left: the lane waits for the reset.
//! 2. **Otherwise the pace is learned from 429s**, CUBIC-style on a rate: a 429 sets `w_max` to
//!    the rate the provider accepted over the last second and cuts the pace to `β·w_max`
//!    (β = 0.9); the pace then climbs back along `w_max·(1 + c·(t−K)³)`, flat near `w_max`
//!    (where the limit was) and steeper beyond it (to find a raised limit), with K = 4 s the time
//!    back to `w_max`. One cut per round trip: a 429 to a request sent before the last cut is news
//!    already acted on. Within a second of a cut (it takes that long to show in the accepted
//!    rate) another 429 cuts again only when a fifth of the answers since are 429s (the limit
//!    dropped), from the rate accepted since; so a sporadic 429 costs a dip, not a slide. Before the first 429 (no remembered rate) a slow start doubles the
//!    pace about every half second of answered requests.
//! 3. A configured number is a ceiling the pace never passes, and where it starts.
//!
//! The pace never runs away from the traffic: it is capped at twice the rate answered over the
//! last second, or at the last known good rate if higher, so an idle lane does not wake at a
//! rate nobody tried. Times are passed in, so the steps are tested without a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::providers::quota::Quota;

/// The cut on a 429: the pace goes to this share of what the provider accepted.
pub const BETA: f64 = 0.9;
/// Seconds the pace takes to climb back to `w_max` after a cut.
pub const K: f64 = 4.0;
/// The slowest pace: one request every 20 s.
pub const FLOOR: f64 = 0.05;
/// The ceiling of `"auto"`.
pub const AUTO_CEILING: f64 = 10_000.0;
/// Where `"auto"` starts with nothing remembered.
pub const INITIAL: f64 = 2.0;
/// Slow start: added to the pace per answered request (ln 4: doubling every half second).
const SLOW_START_STEP: f64 = std::f64::consts::LN_2 * 2.0;
/// How long what the provider said rules the pace without being said again.
const PROVIDER_FRESH: Duration = Duration::from_secs(3);
/// The window the accepted rate is measured over.
const MEASURE: Duration = Duration::from_secs(1);

/// Where the current pace comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The configured number.
    Configured,
    /// The rate the last run or worker learned (the state file).
    Remembered,
    /// Doubling until the first 429.
    SlowStart,
    /// Climbing back after a 429.
    Throttled,
    /// Past the last limit, looking for a higher one.
    Probing,
    /// The provider's rate-limit headers.
    Provider,
}

impl Source {
    pub const ALL: [Source; 6] = [
        Source::Configured,
        Source::Remembered,
        Source::SlowStart,
        Source::Throttled,
        Source::Probing,
        Source::Provider,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Configured => "configured",
            Source::Remembered => "remembered",
            Source::SlowStart => "slow_start",
            Source::Throttled => "throttled",
            Source::Probing => "probing",
            Source::Provider => "provider",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    SlowStart {
        rate: f64,
    },
    /// The CUBIC curve from `w_max`, cut (or placed) at `since`.
    Cubic {
        w_max: f64,
        since: Instant,
    },
    /// What the provider said, last at `at`.
    Provider {
        rate: f64,
        at: Instant,
    },
}

/// How a lane's pace starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// A configured number: the ceiling, and where the pace starts.
    Fixed(f64),
    /// `"auto"`, from what was learned before if anything.
    Auto { remembered: Option<f64> },
}

#[derive(Debug)]
pub struct Controller {
    ceiling: f64,
    mode: Mode,
    source: Source,
    last_cut: Option<Instant>,
    /// The best rate known to have been accepted (the last `w_max`, the start).
    known_good: f64,
    answered: VecDeque<Instant>,
    /// The first answer: before a whole second of them, the accepted rate is over what there is.
    first_answer: Option<Instant>,
    /// Answers and 429s since the last cut.
    since_cut: (u32, u32),
}

impl Controller {
    pub fn new(start: Start, now: Instant) -> Controller {
        // Placed at the top of the curve: the pace is `w_max` now and probes beyond it later.
        let plateau = |w_max: f64| Mode::Cubic {
            w_max,
            since: now.checked_sub(Duration::from_secs_f64(K)).unwrap_or(now),
        };
        let (ceiling, mode, source, known_good) = match start {
            Start::Fixed(rate) => (rate, plateau(rate), Source::Configured, rate),
            Start::Auto {
                remembered: Some(r),
            } => {
                let r = r.clamp(FLOOR, AUTO_CEILING);
                (AUTO_CEILING, plateau(r), Source::Remembered, r)
            }
            Start::Auto { remembered: None } => (
                AUTO_CEILING,
                Mode::SlowStart { rate: INITIAL },
                Source::SlowStart,
                INITIAL,
            ),
        };
        Controller {
            ceiling,
            mode,
            source,
            last_cut: None,
            known_good,
            answered: VecDeque::new(),
            first_answer: None,
            since_cut: (0, 0),
        }
    }

    fn prune(&mut self, now: Instant) {
        while self
            .answered
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > MEASURE)
        {
            self.answered.pop_front();
        }
    }

    /// Requests answered (not 429) per second over the last second, or since the first answer
    /// when that is more recent (a tenth of a second at least).
    fn accepted(&self, now: Instant) -> f64 {
        let span = self.first_answer.map_or(MEASURE, |f| {
            now.saturating_duration_since(f)
                .clamp(MEASURE / 10, MEASURE)
        });
        self.answered.len() as f64 / span.as_secs_f64()
    }

    /// The pace now, in requests per second.
    pub fn rate(&mut self, now: Instant) -> f64 {
        self.prune(now);
        if let Mode::Provider { rate, at } = self.mode {
            if now.saturating_duration_since(at) < PROVIDER_FRESH {
                return rate.clamp(FLOOR, self.ceiling);
            }
            // The provider fell silent: go on from its last pace, along the curve.
            self.mode = Mode::Cubic {
                w_max: rate,
                since: now.checked_sub(Duration::from_secs_f64(K)).unwrap_or(now),
            };
            self.known_good = self.known_good.max(rate);
        }
        let wanted = match self.mode {
            Mode::SlowStart { rate } => rate,
            Mode::Cubic { w_max, since } => {
                let t = now.saturating_duration_since(since).as_secs_f64();
                let c = (1.0 - BETA) / K.powi(3);
                let w = w_max * (1.0 + c * (t - K).powi(3));
                if t > K && self.source == Source::Throttled {
                    self.source = Source::Probing;
                }
                w
            }
            Mode::Provider { rate, .. } => rate,
        };
        // Never far from what is actually flowing (the slack lets a slow start leave the ground).
        let cap = (2.0 * self.accepted(now)).max(self.known_good) + 2.0 * INITIAL;
        wanted.min(cap).clamp(FLOOR, self.ceiling)
    }

    pub fn source(&self) -> Source {
        self.source
    }

    /// An answer that was not a 429.
    pub fn answered(&mut self, now: Instant) {
        self.first_answer.get_or_insert(now);
        self.answered.push_back(now);
        self.since_cut.0 += 1;
        self.prune(now);
        if let Mode::SlowStart { rate } = &mut self.mode {
            *rate = (*rate + SLOW_START_STEP).min(self.ceiling);
        }
    }

    /// A 429 to a request sent at `sent`. True when it cut the pace; false when an earlier cut
    /// already answers it: the request left before that cut, or the cut is under a second old
    /// (it takes that long to show in the accepted rate) and few answers since were 429s. A cut
    /// that plainly did not suffice (a fifth of the answers since are 429s: the limit dropped) is
    /// followed by another at once, from the rate accepted since the last one.
    pub fn throttled(&mut self, now: Instant, sent: Instant) -> bool {
        let mut since_cut = None;
        if let Some(cut) = self.last_cut {
            if sent < cut {
                return false;
            }
            self.since_cut.1 += 1;
            let elapsed = now.saturating_duration_since(cut);
            if elapsed < MEASURE {
                let (ok, throttled) = self.since_cut;
                if throttled < 3 || throttled * 5 < ok + throttled {
                    return false;
                }
                since_cut = Some(f64::from(ok) / elapsed.max(MEASURE / 10).as_secs_f64());
            }
        }
        let pace = self.rate(now);
        let accepted = since_cut.unwrap_or_else(|| self.accepted(now));
        let w_max = if accepted > 0.0 {
            accepted.min(pace)
        } else {
            pace
        }
        .max(FLOOR);
        self.mode = Mode::Cubic { w_max, since: now };
        self.source = Source::Throttled;
        self.last_cut = Some(now);
        self.since_cut = (0, 0);
        self.known_good = w_max * BETA;
        true
    }

    /// What an answer's headers said. Returns how long the lane must wait when nothing is left
    /// of the window.
    pub fn quota(&mut self, now: Instant, q: &Quota, in_flight: u32) -> Option<Duration> {
        if q.remaining == Some(0.0) {
            if let Some(reset) = q.reset.filter(|r| !r.is_zero()) {
                return Some(reset);
            }
        }
        let pace = q.even_pace(in_flight)?.clamp(FLOOR, self.ceiling);
        self.mode = Mode::Provider {
            rate: pace,
            at: now,
        };
        self.source = Source::Provider;
        self.known_good = pace;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, secs: f64) -> Instant {
        t0 + Duration::from_secs_f64(secs)
    }

    /// Answers `n` requests evenly over `[from, from + secs)`.
    fn answer(c: &mut Controller, t0: Instant, from: f64, secs: f64, n: usize) {
        for i in 0..n {
            c.answered(at(t0, from + secs * i as f64 / n as f64));
        }
    }

    #[test]
    fn a_fixed_rate_is_where_it_starts_and_its_ceiling() {
        let t0 = Instant::now();
        let mut c = Controller::new(Start::Fixed(20.0), t0);
        assert_eq!(c.rate(t0), 20.0);
        assert_eq!(c.source(), Source::Configured);
        // Answers at that rate for a minute: never above the ceiling.
        answer(&mut c, t0, 0.0, 60.0, 1200);
        assert_eq!(c.rate(at(t0, 60.0)), 20.0);
    }

    #[test]
    fn slow_start_doubles_about_every_half_second_of_answers() {
        let t0 = Instant::now();
        let mut c = Controller::new(Start::Auto { remembered: None }, t0);
        assert_eq!(c.rate(t0), INITIAL);
        let mut t = 0.0;
        // Answer at the pace for 2 s, step by step.
        while t < 2.0 {
            let r = c.rate(at(t0, t));
            c.answered(at(t0, t));
            t += 1.0 / r;
        }
        let r = c.rate(at(t0, 2.0));
        assert!(
            (20.0..=60.0).contains(&r),
            "four doublings from 2/s, about: {r}"
        );
        assert_eq!(c.source(), Source::SlowStart);
    }

    #[test]
    fn a_429_cuts_to_beta_of_what_was_accepted_then_climbs_back_and_beyond() {
        let t0 = Instant::now();
        let mut c = Controller::new(Start::Auto { remembered: None }, t0);
        // 50 answered in the last second, then a 429 while pacing faster.
        answer(&mut c, t0, 0.0, 1.0, 50);
        assert!(c.throttled(at(t0, 1.0), at(t0, 0.99)));
        assert_eq!(c.source(), Source::Throttled);
        let cut = c.rate(at(t0, 1.0));
        assert!((cut - 45.0).abs() < 0.5, "β × 50: {cut}");
        // Answered at the pace: back near 50 at K, and beyond later.
        answer(&mut c, t0, 1.0, 12.0, 600);
        let back = c.rate(at(t0, 1.0 + K));
        assert!((back - 50.0).abs() < 1.0, "w_max at K: {back}");
        let beyond = c.rate(at(t0, 1.0 + 2.0 * K));
        assert!(beyond > 54.0, "probing past the old limit: {beyond}");
        assert_eq!(c.source(), Source::Probing);
    }

    #[test]
    fn one_cut_per_round_trip() {
        let t0 = Instant::now();
        let mut c = Controller::new(Start::Fixed(100.0), t0);
        answer(&mut c, t0, 0.0, 1.0, 100);
        assert!(c.throttled(at(t0, 1.0), at(t0, 0.98)));
        let once = c.rate(at(t0, 1.0));
        // Requests sent before the cut come back 429 too: no second cut (the curve barely moved).
        assert!(!c.throttled(at(t0, 1.01), at(t0, 0.99)));
        assert!((c.rate(at(t0, 1.01)) - once).abs() < once * 0.01);
        // One sent after the cut, within the second the cut takes to show, among answers that
        // are mostly not 429s: a sporadic 429, no cut.
        answer(&mut c, t0, 1.0, 0.2, 18);
        assert!(!c.throttled(at(t0, 1.2), at(t0, 1.1)));
        // A second later the cut did not suffice: cut again.
        answer(&mut c, t0, 1.2, 0.8, 60);
        assert!(c.throttled(at(t0, 2.1), at(t0, 2.05)));
        let twice = c.rate(at(t0, 2.1));
        assert!(twice < once);
        // Within the second, a fifth of the answers 429s: the limit dropped; cut at once, to what
        // was accepted since.
        answer(&mut c, t0, 2.1, 0.2, 4);
        assert!(!c.throttled(at(t0, 2.3), at(t0, 2.2)));
        assert!(!c.throttled(at(t0, 2.31), at(t0, 2.2)));
        assert!(c.throttled(at(t0, 2.32), at(t0, 2.2)));
        let thrice = c.rate(at(t0, 2.32));
        assert!(thrice < 0.9 * twice && thrice < 20.0, "{thrice}");
    }

    #[test]
    fn a_halved_limit_is_followed_within_seconds() {
        let t0 = Instant::now();
        let mut c = Controller::new(
            Start::Auto {
                remembered: Some(60.0),
            },
            t0,
        );
        assert_eq!(c.source(), Source::Remembered);
        answer(&mut c, t0, 0.0, 1.0, 60);
        // The provider now accepts 30/s: every round trip that overshoots brings a 429.
        let (mut t, mut sent, mut owed) = (1.0, 1.0, 0.0);
        while t < 6.0 {
            let r = c.rate(at(t0, t));
            if r > 30.0 {
                c.throttled(at(t0, t), at(t0, sent));
            }
            owed += 30.0_f64.min(r) * 0.1;
            answer(&mut c, t0, t, 0.1, owed as usize);
            owed -= owed.floor();
            sent = t;
            t += 0.1;
        }
        let r = c.rate(at(t0, 6.0));
        assert!((20.0..=31.0).contains(&r), "followed down: {r}");
    }

    #[test]
    fn an_idle_lane_does_not_wake_fast() {
        let t0 = Instant::now();
        let mut c = Controller::new(Start::Auto { remembered: None }, t0);
        answer(&mut c, t0, 0.0, 1.0, 10);
        assert!(c.throttled(at(t0, 1.0), at(t0, 0.9)));
        // An hour without traffic: the curve would be far up; the pace is not.
        let r = c.rate(at(t0, 3600.0));
        assert!(r <= 9.0 + 2.0 * INITIAL, "{r}");
    }

    #[test]
    fn the_provider_rules_while_it_speaks_and_a_spent_window_waits_for_its_reset() {
        let t0 = Instant::now();
        let mut c = Controller::new(Start::Auto { remembered: None }, t0);
        let q = Quota {
            limit: Some(600.0),
            remaining: Some(300.0),
            reset: Some(Duration::from_secs(30)),
            window: None,
        };
        assert_eq!(c.quota(t0, &q, 0), None);
        assert_eq!(c.source(), Source::Provider);
        // Spent evenly: 300 over 30 s; the cap is the provider's word here.
        assert!((c.rate(at(t0, 0.1)) - 10.0).abs() < 1e-9);
        let spent = Quota {
            remaining: Some(0.0),
            reset: Some(Duration::from_secs(7)),
            ..q
        };
        assert_eq!(
            c.quota(at(t0, 1.0), &spent, 0),
            Some(Duration::from_secs(7))
        );
        // Silent for longer than it stays fresh: the curve goes on from the provider's pace.
        let r = c.rate(at(t0, 10.0));
        assert!(r > 0.0 && r <= 10.0 + 1e-9, "{r}");
    }
}
