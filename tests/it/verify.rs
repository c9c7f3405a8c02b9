//! `offboard verify` end to end: a real run against the sandbox, then the real binary asking the
//! providers, over HTTP on loopback, whether the people the report says are gone are.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Output;

use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions, Seed};

use crate::support::{config_for, offboard, report_lines, run_csv};

const ORG: &str = "org_acme";
const TENANT: &str = "7b09cdc3-8948-47f0-aa62-74ac943d6c59";

/// One seeded member and the CSV row that names them.
#[derive(Debug, Clone)]
struct Person {
    kind: ProviderKind,
    organization: Option<&'static str>,
    /// The id the removal takes (Factory's is the email).
    id: String,
    email: String,
    /// The row names the person by email (a lookup finds the id).
    by_email: bool,
    job_id: String,
}

impl Person {
    /// The user as the row gives it, and as the report records it.
    fn user(&self) -> &str {
        if self.by_email { &self.email } else { &self.id }
    }
}

/// A v4-shaped uuid, distinct per kind and person.
fn uuid(kind: usize, i: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{i:012x}")
}

/// Two members at each provider, the second of each named by email where the provider looks
/// emails up (Factory takes the email itself).
fn people() -> Vec<Person> {
    let mut out = Vec::new();
    for (k, kind) in ProviderKind::ALL.into_iter().enumerate() {
        let organization = match kind {
            ProviderKind::Aitronos => Some(ORG),
            ProviderKind::Cognee => Some(TENANT),
            _ => None,
        };
        for (i, name) in ["ann", "bea"].into_iter().enumerate() {
            let email = format!("{name}.{kind}@acme.example");
            let id = match kind {
                ProviderKind::Factory => email.clone(),
                ProviderKind::Aitronos => format!("usr_{name}0000{i}"),
                _ => uuid(k + 1, i + 1),
            };
            out.push(Person {
                kind,
                organization,
                id,
                email,
                by_email: i == 1 && kind != ProviderKind::Factory,
                job_id: format!("v-{kind}-{name}"),
            });
        }
    }
    out
}

/// A sandbox with `people` seeded, a config pointing at it, and a finished `offboard run` over a
/// CSV naming them, plus a row for someone who was never a member, an email nobody has, and a row
/// for a provider the config does not have.
struct Seeded {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    config: PathBuf,
    report: PathBuf,
    people: Vec<Person>,
}

async fn seeded_run() -> Seeded {
    let people = people();
    let mut seed = Seed::default();
    for p in &people {
        seed = seed.member_with_email(p.kind, p.organization, &p.id, &p.email);
    }
    let sandbox = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(&config, config_for(&sandbox, &HashMap::new(), "")).unwrap();
    let mut rows = vec!["provider,user,organization,job_id".to_owned()];
    for p in &people {
        rows.push(format!(
            "{},{},{},{}",
            p.kind,
            p.user(),
            p.organization.unwrap_or(""),
            p.job_id
        ));
    }
    rows.push(format!("telnyx,{},,v-never-a-member", uuid(9, 9)));
    rows.push("aerospike,nobody@acme.example,,v-no-such-email".into());
    rows.push("slack,someone@acme.example,,v-unknown-provider".into());
    let csv = dir.path().join("leavers.csv");
    std::fs::write(&csv, rows.join("\n")).unwrap();
    let report = dir.path().join("leavers.report.jsonl");
    let out = run_csv(&sandbox.env(), &csv, &config, &report).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "the unknown provider's row makes exit 1\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = report_lines(&report);
    for p in &people {
        let l = lines.iter().find(|l| l["job_id"] == p.job_id).unwrap();
        assert_eq!(l["outcome"], "removed", "{l}");
        assert!(!sandbox.is_member(p.kind, p.organization, &p.id));
    }
    for (job, outcome) in [
        ("v-never-a-member", "already_absent"),
        ("v-no-such-email", "already_absent"),
        ("v-unknown-provider", "invalid"),
    ] {
        let l = lines.iter().find(|l| l["job_id"] == job).unwrap();
        assert_eq!(l["outcome"], outcome, "{l}");
    }
    Seeded {
        sandbox,
        dir,
        config,
        report,
        people,
    }
}

/// `offboard verify --report R --config C`, and more arguments.
async fn verify(s: &Seeded, more: &[&str]) -> Output {
    verify_with(s, &s.sandbox.env(), more).await
}

