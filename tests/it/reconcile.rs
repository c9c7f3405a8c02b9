//! `offboard reconcile` against the sandbox's five providers over real HTTP on loopback: every
//! member list read whole, each member sorted against a roster, the orphans a CSV `run` takes.

use std::collections::{BTreeSet, HashMap};

use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions, Seed};

use crate::support::{config_for, offboard, report_lines};

const ORG: &str = "org_acme";
const TENANT: &str = "3c6f0b51-7a48-4c8e-9a3e-5b0c2d7e9f10";
const PEOPLE: usize = 200;
const MISSING: usize = 7;

fn email(i: usize) -> String {
    format!("person{i:03}@acme.example")
}

/// Person `i`'s id at `kind`, in its page's format.
fn id(kind: ProviderKind, i: usize) -> String {
    match kind {
        ProviderKind::Factory => email(i),
        ProviderKind::Aitronos => format!("usr_p{i:03}"),
        ProviderKind::Telnyx => format!("tx-user-{i:03}"),
        ProviderKind::Aerospike => format!("00000000-0000-4000-8000-{i:012}"),
        ProviderKind::Cognee => format!("00000000-0000-4000-9000-{i:012}"),
    }
}

fn org(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Aitronos => Some(ORG),
        ProviderKind::Cognee => Some(TENANT),
        _ => None,
    }
}

struct Setup {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

/// 200 people at each provider, plus a protected service account; the sandbox adds each
/// organization's owner.
async fn setup() -> Setup {
    let mut seed = Seed::default();
    for kind in ProviderKind::ALL {
        for i in 0..PEOPLE {
            seed = seed.member_with_email(kind, org(kind), &id(kind, i), &email(i));
        }
        let svc = match kind {
            ProviderKind::Factory => "svc-backup@acme.example".to_owned(),
            other => id(other, 999),
        };
        seed = seed.member_with_email(kind, org(kind), &svc, "svc-backup@acme.example");
    }
    let sandbox = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let text = config_for(&sandbox, &HashMap::new(), "")
        .replace(
            "[providers.aitronos]\n",
            &format!("[providers.aitronos]\norganization = \"{ORG}\"\n"),
        )
        .replace(
            "[providers.cognee]\n",
            &format!("[providers.cognee]\norganization = \"{TENANT}\"\n"),
        )
        + &format!(
            "[safety]\nprotected = [\"svc-*@acme.example\", \"{}\"]\n",
            offboard::sandbox::SANDBOX_OWNER_EMAIL
        );
    std::fs::write(&config, text).unwrap();
    Setup {
        sandbox,
        dir,
        config,
    }
}

impl Setup {
    async fn reconcile(&self, roster: &str, extra: &[&str]) -> (Option<i32>, String, String) {
        let path = self.dir.path().join("roster.csv");
        std::fs::write(&path, roster).unwrap();
        self.reconcile_with(path.to_str().unwrap(), extra).await
    }

