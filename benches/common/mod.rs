//! What the benches share: the i-th person of each provider, a CSV of them, a config pointing at
//! the sandbox with pacing far above what the machine can do, and a process's peak RSS.

use std::io::Write;
use std::ops::Range;
use std::path::Path;

use offboard::job::ProviderKind;
use offboard::sandbox::{Sandbox, Seed};

/// The i-th person of a provider, as its id and organization.
pub fn person(kind: ProviderKind, i: usize) -> (Option<&'static str>, String) {
    let uuid = |k: u128| uuid::Uuid::from_u128((k << 64) | i as u128).to_string();
    match kind {
        ProviderKind::Factory => (None, format!("p{i}@bench.example")),
        ProviderKind::Aitronos => (Some("org_bench"), format!("usr_b{i}")),
        ProviderKind::Telnyx => (None, uuid(3)),
        ProviderKind::Aerospike => (None, uuid(4)),
        ProviderKind::Cognee => (Some("7b09cdc3-8948-47f0-aa62-74ac943d6c59"), uuid(5)),
    }
}

/// Row r is the (r / 5)-th person of the (r % 5)-th provider.
fn row(r: usize) -> (ProviderKind, Option<&'static str>, String) {
    let kind = ProviderKind::ALL[r % 5];
    let (org, user) = person(kind, r / 5);
    (kind, org, user)
}

/// A seed where the people of `rows` are members.
pub fn seed(rows: Range<usize>) -> Seed {
    rows.map(row).fold(Seed::default(), |s, (kind, org, user)| {
        s.member(kind, org, &user)
    })
}

/// A CSV of `rows` (see [`row`]).
pub fn write_csv(path: &Path, rows: Range<usize>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "provider,user,organization").unwrap();
    for r in rows {
        let (kind, org, user) = row(r);
        writeln!(f, "{kind},{user},{}", org.unwrap_or("")).unwrap();
    }
}

/// Every provider pointing at `sandbox` (or at a closed port), with rates far above the machine and
/// safety limits far above any bench.
pub fn config(sandbox: Option<&Sandbox>) -> String {
    let mut out = String::from(
        "[safety]\nmax_removals_per_run = 100000000\nmax_removals_per_window = 100000000\n",
    );
    for kind in ProviderKind::ALL {
        let base = sandbox.map_or("http://127.0.0.1:9".to_owned(), |s| s.base_url(kind));
        let token_url = sandbox.map_or("http://127.0.0.1:9/t".to_owned(), |s| s.token_url());
        let cred = match kind {
            ProviderKind::Factory | ProviderKind::Telnyx => format!(
                "token_env = \"SANDBOX_{}_TOKEN\"",
                kind.as_str().to_uppercase()
            ),
            ProviderKind::Aerospike => format!(
                "token_url = \"{token_url}\"\nclient_id_env = \"SANDBOX_AEROSPIKE_CLIENT_ID\"\nclient_secret_env = \"SANDBOX_AEROSPIKE_CLIENT_SECRET\""
            ),
            _ => format!(
                "api_key_env = \"SANDBOX_{}_API_KEY\"",
                kind.as_str().to_uppercase()
            ),
        };
        out.push_str(&format!(
            "[providers.{kind}]\nkind = \"{kind}\"\nbase_url = \"{base}\"\n{cred}\nrate_per_second = 1000000\nburst = 1000\nmax_in_flight = 64\n\n"
        ));
    }
    out
}

/// A process's peak resident set so far (VmHWM), in KiB; None once it has exited.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = text.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    kb.trim().trim_end_matches("kB").trim().parse().ok()
}
