//! The deployment files (Dockerfile, docker-compose.yml, config/docker.toml, Prometheus and
//! Grafana configs) checked against each other and against the crate, without Docker or network:
//! every mounted file exists, ports and host names agree, every metric queried exists, every
//! variable compose uses is in .env.example, and promtool accepts the Prometheus files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use offboard::config::Settings;
use serde_yaml_ng::Value;

/// The metric families the binary exposes (histograms without their `_bucket`/`_sum`/`_count`).
const METRICS: &[&str] = &[
    "offboard_jobs_total",
    "offboard_provider_requests_total",
    "offboard_provider_request_duration_seconds",
    "offboard_retries_total",
    "offboard_rate_limit_wait_seconds",
    "offboard_jobs_in_flight",
    "offboard_lane_paused",
    "offboard_lane_circuit_open",
    "offboard_lane_held",
    "offboard_dead_lettered_total",
    "offboard_invalid_jobs_total",
    "offboard_build_info",
    "offboard_people_in_window",
    "offboard_quarantined_people",
    "offboard_gate_active",
];
const HISTOGRAMS: &[&str] = &[
    "offboard_provider_request_duration_seconds",
    "offboard_rate_limit_wait_seconds",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: not YAML: {e}"))
}

fn compose() -> Value {
    yaml("docker-compose.yml")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let s = &compose["services"][name];
    assert!(s.is_mapping(), "docker-compose.yml: no service `{name}`");
    s
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A service's bind mounts as (host path relative to the repo, container path); named volumes
/// left out.
fn bind_mounts(svc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in svc["volumes"].as_sequence().into_iter().flatten() {
        let (source, target) = match v {
            Value::String(s) => {
                let mut parts = s.split(':');
                let source = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().unwrap_or_default().to_owned();
                (source, target)
            }
            other => (
                other["source"].as_str().unwrap_or_default().to_owned(),
                other["target"].as_str().unwrap_or_default().to_owned(),
            ),
        };
        if source.starts_with("./") || source.starts_with('/') || source.starts_with("..") {
            out.push((source, target));
        }
    }
    out
}

/// A service's published ports as (host, container).
fn ports(svc: &Value) -> Vec<(u16, u16)> {
    strings(&svc["ports"])
        .iter()
        .map(|p| {
            let p = p.split('/').next().unwrap_or(p);
            let parts: Vec<&str> = p.rsplitn(3, ':').collect();
            let container: u16 = parts[0]
                .parse()
                .unwrap_or_else(|e| panic!("port {p:?}: {e}"));
            let host = parts.get(1).map_or(container, |h| {
                h.parse().unwrap_or_else(|e| panic!("port {p:?}: {e}"))
            });
            (host, container)
        })
        .collect()
}

fn docker_settings() -> Settings {
    Settings::load(&root().join("config/docker.toml"))
        .unwrap_or_else(|e| panic!("config/docker.toml does not load: {e}"))
}

/// `host:port` split, for "worker:9464" and "http://prometheus:9090".
fn host_port(s: &str) -> (String, u16) {
    let s = s.split("://").last().unwrap_or(s).trim_end_matches('/');
    let (host, port) = s
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{s:?}: no port"));
    (
        host.to_owned(),
        port.parse().unwrap_or_else(|e| panic!("{s:?}: {e}")),
    )
}

/// Every `offboard_*` name in a PromQL expression, histogram suffixes removed.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("offboard_") {
        let preceded = rest[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !preceded {
            let mut name = &tail[..end];
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(suffix).filter(|b| HISTOGRAMS.contains(b)) {
                    name = base;
                }
            }
            out.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    out
}

#[test]
fn compose_mounts_and_builds_only_files_that_exist() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    for name in ["rabbitmq", "worker", "prometheus", "grafana"] {
        service(&compose, name);
    }
    for (name, svc) in services {
        let name = name.as_str().unwrap_or_default();
        for (source, target) in bind_mounts(svc) {
            assert!(
                source.starts_with("./"),
                "{name}: mount {source:?} is outside the repository"
            );
            assert!(
                root().join(&source).exists(),
                "{name}: mounts {source} at {target}, which is not in the repository"
            );
        }
        if let Some(build) = svc.get("build") {
            let (context, dockerfile) = match build {
                Value::String(c) => (c.clone(), "Dockerfile".to_owned()),
                b => (
                    b["context"].as_str().unwrap_or(".").to_owned(),
                    b["dockerfile"].as_str().unwrap_or("Dockerfile").to_owned(),
                ),
            };
            let context = root().join(context);
            assert!(
                context.is_dir(),
                "{name}: build context {context:?} missing"
            );
            assert!(
                context.join(&dockerfile).is_file(),
                "{name}: {dockerfile} missing"
            );
        }
        for env_file in strings(&svc["env_file"])
            .into_iter()
            .chain(svc["env_file"].as_str().map(str::to_owned))
        {
            // .env itself is never committed: its template is.
            assert!(
                root().join(format!("{env_file}.example")).is_file(),
                "{name}: env_file {env_file} has no committed {env_file}.example"
            );
        }
    }
}

