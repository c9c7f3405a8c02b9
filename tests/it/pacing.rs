//! Adaptive pacing end to end: `rate_per_second = "auto"` against the sandbox's limits, the real
//! binary, the pacing state file. Counts, not times: the bench measures how close to the limit.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions, Seed};

use crate::support::{config_for, report_lines, run_csv};

/// A config with every entry "auto", its state file at `state`.
fn auto_config(sandbox: &Sandbox, state: &Path) -> String {
    let text = config_for(sandbox, &HashMap::new(), "")
        .replace("rate_per_second = 50\n", "rate_per_second = \"auto\"\n");
    assert!(text.contains("\"auto\""));
    format!(
        "{text}[pacing]\nstate_file = \"{}\"\n[safety]\nmax_removals_per_run = 100000\n",
        state.display()
    )
}

/// `n` people at `kind` (no organization), and the CSV naming them.
fn people(kind: ProviderKind, n: usize, first: usize) -> (Seed, String) {
    let mut seed = Seed::default();
    let mut csv = String::from("provider,user,organization\n");
    for i in first..first + n {
        let user = match kind {
            ProviderKind::Factory => format!("p{i}@acme.example"),
            _ => format!("{i:08x}-0000-4000-8000-{i:012x}"),
        };
        seed = seed.member(kind, None, &user);
        csv.push_str(&format!("{kind},{user},\n"));
    }
    (seed, csv)
}

/// `offboard run` over `rows` in `dir` with every entry "auto": its output (asserted exit 0),
/// the report and the state file.
async fn run_auto(
    sandbox: &Sandbox,
    dir: &Path,
    rows: &str,
    report: &str,
) -> (std::process::Output, std::path::PathBuf, std::path::PathBuf) {
    let state_file = dir.join("pacing.json");
    let config = dir.join("offboard.toml");
    std::fs::write(&config, auto_config(sandbox, &state_file)).unwrap();
    let csv = dir.join("rows.csv");
    std::fs::write(&csv, rows).unwrap();
    let report = dir.join(report);
    let out = run_csv(&sandbox.env(), &csv, &config, &report).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, report, state_file)
}

fn state(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("the state file was written")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_stating_its_window_draws_no_429_and_what_was_learned_is_kept() {
    let (seed, rows) = people(ProviderKind::Telnyx, 60, 0);
    let mut opts = SandboxOptions::plain(seed);
    // 100 requests per 10 s, said on every answer.
    opts.windows = HashMap::from([(ProviderKind::Telnyx, (100, Duration::from_secs(10)))]);
    let sandbox = Sandbox::start(opts).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (out, report, state_file) = run_auto(&sandbox, dir.path(), &rows, "report.jsonl").await;
    let log = sandbox.log();
    assert_eq!(
        log.iter().filter(|l| l.status == 429).count(),
        0,
        "the even pace never overdraws the window"
    );
    assert_eq!(
        report_lines(&report)
            .iter()
            .filter(|l| l["outcome"] == "removed")
            .count(),
        60
    );
    let learned = &state(&state_file)["entries"]["telnyx"];
    assert_eq!(learned["source"], "provider", "{learned}");
    let rate = learned["rate"].as_f64().unwrap();
    assert!((1.0..=20.0).contains(&rate), "{learned}");
    assert_eq!(learned["base_url"], sandbox.base_url(ProviderKind::Telnyx));
    // Lanes that learned nothing (no traffic, nothing said) are not written.
    assert!(state(&state_file)["entries"].get("factory").is_none());
    let closing = String::from_utf8_lossy(&out.stdout);
    assert!(closing.contains("/s provider"), "{closing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_said_only_by_429s_is_learned_and_the_next_run_starts_there() {
    let (mut seed, rows) = people(ProviderKind::Factory, 150, 0);
    // Five more for a second run.
    let (_, rows2) = people(ProviderKind::Factory, 5, 1000);
    for i in 1000..1005 {
        seed = seed.member(ProviderKind::Factory, None, &format!("p{i}@acme.example"));
    }
    let mut opts = SandboxOptions::plain(seed);
    opts.limits = HashMap::from([(ProviderKind::Factory, (20.0, 2))]);
    let sandbox = Sandbox::start(opts).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, report, state_file) = run_auto(&sandbox, dir.path(), &rows, "report.jsonl").await;
    let lines = report_lines(&report);
    assert_eq!(
        lines.iter().filter(|l| l["outcome"] == "removed").count(),
        150,
        "nobody failed for being throttled"
    );
    let log = sandbox.log();
    let throttled = log.iter().filter(|l| l.status == 429).count();
    assert!(throttled > 0, "the slow start found the limit by its 429s");
    assert!(
        throttled * 10 < log.len(),
        "{throttled} of {} requests throttled",
        log.len()
    );
    let learned = &state(&state_file)["entries"]["factory"];
    let rate = learned["rate"].as_f64().unwrap();
    assert!((8.0..=30.0).contains(&rate), "about 20/s: {learned}");

    // The next run starts at what was learned (said in the closing table), not from 2/s.
    let mut kept = state(&state_file);
    kept["entries"]["factory"]["rate"] = serde_json::json!(12.5);
    std::fs::write(&state_file, kept.to_string()).unwrap();
    let (out, _, _) = run_auto(&sandbox, dir.path(), &rows2, "report2.jsonl").await;
    let closing = String::from_utf8_lossy(&out.stdout);
    let factory = closing
        .lines()
        .find(|l| l.starts_with("factory"))
        .unwrap_or_else(|| panic!("{closing}"));
    assert!(factory.ends_with("12.5/s remembered"), "{factory}");
}
