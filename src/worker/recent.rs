//! Duplicates within `safety.window`: the same membership asked for again under another job id.

use std::sync::Mutex;
use std::time::Duration;

/// The memberships asked for recently: identity hash -> (first job id, when).
pub(super) struct Recent {
    window: Duration,
    seen: Mutex<Seen>,
}

pub(super) struct Seen {
    map: std::collections::HashMap<u64, (String, std::time::Instant)>,
    /// Expired entries are swept out once the map outgrows this, which then becomes twice what
    /// is left: a sweep visits every entry, so sweeping at every job past a fixed size would cost
    /// O(entries) per job while the window keeps them all (an hour of jobs, by default).
    sweep_above: usize,
}

/// The fewest entries worth sweeping for.
pub(super) const SWEEP_MIN: usize = 4096;

impl Recent {
    pub(super) fn new(window: Duration) -> Recent {
        Recent {
            window,
            seen: Mutex::new(Seen {
                map: Default::default(),
                sweep_above: SWEEP_MIN,
            }),
        }
    }

    /// The first job id that asked for this membership within the window, when it is another job;
    /// otherwise remembers this one and returns None.
    pub(super) fn first(&self, identity: u64, job_id: &str) -> Option<String> {
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().expect("recent lock");
        if seen.map.len() > seen.sweep_above {
            seen.map
                .retain(|_, (_, at)| now.duration_since(*at) < self.window);
            seen.sweep_above = (2 * seen.map.len()).max(SWEEP_MIN);
        }
        match seen.map.get(&identity) {
            Some((first, at)) if first != job_id && now.duration_since(*at) < self.window => {
                Some(first.clone())
            }
            _ => {
                seen.map.insert(identity, (job_id.to_owned(), now));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_names_the_first_job_and_sweeps_expired_entries_now_and_then() {
        let recent = Recent::new(Duration::from_secs(3600));
        assert_eq!(recent.first(1, "a"), None);
        assert_eq!(
            recent.first(1, "a"),
            None,
            "a redelivery is not a duplicate"
        );
        assert_eq!(recent.first(1, "b").as_deref(), Some("a"));
        for i in 2..=SWEEP_MIN as u64 + 1 {
            recent.first(i, "x");
        }
        // Nothing expired: the sweep keeps everything and waits for twice as many.
        assert_eq!(recent.first(u64::MAX, "y"), None);
        let seen = recent.seen.lock().unwrap();
        assert_eq!(seen.map.len(), SWEEP_MIN + 2);
        assert_eq!(seen.sweep_above, 2 * (SWEEP_MIN + 1));
        drop(seen);
        assert_eq!(
            recent.first(1, "c").as_deref(),
            Some("a"),
            "still remembered"
        );

        let short = Recent::new(Duration::ZERO);
        for i in 0..=SWEEP_MIN as u64 + 1 {
            short.first(i, "x");
        }
        assert_eq!(short.first(0, "y"), None, "expired: not a duplicate");
        let seen = short.seen.lock().unwrap();
        assert!(
            seen.map.len() <= 2,
            "expired entries swept: {}",
            seen.map.len()
        );
        assert_eq!(seen.sweep_above, SWEEP_MIN);
    }
}