    /// `offboard reconcile --roster ROSTER` (a file, or `scim`) with the report and the orphans
    /// file in the temp dir (an orphans file of an earlier call removed first).
    async fn reconcile_with(&self, roster: &str, extra: &[&str]) -> (Option<i32>, String, String) {
        let report = self.dir.path().join("reconcile.jsonl");
        let out = self.dir.path().join("orphans.csv");
        let _ = std::fs::remove_file(&out);
        let mut args = vec![
            "reconcile",
            "--roster",
            roster,
            "--config",
            self.config.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = offboard(&self.sandbox.env(), &args).await;
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

/// A roster missing 7 of the 200 at each provider: exactly those 7 × 5 are orphans, the
/// protected ones (a service account, each organization's owner) are not proposed, the report
/// says every member's class, and `orphans.csv` is a file `run --dry-run` takes. Nothing is
/// removed.
#[tokio::test]
async fn a_roster_missing_seven_people_finds_exactly_them_at_every_provider() {
    let s = setup().await;
    let mut roster = String::from("email\n");
    for i in MISSING..PEOPLE {
        roster.push_str(&format!("{}\n", email(i).to_uppercase()));
    }
    let (code, stdout, stderr) = s.reconcile(&roster, &[]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let orphans = std::fs::read_to_string(s.dir.path().join("orphans.csv")).unwrap();
    let rows: BTreeSet<String> = orphans.lines().skip(1).map(str::to_owned).collect();
    let mut want = BTreeSet::new();
    for kind in ProviderKind::ALL {
        for i in 0..MISSING {
            want.insert(format!(
                "{kind},{},{},reconcile: not on the roster",
                id(kind, i),
                org(kind).unwrap_or("")
            ));
        }
    }
    assert_eq!(rows, want, "exactly the 7 at each provider:\n{orphans}");
    let lines = report_lines(&s.dir.path().join("reconcile.jsonl"));
    let count = |class: &str| lines.iter().filter(|l| l["class"] == class).count();
    assert_eq!(count("orphan"), MISSING * 5);
    assert_eq!(count("kept"), (PEOPLE - MISSING) * 5);
    // The service account everywhere, and the owner the sandbox adds to each organization.
    assert!(count("protected") >= 5, "{}", count("protected"));
    assert!(
        lines
            .iter()
            .filter(|l| l["email"] == "svc-backup@acme.example")
            .all(|l| l["class"] == "protected")
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.dir.path().join("reconcile.jsonl"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        s.sandbox.log().iter().all(|l| l.operation == "lookup"),
        "read-only: list requests only"
    );
    for kind in ProviderKind::ALL {
        assert!(
            s.sandbox.is_member(kind, org(kind), &id(kind, 0)),
            "nobody removed"
        );
    }

    // The orphans file is one `run` takes: its dry run plans exactly those 35, sends none.
    let out = offboard(
        &s.sandbox.env(),
        &[
            "run",
            "--csv",
            s.dir.path().join("orphans.csv").to_str().unwrap(),
            "--config",
            s.config.to_str().unwrap(),
            "--dry-run",
            "--offline",
        ],
    )
    .await;
    let plan = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{plan}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = plan
        .lines()
        .find(|l| l.trim_start().starts_with("total"))
        .unwrap_or_default();
    assert!(
        total.contains(&format!(" {} removals", MISSING * 5)),
        "{plan}"
    );
}

/// Another company's roster matches almost nobody: refused for every organization, naming it
/// and how many matched, and no orphans file unless --allow-orphans names the exact count.
#[tokio::test]
async fn a_roster_of_another_company_is_refused_and_writes_no_orphans() {
    let s = setup().await;
    let roster = "email\nsomeone@other.example\nperson000@acme.example\n";
    let (code, stdout, stderr) = s.reconcile(roster, &[]).await;
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    assert!(
        stderr.contains("aitronos org_acme: the roster matches 1 of its 200 members"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-orphans 995"), "{stderr}");
    assert!(!s.dir.path().join("orphans.csv").exists());
    let (code, _, stderr) = s.reconcile(roster, &["--allow-orphans", "994"]).await;
    assert_eq!(code, Some(3), "not the exact count: {stderr}");
    assert!(!s.dir.path().join("orphans.csv").exists());
    let (code, stdout, stderr) = s.reconcile(roster, &["--allow-orphans", "995"]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let orphans = std::fs::read_to_string(s.dir.path().join("orphans.csv")).unwrap();
    assert_eq!(orphans.lines().count(), 996);
    let (code, _, stderr) = s.reconcile("email\n", &[]).await;
    assert_eq!(code, Some(3));
    assert!(stderr.contains("the roster is empty"), "{stderr}");
}

/// `--roster scim`: the identity system's own view. Users provisioned active keep access; the
/// ones it holds inactive are exactly the orphans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scim_stores_active_users_can_be_the_roster() {
    let s = setup().await;
    let db = s.dir.path().join("scim.sqlite");
    let text = std::fs::read_to_string(&s.config).unwrap()
        + &format!(
            "[intake]\nlisten = \"127.0.0.1:0\"\ntargets = [{{ provider = \"factory\" }}]\n[intake.scim]\ntoken_env = \"TEST_SCIM_TOKEN\"\ndatabase = \"{}\"\n",
            db.display()
        );
    std::fs::write(&s.config, text).unwrap();
    let (code, _, stderr) = s.reconcile_scim().await;
    assert_eq!(code, Some(2), "no store yet: {stderr}");
    assert!(stderr.contains("no SCIM store"), "{stderr}");

    let stop = tokio_util::sync::CancellationToken::new();
    let addr = crate::intake::intake_in_process(&s.config, "amqp://127.0.0.1:1/%2f", &stop).await;
    let scim = crate::intake::Scim {
        http: reqwest::Client::new(),
        base: format!("http://{addr}/scim/v2"),
    };
    for i in 0..PEOPLE {
        let (status, body) = scim
            .post_user(serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("upn{i:03}@acme.onmicrosoft.example"),
                "active": i >= MISSING,
                "emails": [{"primary": true, "type": "work", "value": email(i)}]
            }))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    stop.cancel();
    let (code, stdout, stderr) = s.reconcile_scim().await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let orphans = std::fs::read_to_string(s.dir.path().join("orphans.csv")).unwrap();
    assert_eq!(orphans.lines().count() - 1, MISSING * 5, "{orphans}");
    for i in 0..MISSING {
        assert!(
            orphans.contains(&format!("factory,{},", email(i))),
            "{orphans}"
        );
    }
}

impl Setup {
    async fn reconcile_scim(&self) -> (Option<i32>, String, String) {
        self.reconcile_with("scim", &[]).await
    }
}