#[test]
fn worker_config_mount_port_report_and_broker_agree() {
    let compose = compose();
    let worker = service(&compose, "worker");
    let settings = docker_settings();
    let listen = settings.metrics.listen;
    assert!(
        listen.ip().is_unspecified(),
        "config/docker.toml: [metrics] listen {listen} is unreachable from other containers"
    );

    // The config is mounted where the Dockerfile's CMD and compose's command look for it.
    let mounts = bind_mounts(worker);
    let config_target = mounts
        .iter()
        .find(|(s, _)| s == "./config/docker.toml")
        .map(|(_, t)| t.clone())
        .expect("worker mounts ./config/docker.toml");
    assert_eq!(config_target, "/etc/offboard/offboard.toml");
    let command = strings(&worker["command"]);
    assert!(
        command.is_empty()
            || command
                .windows(2)
                .any(|w| w == ["--config", config_target.as_str()]),
        "worker command {command:?} does not use {config_target}"
    );
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains(&format!(r#"CMD ["worker", "--config", "{config_target}"]"#)),
        "Dockerfile's CMD does not read {config_target}"
    );
    assert!(dockerfile.contains(r#"ENTRYPOINT ["offboard"]"#));
    assert!(
        dockerfile.contains(&format!("EXPOSE {}", listen.port())),
        "Dockerfile does not expose {}",
        listen.port()
    );

    // The metrics port is published as itself.
    assert!(
        ports(worker).contains(&(listen.port(), listen.port())),
        "worker publishes {:?}, config listens on {listen}",
        ports(worker)
    );

    // The report is on a named volume, so it outlives the container.
    let report_dir = settings
        .worker
        .report
        .parent()
        .expect("report dir")
        .to_owned();
    let volumes: Vec<String> = strings(&worker["volumes"]);
    let named = volumes.iter().find_map(|v| {
        let (src, rest) = v.split_once(':')?;
        let target = rest.split(':').next()?;
        (Path::new(target) == report_dir && !src.starts_with('.') && !src.starts_with('/'))
            .then(|| src.to_owned())
    });
    let named = named.unwrap_or_else(|| {
        panic!("no named volume at the report's directory {report_dir:?}: {volumes:?}")
    });
    assert!(
        compose["volumes"].get(named.as_str()).is_some(),
        "volume {named} is not declared"
    );
    assert!(
        dockerfile.contains(&format!("chown offboard:offboard {}", report_dir.display())),
        "the image's user cannot write {report_dir:?}"
    );

    // The broker: from the environment, at the rabbitmq service, which is healthy first.
    assert!(
        settings.amqp.url.is_none(),
        "config/docker.toml holds a broker URL; compose sets OFFBOARD_AMQP_URL"
    );
    let url = worker["environment"]["OFFBOARD_AMQP_URL"]
        .as_str()
        .expect("worker sets OFFBOARD_AMQP_URL");
    assert!(
        url.starts_with("amqp://") && url.ends_with("@rabbitmq:5672/%2f"),
        "{url}"
    );
    assert_eq!(
        worker["depends_on"]["rabbitmq"]["condition"].as_str(),
        Some("service_healthy")
    );
    let rabbit = service(&compose, "rabbitmq");
    assert!(
        strings(&rabbit["healthcheck"]["test"]).contains(&"rabbitmq-diagnostics".to_owned()),
        "rabbitmq has no rabbitmq-diagnostics healthcheck"
    );
    assert!(ports(rabbit).contains(&(5672, 5672)));

    // SIGTERM's drain fits in compose's stop grace period.
    let grace = humantime::parse_duration(
        worker["stop_grace_period"]
            .as_str()
            .expect("worker stop_grace_period"),
    )
    .expect("stop_grace_period");
    assert!(
        grace > Duration::from_secs(settings.worker.grace_period_s),
        "stop_grace_period {grace:?} is not longer than worker.grace_period_s {}",
        settings.worker.grace_period_s
    );
}

#[test]
fn docker_config_loads_with_five_providers_and_named_credentials() {
    let settings = docker_settings();
    let kinds: BTreeSet<String> = settings
        .providers
        .values()
        .map(|e| e.kind.to_string())
        .collect();
    let expected: BTreeSet<String> = ["factory", "aitronos", "telnyx", "aerospike", "cognee"]
        .map(String::from)
        .into();
    assert_eq!(kinds, expected);

    // Every credential variable it names is in .env.example, which the worker gets as env_file.
    let env = env_example();
    for (name, e) in &settings.providers {
        for var in [
            &e.token_env,
            &e.api_key_env,
            &e.client_id_env,
            &e.client_secret_env,
        ]
        .into_iter()
        .flatten()
        {
            assert!(
                env.contains(var),
                "providers.{name} reads {var}, which .env.example does not define"
            );
        }
        assert!(
            e.token_file.is_none() && e.api_key_file.is_none(),
            "providers.{name}: credential files are not mounted by compose"
        );
    }
}

/// The variables `.env.example` defines.
fn env_example() -> BTreeSet<String> {
    read(".env.example")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .collect()
}

#[test]
fn env_example_defines_every_variable_compose_uses_and_env_is_ignored() {
    // Compose interpolates keys and values, not comments: scan the parsed document's strings.
    fn scalars(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Sequence(items) => items.iter().for_each(|i| scalars(i, out)),
            Value::Mapping(m) => m.iter().for_each(|(k, v)| {
                scalars(k, out);
                scalars(v, out);
            }),
            Value::Tagged(t) => scalars(&t.value, out),
            _ => {}
        }
    }
    let mut text = String::new();
    scalars(&compose(), &mut text);
    let env = env_example();
    let mut used = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').expect("unclosed ${");
            let name = inner[..end]
                .split([':', '-', '?', '+'])
                .next()
                .unwrap_or_default();
            used.insert(name.to_owned());
            rest = &inner[end..];
        } else if rest.starts_with('$') {
            rest = &rest[1..]; // $$ is a literal dollar
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end > 0 {
                used.insert(rest[..end].to_owned());
            }
        }
    }
    assert!(!used.is_empty(), "compose uses no variable at all?");
    let missing: Vec<&String> = used.difference(&env).collect();
    assert!(
        missing.is_empty(),
        ".env.example does not define {missing:?}"
    );
    for (k, v) in read(".env.example")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
    {
        assert!(
            v.contains("change-me") || v.contains("placeholder") || !k.contains("PASSWORD"),
            ".env.example: {k} looks like a real secret"
        );
    }

    let ignored = read(".gitignore")
        .lines()
        .map(str::trim)
        .any(|l| l == ".env" || l == "/.env");
    assert!(ignored, ".env is not in .gitignore");
    let dockerignore = read(".dockerignore");
    for must in ["target/", ".git", ".env"] {
        assert!(
            dockerignore.lines().any(|l| l.trim() == must),
            ".dockerignore does not exclude {must}"
        );
    }
}

