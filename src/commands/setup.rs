//! What the commands start from: the config file, the built-in sandbox, the lanes, the audit log,
//! and the signal that stops a long-running command.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Settings;
use crate::job::ProviderKind;
use crate::lane::Lanes;
use crate::metrics::Metrics;
use crate::sandbox::{Sandbox, SandboxOptions};
use crate::sink::audit::Audit;

/// The sandbox's config, built in so `--sandbox` works from any directory.
const SANDBOX_CONFIG: &str = include_str!("../../config/sandbox.toml");

/// The config file named, or the default one.
pub(super) fn load(config: Option<&PathBuf>) -> anyhow::Result<(String, Settings)> {
    let path = match config {
        Some(p) => p.clone(),
        None => {
            let path = PathBuf::from("config/offboard.toml");
            if !path.exists() {
                anyhow::bail!(
                    "no configuration: pass --config FILE or set OFFBOARD_CONFIG (config/offboard.example.toml documents every key)"
                );
            }
            path
        }
    };
    Ok((path.display().to_string(), Settings::load(&path)?))
}

/// Resolves once SIGTERM or SIGINT arrives.
pub(super) async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// What a command that talks to providers starts from: the settings, the lanes, their metrics,
/// and the embedded sandbox when asked for (every entry pointed at it, its credentials in place
/// of the environment's).
pub(super) struct Ready {
    pub settings: Settings,
    pub lanes: Lanes,
    pub metrics: Arc<Metrics>,
    pub sandbox: Option<Sandbox>,
}

/// Loads the config (`config`, else the built-in sandbox one with `sandbox`, else the default
/// path), starts the sandbox if asked (saying `note`), resolves credentials, builds the lanes.
pub(super) async fn ready(
    config: Option<&PathBuf>,
    sandbox: bool,
    note: &str,
) -> anyhow::Result<Ready> {
    let (config_name, mut settings) = match (config, sandbox) {
        (Some(path), _) => (path.display().to_string(), Settings::load(path)?),
        (None, true) => (
            "sandbox.toml (built in)".to_owned(),
            Settings::from_toml(SANDBOX_CONFIG, "sandbox.toml (built in)")?,
        ),
        (None, false) => {
            let path = PathBuf::from("config/offboard.toml");
            if !path.exists() {
                anyhow::bail!(
                    "no configuration: pass --config FILE or set OFFBOARD_CONFIG (config/offboard.example.toml documents every key), or try --sandbox"
                );
            }
            (path.display().to_string(), Settings::load(&path)?)
        }
    };
    let sandbox = if sandbox {
        let sandbox = Sandbox::start(SandboxOptions::demo())
            .await
            .context("starting the sandbox")?;
        for entry in settings.providers.values_mut() {
            entry.base_url = Some(sandbox.base_url(entry.kind));
            if entry.kind == ProviderKind::Aerospike {
                entry.token_url = Some(sandbox.token_url());
            }
        }
        crate::console::say(format_args!("{note}"));
        Some(sandbox)
    } else {
        None
    };
    let sandbox_env: HashMap<&str, String> = sandbox
        .as_ref()
        .map(|s| s.env().into_iter().collect())
        .unwrap_or_default();
    let env = |name: &str| match &sandbox {
        Some(_) => sandbox_env.get(name).cloned(),
        None => std::env::var(name).ok(),
    };
    let resolved = settings.resolve(&config_name, &env)?;
    let metrics = Arc::new(Metrics::new());
    let lanes = Lanes::build(&settings, &resolved, &metrics)?;
    Ok(Ready {
        settings,
        lanes,
        metrics,
        sandbox,
    })
}

/// Opens the audit log and attaches it to every lane.
/// Opens the audit log: every lane tells it of each request it sends, and the outcome sink of
/// each job's end.
pub(super) fn open_audit(path: &std::path::Path, lanes: &Lanes) -> anyhow::Result<Audit> {
    let (audit, _thread) =
        Audit::open(path).with_context(|| format!("opening the audit log {}", path.display()))?;
    for lane in &lanes.lanes {
        lane.log_requests(Arc::new(audit.clone()));
    }
    Ok(audit)
}
