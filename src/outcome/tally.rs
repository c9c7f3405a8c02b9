//! The one tally of outcomes, kept as records reach the sink.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Outcome, Record};

/// The one tally of outcomes, kept as records reach the sink: by outcome for the progress
/// display, by provider and outcome for the closing table. (`offboard_jobs_total` is the same
/// count for Prometheus, fed from the same place.)
#[derive(Debug, Default)]
pub struct Live {
    counts: [AtomicU64; 6],
    by_provider: std::sync::Mutex<BTreeMap<String, [u64; 6]>>,
}

impl Live {
    pub fn get(&self, o: Outcome) -> u64 {
        self.counts[o.index()].load(Ordering::Relaxed)
    }
    pub fn total(&self) -> u64 {
        Outcome::ALL.iter().map(|o| self.get(*o)).sum()
    }

    pub(crate) fn add(&self, r: &Record) {
        self.counts[r.outcome.index()].fetch_add(1, Ordering::Relaxed);
        let mut by = self.by_provider.lock().expect("tally lock");
        match by.get_mut(r.provider.as_deref().unwrap_or_default()) {
            Some(c) => c[r.outcome.index()] += 1,
            None => {
                let mut c = [0; 6];
                c[r.outcome.index()] = 1;
                by.insert(r.provider.clone().unwrap_or_default(), c);
            }
        }
    }

    /// Counts per provider and outcome so far.
    pub fn summary(&self) -> Summary {
        Summary {
            counts: self.by_provider.lock().expect("tally lock").clone(),
        }
    }
}

/// Counts per provider entry and outcome, for the closing summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub counts: BTreeMap<String, [u64; 6]>,
}

impl Summary {
    pub fn get(&self, provider: &str, o: Outcome) -> u64 {
        self.counts.get(provider).map_or(0, |c| c[o.index()])
    }
    pub fn total(&self, o: Outcome) -> u64 {
        self.counts.values().map(|c| c[o.index()]).sum()
    }
    pub fn all_done(&self) -> bool {
        Outcome::ALL
            .iter()
            .filter(|o| !o.is_done())
            .all(|o| self.total(*o) == 0)
    }
}
