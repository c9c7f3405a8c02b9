//! A private Prometheus server (Debian's `prometheus` package) on loopback, for tests that check
//! what the worker's `/metrics` look like once scraped and queried, plus a test of the harness.
//!
//! `PROMETHEUS_BIN` names the binary; default `prometheus` on the PATH (`.ci/test.sh` installs it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Prometheus scraping one target every second as job `offboard`; killed on drop.
pub struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    http: reqwest::Client,
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

fn binary() -> PathBuf {
    std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("prometheus"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Prometheus {
    /// Starts prometheus on a free 127.0.0.1 port, scraping `target` ("127.0.0.1:PORT") every
    /// second (job "offboard"), with a temporary storage directory; waits until `/-/ready`
    /// answers (30 s at most; panics with the tail of its log).
    pub async fn start(target: &str) -> Prometheus {
        // The port is free when picked but could be taken before prometheus binds it: try again
        // with another when prometheus exits early for that reason.
        let mut last_failure = String::new();
        for _ in 0..3 {
            let mut prom = Self::spawn(target, free_port());
            match prom.wait_ready().await {
                Ok(()) => return prom,
                Err(failure) => {
                    let exited = prom.child.try_wait().ok().flatten().is_some();
                    let in_use = prom.log_tail().contains("address already in use");
                    last_failure = failure;
                    if !(exited && in_use) {
                        break;
                    }
                }
            }
        }
        panic!("{last_failure}");
    }

    fn spawn(target: &str, port: u16) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: offboard\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}`: {e}. Install Debian's prometheus package \
                     (apt-get install -y prometheus, as .ci/test.sh does) or set PROMETHEUS_BIN",
                    binary().display()
                )
            });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        Prometheus {
            child,
            dir,
            port,
            http,
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/-/ready", self.base());
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "prometheus exited before it was ready ({status}); its log:\n{}",
                    self.log_tail()
                ));
            }
            let answer = self.http.get(&url).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "prometheus not ready on 127.0.0.1:{} within {READY_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of the server's log (stdout and stderr).
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Instant query through `/api/v1/query`: each series' labels (`__name__` included when the
    /// expression keeps it) and value. Panics on an error answer.
    pub async fn query(&self, expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let answer: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/query", self.base()))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("query {expr:?}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("query {expr:?}: answer is not JSON: {e}"));
        assert_eq!(
            answer["status"], "success",
            "query {expr:?} failed: {answer}"
        );
        let value = |v: &serde_json::Value| -> f64 {
            let s = v[1]
                .as_str()
                .unwrap_or_else(|| panic!("query {expr:?}: no value in {v}"));
            match s {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                s => s
                    .parse()
                    .unwrap_or_else(|e| panic!("query {expr:?}: value {s:?}: {e}")),
            }
        };
        let data = &answer["data"];
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .expect("result array")
                .iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .expect("metric labels")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect();
                    (labels, value(&s["value"]))
                })
                .collect(),
            Some("scalar") => vec![(BTreeMap::new(), value(&data["result"]))],
            other => panic!("query {expr:?}: unexpected result type {other:?}: {answer}"),
        }
    }

    /// Waits until `up{job="offboard"}` is 1, i.e. the target was scraped (30 s at most).
    pub async fn wait_scraped(&self) {
        let deadline = Instant::now() + SCRAPE_TIMEOUT;
        loop {
            let up = self.query("up{job=\"offboard\"}").await;
            if up.iter().any(|(_, v)| *v == 1.0) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "target not scraped within {SCRAPE_TIMEOUT:?} (up = {up:?}); prometheus log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn prometheus_scrapes_a_loopback_target_and_answers_queries() {
    use axum::routing::get;

    let app = axum::Router::new().route(
        "/metrics",
        get(|| async {
            (
                [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                "# HELP offboard_build_info Build information.\n\
                 # TYPE offboard_build_info gauge\n\
                 offboard_build_info{version=\"x\"} 1\n",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let prom = Prometheus::start(&target).await;
    prom.wait_scraped().await;
    let series = prom.query("offboard_build_info").await;
    assert_eq!(series.len(), 1, "{series:?}");
    let (labels, value) = &series[0];
    assert_eq!(*value, 1.0);
    assert_eq!(labels.get("version").map(String::as_str), Some("x"));
    assert_eq!(
        labels.get("job").map(String::as_str),
        Some("offboard"),
        "{labels:?}"
    );
    assert_eq!(labels.get("instance"), Some(&target), "{labels:?}");

    drop(prom);
    server.abort();
}
