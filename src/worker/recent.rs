//! Duplicates within `safety.window`: the same membership asked for again under another job id,
//! after a job that removed it.
//!
//! A copy is a duplicate only of a success: a job whose outcome was recorded as `removed` or
//! `already_absent` less than `safety.window` ago. A copy of a job that failed, was not attempted,
//! was skipped or handed back runs on its own. A copy that comes while the first job is still
//! running (both in the lane's prefetch) waits for it: a duplicate if it succeeds, run otherwise.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The memberships removed recently, and those being run now.
pub(super) struct Recent {
    window: Duration,
    seen: Mutex<Seen>,
}

pub(super) struct Seen {
    /// Identity hash -> (the job id whose success was recorded, when).
    done: HashMap<u64, (String, Instant)>,
    /// Identity hash -> the job running it now; waiters see its sender dropped when it ends.
    running: HashMap<u64, Runner>,
    /// Claims handed out, to tell one runner from another of the same identity.
    claims: u64,
    /// Expired entries are swept out once the map outgrows this, which then becomes twice what
    /// is left: a sweep visits every entry, so sweeping at every job past a fixed size would cost
    /// O(entries) per job while the window keeps them all (an hour of jobs, by default).
    sweep_above: usize,
}

struct Runner {
    job_id: String,
    claim: u64,
    /// Never sent on: dropped (with the entry) when the job ends, which wakes every waiter.
    ended: watch::Sender<()>,
}

/// The fewest entries worth sweeping for.
pub(super) const SWEEP_MIN: usize = 4096;

/// What a job may do with its membership.
pub(super) enum Claim<'r> {
    /// Another job removed it (or found it absent) within the window: this one is its duplicate.
    DuplicateOf(String),
    /// Run it; tell [`Running::succeeded`] once its outcome is recorded as a success.
    Run(Running<'r>),
}

/// A job running a membership. Dropped without [`Running::succeeded`] (failed, not attempted,
/// handed back, unrecorded), it lets a waiting copy run.
pub(super) struct Running<'r> {
    recent: &'r Recent,
    identity: u64,
    job_id: String,
    /// None for a job that found itself already running (a redelivery of the same id).
    claim: Option<u64>,
}

