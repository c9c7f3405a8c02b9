//! Helpers: a sandbox wired into a config file, and the real `offboard` binary run against it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use offboard::job::ProviderKind;
use offboard::sandbox::{Logged, Sandbox};

/// Pacing for one entry in a generated config: (rate per second, burst, max in flight).
pub type Pacing = (f64, u32, u32);

/// A config file whose entries (named as their kinds) point at `sandbox`, with the given pacing.
pub fn config_for(
    sandbox: &Sandbox,
    pacing: &HashMap<ProviderKind, Pacing>,
    extra: &str,
) -> String {
    let mut out = String::new();
    for kind in ProviderKind::ALL {
        let (rate, burst, in_flight) = pacing.get(&kind).copied().unwrap_or((50.0, 5, 8));
        let cred = match kind {
            ProviderKind::Factory => "token_env = \"SANDBOX_FACTORY_TOKEN\"".to_owned(),
            ProviderKind::Aitronos => "api_key_env = \"SANDBOX_AITRONOS_API_KEY\"".to_owned(),
            ProviderKind::Telnyx => "token_env = \"SANDBOX_TELNYX_TOKEN\"".to_owned(),
            ProviderKind::Aerospike => format!(
                "token_url = \"{}\"\nclient_id_env = \"SANDBOX_AEROSPIKE_CLIENT_ID\"\nclient_secret_env = \"SANDBOX_AEROSPIKE_CLIENT_SECRET\"",
                sandbox.token_url()
            ),
            ProviderKind::Cognee => "api_key_env = \"SANDBOX_COGNEE_API_KEY\"".to_owned(),
        };
        out.push_str(&format!(
            "[providers.{kind}]\nkind = \"{kind}\"\nbase_url = \"{}\"\n{cred}\nrate_per_second = {rate}\nburst = {burst}\nmax_in_flight = {in_flight}\nbase_delay_ms = 50\nmax_delay_ms = 500\n{extra}\n\n",
            sandbox.base_url(kind)
        ));
    }
    out
}

/// Runs `offboard` with `args` and the sandbox's credentials in its environment.
pub async fn offboard(sandbox_env: &[(&'static str, String)], args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
    cmd.args(args)
        .envs(sandbox_env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("OFFBOARD_CONFIG")
        .env("OFFBOARD_LOG", "info")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("offboard finished within 2 minutes")
        .expect("offboard started")
}

/// `offboard run --csv CSV --config CONFIG --report REPORT`.
pub async fn run_csv(
    sandbox_env: &[(&'static str, String)],
    csv: &Path,
    config: &Path,
    report: &Path,
) -> Output {
    let arg = |p: &Path| p.to_str().expect("UTF-8 temp path").to_owned();
    let (csv, config, report) = (arg(csv), arg(config), arg(report));
    offboard(
        sandbox_env,
        &[
            "run", "--csv", &csv, "--config", &config, "--report", &report,
        ],
    )
    .await
}

pub fn report_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("report {}: {e}", path.display()))
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("report line is not JSON ({e}): {l}"))
        })
        .collect()
}

pub fn example_csv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reorg.csv")
}

/// Successful removal requests the sandbox answered for this provider and user (lookups aside).
pub fn successful_removals(log: &[Logged], kind: ProviderKind, user: &str) -> usize {
    log.iter()
        .filter(|r| r.kind == kind && r.operation == "remove" && (200..300).contains(&r.status))
        .filter(|r| r.user.eq_ignore_ascii_case(user))
        .count()
}

/// Windows shorter than this between two arrivals are not judged: see [`assert_within_rate`].
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Requests a window may hold beyond the pace: arrivals the machine's scheduler bunched.
const RATE_GRACE: f64 = 2.0;

/// Checks a provider's observed arrivals against the pace the lane was given (`rate`, `burst`):
/// in every window from arrival i to arrival j at least [`RATE_WINDOW`] apart, at most
/// `burst + rate * (t_j - t_i)` requests, plus [`RATE_GRACE`]. Arrivals are the server's clock: a
/// request sent on time but received late (a busy machine's scheduler) bunches with the next
/// one. Over a second or more such a delay moves a request or two into a window; a pacer that
/// sends faster than asked adds `rate × span` times its excess, which no grace covers. Shorter
/// windows would time the machine, not the pacer.
pub fn assert_within_rate(kind: ProviderKind, log: &[Logged], rate: f64, burst: u32) {
    let times: Vec<_> = log
        .iter()
        .filter(|l| l.kind == kind)
        .map(|l| l.at)
        .collect();
    assert!(!times.is_empty(), "{kind}: no request observed");
    let last = times[times.len() - 1].duration_since(times[0]);
    assert!(
        last >= RATE_WINDOW,
        "{kind}: {} requests within {last:?}: too few to judge a pace",
        times.len()
    );
    for i in 0..times.len() {
        for j in i..times.len() {
            let span = times[j].duration_since(times[i]);
            if span < RATE_WINDOW {
                continue;
            }
            let allowed = burst as f64 + rate * span.as_secs_f64() + RATE_GRACE;
            let seen = (j - i + 1) as f64;
            assert!(
                seen <= allowed,
                "{kind}: {seen} requests within {span:?} exceed rate {rate}/s burst {burst}"
            );
        }
    }
}

/// Starts `offboard worker` in the background; its stderr goes to `log`.
pub fn spawn_worker(
    sandbox_env: &[(&'static str, String)],
    amqp_url: &str,
    config: &Path,
    report: &Path,
    log: &Path,
) -> tokio::process::Child {
    let err = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args([
            "worker",
            "--config",
            config.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ])
        .envs(sandbox_env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("OFFBOARD_AMQP_URL", amqp_url)
        .env("OFFBOARD_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .expect("worker started")
}

/// Sends SIGTERM to a child.
pub fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "SIGTERM sent");
}

/// Waits until `f` holds, checking every 100 ms, or panics after `limit` with `what`.
pub async fn wait_until(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lines of a report that may not exist yet.
pub fn report_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}
