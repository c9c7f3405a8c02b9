//! The lane's circuit: consecutive credential refusals halt it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Counts consecutive credential failures; at the threshold it opens, for good, with a reason.
pub(super) struct Circuit {
    pub(super) threshold: u32,
    pub(super) consecutive: AtomicU32,
    pub(super) open: OnceLock<String>,
}

impl Circuit {
    pub(super) fn ok(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
    }

    pub(super) fn credential_failure(&self, what: &str) {
        let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold {
            let reason = format!(
                "circuit open after {n} credential refusals in a row (last: {what}): check the credential and its scope"
            );
            if self.open.set(reason.clone()).is_ok() {
                tracing::error!(reason = %reason, "lane halted");
            }
        }
    }

    pub(super) fn reason(&self) -> Option<&str> {
        self.open.get().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_opens_only_on_consecutive_failures() {
        let c = Circuit {
            threshold: 3,
            consecutive: AtomicU32::new(0),
            open: OnceLock::new(),
        };
        c.credential_failure("401");
        c.credential_failure("401");
        c.ok();
        c.credential_failure("403");
        assert!(c.reason().is_none());
        c.credential_failure("403");
        c.credential_failure("403");
        assert!(c.reason().unwrap().contains("3 credential refusals"));
    }
}
