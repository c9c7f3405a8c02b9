//! Prometheus metrics on an explicit registry, with typed handles per lane. [`crate::admin`] serves
//! them.
//!
//! Labels are bounded sets only: the configured entry names, outcomes, reasons and status codes;
//! never a user, email, job id or credential.

use std::time::Duration;

use crate::outcome::Record;
use crate::retry::RetryReason;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Buckets for provider API calls: 5 ms to 30 s.
const REQUEST_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];
/// Buckets for time spent waiting on the limiter or a 429 pause: 1 ms to 10 min.
const WAIT_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0,
];

/// Buckets for a scheduled job's lag, from its due time to its record: 100 ms to 1 h.
const LAG_BUCKETS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];

/// Every metric of the process.
pub struct Metrics {
    pub registry: Registry,
    jobs: IntCounterVec,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    retries: IntCounterVec,
    rate_limit_wait: HistogramVec,
    in_flight: IntGaugeVec,
    paused: IntGaugeVec,
    circuit_open: IntGaugeVec,
    held: IntGaugeVec,
    rate: prometheus::GaugeVec,
    rate_source: IntGaugeVec,
    dead_lettered: IntCounterVec,
    invalid: IntCounterVec,
    intake_requests: IntCounterVec,
    intake_events: IntCounterVec,
    people_in_window: IntGaugeVec,
    quarantined_people: IntGaugeVec,
    gate_active: IntGauge,
    schedule_waiting: IntGaugeVec,
    schedule_lag: HistogramVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        &["provider"],
    )
    .expect("valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let build = gauge(
            &r,
            "offboard_build_info",
            "Build information; always 1.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Metrics {
            jobs: counter(
                &r,
                "offboard_jobs_total",
                "Jobs finished, by provider entry and outcome.",
                &["provider", "outcome"],
            ),
            requests: counter(
                &r,
                "offboard_provider_requests_total",
                "Requests sent to providers, by operation (remove, lookup) and status code (or timeout / connect).",
                &["provider", "operation", "status"],
            ),
            request_duration: histogram(
                &r,
                "offboard_provider_request_duration_seconds",
                "Provider request latency.",
                &REQUEST_BUCKETS,
            ),
            retries: counter(
                &r,
                "offboard_retries_total",
                "Retries, by reason.",
                &["provider", "reason"],
            ),
            rate_limit_wait: histogram(
                &r,
                "offboard_rate_limit_wait_seconds",
                "Time a request waited for the limiter or a 429 pause.",
                &WAIT_BUCKETS,
            ),
            in_flight: gauge(
                &r,
                "offboard_jobs_in_flight",
                "Jobs being worked on.",
                &["provider"],
            ),
            paused: gauge(
                &r,
                "offboard_lane_paused",
                "1 while a 429 pauses the lane.",
                &["provider"],
            ),
            circuit_open: gauge(
                &r,
                "offboard_lane_circuit_open",
                "1 when the lane halted on repeated 401/403.",
                &["provider"],
            ),
            held: gauge(
                &r,
                "offboard_lane_held",
                "1 while the lane holds past safety.max_removals_per_window (worker).",
                &["provider"],
            ),
            rate: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "offboard_lane_rate_per_second",
                        "The lane's pace now: the configured rate, or what it learned from the provider.",
                    ),
                    &["provider"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            rate_source: gauge(
                &r,
                "offboard_lane_rate_source",
                "1 for where the lane's pace comes from now: configured, remembered, slow_start, throttled, probing, provider.",
                &["provider", "source"],
            ),
            dead_lettered: counter(
                &r,
                "offboard_dead_lettered_total",
                "Messages dead-lettered, by reason.",
                &["provider", "reason"],
            ),
            invalid: counter(
                &r,
                "offboard_invalid_jobs_total",
                "Rows or messages that could not be jobs.",
                &["source"],
            ),
            intake_requests: counter(
                &r,
                "offboard_intake_requests_total",
                "HTTP requests to the intake, by door (okta, scim) and answer status.",
                &["door", "status"],
            ),
            intake_events: counter(
                &r,
                "offboard_intake_events_total",
                "What identity systems pushed, by door and what became of it (published, ignored, reactivated, no_person).",
                &["door", "kind"],
            ),
            people_in_window: gauge(
                &r,
                "offboard_people_in_window",
                "People who arrived through an automatic door within safety.window, by door (okta, scim, amqp); exported by the worker that is the gate.",
                &["door"],
            ),
            quarantined_people: gauge(
                &r,
                "offboard_quarantined_people",
                "People held in the open quarantine until an operator approves or rejects, by door; exported by the worker that is the gate.",
                &["door"],
            ),
            gate_active: {
                let g = IntGauge::new(
                    "offboard_gate_active",
                    "1 on the worker that is the quarantine's gate (one at a time).",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            schedule_waiting: gauge(
                &r,
                "offboard_schedule_waiting",
                "Scheduled jobs waiting for their due time in the broker, by provider entry; exported by the worker that is the scheduler.",
                &["provider"],
            ),
            schedule_lag: histogram(
                &r,
                "offboard_schedule_lag_seconds",
                "From a scheduled job's due time to its record (finished minus due).",
                &LAG_BUCKETS,
            ),
            registry: r,
        }
    }

    /// Jobs waiting per provider, as the scheduler's ledger counts them.
    pub fn schedule_waiting<'a>(&self, waiting: impl IntoIterator<Item = (&'a str, u64)>) {
        for (provider, n) in waiting {
            self.schedule_waiting
                .with_label_values(&[provider])
                .set(n as i64);
        }
    }

    /// The gate's counts; `None` when this worker is not (or no longer) the gate.
    pub fn gate(&self, view: Option<&crate::safety::quarantine::GateView>) {
        self.gate_active.set(i64::from(view.is_some()));
        for door in crate::safety::quarantine::DOORS {
            let window = view.and_then(|v| v.in_window.get(door)).copied();
            let held = view
                .and_then(|v| v.quarantine.as_ref())
                .and_then(|q| q.by_door.get(door))
                .copied();
            self.people_in_window
                .with_label_values(&[door])
                .set(window.unwrap_or(0) as i64);
            self.quarantined_people
                .with_label_values(&[door])
                .set(held.unwrap_or(0) as i64);
        }
    }

    /// One answered intake request.
    pub fn intake_request(&self, door: &str, status: u16) {
        self.intake_requests
            .with_label_values(&[door, &status.to_string()])
            .inc();
    }

    /// Events (or SCIM changes) pushed to the intake, by what became of them.
    pub fn intake_events(&self, door: &str, kind: &str, n: u64) {
        self.intake_events
            .with_label_values(&[door, kind])
            .inc_by(n);
    }

    /// The handles of one lane, resolved once so the per-job path does no label lookups.
    pub fn lane(&self, provider: &str) -> LaneMetrics {
        let retry = |r: RetryReason| self.retries.with_label_values(&[provider, r.as_str()]);
        LaneMetrics {
            provider: provider.to_owned(),
            requests: self.requests.clone(),
            duration: self.request_duration.with_label_values(&[provider]),
            retries: [
                retry(RetryReason::RateLimited),
                retry(RetryReason::Conflict),
                retry(RetryReason::ServerError),
                retry(RetryReason::Timeout),
                retry(RetryReason::Connection),
                retry(RetryReason::TokenRefresh),
            ],
            wait: self.rate_limit_wait.with_label_values(&[provider]),
            in_flight: self.in_flight.with_label_values(&[provider]),
            paused: self.paused.with_label_values(&[provider]),
            circuit_open: self.circuit_open.with_label_values(&[provider]),
            held: self.held.with_label_values(&[provider]),
            rate: self.rate.with_label_values(&[provider]),
            rate_source: self.rate_source.clone(),
        }
    }

    /// Counts a recorded outcome. `provider` must be a configured entry name, or the record is
    /// counted under `unknown` (an invalid row may name anything).
    pub fn job(&self, record: &Record, configured: impl Fn(&str) -> bool) {
        let provider = record
            .provider
            .as_deref()
            .filter(|p| configured(p))
            .unwrap_or("unknown");
        self.jobs
            .with_label_values(&[provider, record.outcome.as_str()])
            .inc();
        if let Some(due) = record.due_at {
            let finished = jiff::Timestamp::try_from(record.finished_at.0).unwrap_or(due);
            let lag = finished.duration_since(due).as_secs_f64().max(0.0);
            self.schedule_lag
                .with_label_values(&[provider])
                .observe(lag);
        }
    }

    pub fn invalid(&self, source: &'static str) {
        self.invalid.with_label_values(&[source]).inc();
    }

    pub fn dead_lettered(&self, provider: &str, reason: &str) {
        self.dead_lettered
            .with_label_values(&[provider, reason])
            .inc();
    }

    /// The text exposition of every metric. Lane gauges are brought up to date by their owner
    /// first (see [`crate::admin::render`]).
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// One lane's handles.
pub struct LaneMetrics {
    provider: String,
    requests: IntCounterVec,
    duration: Histogram,
    retries: [IntCounter; 6],
    wait: Histogram,
    pub in_flight: IntGauge,
    pub paused: IntGauge,
    pub circuit_open: IntGauge,
    pub held: IntGauge,
    pub rate: prometheus::Gauge,
    rate_source: IntGaugeVec,
}