/// The same with these credentials.
async fn verify_with(s: &Seeded, env: &[(&'static str, String)], more: &[&str]) -> Output {
    let mut args = vec![
        "verify",
        "--report",
        s.report.to_str().unwrap(),
        "--config",
        s.config.to_str().unwrap(),
    ];
    args.extend(more);
    offboard(env, &args).await
}

/// Job ids whose last report line says removed or already_absent.
fn gone_jobs(report: &Path) -> BTreeSet<String> {
    let mut last: HashMap<String, String> = HashMap::new();
    for l in report_lines(report) {
        last.insert(
            l["job_id"].as_str().unwrap().to_owned(),
            l["outcome"].as_str().unwrap().to_owned(),
        );
    }
    last.into_iter()
        .filter(|(_, o)| o == "removed" || o == "already_absent")
        .map(|(j, _)| j)
        .collect()
}

/// Asserts verify sent only list and search requests, and at least one.
fn assert_read_only(sandbox: &Sandbox, before: usize) {
    let log = sandbox.log();
    let asked = &log[before..];
    assert!(!asked.is_empty(), "verify asked the providers");
    let removals: Vec<_> = asked.iter().filter(|r| r.operation != "lookup").collect();
    assert!(removals.is_empty(), "verify sent {removals:?}");
    let kinds: BTreeSet<_> = asked.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds.len(), 5, "every provider was asked: {kinds:?}");
}

fn assert_no_secret(sandbox: &Sandbox, out: &Output, evidence: &str) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    for (name, secret) in sandbox.env() {
        for (what, text) in [
            ("stdout", &*stdout),
            ("stderr", &*stderr),
            ("evidence", evidence),
        ] {
            assert!(!text.contains(&secret), "{name} leaked into {what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_after_a_run_finds_nobody() {
    let s = seeded_run().await;
    let before = s.sandbox.log().len();
    let out = verify(&s, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Every person checked is gone"), "{stdout}");
    for kind in ProviderKind::ALL {
        assert!(
            stdout.contains(kind.as_str()),
            "the table names {kind}: {stdout}"
        );
    }
    assert!(
        !stdout.contains("slack"),
        "invalid rows are not checked: {stdout}"
    );

    // The evidence, beside the report: one line per job the report says is gone, each gone.
    let evidence = s.dir.path().join("leavers.report.verify.jsonl");
    assert!(stdout.contains(evidence.to_str().unwrap()), "{stdout}");
    let lines = report_lines(&evidence);
    let jobs: BTreeSet<String> = lines
        .iter()
        .map(|l| l["job_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(lines.len(), jobs.len(), "one line per job");
    assert_eq!(jobs, gone_jobs(&s.report));
    assert_eq!(jobs.len(), s.people.len() + 2);
    for l in &lines {
        assert_eq!(l["still_member"], false, "{l}");
        assert!(l["error"].is_null(), "{l}");
        assert!(
            matches!(l["checked_by"].as_str(), Some("member_list" | "search")),
            "{l}"
        );
        assert!(l["checked_at"].as_str().unwrap().ends_with('Z'), "{l}");
        assert!(l["provider"].is_string() && l["user"].is_string() && l["line"].is_u64());
    }
    // Whom each line checked: the looked-up id where the row named an email, the email where no
    // member had it.
    for p in &s.people {
        let l = lines.iter().find(|l| l["job_id"] == p.job_id).unwrap();
        assert_eq!(l["provider"], p.kind.as_str());
        assert_eq!(l["user"], p.user());
        assert_eq!(l["organization"].as_str(), p.organization, "{l}");
        if p.by_email {
            assert_eq!(
                l["resolved_user"].as_str().unwrap().to_lowercase(),
                p.id.to_lowercase()
            );
        }
    }
    let nobody = lines
        .iter()
        .find(|l| l["job_id"] == "v-no-such-email")
        .unwrap();
    assert_eq!(nobody["user"], "nobody@acme.example");
    assert_eq!(
        nobody["checked_by"], "member_list",
        "Aerospike lists everyone"
    );

    assert_read_only(&s.sandbox, before);
    assert_no_secret(
        &s.sandbox,
        &out,
        &std::fs::read_to_string(&evidence).unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_person_still_present_and_exits_1() {
    let s = seeded_run().await;
    // An administrator re-adds four of them: one named by email at a provider that looks emails
    // up, Factory's (always an email), one named by id, and one in a Cognee tenant.
    let restored: Vec<&Person> = s
        .people
        .iter()
        .filter(|p| {
            matches!(
                (p.kind, p.by_email),
                (ProviderKind::Aitronos, true)
                    | (ProviderKind::Factory, false)
                    | (ProviderKind::Telnyx, false)
                    | (ProviderKind::Cognee, true)
            )
        })
        .filter(|p| p.kind != ProviderKind::Factory || p.id.starts_with("bea"))
        .collect();
    assert_eq!(restored.len(), 4, "{restored:#?}");
    for p in &restored {
        assert!(
            s.sandbox.restore(p.kind, p.organization, &p.id),
            "{p:?} restored"
        );
        assert!(s.sandbox.is_member(p.kind, p.organization, &p.id));
    }
    let before = s.sandbox.log().len();
    let evidence = s.dir.path().join("audit").join("evidence.jsonl");
    std::fs::create_dir(evidence.parent().unwrap()).unwrap();
    let out = verify(&s, &["--evidence", evidence.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("Still a member (4)"), "{stdout}");
    assert!(
        stdout.contains("4 still a member, 0 could not be checked"),
        "{stdout}"
    );
    let named: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Still a member"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(named.len(), 4, "{stdout}");
    for p in &restored {
        let line = named
            .iter()
            .find(|l| l.contains(&p.job_id))
            .unwrap_or_else(|| panic!("stdout names {}: {stdout}", p.job_id));
        assert!(line.contains(p.kind.as_str()), "{line}");
        assert!(line.contains(p.user()), "{line}");
        if let Some(org) = p.organization {
            assert!(line.contains(org), "{line}");
        }
    }

    let lines = report_lines(&evidence);
    assert_eq!(lines.len(), s.people.len() + 2);
    let still: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l["still_member"] == true)
        .map(|l| l["job_id"].as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = restored.iter().map(|p| p.job_id.as_str()).collect();
    assert_eq!(still, want);
    assert!(
        lines
            .iter()
            .all(|l| l["still_member"].is_boolean() && l["error"].is_null()),
        "every person was checked"
    );
    assert!(
        !s.dir.path().join("leavers.report.verify.jsonl").exists(),
        "--evidence replaces the default"
    );
    assert_read_only(&s.sandbox, before);
    assert_no_secret(
        &s.sandbox,
        &out,
        &std::fs::read_to_string(&evidence).unwrap(),
    );
}

#[tokio::test]
async fn verify_refuses_bad_input_with_exit_2_asking_nothing() {
    let sandbox = Sandbox::start(SandboxOptions::plain(Seed::default()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(&config, config_for(&sandbox, &HashMap::new(), "")).unwrap();
    let report = dir.path().join("r.jsonl");
    let run = async |report: &Path| {
        offboard(
            &sandbox.env(),
            &[
                "verify",
                "--report",
                report.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
        )
        .await
    };
    let good = r#"{"job_id":"a","line":2,"provider":"telnyx","organization":null,"user":"00000001-0000-4000-8000-000000000001","outcome":"removed"}"#;

    // No report.
    let out = run(&report).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("r.jsonl"), "{stderr}");

    // A line that is not JSON: named by its number.
    std::fs::write(&report, format!("{good}\n{good}\nnot json at all\n")).unwrap();
    let out = run(&report).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");

    // A provider entry the config does not have: named.
    std::fs::write(
        &report,
        format!("{good}\n{}\n", good.replace("telnyx", "slack")),
    )
    .unwrap();
    let out = run(&report).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`slack`"), "{stderr}");

    // An evidence file that would overwrite the report.
    std::fs::write(&report, format!("{good}\n")).unwrap();
    let out = offboard(
        &sandbox.env(),
        &[
            "verify",
            "--report",
            report.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--evidence",
            dir.path().join(".").join("r.jsonl").to_str().unwrap(),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the report itself"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&report).unwrap(),
        format!("{good}\n")
    );

    assert!(sandbox.log().is_empty(), "nothing asked on bad input");
    assert!(!dir.path().join("r.verify.jsonl").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_says_why_a_provider_could_not_be_checked_and_exits_1() {
    let s = seeded_run().await;
    let mut env = s.sandbox.env();
    for (name, value) in env.iter_mut() {
        if *name == "SANDBOX_TELNYX_TOKEN" {
            *value = "revoked".into();
        }
    }
    let before = s.sandbox.log().len();
    let out = verify_with(&s, &env, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // Two people and the one never a member, at the provider whose credential is refused.
    assert!(stdout.contains("Could not check (3)"), "{stdout}");
    assert!(
        stdout.contains("0 still a member, 3 could not be checked"),
        "{stdout}"
    );
    let reasons: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Could not check"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(reasons.len(), 3, "{stdout}");
    for l in &reasons {
        assert!(l.contains("telnyx") && l.contains("401"), "the reason: {l}");
    }
    let lines = report_lines(&s.dir.path().join("leavers.report.verify.jsonl"));
    for l in &lines {
        if l["provider"] == "telnyx" {
            assert!(
                l["still_member"].is_null() && l["checked_by"].is_null(),
                "{l}"
            );
            assert!(l["error"].as_str().unwrap().contains("401"), "{l}");
        } else {
            assert_eq!(l["still_member"], false, "{l}");
        }
    }
    assert!(
        s.sandbox.log()[before..]
            .iter()
            .all(|r| r.operation == "lookup"),
        "no removal sent"
    );
}

/// `verify` pointed at a host that answers every list `200 []` (a wrong URL on a catch-all
/// server) proves nobody gone: every check fails with the reason, none says `still_member: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_against_a_host_answering_empty_lists_proves_nothing() {
    let s = seeded_run().await;
    let host = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .mount(&host)
        .await;
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    for kind in ProviderKind::ALL {
        let right = format!("base_url = \"{}\"", s.sandbox.base_url(kind));
        assert!(config.contains(&right), "{config}");
        config = config.replace(&right, &format!("base_url = \"{}\"", host.uri()));
    }
    std::fs::write(&s.config, config).unwrap();
    let out = verify_with(&s, &s.sandbox.env(), &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let lines = report_lines(&s.dir.path().join("leavers.report.verify.jsonl"));
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(l["still_member"].is_null(), "nothing proven: {l}");
        assert!(!l["error"].as_str().unwrap().is_empty(), "{l}");
    }
}