#[test]
fn prometheus_scrapes_the_worker_and_loads_the_rules_compose_mounts() {
    let compose = compose();
    let settings = docker_settings();
    let prom = yaml("config/prometheus.yml");
    let jobs = prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs");
    let job = jobs
        .iter()
        .find(|j| j["job_name"].as_str() == Some("offboard"))
        .expect("scrape job `offboard`");
    let targets: Vec<String> = job["static_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|s| strings(&s["targets"]))
        .collect();
    assert_eq!(targets.len(), 1, "{targets:?}");
    let (host, port) = host_port(&targets[0]);
    service(&compose, &host);
    assert_eq!(host, "worker");
    assert_eq!(port, settings.metrics.listen.port());
    assert_eq!(
        job["metrics_path"].as_str().unwrap_or("/metrics"),
        "/metrics"
    );

    // prometheus.yml and every rule file it names are mounted side by side.
    let mounts = bind_mounts(service(&compose, "prometheus"));
    let config_target = mounts
        .iter()
        .find(|(s, _)| s == "./config/prometheus.yml")
        .map(|(_, t)| PathBuf::from(t))
        .expect("prometheus mounts ./config/prometheus.yml");
    let command = strings(&service(&compose, "prometheus")["command"]);
    if !command.is_empty() {
        assert!(
            command.contains(&format!("--config.file={}", config_target.display())),
            "{command:?}"
        );
    }
    let rule_files = strings(&prom["rule_files"]);
    assert!(!rule_files.is_empty(), "no rule_files");
    for rule in &rule_files {
        let source = format!("./config/{rule}");
        let target = config_target.parent().expect("dir").join(rule);
        assert!(
            mounts
                .iter()
                .any(|(s, t)| *s == source && Path::new(t) == target),
            "{source} is not mounted at {target:?}: {mounts:?}"
        );
        let rules = yaml(&format!("config/{rule}"));
        let mut alerts = BTreeSet::new();
        for group in rules["groups"].as_sequence().expect("groups") {
            for r in group["rules"].as_sequence().expect("rules") {
                let expr = r["expr"].as_str().expect("expr");
                check_metrics(&format!("config/{rule}"), expr);
                if let Some(a) = r["alert"].as_str() {
                    alerts.insert(a.to_owned());
                }
            }
        }
        for a in [
            "OffboardLaneHalted",
            "OffboardLaneHeld",
            "OffboardDeadLetters",
            "OffboardWorkerDown",
            "OffboardQuarantineOpen",
            "OffboardNoGate",
        ] {
            assert!(alerts.contains(a), "config/{rule}: no alert {a}");
        }
    }
    assert!(ports(service(&compose, "prometheus")).contains(&(9090, 9090)));
}

fn check_metrics(file: &str, expr: &str) {
    for name in metric_names(expr) {
        assert!(
            METRICS.contains(&name.as_str()),
            "{file}: {expr:?} queries {name}, which offboard does not expose"
        );
    }
}

#[test]
fn grafana_reads_prometheus_and_the_dashboard_queries_real_metrics() {
    let compose = compose();
    let grafana = service(&compose, "grafana");
    let mounts = bind_mounts(grafana);
    let target_of = |source: &str| {
        mounts
            .iter()
            .find(|(s, _)| s == source)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("grafana does not mount {source}: {mounts:?}"))
    };
    assert_eq!(
        target_of("./config/grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let dashboards_dir = target_of("./config/grafana/dashboards");
    assert!(ports(grafana).contains(&(3000, 3000)));
    let env = env_example();
    let admin = grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
        .as_str()
        .expect("grafana admin password from the env file");
    assert!(
        admin.starts_with("${") && env.contains(admin.trim_matches(['$', '{', '}'])),
        "{admin}"
    );

    // The data source is the prometheus service on the port it listens on.
    let ds = yaml("config/grafana/provisioning/datasources/prometheus.yml");
    let sources = ds["datasources"].as_sequence().expect("datasources");
    assert_eq!(sources.len(), 1);
    let source = &sources[0];
    assert_eq!(source["type"].as_str(), Some("prometheus"));
    let uid = source["uid"].as_str().expect("uid").to_owned();
    assert_eq!(uid, "prometheus");
    let (host, port) = host_port(source["url"].as_str().expect("url"));
    let prom = service(&compose, &host);
    assert_eq!(host, "prometheus");
    let listen = strings(&prom["command"])
        .iter()
        .find_map(|a| a.strip_prefix("--web.listen-address=").map(host_port))
        .map_or(9090, |(_, p)| p);
    assert_eq!(port, listen, "grafana's data source port");

    // The dashboard provider reads the directory compose mounts the dashboards at.
    let provider = yaml("config/grafana/provisioning/dashboards/offboard.yml");
    let providers = provider["providers"].as_sequence().expect("providers");
    assert!(
        providers.iter().any(|p| p["type"].as_str() == Some("file")
            && p["options"]["path"].as_str() == Some(&dashboards_dir)),
        "no file provider reads {dashboards_dir}"
    );

    // The dashboard: JSON, on that data source, querying only metrics that exist.
    let dash: serde_json::Value =
        serde_json::from_str(&read("config/grafana/dashboards/offboard.json"))
            .expect("offboard.json is not JSON");
    let panels = dash["panels"].as_array().expect("panels");
    let mut queried = BTreeSet::new();
    let mut exprs = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert_eq!(
            p["datasource"]["uid"].as_str(),
            Some(uid.as_str()),
            "panel {title:?}"
        );
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            check_metrics("offboard.json", expr);
            queried.extend(metric_names(expr));
            exprs.push(expr.to_owned());
        }
    }
    assert!(exprs.contains(&"sum by (provider, outcome) (rate(offboard_jobs_total[1m]))".into()));
    for m in [
        "offboard_jobs_total",
        "offboard_retries_total",
        "offboard_provider_request_duration_seconds",
        "offboard_lane_paused",
        "offboard_lane_circuit_open",
        "offboard_dead_lettered_total",
        "offboard_jobs_in_flight",
    ] {
        assert!(queried.contains(m), "the dashboard has no panel on {m}");
    }
    for q in ["histogram_quantile(0.5,", "histogram_quantile(0.95,"] {
        assert!(
            exprs.iter().any(|e| e.contains(q)
                && e.contains("offboard_provider_request_duration_seconds_bucket")),
            "no latency {q} panel"
        );
    }
}

