//! One outcome path. What happened to a job goes to the audit log first (on disk before anything
//! else), then to the report, the metrics and the live tally (the report sink and its observers),
//! in that order; only then may a door acknowledge it. Lanes and doors hand records here and know
//! nothing of the files.

pub mod audit;
pub mod chain;
pub mod report;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use self::audit::Audit;
use crate::doors::Ack;
use crate::job::Job;
use crate::outcome::Observer;
use crate::outcome::{Live, Record};
use report::SettledIndex;

/// Where every outcome goes. Cheap to clone: clones share the files and the tally.
#[derive(Clone)]
pub struct Outcomes {
    report: report::Sink,
    audit: Option<Audit>,
    /// Set once an outcome could not be made durable in the audit log.
    audit_failed: Arc<AtomicBool>,
    /// Job ids settled in the report, for a door that may deliver a job again (the worker).
    settled: Option<Arc<Mutex<SettledIndex>>>,
    /// Told of each record once it is on disk (the worker's outcomes exchange).
    after_disk: Option<Observer>,
}

impl Outcomes {
    /// The report's sink, and the audit log when there is one.
    pub fn new(report: report::Sink, audit: Option<Audit>) -> Outcomes {
        Outcomes {
            report,
            audit,
            audit_failed: Default::default(),
            settled: None,
            after_disk: None,
        }
    }

    /// The same, telling `observer` of each record once it is on disk (records of a door that
    /// waits for the disk: the worker's).
    pub fn then(mut self, observer: Observer) -> Outcomes {
        self.after_disk = Some(observer);
        self
    }

    /// The same, keeping `index` told of every outcome it settles.
    pub fn with_index(mut self, index: SettledIndex) -> Outcomes {
        self.settled = Some(Arc::new(Mutex::new(index)));
        self
    }

    /// Whether `job_id`'s outcome is settled in the report. `look_again` (a redelivery, which may
    /// be a job another process recorded but could not acknowledge) reads what the report gained
    /// since, on a blocking thread, before saying no.
    pub async fn is_settled(&self, job_id: &str, look_again: bool) -> bool {
        let Some(index) = &self.settled else {
            return false;
        };
        if index.lock().expect("index lock").contains(job_id) {
            return true;
        }
        if !look_again {
            return false;
        }
        let index = index.clone();
        let id = job_id.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut index = index.lock().expect("index lock");
            if let Err(e) = index.catch_up() {
                tracing::warn!(error = %e, "cannot read the report's new lines");
            }
            index.contains(&id)
        })
        .await
        .expect("catching up does not panic")
    }

    /// Records `rec`, then tells the door through `ack` (once `rec` is on disk when the door
    /// waits for that): the one way an outcome leaves a lane or a door.
    pub async fn settle<A: Ack>(&self, rec: Record, job: Option<&Job>, ack: A) -> A::Settled {
        if !A::WAITS_FOR_DISK {
            let copy = rec.clone();
            self.record(rec, job).await;
            return ack.settled(&copy).await;
        }
        // A failed job sits in the dead-letter queue: replayed after a fix, it must run again.
        let index_it = rec.fate().remembered(rec.outcome);
        let copy = rec.clone();
        match self.record_confirmed(rec, job).await {
            Ok(()) => {
                if let (true, Some(index)) = (index_it, &self.settled) {
                    index
                        .lock()
                        .expect("index lock")
                        .insert(copy.job_id.clone());
                }
                if let Some(after) = &self.after_disk {
                    after(&copy);
                }
                ack.settled(&copy).await
            }
            Err(e) => {
                tracing::error!(error = %e, job_id = %copy.job_id, "cannot record an outcome: the door keeps its input");
                ack.unrecorded().await
            }
        }
    }

    /// Records an operator's decision in the audit log, on disk before it takes effect. False
    /// when it could not be written.
    pub async fn decision(&self, d: &crate::sink::audit::Decision) -> bool {
        let Some(audit) = &self.audit else {
            return true;
        };
        match audit.decision(d).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, quarantine = d.quarantine, "cannot write the audit log: the decision is not taken");
                false
            }
        }
    }

    /// The audit line of a job given up without a report line (its delivery went to another
    /// process, which reports it): the requests it sent keep their final entry. False when it
    /// could not be written.
    pub async fn audit_only(&self, r: &Record, job: &Job) -> bool {
        self.audit(r, Some(job)).await
    }

    /// The same, telling `observer` (the metrics) of every record.
    pub fn observed_by(mut self, observer: Observer) -> Outcomes {
        self.report = self.report.observed_by(observer);
        self
    }

    pub fn live(&self) -> &Arc<Live> {
        self.report.live()
    }

    /// Whether an outcome could not be recorded: no further removal should be sent.
    pub fn is_broken(&self) -> bool {
        self.report.is_broken() || self.audit_failed.load(Ordering::Relaxed)
    }

    /// The audit line of `r`, on disk. False when it could not be written (said once, loudly).
    async fn audit(&self, r: &Record, job: Option<&Job>) -> bool {
        let Some(audit) = &self.audit else {
            return true;
        };
        match audit.outcome(r, job).await {
            Ok(()) => true,
            Err(e) => {
                if !self.audit_failed.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, job_id = %r.job_id, "cannot write the audit log: no further removal is sent");
                }
                false
            }
        }
    }

    /// Records a job's outcome: the audit line on disk, then the report line queued (the CSV
    /// run, which acknowledges nothing). False when the audit line could not be written; the
    /// report line is written all the same.
    pub async fn record(&self, r: Record, job: Option<&Job>) -> bool {
        let audited = self.audit(&r, job).await;
        self.report.record(r).await;
        audited
    }

    /// Records a job's outcome and returns once both lines are on disk: what a door waits for
    /// before it acknowledges (the worker).
    pub async fn record_confirmed(&self, r: Record, job: Option<&Job>) -> io::Result<()> {
        if !self.audit(&r, job).await {
            return Err(io::Error::other("the audit log could not be written"));
        }
        self.report.record_confirmed(r).await
    }

    /// From a blocking thread (the CSV scan): a row that could not be a job, so nothing was sent
    /// for it. Its audit line is not waited for (no door acknowledges it); the next sync carries it.
    pub fn record_blocking(&self, r: Record) {
        if let Some(audit) = &self.audit {
            audit.outcome_blocking(&r);
        }
        self.report.record_blocking(r);
    }
}
