//! The CSV path's own cost: `offboard run` on N rows over the five providers against the sandbox
//! with no rate limits, no faults and pacing set far above what the machine can do, so nothing but
//! the tool itself limits the run. Reports jobs/s and the peak RSS; and the peak RSS of a dry run
//! (the scan alone) at 10k, 100k and 1M rows.
//!
//! The machine is shared and noisy (a run's rate moves by a fifth from one run to the next), so
//! the bench alternates `offboard run` and `wrk` several times against one sandbox, each run on
//! people of its own, and reports every pair and the medians.
//!
//! Run: `cargo bench --bench overhead` (release build; `OFFBOARD_BENCH_ROWS` sets a run's size,
//! default 100,000; `OFFBOARD_BENCH_REPS` the number of pairs, default 5). Loopback only.

mod common;

use common::{
    Pace, asked_to_measure, config, each, env_usize, fake_env, measure, median, person, run_file,
    seed_rows, write_csv, write_rows,
};
use std::collections::HashMap;

use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, SandboxOptions};

/// The `wrk` figures of one round: the same mix and Factory's 404 alone.
struct Ceiling {
    /// Five `wrk` processes at once, one per provider (`-t1 -c13`, 65 connections in all), each
    /// removing members of its own through the same route, auth and body as offboard's removals:
    /// the load generator doing the requests offboard does. Requests/s summed, and how many of
    /// them were not 2xx (none expected: every person removed is a member).
    mix: f64,
    mix_not_2xx: u64,
    /// `wrk -t2 -c64` on Factory alone, for people who are not members (its 404 error body): the
    /// cheapest route the stand-in has, the ceiling reported before the mix.
    factory_404: f64,
}

/// `wrk`'s request for a provider's removal of person `n` (see `common::person`), in Lua.
fn removal_lua(kind: ProviderKind) -> (&'static str, &'static str, &'static str, &'static str) {
    match kind {
        ProviderKind::Factory => (
            "DELETE",
            r#""/api/v0/organization/users?email=p" .. n .. "%40bench.example""#,
            "Authorization",
            "nil",
        ),
        ProviderKind::Aitronos => (
            "DELETE",
            r#""/v1/organizations/org_bench/users/usr_b" .. n"#,
            "X-API-Key",
            r#"'{"confirm":true}'"#,
        ),
        ProviderKind::Telnyx => (
            "POST",
            r#"string.format("/v2/organizations/users/00000000-0000-0003-0000-%012x/actions/remove", n)"#,
            "Authorization",
            "nil",
        ),
        ProviderKind::Aerospike => (
            "DELETE",
            r#"string.format("/v1/organization/members/00000000-0000-0004-0000-%012x", n)"#,
            "Authorization",
            "nil",
        ),
        ProviderKind::Cognee => (
            "DELETE",
            r#"string.format("/api/v1/permissions/tenants/7b09cdc3-8948-47f0-aa62-74ac943d6c59/users/00000000-0000-0005-0000-%012x", n)"#,
            "X-Api-Key",
            "nil",
        ),
    }
}

/// Starts `wrk` on one provider for `secs`, removing people from index `first` on.
fn start_wrk(
    sandbox: &Sandbox,
    dir: &std::path::Path,
    kind: ProviderKind,
    first: usize,
    args: &[&str],
    credential: &str,
) -> Option<std::process::Child> {
    let (method, path, header, body) = removal_lua(kind);
    let content_type = if body == "nil" {
        ""
    } else {
        r#", ["Content-Type"] = "application/json""#
    };
    let script = dir.join(format!("{kind}.lua"));
    std::fs::write(
        &script,
        format!(
            "local n = {first} - 1\nlocal credential = os.getenv(\"WRK_CREDENTIAL\")\nrequest = function()\n  n = n + 1\n  return wrk.format(\"{method}\", {path}, {{ [\"{header}\"] = credential{content_type} }}, {body})\nend\n"
        ),
    )
    .unwrap();
    std::process::Command::new("wrk")
        .args(args)
        .arg(&script)
        .arg(sandbox.base_url(kind))
        .env("WRK_CREDENTIAL", credential)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()
}

/// Requests/s and non-2xx answers from `wrk`'s output.
fn wrk_result(child: std::process::Child) -> Option<(f64, u64)> {
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let bad = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((rate, bad))
}