#[test]
fn dockerfile_copies_only_what_exists_and_is_not_ignored() {
    let dockerfile = read("Dockerfile");
    let ignore = read(".dockerignore");
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains("FROM debian:bookworm-slim"));
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root") && l != "USER 0"),
        "the image runs as root"
    );
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        if line.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        for source in &words[..words.len() - 1] {
            assert!(
                root().join(source).exists(),
                "Dockerfile copies {source}, which is not in the repository"
            );
            let top = source.split('/').next().unwrap_or(source);
            assert!(
                !ignore
                    .lines()
                    .map(|l| l.trim().trim_end_matches('/'))
                    .any(|l| l == *source || l == top),
                "Dockerfile copies {source}, which .dockerignore excludes"
            );
        }
    }
}

fn promtool(args: &[&str]) {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's prometheus package, which ships it \
                 (apt-get install -y prometheus; .ci/test.sh does this)"
            )
        });
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_config_and_the_rules() {
    promtool(&["check", "config", "config/prometheus.yml"]);
    promtool(&["check", "rules", "config/prometheus/alerts.yml"]);
}

/// The shipped alerts fire on the series that should raise them, and only then.
#[test]
fn promtool_tests_the_alert_rules() {
    promtool(&["test", "rules", "config/prometheus/alerts.test.yml"]);
}

