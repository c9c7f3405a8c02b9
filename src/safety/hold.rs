//! The worker's rolling-window guard: past `safety.max_removals_per_window` removals within
//! `safety.window`, a lane holds (stops consuming, its messages stay queued) until an operator
//! releases it with `offboard hold release PROVIDER`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub struct Hold {
    max: usize,
    span: Duration,
    taken: Mutex<VecDeque<Instant>>,
    held: AtomicBool,
    released: Notify,
}

/// One lane's hold, as `offboard hold list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HoldState {
    pub provider: String,
    pub held: bool,
    pub removals_in_window: usize,
    pub max_removals_per_window: usize,
    pub window_s: u64,
}

impl Hold {
    pub fn new(max: usize, span: Duration) -> Hold {
        Hold {
            max,
            span,
            taken: Mutex::new(VecDeque::new()),
            held: AtomicBool::new(false),
            released: Notify::new(),
        }
    }

    /// Takes a removal slot in the window, or holds the lane when none is left.
    pub fn try_take(&self) -> bool {
        if self.is_held() {
            return false;
        }
        let now = Instant::now();
        let mut taken = self.taken.lock().expect("hold lock");
        while taken
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.span)
        {
            taken.pop_front();
        }
        if taken.len() < self.max {
            taken.push_back(now);
            true
        } else {
            self.held.store(true, Ordering::Relaxed);
            false
        }
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// The operator's release: the window starts afresh.
    pub fn release(&self) {
        self.taken.lock().expect("hold lock").clear();
        self.held.store(false, Ordering::Relaxed);
        self.released.notify_waiters();
    }

    /// Resolves once the lane is released (at once if it is not held).
    pub async fn released(&self) {
        loop {
            let notified = self.released.notified();
            if !self.is_held() {
                return;
            }
            notified.await;
        }
    }

    pub fn state(&self, provider: &str) -> HoldState {
        let now = Instant::now();
        let in_window = self
            .taken
            .lock()
            .expect("hold lock")
            .iter()
            .filter(|t| now.duration_since(**t) < self.span)
            .count();
        HoldState {
            provider: provider.to_owned(),
            held: self.is_held(),
            removals_in_window: in_window,
            max_removals_per_window: self.max,
            window_s: self.span.as_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_past_the_limit() {
        let h = Hold::new(3, Duration::from_secs(3600));
        assert!(h.try_take() && h.try_take() && h.try_take());
        assert!(!h.try_take(), "the fourth in the window holds");
        assert!(h.is_held());
        assert!(!h.try_take(), "held stays held");
        let s = h.state("factory");
        assert_eq!(
            (s.held, s.removals_in_window, s.max_removals_per_window),
            (true, 3, 3)
        );
    }

    #[tokio::test]
    async fn release_wakes_the_waiter_and_restarts_the_window() {
        let h = std::sync::Arc::new(Hold::new(1, Duration::from_secs(3600)));
        assert!(h.try_take());
        assert!(!h.try_take());
        let w = {
            let h = h.clone();
            tokio::spawn(async move { h.released().await })
        };
        h.release();
        tokio::time::timeout(Duration::from_secs(1), w)
            .await
            .expect("woken")
            .unwrap();
        assert!(!h.is_held());
        assert!(h.try_take(), "a fresh window");
    }

    #[test]
    fn old_removals_leave_the_window() {
        let h = Hold::new(1, Duration::from_millis(30));
        assert!(h.try_take());
        std::thread::sleep(Duration::from_millis(40));
        assert!(h.try_take(), "the first one left the window");
    }
}