impl LaneMetrics {
    /// Whether the lane's pace comes from `source` now.
    pub fn set_rate_source(&self, source: &str, now: bool) {
        self.rate_source
            .with_label_values(&[self.provider.as_str(), source])
            .set(now as i64);
    }

    /// One request's answer: its operation (`remove`, `lookup`), its status (`timeout` /
    /// `connect` / `error` when none came) and latency.
    pub fn request(&self, operation: &str, status: &str, took: Duration) {
        self.requests
            .with_label_values(&[self.provider.as_str(), operation, status])
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn retry(&self, reason: RetryReason) {
        self.retries[reason as usize].inc();
    }

    pub fn waited(&self, d: Duration) {
        self.wait.observe(d.as_secs_f64());
    }

    /// Requests this lane sent (every operation): the closing table's `requests`.
    pub fn requests_sent(&self) -> u64 {
        self.duration.get_sample_count()
    }

    /// Retries this lane scheduled: the closing table's `retries`.
    pub fn retries_scheduled(&self) -> u64 {
        self.retries.iter().map(|c| c.get()).sum()
    }

    /// Answers of 429 this lane got (every operation): the closing table's `429s`.
    pub fn throttled(&self) -> u64 {
        use prometheus::core::Collector;
        self.requests
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter(|m| {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value())
                };
                label("provider") == Some(self.provider.as_str()) && label("status") == Some("429")
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }
}

/// What `/readyz` reports.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Outcome, Timestamp};

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn labels_stay_bounded() {
        let m = Metrics::new();
        assert!(has(
            &m.render(),
            &format!(
                "offboard_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )
        ));
        let record = |provider: &str, outcome| Record {
            job_id: "j".into(),
            line: None,
            provider: Some(provider.into()),
            organization: None,
            user: Some("someone@example.com".into()),
            resolved_user: None,
            absence: None,
            outcome,
            reason: None,
            http_status: None,
            attempts: 0,
            provider_request_id: None,
            error: None,
            due_at: None,
            started_at: None,
            finished_at: Timestamp::now(),
        };
        let configured = |p: &str| p == "factory";
        m.job(&record("factory", Outcome::Removed), configured);
        m.job(&record("slack", Outcome::Invalid), configured);
        m.invalid("csv");
        m.dead_lettered("factory", "refused");
        let text = m.render();
        assert!(
            has(
                &text,
                "offboard_jobs_total{outcome=\"removed\",provider=\"factory\"} 1"
            ),
            "{text}"
        );
        assert!(
            has(
                &text,
                "offboard_jobs_total{outcome=\"invalid\",provider=\"unknown\"} 1"
            ),
            "{text}"
        );
        assert!(has(&text, "offboard_invalid_jobs_total{source=\"csv\"} 1"));
        assert!(has(
            &text,
            "offboard_dead_lettered_total{provider=\"factory\",reason=\"refused\"} 1"
        ));
        assert!(
            !text.contains("slack") && !text.contains("someone@"),
            "no free text in labels"
        );
    }
}
