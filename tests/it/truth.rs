//! The provider boundary tells the truth: a wrong base URL claims nothing, protected people stay
//! whichever way a row names them, every `already_absent` names its evidence.

use std::collections::HashMap;
use std::path::Path;

use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions, Seed};

use crate::support::{config_for, report_lines, run_csv};

const ORG: &str = "org_acme";
const TENANT: &str = "0b7e6f3a-52c1-4d8e-9f10-2a3b4c5d6e7f";
const AEROSPIKE_USER: &str = "3f0b7a52-1c4e-4d8a-9b6f-2e5d8c1a7b90";
const AEROSPIKE_GONE: &str = "4a1c8b63-2d5f-4e9b-8c70-3f6e9d2b8ca1";
const COGNEE_USER: &str = "5b2d9c74-3e6a-4fa0-9d81-4a7fae3c9db2";
const TELNYX_USER: &str = "6a09cdc3-8948-47f0-aa62-74ac943d6c58";

/// One member at each provider, each with an email, and the rows naming them by id or email.
fn seed() -> Seed {
    Seed::default()
        .member_with_email(
            ProviderKind::Factory,
            None,
            "fay@corp.example",
            "fay@corp.example",
        )
        .member_with_email(
            ProviderKind::Aitronos,
            Some(ORG),
            "usr_ann",
            "ann@corp.example",
        )
        .member_with_email(ProviderKind::Telnyx, None, TELNYX_USER, "tom@corp.example")
        .member_with_email(
            ProviderKind::Aerospike,
            None,
            AEROSPIKE_USER,
            "ada@corp.example",
        )
        .member_with_email(
            ProviderKind::Cognee,
            Some(TENANT),
            COGNEE_USER,
            "cid@corp.example",
        )
        .organization(ProviderKind::Cognee, TENANT)
}

const ROWS: &str = "provider,user,organization
factory,fay@corp.example,
aitronos,usr_ann,org_acme
telnyx,tom@corp.example,
aerospike,4a1c8b63-2d5f-4e9b-8c70-3f6e9d2b8ca1,
aerospike,3f0b7a52-1c4e-4d8a-9b6f-2e5d8c1a7b90,
cognee,cid@corp.example,0b7e6f3a-52c1-4d8e-9f10-2a3b4c5d6e7f
";

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `offboard run` over `rows` with `config` (a config text) in a fresh directory: its output and
/// its report's lines.
async fn run_rows(
    sandbox: &Sandbox,
    config: &str,
    rows: &str,
) -> (std::process::Output, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "offboard.toml", config);
    let csv = write(dir.path(), "rows.csv", rows);
    let report = dir.path().join("report.jsonl");
    let out = run_csv(&sandbox.env(), &csv, &config, &report).await;
    let lines = report_lines(&report);
    (out, lines)
}

/// The sandbox's config with every entry at its right base URL.
fn config(sandbox: &Sandbox) -> String {
    config_for(sandbox, &HashMap::new(), "")
}

