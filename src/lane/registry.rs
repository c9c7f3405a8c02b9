//! The lanes of a run or a worker: one per provider entry of the config, built with what each
//! learned before (the pacing state file) and told what they learned when they stop.

use std::sync::Arc;

use crate::config::{Resolved, Settings};
use crate::job::{Directory, LaneId};
use crate::metrics::Metrics;
use crate::outcome::Observer;

use super::{Lane, LaneSettings};

/// An entry whose provider cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("provider entry `{name}`: {reason}")]
pub struct BuildError {
    pub name: String,
    pub reason: String,
}

/// The lanes of every configured entry, and the directory validation looks names up in.
#[derive(Clone)]
pub struct Lanes {
    pub directory: Directory,
    pub lanes: Vec<Arc<Lane>>,
}

impl Lanes {
    /// A sink observer that counts each record in `offboard_jobs_total`.
    pub fn job_counter(&self, metrics: Arc<Metrics>) -> Observer {
        let directory = self.directory.clone();
        Arc::new(move |r| metrics.job(r, |p| directory.lookup(p).is_some()))
    }
}

impl Lanes {
    pub fn build(
        settings: &Settings,
        resolved: &Resolved,
        metrics: &Metrics,
    ) -> Result<Lanes, BuildError> {
        let directory = settings.directory();
        let protected = Arc::new(
            crate::safety::Protected::new(&settings.safety.protected).expect("checked at load"),
        );
        let mut lanes = Vec::with_capacity(settings.providers.len());
        // A few hundred bytes, once at start.
        let remembered = super::pace_file::Remembered::load(settings.pacing.state_file.as_deref());
        for (i, (name, entry)) in settings.providers.iter().enumerate() {
            let provider_err = |reason| BuildError {
                name: name.clone(),
                reason,
            };
            let credential = resolved
                .credentials
                .get(name)
                .ok_or_else(|| provider_err("no credential was resolved".into()))?;
            let provider =
                crate::providers::build(&entry.provider_spec(credential.clone(), &resolved.http))
                    .map_err(provider_err)?;
            let (id, shared_name, _) = directory.lookup(name).expect("built from the same entries");
            debug_assert_eq!(id, LaneId(i));
            lanes.push(Arc::new(Lane::new(
                id,
                shared_name.clone(),
                provider,
                LaneSettings {
                    pace: match entry.rate_per_second {
                        crate::config::Rate::Fixed(r) => super::adapt::Start::Fixed(r),
                        crate::config::Rate::Auto => super::adapt::Start::Auto {
                            remembered: remembered.rate(name, entry),
                        },
                    },
                    burst: entry.burst,
                    max_in_flight: entry.max_in_flight,
                    circuit_after: entry.circuit_after,
                    policy: entry.policy(),
                    protected: protected.clone(),
                },
                metrics.lane(name),
            )));
        }
        Ok(Lanes { directory, lanes })
    }

    /// Writes what every `"auto"` lane learned to the pacing state file (on a blocking thread),
    /// keeping what other entries learned before.
    pub async fn remember(&self, settings: &Settings) {
        let Some(path) = settings
            .pacing
            .state_file
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
        else {
            return;
        };
        let mut learned = Vec::new();
        for lane in &self.lanes {
            let Some(entry) = settings.providers.get(&*lane.name) else {
                continue;
            };
            if entry.rate_per_second != crate::config::Rate::Auto {
                continue;
            }
            let (rate, source) = lane.pace();
            // Only what the provider taught: a slow start that met no limit, or a remembered
            // rate never tested, says nothing new.
            use super::adapt::Source;
            if !matches!(
                source,
                Source::Throttled | Source::Probing | Source::Provider
            ) {
                continue;
            }
            learned.push((
                lane.name.to_string(),
                super::pace_file::Learned {
                    kind: entry.kind.to_string(),
                    base_url: entry.base_url(),
                    rate,
                    source: source.as_str().into(),
                    at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                },
            ));
        }
        if learned.is_empty() {
            return;
        }
        let saved = tokio::task::spawn_blocking(move || {
            let mut r = super::pace_file::Remembered::load(Some(&path));
            r.entries.extend(learned);
            r.save(&path).map_err(|e| (path, e))
        })
        .await
        .expect("saving does not panic");
        if let Err((path, e)) = saved {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the pacing state file");
        }
    }
}
