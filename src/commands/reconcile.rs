//! `offboard reconcile`: every member of every configured organization, read whole and sorted
//! against a roster of the people who should keep access; the orphans written as a CSV `run`
//! takes. Reconcile never removes anyone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::setup::{Ready, ready};
use crate::job::ProviderKind;
use crate::reconcile::{Class, Counts, Roster};

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The people who should keep access: a CSV with `email` (and optionally `provider`,
    /// `organization`, `user` for a member known by id at one provider), or `scim`: the active
    /// users of the intake's SCIM store (`intake.scim.database`), the identity system's own view.
    #[arg(long)]
    pub roster: PathBuf,
    #[arg(long, env = "OFFBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Read the five providers simulated on loopback.
    #[arg(long)]
    pub sandbox: bool,
    /// The reconcile report, one JSON line per member [default: beside the roster,
    /// <roster stem>.reconcile-<time>.jsonl].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The orphans, in the CSV format `offboard run` takes [default: beside the report,
    /// <report stem>.orphans.csv].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the orphans file even where the roster looks wrong: N must be the exact number of
    /// orphans found.
    #[arg(long, value_name = "N")]
    pub allow_orphans: Option<u64>,
}

/// One member's line in the reconcile report.
#[derive(serde::Serialize)]
struct Line<'a> {
    class: Class,
    provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization: Option<&'a str>,
    user: &'a str,
    email: &'a str,
    /// When the whole list this member is on was read, and in how many requests.
    list_read_at: &'a str,
    list_requests: u32,
}

