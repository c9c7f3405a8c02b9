//! The blast-radius guard: a file asking for more removals than the configured limits is refused
//! before anything is sent, unless the operator names the exact count.

use crate::config::Settings;
use crate::doors::csv::Plan;

/// Exit code of a refusal.
pub const EXIT_REFUSED: u8 = 3;

/// Checks the plan against `safety.max_removals_per_run` and each entry's own limit.
/// `allow` is `--allow-removals N`: when given it must equal the removable count exactly, so a typo
/// cannot approve a larger batch. Returns what to tell the operator when refused.
pub fn check(settings: &Settings, plan: &Plan, allow: Option<u64>) -> Result<(), String> {
    let total = plan.removable();
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
    let limit = settings.safety.max_removals_per_run;
    if total > limit {
        over.push(format!(
            "{total} removals exceed safety.max_removals_per_run ({limit})"
        ));
    }
    for (i, (name, entry)) in settings.providers.iter().enumerate() {
        let count = plan.per_lane.get(i).copied().unwrap_or(0);
        if let Some(limit) = entry.max_removals_per_run.filter(|l| count > *l) {
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

    fn settings(limit: u64, factory_limit: Option<u64>) -> Settings {
        let mut text = format!(
            "[safety]\nmax_removals_per_run = {limit}\n[providers.factory]\nkind = \"factory\"\ntoken_env = \"T\"\n"
        );
        if let Some(l) = factory_limit {
            text.push_str(&format!("max_removals_per_run = {l}\n"));
        }
        text.push_str("[providers.telnyx]\nkind = \"telnyx\"\ntoken_env = \"T\"\n");
        Settings::from_toml(&text, "t.toml").unwrap()
    }

    fn plan(factory: u64, telnyx: u64) -> Plan {
        Plan {
            per_lane: vec![factory, telnyx],
            ..Plan::default()
        }
    }

    #[test]
    fn over_the_limit_is_refused_naming_the_count_and_the_flag() {
        let e = check(&settings(500, None), &plan(400, 101), None).unwrap_err();
        assert!(
            e.contains("501 removals exceed safety.max_removals_per_run (500)"),
            "{e}"
        );
        assert!(e.contains("--allow-removals 501"), "{e}");
        assert!(check(&settings(500, None), &plan(400, 100), None).is_ok());
    }

    #[test]
    fn a_provider_limit_holds_on_its_own() {
        let e = check(&settings(500, Some(10)), &plan(11, 0), None).unwrap_err();
        assert!(
            e.contains("11 factory removals exceed providers.factory.max_removals_per_run (10)"),
            "{e}"
        );
    }

    #[test]
    fn only_the_exact_count_approves() {
        assert!(check(&settings(5, None), &plan(6, 1), Some(7)).is_ok());
        let e = check(&settings(5, None), &plan(6, 1), Some(70)).unwrap_err();
        assert!(e.contains("does not match this file's 7"), "{e}");
        assert!(check(&settings(5, None), &plan(6, 1), Some(6)).is_err());
    }
}
