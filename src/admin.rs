//! The admin HTTP server: `/metrics`, `/healthz` and `/readyz`. It sits above the lanes and the
//! metrics registry (it asks the lanes for their state and brings their gauges up to date before a
//! scrape), so neither of them knows the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::lane::Lane;
use crate::metrics::Metrics;

/// The text exposition of every metric, with the lanes' gauges brought up to date first.
pub fn render(metrics: &Metrics, lanes: &[Arc<Lane>]) -> String {
    for lane in lanes {
        lane.refresh_gauges();
    }
    metrics.render()
}

#[derive(Default)]
pub struct Health {
    /// Whether readiness needs a broker (the worker) and whether it is connected with its topology.
    pub needs_broker: bool,
    pub broker_ready: AtomicBool,
}

struct Served {
    metrics: Arc<Metrics>,
    lanes: Vec<Arc<Lane>>,
    health: Arc<Health>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `stop`. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    lanes: Vec<Arc<Lane>>,
    health: Arc<Health>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let state = Arc::new(Served {
        metrics,
        lanes,
        health,
    });
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Arc<Served>>| async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    render(&s.metrics, &s.lanes),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    Ok(bound)
}

/// 200 when the broker is connected (if one is needed) and no lane halted; 503 otherwise. The
/// body says which.
async fn ready(State(s): State<Arc<Served>>) -> (StatusCode, String) {
    let mut body = String::new();
    let mut ok = true;
    if s.health.needs_broker {
        if s.health.broker_ready.load(Ordering::Relaxed) {
            body.push_str("broker: connected, topology declared\n");
        } else {
            ok = false;
            body.push_str("broker: not connected\n");
        }
    }
    for lane in &s.lanes {
        if let Some(reason) = lane.halted() {
            ok = false;
            body.push_str(&format!("lane {}: halted: {reason}\n", lane.name));
        }
        if let Some(h) = lane.hold().filter(|h| h.is_held()) {
            ok = false;
            let s = h.state(&lane.name);
            body.push_str(&format!(
                "lane {}: held after {} removals within {} s: release with `offboard hold release {}`\n",
                lane.name, s.removals_in_window, s.window_s, lane.name
            ));
        }
    }
    if ok {
        body.push_str("ready\n");
    }
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::job::{LaneId, ProviderKind};
    use crate::lane::LaneSettings;
    use crate::providers::{Auth, Provider, adapter, client};
    use crate::retry::{OnConflict, Policy};

    fn lane(m: &Metrics) -> Arc<Lane> {
        let provider = Provider::new(
            adapter(ProviderKind::Factory, "http://127.0.0.1:9"),
            Auth::bearer(&"t".to_owned().into()).unwrap(),
            client(Duration::from_secs(1)).unwrap(),
        );
        let policy = Policy {
            max_attempts: 1,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            max_elapsed: Duration::from_secs(1),
            on_conflict: OnConflict::Fail,
            max_conflict_retries: 0,
            max_rate_limit_wait: Duration::from_secs(1),
        };
        let s = LaneSettings {
            pace: crate::lane::adapt::Start::Fixed(1.0),
            burst: 1,
            max_in_flight: 1,
            circuit_after: 1,
            policy,
            protected: Default::default(),
        };
        Arc::new(Lane::new(
            LaneId(0),
            "factory".into(),
            provider,
            s,
            m.lane("factory"),
        ))
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn gauges_follow_the_lane() {
        let m = Metrics::new();
        let l = lane(&m);
        let text = render(&m, std::slice::from_ref(&l));
        assert!(
            has(&text, "offboard_lane_paused{provider=\"factory\"} 0"),
            "{text}"
        );
        l.pause_for(Duration::from_secs(60));
        let text = render(&m, std::slice::from_ref(&l));
        assert!(
            has(&text, "offboard_lane_paused{provider=\"factory\"} 1"),
            "{text}"
        );
        assert!(has(
            &text,
            "offboard_lane_circuit_open{provider=\"factory\"} 0"
        ));
    }
}