pub(super) async fn command(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let Ready {
        settings,
        lanes,
        sandbox,
        ..
    } = ready(
        args.config.as_ref(),
        args.sandbox,
        "Sandbox: the five providers simulated on 127.0.0.1; nothing leaves this machine.",
    )
    .await?;
    let roster = if args.roster == Path::new("scim") {
        scim_roster(&settings).await?
    } else {
        let path = args.roster.clone();
        tokio::task::spawn_blocking(move || Roster::read(&path))
            .await
            .expect("no panic")?
    };
    let protected = crate::safety::Protected::new(&settings.safety.protected)
        .map_err(|e| anyhow::anyhow!("safety.protected: {e}"))?;
    let report = args.report.clone().unwrap_or_else(|| {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let stem = args
            .roster
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("roster");
        args.roster
            .with_file_name(format!("{stem}.reconcile-{stamp}.jsonl"))
    });
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| report.with_extension("orphans.csv"));
    let mut file = create_private(&report)?;

    let mut doubts: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut orphans: Vec<(String, String, Option<String>)> = Vec::new();
    let mut table: Vec<(String, Option<String>, u64, Counts)> = Vec::new();
    for lane in &lanes.lanes {
        let entry = settings.providers.get(&*lane.name);
        let organization = entry.and_then(|e| e.organization.clone());
        if matches!(lane.kind(), ProviderKind::Aitronos | ProviderKind::Cognee)
            && organization.is_none()
        {
            failures.push(format!(
                "{}: set providers.{}.organization to read its members",
                lane.name, lane.name
            ));
            continue;
        }
        let at = jiff::Timestamp::now().to_string();
        let (members, requests) = match lane.read_members(organization.as_deref()).await {
            Ok(read) => read,
            Err(why) => {
                failures.push(format!(
                    "{}: the member list could not be read: {why}",
                    lane.name
                ));
                continue;
            }
        };
        let mut counts = Counts::default();
        let mut lane_orphans = Vec::new();
        for m in members.iter() {
            let class = roster.classify(&protected, &lane.name, organization.as_deref(), m);
            counts.add(class);
            serde_json::to_writer(
                &mut file,
                &Line {
                    class,
                    provider: &lane.name,
                    organization: organization.as_deref(),
                    user: &m.id,
                    email: &m.email,
                    list_read_at: &at,
                    list_requests: requests,
                },
            )?;
            file.write_all(b"\n")?;
            if class == Class::Orphan {
                // The user as `run` takes it: the provider's own id, or the email at Factory.
                let user = match lane.kind() {
                    ProviderKind::Factory => m.email.clone(),
                    _ => m.id.clone(),
                };
                lane_orphans.push((lane.name.to_string(), user, organization.clone()));
            }
        }
        let where_ = match &organization {
            Some(o) => format!("{} {o}", lane.name),
            None => lane.name.to_string(),
        };
        if roster.is_empty() {
            doubts.push(format!("{where_}: the roster is empty"));
        } else if let Some(why) = counts.doubt(settings.reconcile.min_match) {
            doubts.push(format!("{where_}: {why}"));
        }
        orphans.extend(lane_orphans);
        table.push((
            lane.name.to_string(),
            organization,
            members.len() as u64,
            counts,
        ));
    }
    file.flush()?;
    file.get_ref().sync_all()?;
    drop(file);

    println!(
        "{:<16} {:<38} {:>8} {:>8} {:>8} {:>9}",
        "provider", "organization", "members", "kept", "orphans", "protected"
    );
    for (name, org, n, c) in &table {
        println!(
            "{name:<16} {:<38} {n:>8} {:>8} {:>8} {:>9}",
            org.as_deref().unwrap_or("(the key's)"),
            c.kept,
            c.orphan,
            c.protected
        );
    }
    println!("Report: {}", report.display());
    for f in &failures {
        crate::console::error(format_args!("{f}"));
    }
    let found = orphans.len() as u64;
    let code = if !doubts.is_empty() && args.allow_orphans != Some(found) {
        for d in &doubts {
            crate::console::error(format_args!("{d}"));
        }
        crate::console::error(format_args!(
            "the roster looks wrong, so no orphans file is written ({found} orphans found): check it, or pass --allow-orphans {found} to write it anyway"
        ));
        crate::safety::EXIT_REFUSED
    } else {
        if let Some(n) = args.allow_orphans.filter(|n| *n != found) {
            crate::console::error(format_args!(
                "--allow-orphans {n} does not match the {found} orphans found: no orphans file is written"
            ));
            return Ok(ExitCode::from(crate::safety::EXIT_REFUSED));
        }
        write_orphans(&out, &orphans)?;
        println!(
            "Orphans: {found}, in {} (the CSV `offboard run` takes: check it with --dry-run; reconcile removed nobody)",
            out.display()
        );
        if failures.is_empty() {
            0
        } else {
            super::EXIT_INCOMPLETE
        }
    };
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    Ok(ExitCode::from(code))
}

/// The SCIM store's active users, by their email (else a userName that is one).
async fn scim_roster(settings: &crate::config::Settings) -> anyhow::Result<Roster> {
    let Some(scim) = settings.intake.scim.as_ref() else {
        anyhow::bail!(
            "--roster scim: the config has no [intake.scim] (its database is the roster)"
        );
    };
    if !scim.database.exists() {
        anyhow::bail!(
            "--roster scim: no SCIM store at {} (intake.scim.database)",
            scim.database.display()
        );
    }
    let store = crate::doors::intake::scim::store::Store::open(scim.database.clone()).await?;
    let (_, active) = store.page(|u| u.active, 0, usize::MAX).await?;
    Ok(Roster::of_emails(active.iter().filter_map(|u| {
        crate::doors::intake::scim::person(&u.attrs)
    })))
}

/// A new file only its owner may read (it names people).
fn create_private(path: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(std::io::BufWriter::new(f))
}

fn write_orphans(path: &Path, orphans: &[(String, String, Option<String>)]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(create_private(path)?);
    w.write_record(["provider", "user", "organization", "reason"])?;
    for (provider, user, org) in orphans {
        w.write_record([
            provider.as_str(),
            user,
            org.as_deref().unwrap_or(""),
            "reconcile: not on the roster",
        ])?;
    }
    w.flush()?;
    Ok(())
}
