//! The blast-radius guard: a file asking for more removals than the configured limits is refused
//! before anything is sent, unless the operator names the exact count.

/// The limits the guard holds a batch to, as the config says them.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// `safety.max_removals_per_run`.
    pub per_run: u64,
    /// Each entry, in lane order: its name and its own `max_removals_per_run`.
    pub per_entry: Vec<(String, Option<u64>)>,
}

/// Exit code of a refusal.
pub const EXIT_REFUSED: u8 = 3;

/// Checks a batch (its removable jobs per lane) against `safety.max_removals_per_run` and each
/// entry's own limit. `allow` is `--allow-removals N`: when given it must equal the removable
/// count exactly, so a typo cannot approve a larger batch. Returns what to tell the operator when
/// refused.
pub fn check(limits: &Limits, per_lane: &[u64], allow: Option<u64>) -> Result<(), String> {
    let total: u64 = per_lane.iter().sum();
    if let Some(n) = allow {
        return if n == total {
            Ok(())
        } else {
            Err(format!(
                "--allow-removals {n} does not match this file's {total} removable jobs: nothing was sent"
            ))
        };
    }
    let mut over = Vec::new();
    let limit = limits.per_run;
    if total > limit {
        over.push(format!(
            "{total} removals exceed safety.max_removals_per_run ({limit})"
        ));
    }
    for (i, (name, own)) in limits.per_entry.iter().enumerate() {
        let count = per_lane.get(i).copied().unwrap_or(0);
        if let Some(limit) = own.filter(|l| count > *l) {
            over.push(format!(
                "{count} {name} removals exceed providers.{name}.max_removals_per_run ({limit})"
            ));
        }
    }
    if over.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "refused, nothing was sent: {}. Check the file (--dry-run lists it), then approve this exact batch with --allow-removals {total}",
            over.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(limit: u64, factory_limit: Option<u64>) -> Limits {
        Limits {
            per_run: limit,
            per_entry: vec![("factory".into(), factory_limit), ("telnyx".into(), None)],
        }
    }

    #[test]
    fn over_the_limit_is_refused_naming_the_count_and_the_flag() {
        let e = check(&limits(500, None), &[400, 101], None).unwrap_err();
        assert!(
            e.contains("501 removals exceed safety.max_removals_per_run (500)"),
            "{e}"
        );
        assert!(e.contains("--allow-removals 501"), "{e}");
        assert!(check(&limits(500, None), &[400, 100], None).is_ok());
    }

    #[test]
    fn a_provider_limit_holds_on_its_own() {
        let e = check(&limits(500, Some(10)), &[11, 0], None).unwrap_err();
        assert!(
            e.contains("11 factory removals exceed providers.factory.max_removals_per_run (10)"),
            "{e}"
        );
    }

    #[test]
    fn only_the_exact_count_approves() {
        assert!(check(&limits(5, None), &[6, 1], Some(7)).is_ok());
        let e = check(&limits(5, None), &[6, 1], Some(70)).unwrap_err();
        assert!(e.contains("does not match this file's 7"), "{e}");
        assert!(check(&limits(5, None), &[6, 1], Some(6)).is_err());
    }
}