/// The base URL one segment off, as a user pasting the provider's documented server would get it.
fn one_segment_off(sandbox: &Sandbox, kind: ProviderKind) -> String {
    let base = sandbox.base_url(kind);
    match kind {
        // Telnyx documents its server as `https://api.telnyx.com/v2`: `/v2/v2/...`.
        ProviderKind::Telnyx => format!("{base}/v2"),
        ProviderKind::Factory => format!("{base}/api/v0"),
        ProviderKind::Aitronos => format!("{base}/v1"),
        // Aerospike's base carries `/v1`: without it, every path is unknown.
        ProviderKind::Aerospike => base.trim_end_matches("/v1").to_owned(),
        ProviderKind::Cognee => format!("{base}/api/v1"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_base_url_sends_no_removal_and_claims_no_absence() {
    for kind in ProviderKind::ALL {
        let sandbox = Sandbox::start(SandboxOptions::plain(seed())).await.unwrap();
        let good = config(&sandbox);
        let right = format!("base_url = \"{}\"\n", sandbox.base_url(kind));
        let wrong = format!("base_url = \"{}\"\n", one_segment_off(&sandbox, kind));
        assert!(good.contains(&right), "{good}");
        let (out, lines) = run_rows(&sandbox, &good.replacen(&right, &wrong, 1), ROWS).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{kind}: {stderr}");
        assert!(
            stderr.contains("preflight failed") && stderr.contains("base_url"),
            "{kind}: the run says which key to check: {stderr}"
        );
        let log = sandbox.log();
        assert!(
            log.iter()
                .all(|r| r.kind != kind || r.operation != "remove"),
            "{kind}: no removal was sent: {log:?}"
        );
        for l in lines {
            if l["provider"] != kind.as_str() {
                continue;
            }
            assert_eq!(l["outcome"], "not_attempted", "{kind}: {l}");
            assert_eq!(l["reason"], "preflight_failed", "{kind}: {l}");
            assert!(
                l["error"]["message"].as_str().unwrap().contains("base_url"),
                "{kind}: {l}"
            );
        }
        for (other, user, org) in [
            (ProviderKind::Factory, "fay@corp.example", None),
            (ProviderKind::Aitronos, "usr_ann", Some(ORG)),
            (ProviderKind::Telnyx, TELNYX_USER, None),
            (ProviderKind::Aerospike, AEROSPIKE_USER, None),
            (ProviderKind::Cognee, COGNEE_USER, Some(TENANT)),
        ] {
            assert_eq!(
                sandbox.is_member(other, org, user),
                other == kind,
                "{kind} misconfigured: {other} {user} kept only where the URL is wrong"
            );
        }
        sandbox.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_absence_names_its_evidence() {
    let sandbox = Sandbox::start(SandboxOptions::plain(seed())).await.unwrap();
    let rows = format!("{ROWS}telnyx,nobody@corp.example,\n");
    let (out, lines) = run_rows(&sandbox, &config(&sandbox), &rows).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_user = |u: &str| {
        lines
            .iter()
            .find(|l| l["user"] == u)
            .unwrap_or_else(|| panic!("no line for {u}"))
    };
    // Aerospike's 404 is not on its page: believed once the member list no longer shows them.
    let gone = by_user(AEROSPIKE_GONE);
    assert_eq!(gone["outcome"], "already_absent", "{gone}");
    assert_eq!(gone["absence"], "member_list", "{gone}");
    let nobody = by_user("nobody@corp.example");
    assert_eq!(nobody["outcome"], "already_absent", "{nobody}");
    assert_eq!(nobody["absence"], "no_member", "{nobody}");
    for l in &lines {
        match l["outcome"].as_str().unwrap() {
            "removed" => assert!(l.get("absence").is_none(), "{l}"),
            "already_absent" => assert!(
                ["provider_404", "member_list", "no_member"]
                    .contains(&l["absence"].as_str().unwrap_or("")),
                "{l}"
            ),
            other => panic!("unexpected {other}: {l}"),
        }
    }
    assert!(!sandbox.is_member(ProviderKind::Aerospike, None, AEROSPIKE_USER));
    assert!(!sandbox.is_member(ProviderKind::Telnyx, None, TELNYX_USER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_people_stay_whichever_way_a_row_names_them() {
    let seed = seed()
        .member_with_email(
            ProviderKind::Aitronos,
            Some(ORG),
            "usr_owner1",
            "owner@corp.example",
        )
        .member_with_email(
            ProviderKind::Telnyx,
            None,
            "7b09cdc3-8948-47f0-aa62-74ac943d6c59",
            "pat@corp.example",
        )
        .member_with_email(
            ProviderKind::Cognee,
            Some(TENANT),
            "8c1ad4e2-9f3b-4c6d-8e7f-5a6b7c8d9e0f",
            "svc-backup@corp.example",
        );
    let sandbox = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let safety =
        "[safety]\nprotected = [\"usr_owner?\", \"Pat@corp.example\", \"svc-*@corp.example\"]\n";
    // The owner by email (protected by id), Pat and the service account by id (protected by
    // email: a plain address at a searching API, a glob at a listing one), and one person
    // nobody protects.
    let rows = "provider,user,organization
aitronos,owner@corp.example,org_acme
telnyx,7b09cdc3-8948-47f0-aa62-74ac943d6c59,
cognee,8c1ad4e2-9f3b-4c6d-8e7f-5a6b7c8d9e0f,0b7e6f3a-52c1-4d8e-9f10-2a3b4c5d6e7f
aitronos,usr_ann,org_acme
";
    let (out, lines) = run_rows(&sandbox, &format!("{safety}{}", config(&sandbox)), rows).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "protected rows are not done: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome = |u: &str| {
        lines
            .iter()
            .find(|l| l["user"] == u)
            .unwrap_or_else(|| panic!("no line for {u}: {lines:?}"))
            .clone()
    };
    for user in [
        "owner@corp.example",
        "7b09cdc3-8948-47f0-aa62-74ac943d6c59",
        "8c1ad4e2-9f3b-4c6d-8e7f-5a6b7c8d9e0f",
    ] {
        let l = outcome(user);
        assert_eq!(l["outcome"], "skipped_protected", "{l}");
        assert_eq!(l["reason"], "protected", "{l}");
    }
    assert_eq!(outcome("usr_ann")["outcome"], "removed");
    let removals: Vec<_> = sandbox
        .log()
        .into_iter()
        .filter(|r| r.operation == "remove")
        .map(|r| r.user)
        .collect();
    assert_eq!(removals, ["usr_ann"], "only the unprotected person");
    assert!(sandbox.is_member(ProviderKind::Aitronos, Some(ORG), "usr_owner1"));
    assert!(sandbox.is_member(
        ProviderKind::Telnyx,
        None,
        "7b09cdc3-8948-47f0-aa62-74ac943d6c59"
    ));
    assert!(sandbox.is_member(
        ProviderKind::Cognee,
        Some(TENANT),
        "8c1ad4e2-9f3b-4c6d-8e7f-5a6b7c8d9e0f"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_rows_in_organizations_of_twenty_thousand_are_all_removed() {
    const N: usize = 20_000;
    let kinds = [
        (ProviderKind::Aitronos, Some(ORG)),
        (ProviderKind::Telnyx, None),
        (ProviderKind::Aerospike, None),
        (ProviderKind::Cognee, Some(TENANT)),
    ];
    let mut seed = Seed::default();
    for (kind, org) in kinds {
        seed = seed.many(kind, org, N);
    }
    let sandbox = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    // People spread over each list, the last member included: a list cut anywhere would miss some.
    let picks = [0, 1, 777, 5_000, 12_345, 19_998, N - 1];
    let mut rows = String::from("provider,user,organization\n");
    for (kind, org) in kinds {
        for i in picks {
            rows.push_str(&format!(
                "{kind},{},{}\n",
                Seed::many_email(i),
                org.unwrap_or("")
            ));
        }
    }
    let (out, lines) = run_rows(&sandbox, &config(&sandbox), &rows).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines.len(), kinds.len() * picks.len());
    for l in &lines {
        assert_eq!(l["outcome"], "removed", "{l}");
    }
    for (kind, org) in kinds {
        for i in picks {
            let id = Seed::many_user(kind, i);
            assert!(
                !sandbox.is_member(kind, org, &id),
                "{kind} person {i} removed"
            );
            let l = lines
                .iter()
                .find(|l| l["provider"] == kind.as_str() && l["user"] == Seed::many_email(i))
                .unwrap();
            assert_eq!(
                l["resolved_user"].as_str().unwrap().to_lowercase(),
                id.to_lowercase(),
                "{l}"
            );
        }
        assert_eq!(sandbox.member_count(kind, org), N - picks.len(), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_forbidding_cognee_tenant_stops_only_its_own_rows() {
    const OTHER: &str = "1c8f7a4b-63d2-4e9f-8a21-3b4c5d6e7f80";
    let seed = seed()
        .member(ProviderKind::Cognee, Some(OTHER), AEROSPIKE_USER)
        .member(ProviderKind::Cognee, Some(OTHER), TELNYX_USER);
    let mut opts = SandboxOptions::plain(seed);
    opts.cognee_forbidden_tenants = vec![OTHER.to_owned()];
    let sandbox = Sandbox::start(opts).await.unwrap();
    let rows = format!(
        "provider,user,organization
cognee,{AEROSPIKE_USER},{OTHER}
cognee,{COGNEE_USER},{TENANT}
cognee,{TELNYX_USER},{OTHER}
"
    );
    let (out, lines) = run_rows(&sandbox, &config(&sandbox), &rows).await;
    assert_eq!(out.status.code(), Some(1));
    for l in &lines {
        if l["organization"] == OTHER {
            assert_eq!(l["outcome"], "not_attempted", "{l}");
            assert_eq!(l["reason"], "preflight_failed", "{l}");
            let message = l["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(OTHER) && message.contains("403"),
                "the tenant and the answer are named: {message}"
            );
        } else {
            assert_eq!(l["outcome"], "removed", "{l}");
        }
    }
    assert!(!sandbox.is_member(ProviderKind::Cognee, Some(TENANT), COGNEE_USER));
    assert!(sandbox.is_member(ProviderKind::Cognee, Some(OTHER), AEROSPIKE_USER));
    assert!(
        sandbox
            .log()
            .iter()
            .filter(|r| r.operation == "remove")
            .all(|r| r.organization.as_deref() != Some(OTHER)),
        "nothing sent to the forbidding tenant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_between_plan_and_send_sends_nothing() {
    use offboard::config::Settings;
    use offboard::lane::Lanes;
    use offboard::metrics::Metrics;
    use offboard::run;
    let sandbox = Sandbox::start(SandboxOptions::plain(seed())).await.unwrap();
    let settings = Settings::from_toml(&config(&sandbox), "test.toml").unwrap();
    let env: HashMap<&str, String> = sandbox.env().into_iter().collect();
    let resolved = settings
        .resolve("test.toml", &|k| env.get(k).cloned())
        .unwrap();
    let metrics = std::sync::Arc::new(Metrics::new());
    let lanes = Lanes::build(&settings, &resolved, &metrics).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv_path = write(
        dir.path(),
        "rows.csv",
        "provider,user,organization\naitronos,usr_ann,org_acme\n",
    );
    let (csv, plan, _) = run::plan(&csv_path, &[], &lanes, 10).await.unwrap();
    assert_eq!(plan.removable(), 1);
    // Someone adds a row after the guard approved one removal.
    std::fs::write(
        &csv_path,
        "provider,user,organization\naitronos,usr_ann,org_acme\ntelnyx,6a09cdc3-8948-47f0-aa62-74ac943d6c58,\n",
    )
    .unwrap();
    let report = dir.path().join("report.jsonl");
    let e = run::run(
        &csv,
        &plan,
        &report,
        None,
        &lanes,
        metrics,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .err()
    .expect("refused");
    assert!(
        e.to_string().contains("changed while it was being read"),
        "{e}"
    );
    assert!(
        sandbox.log().iter().all(|r| r.operation != "remove"),
        "nothing sent"
    );
    assert!(sandbox.is_member(ProviderKind::Aitronos, Some(ORG), "usr_ann"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_retries_the_rows_that_failed_for_a_transient_reason() {
    // Every third person's first removal answers 503, and a job may try once: those rows fail
    // (`retries_exhausted`); a resumed run tries them again, and only them.
    let mut seed = Seed::default();
    let mut rows = String::from("provider,user,organization\n");
    for i in 0..12 {
        let email = format!("r{i}@corp.example");
        seed = seed.member(ProviderKind::Factory, None, &email);
        rows.push_str(&format!("factory,{email},\n"));
    }
    let mut opts = SandboxOptions::plain(seed);
    opts.faults = offboard::sandbox::Faults {
        unavailable_every: 3,
        ..Default::default()
    };
    let sandbox = Sandbox::start(opts).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "offboard.toml",
        &config_for(&sandbox, &HashMap::new(), "max_attempts = 1"),
    );
    let csv = write(dir.path(), "rows.csv", &rows);
    let report = dir.path().join("report.jsonl");
    let first = run_csv(&sandbox.env(), &csv, &config, &report).await;
    assert_eq!(first.status.code(), Some(1));
    let lines = report_lines(&report);
    let failed: Vec<String> = lines
        .iter()
        .filter(|l| l["outcome"] == "failed")
        .map(|l| {
            assert_eq!(l["reason"], "retries_exhausted", "{l}");
            l["user"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(!failed.is_empty() && failed.len() < 12, "{lines:?}");

    let again = run_csv(&sandbox.env(), &csv, &config, &report).await;
    assert_eq!(
        again.status.code(),
        Some(0),
        "every row now ends removed: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    let lines = report_lines(&report);
    assert_eq!(
        lines.len(),
        12 + failed.len(),
        "one new line per failed row"
    );
    for l in &lines[12..] {
        assert!(
            failed.contains(&l["user"].as_str().unwrap().to_owned()),
            "{l}"
        );
        assert_eq!(l["outcome"], "removed", "{l}");
    }
    for i in 0..12 {
        let email = format!("r{i}@corp.example");
        assert_eq!(
            crate::support::successful_removals(&sandbox.log(), ProviderKind::Factory, &email),
            1,
            "{email} removed once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_has_its_outcome_in_the_audit_log_invalid_ones_too() {
    let sandbox = Sandbox::start(SandboxOptions::plain(seed())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "offboard.toml", &config(&sandbox));
    let csv = write(
        dir.path(),
        "rows.csv",
        "provider,user,organization\naitronos,usr_ann,org_acme\nslack,someone@corp.example,\n",
    );
    let report = dir.path().join("report.jsonl");
    run_csv(&sandbox.env(), &csv, &config, &report).await;
    let audit: Vec<serde_json::Value> =
        std::fs::read_to_string(report.with_extension("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    for l in report_lines(&report) {
        assert!(
            audit.iter().any(|a| a["kind"] == "outcome"
                && a["job_id"] == l["job_id"]
                && a["outcome"] == l["outcome"]),
            "{l} in the audit log: {audit:?}"
        );
    }
}

/// A 404 the page gives no meaning (Factory's, Aitronos's unknown user) is believed only once the
/// member list read after it agrees: a person still listed is a failure with the provider's
/// words, never `already_absent`. Stand-ins on wiremock, in the pages' shapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undocumented_404_for_someone_still_listed_is_a_failure_not_an_absence() {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let not_found = |code: &str| {
        ResponseTemplate::new(404).set_body_json(serde_json::json!({
            "error": {"code": code, "message": "User not found.", "system_message": "not found",
                      "type": "client_error", "status": 404, "trace_id": "t-1", "timestamp": "2026-11-28T08:00:00Z"}
        }))
    };
    // Aitronos: usr_kept is still in the organization, usr_gone is not.
    Mock::given(method("POST"))
        .and(path("/v1/organizations/org_acme/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "users": [{"id": "orguser_1", "user_id": "usr_kept", "email": "kept@corp.example"}],
            "total_users_count": 1
        })))
        .mount(&server)
        .await;
    for user in ["usr_kept", "usr_gone"] {
        Mock::given(method("DELETE"))
            .and(path(format!("/v1/organizations/org_acme/users/{user}")))
            .respond_with(not_found("USER_NOT_FOUND"))
            .expect(1)
            .mount(&server)
            .await;
    }
    // Factory: kept@ is still listed, gone@ is not.
    let factory = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v0/organization/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "users": [{"id": "u-1", "email": "kept@corp.example", "role": "member"}],
            "pagination": {"hasMore": false, "nextCursor": null}
        })))
        .mount(&factory)
        .await;
    for email in ["kept@corp.example", "gone@corp.example"] {
        Mock::given(method("DELETE"))
            .and(path("/api/v0/organization/users"))
            .and(query_param("email", email))
            .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({
                "detail": "User not found", "status": 404, "title": "Not Found"
            })))
            .expect(1)
            .mount(&factory)
            .await;
    }
    let config = format!(
        "[providers.aitronos]\nkind = \"aitronos\"\nbase_url = \"{}\"\napi_key_env = \"T_KEY\"\n\
         [providers.factory]\nkind = \"factory\"\nbase_url = \"{}\"\ntoken_env = \"T_KEY\"\n",
        server.uri(),
        factory.uri()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "offboard.toml", &config);
    let csv = write(
        dir.path(),
        "rows.csv",
        "provider,user,organization\naitronos,usr_kept,org_acme\naitronos,usr_gone,org_acme\n\
         factory,kept@corp.example,\nfactory,gone@corp.example,\n",
    );
    let report = dir.path().join("report.jsonl");
    let out = run_csv(&[("T_KEY", "k".into())], &csv, &config, &report).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = report_lines(&report);
    let by_user = |u: &str| {
        lines
            .iter()
            .find(|l| l["user"] == u)
            .unwrap_or_else(|| panic!("no line for {u}: {lines:#?}"))
    };
    for kept in ["usr_kept", "kept@corp.example"] {
        let l = by_user(kept);
        assert_eq!(l["outcome"], "failed", "{l}");
        assert_eq!(l["reason"], "not_found_but_listed", "{l}");
        assert!(l.get("absence").is_none(), "{l}");
    }
    for gone in ["usr_gone", "gone@corp.example"] {
        let l = by_user(gone);
        assert_eq!(l["outcome"], "already_absent", "{l}");
        assert_eq!(l["absence"], "member_list", "{l}");
    }
}