/// The credential each provider's removals carry, as the header value.
fn credentials(rt: &tokio::runtime::Runtime, sandbox: &Sandbox) -> HashMap<ProviderKind, String> {
    let env: HashMap<_, _> = sandbox.env().into_iter().collect();
    let grant: serde_json::Value = rt.block_on(async {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", env["SANDBOX_AEROSPIKE_CLIENT_ID"].as_str()),
            (
                "client_secret",
                env["SANDBOX_AEROSPIKE_CLIENT_SECRET"].as_str(),
            ),
        ];
        let answer = reqwest::Client::new()
            .post(sandbox.token_url())
            .form(&form)
            .send()
            .await
            .unwrap();
        answer.json().await.unwrap()
    });
    ProviderKind::ALL
        .into_iter()
        .map(|kind| {
            let value = match kind {
                ProviderKind::Factory => format!("Bearer {}", env["SANDBOX_FACTORY_TOKEN"]),
                ProviderKind::Telnyx => format!("Bearer {}", env["SANDBOX_TELNYX_TOKEN"]),
                ProviderKind::Aerospike => {
                    format!("Bearer {}", grant["access_token"].as_str().unwrap())
                }
                ProviderKind::Aitronos => env["SANDBOX_AITRONOS_API_KEY"].clone(),
                ProviderKind::Cognee => env["SANDBOX_COGNEE_API_KEY"].clone(),
            };
            (kind, value)
        })
        .collect()
}

/// How long each `wrk` run lasts, and the most people one provider's `wrk` may remove in it.
const WRK_SECONDS: &str = "-d5s";
const WRK_PEOPLE: usize = 100_000;

/// Where `wrk`'s people start, past every index offboard's runs use.
const WRK_FIRST: usize = 10_000_000;

/// One round of `wrk`: the mix (people from index `first` of each provider), then Factory's 404.
/// None when `wrk` is not installed.
fn ceiling(
    sandbox: &Sandbox,
    dir: &std::path::Path,
    credentials: &HashMap<ProviderKind, String>,
    first: usize,
) -> Option<Ceiling> {
    let mix_args = ["-t1", "-c13", WRK_SECONDS, "-s"];
    let children = ProviderKind::ALL
        .into_iter()
        .map(|k| start_wrk(sandbox, dir, k, first, &mix_args, &credentials[&k]))
        .collect::<Option<Vec<_>>>()?;
    let (mut mix, mut mix_not_2xx) = (0.0, 0);
    for child in children {
        let (rate, bad) = wrk_result(child)?;
        mix += rate;
        mix_not_2xx += bad;
    }
    // Factory's 404: people far past every seeded index.
    let factory = ProviderKind::Factory;
    let child = start_wrk(
        sandbox,
        dir,
        factory,
        1 << 40,
        &["-t2", "-c64", WRK_SECONDS, "-s"],
        &credentials[&factory],
    )?;
    let (factory_404, _) = wrk_result(child)?;
    Some(Ceiling {
        mix,
        mix_not_2xx,
        factory_404,
    })
}