#[test]
fn metric_names_are_found_in_expressions() {
    let names = metric_names(
        "histogram_quantile(0.95, sum by (le) (rate(offboard_provider_request_duration_seconds_bucket[5m]))) / offboard_jobs_total{x=\"offboard_no\"}",
    );
    assert!(names.contains("offboard_provider_request_duration_seconds"));
    assert!(names.contains("offboard_jobs_total"));
    // A label value counts too: a dashboard should not mention unknown names anywhere.
    assert!(names.contains("offboard_no"));
}

/// Every port compose publishes is bound to loopback, and the broker refuses to start with no
/// password, RabbitMQ's default, or the example's placeholder.
#[test]
fn compose_publishes_on_loopback_and_refuses_the_default_broker_password() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    for (name, svc) in services {
        for p in strings(&svc["ports"]) {
            assert!(
                p.starts_with("127.0.0.1:"),
                "service {name:?} publishes {p:?} on every interface"
            );
        }
    }
    let rabbit = service(&compose, "rabbitmq");
    let pass = rabbit["environment"]["RABBITMQ_DEFAULT_PASS"]
        .as_str()
        .expect("RABBITMQ_DEFAULT_PASS");
    assert!(
        pass.starts_with("${RABBITMQ_PASSWORD:?"),
        "{pass}: required, not defaulted"
    );
    let entry = strings(&rabbit["entrypoint"]);
    assert_eq!(entry[..2], ["sh", "-c"]);
    // Compose turns `$$` into `$`; the server's own start is replaced by a marker.
    let script = entry[2]
        .replace("$$", "$")
        .replace("exec docker-entrypoint.sh rabbitmq-server", "echo started");
    let run = |password: &str| {
        std::process::Command::new("sh")
            .args(["-c", &script])
            .env("RABBITMQ_DEFAULT_PASS", password)
            .output()
            .expect("sh")
    };
    for refused in ["", "guest", "change-me"] {
        let out = run(refused);
        assert!(!out.status.success(), "{refused:?} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to start"));
    }
    let out = run("a-long-random-password");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "started");
}
