//! `offboard run` end to end: the real binary, real HTTP on loopback, the sandbox's five providers.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions, Seed};

use crate::support::{
    Pacing, assert_within_rate, config_for, example_csv, offboard, report_lines, run_csv,
    successful_removals,
};

/// The rows of examples/reorg.csv that are invalid, by line, with the reason code.
const INVALID: [(u64, &str); 5] = [
    (42, "unknown_provider"),
    (97, "bad_format"),
    (152, "bad_format"),
    (212, "missing_field"),
    (262, "duplicate"),
];
/// The Cognee tenant owner's row.
const OWNER_LINE: u64 = 159;

fn kind_of(name: &str) -> Option<ProviderKind> {
    name.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_over_all_five_providers_ends_as_the_providers_say() {
    let mut opts = SandboxOptions::demo();
    // Factory enforces less than we send, so real 429s (not only injected ones) pause its lane.
    opts.limits = HashMap::from([(ProviderKind::Factory, (30.0, 10))]);
    let sandbox = Sandbox::start(opts).await.unwrap();
    let pacing: HashMap<ProviderKind, Pacing> = HashMap::from([
        (ProviderKind::Factory, (40.0, 5, 8)),
        (ProviderKind::Aitronos, (25.0, 3, 4)),
        (ProviderKind::Telnyx, (20.0, 2, 4)),
        (ProviderKind::Aerospike, (30.0, 4, 4)),
        (ProviderKind::Cognee, (25.0, 3, 6)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(&config, config_for(&sandbox, &pacing, "")).unwrap();
    let report = dir.path().join("report.jsonl");

    // What each row should end as, from the CSV and the providers' state before the run.
    let csv_text = std::fs::read_to_string(example_csv()).unwrap();
    let mut expected: HashMap<u64, (&str, Option<ProviderKind>, String, String)> = HashMap::new();
    for (i, row) in csv_text.lines().skip(1).enumerate() {
        let line = i as u64 + 2;
        let f: Vec<&str> = row.split(',').collect();
        let (provider, user, org) = (f[0], f[1].to_owned(), f[2].to_owned());
        let kind = kind_of(provider);
        let outcome = if let Some((_, code)) = INVALID.iter().find(|(l, _)| *l == line) {
            code
        } else if line == OWNER_LINE {
            "failed"
        } else {
            let org_opt = (!org.is_empty()).then_some(org.as_str());
            if sandbox.is_member(kind.unwrap(), org_opt, &user) {
                "removed"
            } else {
                "already_absent"
            }
        };
        expected.insert(line, (outcome, kind, org, user));
    }
    let n_removed = expected.values().filter(|e| e.0 == "removed").count();
    assert!(
        n_removed > 250,
        "the fixture removes most of its rows: {n_removed}"
    );

    let env = sandbox.env();
    let out = run_csv(&env, &example_csv(), &config, &report).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "invalid rows and the owner make exit 1\n{stdout}\n{stderr}"
    );

    // The report: one line per row, each as expected.
    let lines = report_lines(&report);
    assert_eq!(lines.len(), expected.len(), "one report line per CSV row");
    let seen: BTreeSet<u64> = lines.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert_eq!(seen.len(), expected.len(), "no line reported twice");
    for l in &lines {
        let line = l["line"].as_u64().unwrap();
        let (want, _, org, user) = &expected[&line];
        let got = l["outcome"].as_str().unwrap();
        match *want {
            "removed" | "already_absent" | "failed" => {
                assert_eq!(got, *want, "line {line}: {l}");
                assert_eq!(l["user"].as_str().unwrap(), user, "line {line}");
                if !org.is_empty() {
                    assert_eq!(l["organization"].as_str().unwrap(), org, "line {line}");
                }
                assert!(l["attempts"].as_u64().unwrap() >= 1);
                assert!(l["started_at"].is_string() && l["finished_at"].is_string());
            }
            code => {
                assert_eq!(got, "invalid", "line {line}: {l}");
                assert_eq!(l["reason"].as_str().unwrap(), code, "line {line}");
                assert!(
                    l["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("line {line}"))
                );
                assert_eq!(l["attempts"].as_u64(), Some(0));
            }
        }
        match got {
            "removed" => assert!(matches!(l["http_status"].as_u64(), Some(200 | 204)), "{l}"),
            "already_absent" => assert_eq!(l["http_status"].as_u64(), Some(404), "{l}"),
            _ => {}
        }
    }
    let owner = lines.iter().find(|l| l["line"] == OWNER_LINE).unwrap();
    assert_eq!(owner["http_status"], 400);
    assert_eq!(owner["reason"], "refused");

    // The providers: every member named is gone, each removed by exactly one successful request.
    let log = sandbox.log();
    for (line, (want, kind, org, user)) in &expected {
        let Some(kind) = kind else { continue };
        let org_opt = (!org.is_empty()).then_some(org.as_str());
        let successes = successful_removals(&log, *kind, user);
        match *want {
            "removed" => {
                assert!(
                    !sandbox.is_member(*kind, org_opt, user),
                    "line {line}: still a member"
                );
                assert_eq!(successes, 1, "line {line}: removed exactly once");
            }
            "already_absent" | "failed" => assert_eq!(successes, 0, "line {line}: nothing removed"),
            // Invalid rows send nothing; a duplicate's user is removed once, by its first line.
            _ => {}
        }
    }
    // Injected faults and real rate limiting happened, and were retried through.
    for status in [409, 429, 503] {
        assert!(
            log.iter().any(|r| r.status == status),
            "no {status} was answered"
        );
    }
    assert!(
        log.iter()
            .any(|r| r.kind == ProviderKind::Factory && r.status == 429),
        "factory's own limit answered 429"
    );
    assert!(sandbox.tokens_issued() >= 1);
    // No lane ever went faster than its configured rate and burst.
    for (kind, (rate, burst, _)) in &pacing {
        assert_within_rate(*kind, &log, *rate, *burst);
    }
    // The summary shows each provider, and no credential appears anywhere.
    for kind in ProviderKind::ALL {
        assert!(
            stdout.contains(kind.as_str()),
            "summary names {kind}:\n{stdout}"
        );
    }
    assert!(stdout.contains(report.to_str().unwrap()));
    let report_text = std::fs::read_to_string(&report).unwrap();
    for (name, secret) in &env {
        for (what, text) in [
            ("stdout", &*stdout),
            ("stderr", &*stderr),
            ("report", &*report_text),
        ] {
            assert!(!text.contains(secret.as_str()), "{name} leaked into {what}");
        }
    }
}

#[tokio::test]
async fn revoked_credentials_halt_only_their_lane() {
    let sandbox = Sandbox::start(SandboxOptions::plain(Seed::demo()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let pacing = HashMap::from([(ProviderKind::Telnyx, (50.0, 1, 1))]);
    std::fs::write(&config, config_for(&sandbox, &pacing, "")).unwrap();
    let report = dir.path().join("report.jsonl");
    let mut env = sandbox.env();
    for (name, value) in env.iter_mut() {
        if *name == "SANDBOX_TELNYX_TOKEN" {
            *value = "revoked".into();
        }
    }
    let out = run_csv(&env, &example_csv(), &config, &report).await;
    assert_eq!(out.status.code(), Some(1));
    let lines = report_lines(&report);
    let telnyx: Vec<_> = lines
        .iter()
        .filter(|l| l["provider"] == "telnyx" && l["outcome"] != "invalid")
        .collect();
    // The preflight's one read-only request was refused: no removal is sent, every Telnyx row
    // ends not_attempted with the reason. (A credential revoked mid-run opens the circuit after
    // `circuit_after` refusals: tests/it/adapters.rs.)
    assert!(!telnyx.is_empty());
    assert!(
        telnyx.iter().all(|l| l["outcome"] == "not_attempted"
            && l["reason"] == "preflight_failed"
            && l["attempts"] == 0),
        "{telnyx:?}"
    );
    let message = telnyx[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("credential") && message.contains("telnyx"),
        "{message}"
    );
    assert!(
        sandbox
            .log()
            .iter()
            .all(|r| r.kind != ProviderKind::Telnyx || r.operation != "remove")
    );
    // The other lanes ran to the end.
    for other in ["factory", "aitronos", "aerospike", "cognee"] {
        let n = lines
            .iter()
            .filter(|l| l["provider"] == other && l["outcome"] == "removed")
            .count();
        assert!(n >= 57, "{other}: {n} removed");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("halted"),
        "the summary says the lane halted:\n{stdout}"
    );
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_sends_nothing() {
    let sandbox = Sandbox::start(SandboxOptions::plain(Seed::demo()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(&config, config_for(&sandbox, &HashMap::new(), "")).unwrap();
    let out = offboard(
        &sandbox.env(),
        &[
            "run",
            "--dry-run",
            "--csv",
            example_csv().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "invalid rows make a dry run exit 1:\n{stdout}"
    );
    assert!(stdout.contains("no removal sent"));
    assert!(stdout.contains("296 removals"), "{stdout}");
    for (line, _) in INVALID {
        assert!(stdout.contains(&format!("line {line}:")), "{stdout}");
    }
    // Its preflight proves every entry with one read-only request each, and removes nobody.
    for kind in ProviderKind::ALL {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(kind.as_str()) && l.ends_with(": ok")),
            "{kind} proven: {stdout}"
        );
    }
    let log = sandbox.take_log();
    assert!(!log.is_empty(), "the preflight asked");
    assert!(log.iter().all(|r| r.operation != "remove"), "{log:?}");

    // --offline: nothing at all.
    let out = offboard(
        &sandbox.env(),
        &[
            "run",
            "--dry-run",
            "--offline",
            "--csv",
            example_csv().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("nothing sent"), "{stdout}");
    assert!(!stdout.contains("Preflight"), "{stdout}");
    assert!(
        sandbox.log().is_empty(),
        "an offline dry run sends no request"
    );
}

#[tokio::test]
async fn a_clean_file_exits_0_and_a_bad_config_exits_2_sending_nothing() {
    let sandbox = Sandbox::start(SandboxOptions::plain(Seed::demo()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("clean.csv");
    let config = dir.path().join("offboard.toml");
    let run_clean = async |sandbox: &Sandbox| {
        let args = [
            "run",
            "--csv",
            csv.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ];
        offboard(&sandbox.env(), &args).await
    };
    // The first ten member rows of the fixture, all removable.
    let csv_text = std::fs::read_to_string(example_csv()).unwrap();
    let clean: Vec<&str> = csv_text.lines().take(11).collect();
    std::fs::write(&csv, clean.join("\n")).unwrap();
    std::fs::write(&config, config_for(&sandbox, &HashMap::new(), "")).unwrap();
    let out = run_clean(&sandbox).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The default report lands beside the CSV, and its audit log beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("clean.report-"))
        .collect();
    let reports: Vec<_> = names
        .iter()
        .filter(|n| !n.ends_with(".audit.jsonl"))
        .collect();
    assert_eq!(reports.len(), 1, "{names:?}");
    assert_eq!(report_lines(&dir.path().join(reports[0])).len(), 10);
    assert_eq!(names.len(), 2, "the audit log: {names:?}");
    let sent = sandbox.log().len();

    std::fs::write(
        &config,
        config_for(&sandbox, &HashMap::new(), "rate_per_secnd = 3"),
    )
    .unwrap();
    let out = run_clean(&sandbox).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("rate_per_secnd") && stderr.contains("offboard.toml"),
        "{stderr}"
    );
    assert_eq!(sandbox.log().len(), sent, "nothing sent on a config error");

    let out = offboard(
        &[],
        &[
            "run",
            "--csv",
            csv.to_str().unwrap(),
            "--config",
            config
                .to_str()
                .unwrap()
                .replace("offboard", "missing")
                .as_str(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    std::fs::write(&config, config_for(&sandbox, &HashMap::new(), "")).unwrap();
    let out = offboard(
        &[],
        &[
            "run",
            "--csv",
            csv.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a missing credential variable");
    assert!(stderr.contains("SANDBOX_"), "names the variable: {stderr}");
}

#[tokio::test]
async fn protected_accounts_are_skipped_before_any_request() {
    let sandbox = Sandbox::start(SandboxOptions::plain(Seed::demo()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let safety = "[safety]\nprotected = [\"AVA.anderson@acme.example\", \"usr_k4lv*\"]\n";
    std::fs::write(
        &config,
        format!("{safety}{}", config_for(&sandbox, &HashMap::new(), "")),
    )
    .unwrap();
    let report = dir.path().join("report.jsonl");
    let csv = example_csv();
    let dry = offboard(
        &sandbox.env(),
        &[
            "run",
            "--dry-run",
            "--csv",
            csv.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .await;
    let dry_out = String::from_utf8_lossy(&dry.stdout);
    assert!(dry_out.contains("2 protected"), "{dry_out}");
    assert!(dry_out.contains("line 2: protected account"), "{dry_out}");
    // The dry run's preflight reads member lists; it removes nobody.
    assert!(sandbox.log().iter().all(|r| r.operation != "remove"));

    run_csv(&sandbox.env(), &csv, &config, &report).await;
    let lines = report_lines(&report);
    let skipped: Vec<_> = lines
        .iter()
        .filter(|l| l["outcome"] == "skipped_protected")
        .collect();
    // Ava is at all five providers (lines 2 to 6). Validation stops the rows whose user matches a
    // pattern (her email at Factory, her `usr_k4lv*` id at Aitronos); each entry's preflight
    // resolved her protected email to its own id, which stops the other three rows, named by id.
    let lines_skipped: Vec<u64> = skipped
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines_skipped.len(), 5, "{skipped:?}");
    assert_eq!(
        lines_skipped.iter().copied().collect::<BTreeSet<_>>(),
        (2..=6).collect::<BTreeSet<_>>()
    );
    assert!(skipped.iter().all(|l| l["reason"] == "protected"));
    for l in &skipped {
        let user = l["user"].as_str().unwrap();
        assert!(
            sandbox
                .log()
                .iter()
                .filter(|r| r.operation == "remove")
                .all(|r| !r.user.eq_ignore_ascii_case(user)),
            "no removal for {user}"
        );
    }
    for l in &skipped {
        let kind: ProviderKind = l["provider"].as_str().unwrap().parse().unwrap();
        let user = l["user"].as_str().unwrap();
        assert!(
            sandbox.is_member(kind, l["organization"].as_str(), user),
            "{kind} {user} is still a member"
        );
    }
}

#[tokio::test]
async fn the_blast_radius_guard_refuses_before_sending_and_takes_only_the_exact_count() {
    let sandbox = Sandbox::start(SandboxOptions::plain(Seed::demo()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv_text = std::fs::read_to_string(example_csv()).unwrap();
    let csv = dir.path().join("ten.csv");
    std::fs::write(
        &csv,
        csv_text.lines().take(11).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(
        &config,
        format!(
            "[safety]\nmax_removals_per_run = 5\n{}",
            config_for(&sandbox, &HashMap::new(), "")
        ),
    )
    .unwrap();
    let run = async |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--csv",
            csv.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        offboard(&sandbox.env(), &args).await
    };
    let out = run(&[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("10 removals exceed safety.max_removals_per_run (5)")
            && stderr.contains("--allow-removals 10"),
        "{stderr}"
    );
    let out = run(&["--allow-removals", "11"]).await;
    assert_eq!(out.status.code(), Some(3), "a wrong count is refused");
    assert!(sandbox.log().is_empty(), "nothing sent while refused");
    let reports = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("report")
        })
        .count();
    assert_eq!(reports, 0, "no report written while refused");

    // enqueue refuses the same way, before it contacts the broker (none listens here).
    let mut env = sandbox.env();
    env.push((
        "OFFBOARD_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:9/%2f".to_owned(),
    ));
    let out = offboard(
        &env,
        &[
            "enqueue",
            "--csv",
            csv.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&["--allow-removals", "10"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removals = sandbox
        .log()
        .into_iter()
        .filter(|r| r.operation == "remove");
    assert_eq!(removals.count(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_resume_removes_everyone_at_most_once() {
    let (sandbox, dir, config, report) = slow_demo().await;
    let csv = example_csv();
    let mut child = run_until_recorded(&sandbox, &csv, &config, &report, 80, (&[], &[])).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let before = report_lines(&report).len();
    assert!(before < 301, "killed mid-run ({before} lines)");
    let audit = report.with_extension("audit.jsonl");
    assert!(audit.exists(), "the audit log sits beside the report");

    let out = run_csv(&sandbox.env(), &csv, &config, &report).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Resuming"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "the owner and the invalid rows");
    let lines = report_lines(&report);
    let by_line: BTreeSet<u64> = lines.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert_eq!(lines.len(), 301, "one line per row, none twice");
    assert_eq!(by_line.len(), 301);
    let log = sandbox.log();
    for l in lines
        .iter()
        .filter(|l| l["outcome"] == "removed" || l["outcome"] == "already_absent")
    {
        let kind: ProviderKind = l["provider"].as_str().unwrap().parse().unwrap();
        let user = l["user"].as_str().unwrap();
        let ok = successful_removals(&log, kind, user);
        assert!(ok <= 1, "{kind} {user} removed at most once");
        assert!(
            !sandbox.is_member(kind, l["organization"].as_str(), user),
            "{kind} {user} gone"
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("total"), "{stdout}");
    // The audit log holds a final record for every job that sent a request, across both runs.
    let verify = offboard(&[], &["audit", "verify", audit.to_str().unwrap()]).await;
    let said = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{said}");
    assert!(said.contains("well formed and complete"), "{said}");
    // The chain runs through both runs (the first killed mid-write), and its head is the one the
    // second run printed for the ticket.
    let head = said
        .split("chain intact; head sha256:")
        .nth(1)
        .and_then(|h| h.split_whitespace().next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        stdout.contains(&format!("chain head sha256:{head}")),
        "{stdout}
{said}"
    );
    // One edited line (a status made to look like a success) is named by the line after it.
    let text = std::fs::read_to_string(&audit).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let edited = lines
        .iter()
        .position(|l| l.contains("\"outcome\":\"failed\""))
        .expect("a failed job in the demo");
    lines[edited] = lines[edited].replace("\"outcome\":\"failed\"", "\"outcome\":\"removed\"");
    std::fs::write(&audit, lines.join("\n") + "\n").unwrap();
    let verify = offboard(&[], &["audit", "verify", audit.to_str().unwrap()]).await;
    let said = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "chain broken at line {}: its `prev` is not the hash of line {}",
            edited + 2,
            edited + 1
        )),
        "{said}"
    );

    // Another file's report is not taken for this one's.
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "provider,user\nfactory,zed@acme.example\n").unwrap();
    let out = run_csv(&sandbox.env(), &other, &config, &report).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not belong to this CSV"));
}

/// The demo's members on the sandbox, and a config pacing every provider at 20/s (the demo file
/// takes a few seconds): the sandbox, the temp dir, the config and the report paths.
async fn slow_demo() -> (Sandbox, tempfile::TempDir, PathBuf, PathBuf) {
    let sandbox = Sandbox::start(SandboxOptions::plain(Seed::demo()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let slow: HashMap<ProviderKind, Pacing> = ProviderKind::ALL
        .iter()
        .map(|k| (*k, (20.0, 2, 4)))
        .collect();
    std::fs::write(&config, config_for(&sandbox, &slow, "")).unwrap();
    let report = dir.path().join("report.jsonl");
    (sandbox, dir, config, report)
}

/// Starts `offboard run` on the file (with `extra` arguments and environment) in the background
/// and returns once its report holds `lines` lines (within 60 s). The child's output is piped,
/// for the caller to read or drop.
async fn run_until_recorded(
    sandbox: &Sandbox,
    csv: &Path,
    config: &Path,
    report: &Path,
    lines: usize,
    extra: (&[&str], &[(&str, &str)]),
) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["run", "--csv", csv.to_str().unwrap(), "--config"])
        .args([
            config.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ])
        .args(extra.0)
        .envs(sandbox.env())
        .envs(extra.1.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::fs::read_to_string(report)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < lines
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run progressed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_finishes_the_requests_in_flight_and_says_how_to_resume() {
    let (sandbox, _dir, config, report) = slow_demo().await;
    let csv = example_csv();
    let child = run_until_recorded(&sandbox, &csv, &config, &report, 80, (&[], &[])).await;
    // SAFETY: kill(2) on our own child, which has not been waited for.
    assert_eq!(
        unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGINT) },
        0
    );
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "interrupted is incomplete: {stderr}"
    );
    assert!(
        stderr.contains("Interrupted: finishing the requests in flight"),
        "{stderr}"
    );
    assert!(
        stdout.contains("were not started (interrupted)"),
        "{stdout}"
    );
    let resume = format!(
        "offboard run --csv {} --report {}",
        csv.display(),
        report.display()
    );
    assert!(stdout.contains(&resume), "{stdout}");

    // Every request sent has its outcome: nothing was cut off mid-flight.
    let audit = report.with_extension("audit.jsonl");
    let verify = offboard(&[], &["audit", "verify", audit.to_str().unwrap()]).await;
    let said = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{said}");
    // And the report says exactly what the providers did.
    let lines = report_lines(&report);
    assert!(lines.len() < 301, "stopped early ({} lines)", lines.len());
    let log = sandbox.log();
    for l in lines.iter().filter(|l| l["outcome"] == "removed") {
        let kind: ProviderKind = l["provider"].as_str().unwrap().parse().unwrap();
        let user = l["user"].as_str().unwrap();
        assert_eq!(successful_removals(&log, kind, user), 1, "{kind} {user}");
    }
    let removed = lines.iter().filter(|l| l["outcome"] == "removed").count();
    let sent = log
        .iter()
        .filter(|l| l.operation == "remove" && l.status < 300)
        .count();
    assert_eq!(
        sent, removed,
        "no removal happened that the report does not show"
    );

    // The printed command finishes the file.
    let out = run_csv(&sandbox.env(), &csv, &config, &report).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("Resuming"));
    assert_eq!(
        report_lines(&report).len(),
        301,
        "one line per row, none twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_serves_metrics_while_it_lasts_and_logs_json_lines_without_secrets() {
    let (sandbox, _dir, config, report) = slow_demo().await;
    let csv = example_csv();
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let listen = addr.to_string();
    let child = run_until_recorded(
        &sandbox,
        &csv,
        &config,
        &report,
        60,
        (
            &["--metrics-listen", &listen, "--log-format", "json"],
            &[("OFFBOARD_LOG", "offboard=info")],
        ),
    )
    .await;

    // Mid-run, /metrics counts the jobs recorded so far, by provider and outcome.
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    let removed: f64 = text
        .lines()
        .filter(|l| l.starts_with("offboard_jobs_total{") && l.contains(r#"outcome="removed""#))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(removed >= 1.0, "removals counted mid-run:\n{text}");
    let health = http.get(format!("http://{addr}/healthz")).send().await;
    assert_eq!(health.unwrap().status(), 200);

    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some(), "{stderr}");
    // Every log line is one JSON object, and a finished job says so.
    let (mut finished, mut said_where) = (0, false);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        if v["fields"]["message"] == "job finished" {
            finished += 1;
            assert!(v["fields"]["job_id"].is_string(), "{line}");
        }
        // Messages for the person running it are log events too.
        said_where |= v["fields"]["message"] == format!("Metrics on http://{addr}/metrics");
    }
    assert!(finished >= 60, "{finished} `job finished` lines");
    assert!(said_where, "the metrics address is told: {stderr}");
    for (name, secret) in sandbox.env() {
        assert!(!stderr.contains(&secret), "{name} appears in the log");
        assert!(!text.contains(&secret), "{name} appears in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_are_looked_up_at_each_provider_then_removed_once() {
    let sandbox = Sandbox::start(SandboxOptions::plain(Seed::demo()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The fixture's first 60 member rows, naming people by email instead of id.
    let text = std::fs::read_to_string(example_csv()).unwrap();
    let mut rows = vec!["provider,user,organization".to_owned()];
    let mut expect: Vec<(ProviderKind, Option<String>, String, String)> = vec![];
    for line in text.lines().skip(1).take(60) {
        let f: Vec<&str> = line.split(',').collect();
        let Ok(kind) = f[0].parse::<ProviderKind>() else {
            continue;
        };
        let org = (!f[2].is_empty()).then(|| f[2].to_owned());
        if !sandbox.is_member(kind, org.as_deref(), f[1]) {
            continue;
        }
        let email = sandbox
            .email_of(kind, org.as_deref(), f[1])
            .expect("seeded with an email");
        rows.push(format!("{},{},{}", f[0], email.to_uppercase(), f[2]));
        expect.push((kind, org, f[1].to_owned(), email));
    }
    rows.push("telnyx,nobody@acme.example,".into());
    rows.push("aerospike,nobody@acme.example,".into());
    let csv = dir.path().join("emails.csv");
    std::fs::write(&csv, rows.join("\n")).unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(&config, config_for(&sandbox, &HashMap::new(), "")).unwrap();
    let report = dir.path().join("report.jsonl");
    let out = run_csv(&sandbox.env(), &csv, &config, &report).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let lines = report_lines(&report);
    let log = sandbox.log();
    for (kind, org, id, email) in &expect {
        assert!(
            !sandbox.is_member(*kind, org.as_deref(), id),
            "{kind} {email} removed"
        );
        // The removal carries the id the lookup found (Factory's id is the email itself).
        let removals = successful_removals(&log, *kind, id);
        assert_eq!(removals, 1, "{kind} {email} removed exactly once");
        if *kind != ProviderKind::Factory {
            let l = lines
                .iter()
                .find(|l| {
                    l["provider"] == kind.as_str()
                        && l["user"].as_str().unwrap().eq_ignore_ascii_case(email)
                })
                .unwrap();
            assert_eq!(
                l["resolved_user"].as_str().unwrap().to_lowercase(),
                id.to_lowercase(),
                "{l}"
            );
        }
    }
    let absent: Vec<_> = lines
        .iter()
        .filter(|l| l["absence"] == "no_member")
        .collect();
    assert_eq!(absent.len(), 2, "no member with this email");
    assert!(absent.iter().all(|l| l["outcome"] == "already_absent"));
    // Whole lists are read once and cached; searches go per person.
    let lookups = |k: ProviderKind| {
        log.iter()
            .filter(|r| r.kind == k && r.operation == "lookup")
            .count()
    };
    assert_eq!(
        lookups(ProviderKind::Aerospike),
        2,
        "the member list, read once by the preflight, serves every lookup that finds someone; \
         the one absence rests on a list read after it was asked"
    );
    assert_eq!(
        lookups(ProviderKind::Factory),
        1,
        "Factory takes the email itself: its list is read once, by the preflight, one member"
    );
    assert!(
        lookups(ProviderKind::Telnyx)
            >= expect
                .iter()
                .filter(|e| e.0 == ProviderKind::Telnyx)
                .count()
    );
}

#[tokio::test]
async fn a_row_for_every_provider_removes_the_person_everywhere() {
    const TENANT: &str = "7b09cdc3-8948-47f0-aa62-74ac943d6c59";
    const ID: &str = "6a09cdc3-8948-47f0-aa62-74ac943d6c58";
    let email = "zoe.zhang@acme.example";
    let seed = Seed::default()
        .member_with_email(ProviderKind::Factory, None, email, email)
        .member_with_email(ProviderKind::Aitronos, Some("org_acme"), "usr_zoe", email)
        .member_with_email(ProviderKind::Telnyx, None, ID, email)
        .member_with_email(ProviderKind::Aerospike, None, ID, email)
        .member_with_email(ProviderKind::Cognee, Some(TENANT), ID, email);
    let sandbox = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let text = config_for(&sandbox, &HashMap::new(), "")
        .replace(
            "[providers.aitronos]\n",
            "[providers.aitronos]\norganization = \"org_acme\"\n",
        )
        .replace(
            "[providers.cognee]\n",
            &format!("[providers.cognee]\norganization = \"{TENANT}\"\n"),
        );
    std::fs::write(&config, text).unwrap();
    let csv = dir.path().join("everywhere.csv");
    std::fs::write(
        &csv,
        format!("provider,user,job_id\n*,{email},leaver-1\n*,usr_zoe,leaver-2\n"),
    )
    .unwrap();
    let report = dir.path().join("report.jsonl");
    let out = run_csv(&sandbox.env(), &csv, &config, &report).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "the row naming an id is invalid"
    );
    let lines = report_lines(&report);
    let removed: Vec<_> = lines.iter().filter(|l| l["outcome"] == "removed").collect();
    assert_eq!(removed.len(), 5, "one line per provider: {lines:#?}");
    for kind in ProviderKind::ALL {
        let l = removed
            .iter()
            .find(|l| l["provider"] == kind.as_str())
            .expect("a line for each provider");
        assert_eq!(l["line"], 2);
        assert_eq!(l["job_id"], format!("leaver-1:{kind}"));
    }
    assert!(!sandbox.is_member(ProviderKind::Aitronos, Some("org_acme"), "usr_zoe"));
    assert!(!sandbox.is_member(ProviderKind::Cognee, Some(TENANT), ID));
    let by_id: Vec<_> = lines.iter().filter(|l| l["line"] == 3).collect();
    assert_eq!(
        by_id.len(),
        5,
        "an id cannot go to every provider: one invalid line each"
    );
    assert!(by_id.iter().all(|l| l["outcome"] == "invalid"));
}

/// A file with a column this version does not read (a wish it would not honour: notify the
/// manager, keep the mailbox) is refused whole, naming the column, before any request; `run` and
/// `enqueue` alike. Named with `--ignore-column`, it runs as the user asked.
#[tokio::test]
async fn a_column_the_tool_does_not_read_refuses_the_file_before_anything_is_sent() {
    let email = "zoe.zhang@acme.example";
    let seed = Seed::default().member_with_email(ProviderKind::Factory, None, email, email);
    let sandbox = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(&config, config_for(&sandbox, &HashMap::new(), "")).unwrap();
    let csv = dir.path().join("next-quarter.csv");
    std::fs::write(
        &csv,
        format!("provider,user,keep_mailbox\nfactory,{email},yes\n"),
    )
    .unwrap();
    let report = dir.path().join("report.jsonl");
    let out = run_csv(&sandbox.env(), &csv, &config, &report).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`keep_mailbox`"), "{stderr}");
    assert!(
        sandbox.log().is_empty(),
        "nothing sent, not even a preflight"
    );
    assert!(!report.exists(), "no report of a run that did not start");

    // enqueue refuses it before it connects (the broker address here answers nothing).
    let (csv_arg, config_arg) = (csv.to_str().unwrap(), config.to_str().unwrap());
    let mut env = sandbox.env();
    env.push(("OFFBOARD_AMQP_URL", "amqp://127.0.0.1:1/%2f".to_owned()));
    let out = offboard(&env, &["enqueue", "--csv", csv_arg, "--config", config_arg]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`keep_mailbox`"), "{stderr}");
    assert!(
        !stderr.contains("broker"),
        "refused before the broker: {stderr}"
    );

    // Deliberately ignored, the row runs now, as asked.
    let report_arg = report.to_str().unwrap();
    let out = offboard(
        &sandbox.env(),
        &[
            "run",
            "--csv",
            csv_arg,
            "--config",
            config_arg,
            "--report",
            report_arg,
            "--ignore-column",
            "KEEP_MAILBOX",
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!sandbox.is_member(ProviderKind::Factory, None, email));
}

/// `run` removes now: a file with rows due later is refused before anything is sent, saying how
/// many and to use `enqueue`; with `--due-only` the rows due now run and the others are recorded
/// `not_attempted`/`scheduled` with their `due_at`; bad dates and zones are invalid, named per
/// row; `enqueue`'s guard counts the scheduled rows.
#[tokio::test]
async fn run_refuses_rows_due_later_and_due_only_runs_what_is_due() {
    let people = [
        "due.now@acme.example",
        "due.past@acme.example",
        "due.later@acme.example",
    ];
    let mut seed = Seed::default();
    for p in people {
        seed = seed.member_with_email(ProviderKind::Factory, None, p, p);
    }
    let sandbox = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(&config, config_for(&sandbox, &HashMap::new(), "")).unwrap();
    let csv = dir.path().join("quarter.csv");
    std::fs::write(
        &csv,
        format!(
            "provider,user,not_before,last_day,time_zone\n\
             factory,{},,,\n\
             factory,{},2020-01-01T00:00:00+01:00,,\n\
             factory,{},,2099-12-31,Australia/Melbourne\n\
             factory,nobody1@acme.example,2099-01-01T00:00:00,,\n\
             factory,nobody2@acme.example,,2099-12-31,\n\
             factory,nobody3@acme.example,,2099-12-31,Mars/Olympus_Mons\n\
             factory,nobody4@acme.example,2099-01-01T00:00:00Z,2099-12-31,UTC\n",
            people[0], people[1], people[2]
        ),
    )
    .unwrap();
    let report = dir.path().join("report.jsonl");
    let out = run_csv(&sandbox.env(), &csv, &config, &report).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("1 job(s) are due later"), "{stderr}");
    assert!(
        stderr.contains("offboard enqueue") && stderr.contains("--due-only"),
        "{stderr}"
    );
    assert!(
        sandbox.is_member(ProviderKind::Factory, None, people[0]),
        "nothing sent"
    );
    assert!(!report.exists());

    let (csv_arg, config_arg, report_arg) = (
        csv.to_str().unwrap(),
        config.to_str().unwrap(),
        report.to_str().unwrap(),
    );
    let out = offboard(
        &sandbox.env(),
        &[
            "run",
            "--csv",
            csv_arg,
            "--config",
            config_arg,
            "--report",
            report_arg,
            "--due-only",
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = report_lines(&report);
    let of = |user: &str| {
        lines
            .iter()
            .find(|l| l["user"] == user)
            .unwrap_or_else(|| panic!("{user} in {lines:#?}"))
    };
    assert_eq!(of(people[0])["outcome"], "removed");
    assert_eq!(of(people[1])["outcome"], "removed", "due in the past: now");
    assert_eq!(of(people[1])["due_at"], "2019-12-31T23:00:00Z");
    let later = of(people[2]);
    assert_eq!(later["outcome"], "not_attempted");
    assert_eq!(later["reason"], "scheduled");
    // Midnight after 2099-12-31 in Melbourne (AEDT, +11).
    assert_eq!(later["due_at"], "2099-12-31T13:00:00Z");
    assert!(sandbox.is_member(ProviderKind::Factory, None, people[2]));
    let invalid: Vec<String> = lines
        .iter()
        .filter(|l| l["outcome"] == "invalid")
        .map(|l| l["error"]["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(invalid.len(), 4, "{invalid:#?}");
    for (line, field) in [
        (5, "not_before"),
        (6, "time_zone"),
        (7, "time_zone"),
        (8, "not_before"),
    ] {
        assert!(
            invalid
                .iter()
                .any(|m| m.starts_with(&format!("line {line}: field `{field}`"))),
            "line {line} names `{field}`: {invalid:#?}"
        );
    }

    // enqueue's guard counts every row, the scheduled one too: 3 removable, above a limit of 2.
    let mut env = sandbox.env();
    env.push(("OFFBOARD_AMQP_URL", "amqp://127.0.0.1:1/%2f".to_owned()));
    env.push(("OFFBOARD__SAFETY__MAX_REMOVALS_PER_RUN", "2".to_owned()));
    let out = offboard(&env, &["enqueue", "--csv", csv_arg, "--config", config_arg]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("3 removals exceed safety.max_removals_per_run (2)"),
        "the count includes the scheduled row: {stderr}"
    );
}