fn main() {
    if !asked_to_measure() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rows = env_usize("OFFBOARD_BENCH_ROWS", 100_000);

    // Overhead: `reps` runs of `rows` jobs, each followed by `wrk` against the same sandbox.
    let reps = env_usize("OFFBOARD_BENCH_REPS", 5).max(1);
    let sandbox = rt
        .block_on(Sandbox::start(SandboxOptions::plain(seed(rows, reps))))
        .unwrap();
    let credentials = credentials(&rt, &sandbox);
    let (mut rates, mut sendings, mut cpus) = (vec![], vec![], vec![]);
    let (mut mixes, mut factories, mut ratios, mut factory_ratios) =
        (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        // A directory of its own: a report or audit log left by the run before is not resumed.
        let own = dir.path().join(format!("run{rep}"));
        std::fs::create_dir(&own).unwrap();
        let csv = own.join("bench.csv");
        write_rows(&csv, rep * rows..(rep + 1) * rows);
        drop(sandbox.take_log()); // the wrk run before
        let (run, report) = run_file(&own, &sandbox, &csv, |_| Pace::UNLIMITED, || false);
        assert!(run.succeeded, "offboard run failed");
        // The sending rate as the stand-in saw it, first removal to last: the rate `wrk` is
        // compared with (its own start-up is not in its figure either).
        let removals: Vec<_> = sandbox
            .take_log()
            .into_iter()
            .filter(|l| l.operation == "remove" && l.status < 300)
            .map(|l| l.at)
            .collect();
        let span = match (removals.iter().min(), removals.iter().max()) {
            (Some(first), Some(last)) => (*last - *first).as_secs_f64(),
            _ => 0.0,
        };
        let sending = removals.len() as f64 / span.max(1e-9);
        let done = std::fs::read_to_string(&report)
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"removed\""))
            .count();
        assert_eq!(done, rows, "every job removed");
        assert_eq!(removals.len(), rows, "the stand-in saw every removal once");
        let rate = rows as f64 / run.seconds;
        let cpu = run.cpu_seconds * 1e6 / rows as f64;
        print!(
            "run {}: {rows} jobs in {:.2} s = {rate:.0} jobs/s end to end, sending at {sending:.0}/s; peak RSS {:.1} MiB, CPU {:.2} s = {cpu:.0} µs a job",
            rep + 1,
            run.seconds,
            run.peak_mib(),
            run.cpu_seconds,
        );
        rates.push(rate);
        sendings.push(sending);
        cpus.push(cpu);
        // The ceiling: a plain load generator against the same stand-in, if `wrk` is installed.
        let first = WRK_FIRST + rep * WRK_PEOPLE;
        match ceiling(&sandbox, dir.path(), &credentials, first) {
            Some(c) => {
                println!(
                    "; wrk, same mix {:.0}/s ({} not 2xx): {:.0}%; Factory 404 {:.0}/s: {:.0}%",
                    c.mix,
                    c.mix_not_2xx,
                    100.0 * sending / c.mix,
                    c.factory_404,
                    100.0 * sending / c.factory_404
                );
                mixes.push(c.mix);
                factories.push(c.factory_404);
                ratios.push(sending / c.mix);
                factory_ratios.push(sending / c.factory_404);
            }
            None => println!("; wrk not installed (`apt-get install wrk`), no ceiling measured"),
        }
    }
    println!(
        "overhead: medians of {reps} runs of {rows} jobs: {:.0} jobs/s end to end (start, scan and all), sending at {:.0} removals/s, {:.0} µs of CPU a job",
        median(&mut rates),
        median(&mut sendings),
        median(&mut cpus)
    );
    if !ratios.is_empty() {
        let (mix, ratio) = (median(&mut mixes), median(&mut ratios));
        println!(
            "wrk, same requests (five providers' removals at once): median {mix:.0} requests/s; offboard sends at a median {:.0}% of it (range {:.0}-{:.0}%)",
            100.0 * ratio,
            100.0 * ratios[0],
            100.0 * ratios[ratios.len() - 1],
        );
        let (factory, ratio) = (median(&mut factories), median(&mut factory_ratios));
        println!(
            "wrk, Factory's 404 alone: median {factory:.0} requests/s; offboard sends at a median {:.0}% of it (range {:.0}-{:.0}%)",
            100.0 * ratio,
            100.0 * factory_ratios[0],
            100.0 * factory_ratios[factory_ratios.len() - 1],
        );
    }
    drop(sandbox);

    // Memory of the scan (validation, duplicates, plan) as the file grows.
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let dry_cfg = dir.path().join("dry.toml");
    std::fs::write(&dry_cfg, config(None, |_| Pace::UNLIMITED)).unwrap();
    for n in [10_000usize, 100_000, 1_000_000] {
        let csv = dir.path().join(format!("dry{n}.csv"));
        write_csv(&csv, &each(n / 5));
        let scan = measure(
            &[
                "run",
                "--dry-run",
                "--offline",
                "--csv",
                &path(&csv),
                "--config",
                &path(&dry_cfg),
            ],
            &fake_env(),
            || false,
        );
        println!(
            "scan: {n} rows in {:.2} s, peak RSS {:.1} MiB",
            scan.seconds,
            scan.peak_mib()
        );
    }
}

/// The sandbox's members: the people of every run's rows, and `wrk`'s people for every round when
/// `wrk` is installed. (Each run's preflight reads the Aerospike and Cognee member lists whole, so
/// `wrk`'s people make every run start with lists of `(rows + 100,000) × reps` members.)
fn seed(rows: usize, reps: usize) -> offboard::sandbox::Seed {
    let mut seed = seed_rows(0..rows * reps);
    let wrk = std::process::Command::new("wrk")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !wrk {
        return seed;
    }
    for i in WRK_FIRST..WRK_FIRST + reps * WRK_PEOPLE {
        for kind in ProviderKind::ALL {
            let (org, user) = person(kind, i);
            seed = seed.member(kind, org, &user);
        }
    }
    seed
}