impl Recent {
    pub(super) fn new(window: Duration) -> Recent {
        Recent {
            window,
            seen: Mutex::new(Seen {
                done: HashMap::new(),
                running: HashMap::new(),
                claims: 0,
                sweep_above: SWEEP_MIN,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job id whose removal of this membership was recorded within the window, when it is
    /// another job.
    fn done_by(&self, seen: &Seen, identity: u64, job_id: &str, now: Instant) -> Option<String> {
        match seen.done.get(&identity) {
            Some((first, at)) if first != job_id && now.duration_since(*at) < self.window => {
                Some(first.clone())
            }
            _ => None,
        }
    }

    /// A duplicate of the job that removed this membership within the window, or leave to run
    /// it; while another job id runs it, waits for that one's end first.
    pub(super) async fn claim(&self, identity: u64, job_id: &str) -> Claim<'_> {
        loop {
            let mut ended = {
                let mut seen = self.lock();
                if let Some(first) = self.done_by(&seen, identity, job_id, Instant::now()) {
                    return Claim::DuplicateOf(first);
                }
                match seen.running.get(&identity) {
                    Some(r) if r.job_id != job_id => r.ended.subscribe(),
                    // The same job delivered again while it runs (after a reconnect): as before,
                    // not its own duplicate; the first delivery keeps the entry.
                    Some(_) => return Claim::Run(self.running(identity, job_id, None)),
                    None => {
                        seen.claims += 1;
                        let claim = seen.claims;
                        let (ended, _) = watch::channel(());
                        seen.running.insert(
                            identity,
                            Runner {
                                job_id: job_id.to_owned(),
                                claim,
                                ended,
                            },
                        );
                        return Claim::Run(self.running(identity, job_id, Some(claim)));
                    }
                }
            };
            // Err once the runner's entry is gone: its job ended one way or the other.
            while ended.changed().await.is_ok() {}
        }
    }

    fn running(&self, identity: u64, job_id: &str, claim: Option<u64>) -> Running<'_> {
        Running {
            recent: self,
            identity,
            job_id: job_id.to_owned(),
            claim,
        }
    }

    /// Remembers that `job_id` removed this membership (its outcome is recorded as removed or
    /// already absent). An earlier success within the window stays the one copies name.
    fn remember(&self, seen: &mut Seen, identity: u64, job_id: &str) {
        let now = Instant::now();
        if seen.done.len() > seen.sweep_above {
            seen.done
                .retain(|_, (_, at)| now.duration_since(*at) < self.window);
            seen.sweep_above = (2 * seen.done.len()).max(SWEEP_MIN);
        }
        match seen.done.get(&identity) {
            Some((_, at)) if now.duration_since(*at) < self.window => {}
            _ => {
                seen.done.insert(identity, (job_id.to_owned(), now));
            }
        }
    }
}

impl Running<'_> {
    /// The job's outcome is recorded as removed or already absent: copies within the window are
    /// its duplicates, the waiting ones included.
    pub(super) fn succeeded(self) {
        let mut seen = self.recent.lock();
        self.recent.remember(&mut seen, self.identity, &self.job_id);
        drop(seen);
        // Dropping `self` now removes the running entry, which wakes the waiters.
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let Some(claim) = self.claim else { return };
        let mut seen = self.recent.lock();
        if seen.running.get(&self.identity).map(|r| r.claim) == Some(claim) {
            seen.running.remove(&self.identity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate_of(c: Claim<'_>) -> Option<String> {
        match c {
            Claim::DuplicateOf(first) => Some(first),
            Claim::Run(_) => None,
        }
    }

    async fn run<'r>(recent: &'r Recent, identity: u64, job_id: &str) -> Running<'r> {
        match recent.claim(identity, job_id).await {
            Claim::Run(r) => r,
            Claim::DuplicateOf(first) => panic!("{job_id}: a duplicate of {first}"),
        }
    }

    #[tokio::test]
    async fn only_a_recorded_success_makes_a_copy_a_duplicate() {
        let recent = Recent::new(Duration::from_secs(3600));
        // The first job fails (or is not attempted, or skipped): the copy runs.
        drop(run(&recent, 1, "a").await);
        run(&recent, 1, "b").await.succeeded();
        assert_eq!(
            duplicate_of(recent.claim(1, "b").await),
            None,
            "a redelivery is not a duplicate"
        );
        assert_eq!(
            duplicate_of(recent.claim(1, "c").await).as_deref(),
            Some("b"),
            "a copy of the success is"
        );
        // Another success within the window: copies still name the first one.
        run(&recent, 1, "b").await.succeeded();
        assert_eq!(
            duplicate_of(recent.claim(1, "d").await).as_deref(),
            Some("b")
        );
        assert_eq!(duplicate_of(recent.claim(2, "c").await), None);

        let short = Recent::new(Duration::ZERO);
        run(&short, 1, "a").await.succeeded();
        assert_eq!(
            duplicate_of(short.claim(1, "b").await),
            None,
            "expired: not a duplicate"
        );
    }

    #[tokio::test]
    async fn a_copy_of_a_running_job_waits_for_its_end() {
        let recent = std::sync::Arc::new(Recent::new(Duration::from_secs(3600)));
        let copy = |id: &'static str| {
            let recent = recent.clone();
            tokio::spawn(async move { duplicate_of(recent.claim(7, id).await) })
        };

        // The first fails: the waiting copy runs.
        let first = run(&recent, 7, "a").await;
        let waiting = copy("b");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "waits while the first runs");
        drop(first);
        assert_eq!(waiting.await.unwrap(), None, "runs once the first failed");

        // The first succeeds: the waiting copy is its duplicate.
        let first = run(&recent, 7, "c").await;
        // The same job delivered again while it runs does not wait for itself.
        drop(run(&recent, 7, "c").await);
        let waiting = copy("d");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        first.succeeded();
        assert_eq!(waiting.await.unwrap().as_deref(), Some("c"));
        assert!(recent.lock().running.is_empty(), "nothing left running");
    }

    #[tokio::test]
    async fn successes_are_swept_now_and_then() {
        let recent = Recent::new(Duration::from_secs(3600));
        for i in 0..=SWEEP_MIN as u64 {
            run(&recent, i, "x").await.succeeded();
        }
        // Nothing expired: the sweep keeps everything and waits for twice as many.
        run(&recent, u64::MAX, "y").await.succeeded();
        {
            let seen = recent.lock();
            assert_eq!(seen.done.len(), SWEEP_MIN + 2);
            assert_eq!(seen.sweep_above, 2 * (SWEEP_MIN + 1));
            assert!(seen.running.is_empty());
        }
        assert_eq!(
            duplicate_of(recent.claim(1, "c").await).as_deref(),
            Some("x"),
            "still remembered"
        );

        let short = Recent::new(Duration::ZERO);
        for i in 0..=SWEEP_MIN as u64 {
            run(&short, i, "x").await.succeeded();
        }
        run(&short, u64::MAX, "y").await.succeeded();
        let seen = short.lock();
        assert!(
            seen.done.len() <= 2,
            "expired entries swept: {}",
            seen.done.len()
        );
        assert_eq!(seen.sweep_above, SWEEP_MIN);
    }
}
