//! How requests reach the providers: through a forward proxy (named by `HTTP_PROXY`, or by `[http]
//! proxy` with Basic credentials), and over TLS to a server that only a private CA vouches for.
//!
//! Real HTTP on loopback only. The configs name the providers by made-up hosts under the reserved
//! `.test` TLD, which no resolver answers: only the test proxy, which maps each of them to the
//! sandbox's `127.0.0.1` port, can reach them. A run that bypassed the proxy would fail its rows.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use offboard::job::ProviderKind;
use offboard::providers::Transport;
use offboard::providers::client::{Client, HttpSpec};
use offboard::retry::{Decision, FailReason, classify};
use offboard::sandbox::{Sandbox, SandboxOptions, Seed};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::support::{config_for, report_lines, successful_removals};

/// Every variable that could send the binary through a proxy other than the one a test names.
const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

const AITRONOS_ORG: &str = "org_acme";

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_through_the_proxy_named_by_http_proxy() {
    let (seed, rows) = population();
    let sandbox = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let (config_text, hosts) = proxied_config(&sandbox);
    let proxy = Relay::forward(hosts, None).await;

    let dir = tempfile::tempdir().unwrap();
    let (csv, config, report) = files(dir.path(), &rows, &config_text);
    let mut env = sandbox.env();
    env.push(("HTTP_PROXY", format!("http://{}", proxy.addr)));
    let out = run(&env, &csv, &config, &report).await;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");

    assert_all_removed(&sandbox, &rows, &report);
    assert_proxied_everything(&proxy, &sandbox, &rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_proxy_from_config_with_credentials() {
    let (seed, rows) = population();
    let sandbox = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let (config_text, hosts) = proxied_config(&sandbox);
    let username = "offboard-it";
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let expected = format!(
        "Basic {}",
        base64(format!("{username}:{password}").as_bytes())
    );
    let proxy = Relay::forward(hosts.clone(), Some(expected.clone())).await;
    // HTTP_PROXY names another proxy: with `[http] proxy` set, it must see nothing.
    let decoy = Relay::forward(hosts, None).await;

    // The test proxy really refuses a request without its credentials.
    let bare = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", proxy.addr)).unwrap())
        .build()
        .unwrap();
    let refused = bare
        .get("http://factory.proxied.test/api/v0/organization/users?limit=1")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
    assert_eq!(proxy.refused().len(), 1);
    proxy.state.refused.lock().unwrap().clear();

    let dir = tempfile::tempdir().unwrap();
    let http = format!(
        "[http]\nproxy = \"http://{}\"\nproxy_username_env = \"IT_PROXY_USERNAME\"\nproxy_password_env = \"IT_PROXY_PASSWORD\"\n\n",
        proxy.addr
    );
    let (csv, config, report) = files(dir.path(), &rows, &format!("{http}{config_text}"));
    let mut env = sandbox.env();
    env.push(("IT_PROXY_USERNAME", username.to_owned()));
    env.push(("IT_PROXY_PASSWORD", password.clone()));
    env.push(("HTTP_PROXY", format!("http://{}", decoy.addr)));
    let out = run(&env, &csv, &config, &report).await;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");

    assert_all_removed(&sandbox, &rows, &report);
    assert!(
        proxy.refused().is_empty(),
        "every request carried the proxy's credentials: {:?}",
        proxy.refused()
    );
    assert_proxied_everything(&proxy, &sandbox, &rows);
    assert!(
        decoy.forwarded().is_empty() && decoy.refused().is_empty(),
        "the HTTP_PROXY proxy was used although [http] proxy is set"
    );

    // The password appears nowhere the run wrote, in clear or encoded.
    let report_text = std::fs::read_to_string(&report).unwrap();
    let audit_text =
        std::fs::read_to_string(report.with_extension("audit.jsonl")).unwrap_or_default();
    let encoded = expected.trim_start_matches("Basic ");
    for (what, text) in [
        ("stdout", &*stdout),
        ("stderr", &*stderr),
        ("the report", &*report_text),
        ("the audit log", &*audit_text),
    ] {
        assert!(
            !text.contains(&password),
            "the proxy password appears in {what}"
        );
        assert!(
            !text.contains(encoded),
            "the proxy credentials appear in {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_only_when_given() {
    let emails: Vec<String> = (0..5)
        .map(|i| format!("tls.leaver{i}@acme.example"))
        .collect();
    let seed = emails.iter().fold(Seed::default(), |s, e| {
        s.member_with_email(ProviderKind::Factory, None, e, e)
    });
    let sandbox = Sandbox::start(SandboxOptions::plain(seed)).await.unwrap();
    let factory_port = port_of(&sandbox.base_url(ProviderKind::Factory));
    let token = sandbox
        .env()
        .into_iter()
        .find(|(k, _)| *k == "SANDBOX_FACTORY_TOKEN")
        .unwrap()
        .1;

    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("private-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    // HTTPS on loopback, in front of the sandbox's Factory, with a certificate the CA signed.
    let tls = TlsFront::start(&pki, factory_port).await;
    let origin = format!("https://127.0.0.1:{}", tls.addr.port());
    let remove = |client: &Client, email: &str| {
        client
            .delete(format!("{origin}/api/v0/organization/users"))
            .query(&[("email", email)])
            .header(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            )
            .send()
    };

    // The client given the CA file trusts the server.
    let mut spec = HttpSpec::new(Duration::from_secs(5));
    spec.ca_file = Some(ca_file.clone());
    let trusting = Client::with(&spec).unwrap();
    let (status, _, _) = remove(&trusting, &emails[0]).await.unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!sandbox.is_member(ProviderKind::Factory, None, &emails[0]));
    assert_eq!(tls.failed_handshakes(0).await, 0);

    // Without it, the certificate is refused: a TLS failure, final, not retried.
    let connections = tls.connections();
    let plain = Client::new(Duration::from_secs(5)).unwrap();
    let err = remove(&plain, &emails[1]).await.map(|_| ()).unwrap_err();
    assert!(matches!(err, Transport::Tls(_)), "{err:?}");
    assert_eq!(
        classify(&Err(err), false),
        Decision::Fail {
            reason: FailReason::Tls
        }
    );
    assert_eq!(
        tls.connections(),
        connections + 1,
        "one connection, no retry"
    );
    assert_eq!(tls.failed_handshakes(1).await, 1);
    assert!(sandbox.is_member(ProviderKind::Factory, None, &emails[1]));

    // The binary with `[http] ca_file`: its rows are removed through the TLS server.
    let factory_only = |http: &str| {
        format!(
            "{http}[providers.factory]\nkind = \"factory\"\nbase_url = \"{origin}\"\ntoken_env = \"SANDBOX_FACTORY_TOKEN\"\nrate_per_second = 50\nburst = 5\nmax_in_flight = 8\nbase_delay_ms = 50\nmax_delay_ms = 500\n"
        )
    };
    let trusted_rows: Vec<Row> = emails[1..4]
        .iter()
        .map(|e| Row::new(ProviderKind::Factory, e, None, e))
        .collect();
    let with_ca = dir.path().join("with-ca");
    std::fs::create_dir(&with_ca).unwrap();
    let http = format!("[http]\nca_file = \"{}\"\n\n", ca_file.display());
    let (csv, config, report) = files(&with_ca, &trusted_rows, &factory_only(&http));
    let out = run(&sandbox.env(), &csv, &config, &report).await;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_all_removed(&sandbox, &trusted_rows, &report);
    assert_eq!(
        tls.failed_handshakes(1).await,
        1,
        "no handshake failed with the CA"
    );

    // Without it: its preflight fails on the certificate, once, and nothing is removed.
    let untrusted_rows = vec![Row::new(
        ProviderKind::Factory,
        &emails[4],
        None,
        &emails[4],
    )];
    let without_ca = dir.path().join("without-ca");
    std::fs::create_dir(&without_ca).unwrap();
    let (csv, config, report) = files(&without_ca, &untrusted_rows, &factory_only(""));
    let connections = tls.connections();
    let logged = sandbox.log().len();
    let out = run(&sandbox.env(), &csv, &config, &report).await;
    let (stdout, stderr) = texts(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a row not removed: incomplete\n{stdout}\n{stderr}"
    );
    let lines = report_lines(&report);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["outcome"], "not_attempted", "{l}");
    assert_eq!(l["reason"], "preflight_failed", "{l}");
    assert_eq!(l["attempts"], 0, "{l}");
    let message = l["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("(tls)") && message.contains("http.ca_file"),
        "the reason names TLS and the key that cures it: {l}"
    );
    assert!(stderr.contains("preflight failed"), "{stderr}");
    assert_eq!(
        tls.connections(),
        connections + 1,
        "one request, not retried: a certificate nobody trusts stays untrusted"
    );
    assert_eq!(tls.failed_handshakes(2).await, 2);
    assert_eq!(sandbox.log().len(), logged, "nothing reached the provider");
    assert!(sandbox.is_member(ProviderKind::Factory, None, &emails[4]));
}

// ---------------------------------------------------------------------------------------------
// The people, the files, the binary.

/// One CSV row, and the member it names.
struct Row {
    kind: ProviderKind,
    /// As written in the CSV: an id, or an email.
    user: String,
    organization: Option<String>,
    /// The member's id at the provider.
    id: String,
}

impl Row {
    fn new(kind: ProviderKind, user: &str, organization: Option<&str>, id: &str) -> Row {
        Row {
            kind,
            user: user.to_owned(),
            organization: organization.map(str::to_owned),
            id: id.to_owned(),
        }
    }
}

/// Three leavers at each provider (two named by id, one by email; Factory's ids are emails) and
/// one member at each who stays.
fn population() -> (Seed, Vec<Row>) {
    let tenant = uuid::Uuid::new_v4().to_string();
    let mut seed = Seed::default();
    let mut rows = Vec::new();
    for kind in ProviderKind::ALL {
        let org = match kind {
            ProviderKind::Aitronos => Some(AITRONOS_ORG),
            ProviderKind::Cognee => Some(tenant.as_str()),
            _ => None,
        };
        for i in 0..4 {
            let email = format!("{kind}.person{i}@acme.example");
            let id = match kind {
                ProviderKind::Factory => email.clone(),
                ProviderKind::Aitronos => format!("usr_proxied{i}"),
                _ => uuid::Uuid::new_v4().to_string(),
            };
            seed = seed.member_with_email(kind, org, &id, &email);
            match i {
                0 | 1 => rows.push(Row::new(kind, &id, org, &id)),
                2 => rows.push(Row::new(kind, &email, org, &id)),
                // Stays: the lists and searches hold more than the leavers.
                _ => {}
            }
        }
    }
    (seed, rows)
}

/// The sandbox's config with every base URL (and Aerospike's token URL) on a made-up
/// `<kind>.proxied.test` host, and those hosts mapped to the sandbox's ports.
fn proxied_config(sandbox: &Sandbox) -> (String, HashMap<String, u16>) {
    let mut text = config_for(sandbox, &HashMap::new(), "");
    let mut hosts = HashMap::new();
    for kind in ProviderKind::ALL {
        let port = port_of(&sandbox.base_url(kind));
        let host = format!("{kind}.proxied.test");
        for end in ["\"", "/"] {
            text = text.replace(
                &format!("http://127.0.0.1:{port}{end}"),
                &format!("http://{host}{end}"),
            );
        }
        hosts.insert(host, port);
    }
    assert!(!text.contains("127.0.0.1"), "only made-up hosts: {text}");
    assert!(
        text.contains("token_url = \"http://aerospike.proxied.test/oauth/token\""),
        "{text}"
    );
    (text, hosts)
}

fn port_of(url: &str) -> u16 {
    let u = url::Url::parse(url).unwrap();
    assert_eq!(u.host_str(), Some("127.0.0.1"), "{url}");
    u.port().unwrap()
}

/// Writes the CSV and the config into `dir`: (csv, config, report) paths.
fn files(
    dir: &Path,
    rows: &[Row],
    config_text: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut csv_text = String::from("provider,user,organization\n");
    for r in rows {
        csv_text.push_str(&format!(
            "{},{},{}\n",
            r.kind,
            r.user,
            r.organization.as_deref().unwrap_or("")
        ));
    }
    let csv = dir.join("leavers.csv");
    std::fs::write(&csv, csv_text).unwrap();
    let config = dir.join("offboard.toml");
    std::fs::write(&config, config_text).unwrap();
    (csv, config, dir.join("report.jsonl"))
}

/// `offboard run --csv --config --report`, with `env` and no proxy variable but those in `env`.
async fn run(env: &[(&'static str, String)], csv: &Path, config: &Path, report: &Path) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
    cmd.args(["run", "--csv"])
        .arg(csv)
        .arg("--config")
        .arg(config)
        .arg("--report")
        .arg(report)
        .env_remove("OFFBOARD_CONFIG")
        .env_remove("REQUEST_METHOD")
        .env("OFFBOARD_LOG", "info")
        .kill_on_drop(true);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("offboard finished within a minute")
        .expect("offboard started")
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One report line per row, each `removed`, and the sandbox agrees: removed exactly once each.
fn assert_all_removed(sandbox: &Sandbox, rows: &[Row], report: &Path) {
    let lines = report_lines(report);
    assert_eq!(lines.len(), rows.len(), "one line per row: {lines:#?}");
    let log = sandbox.log();
    for (i, row) in rows.iter().enumerate() {
        let line = i as u64 + 2;
        let l = lines
            .iter()
            .find(|l| l["line"] == line)
            .unwrap_or_else(|| panic!("no report line {line}"));
        assert_eq!(l["outcome"], "removed", "line {line}: {l}");
        assert_eq!(l["provider"], row.kind.as_str(), "line {line}: {l}");
        assert!(
            !sandbox.is_member(row.kind, row.organization.as_deref(), &row.id),
            "line {line}: {} {} is still a member",
            row.kind,
            row.id
        );
        assert_eq!(
            successful_removals(&log, row.kind, &row.id),
            1,
            "line {line}: removed exactly once"
        );
    }
}

/// The proxy forwarded every request the sandbox saw (it is the only way there), at least one per
/// row at each host, Aerospike's token request too, and refused nothing.
fn assert_proxied_everything(proxy: &Relay, sandbox: &Sandbox, rows: &[Row]) {
    let forwarded = proxy.forwarded();
    let mut by_host: BTreeMap<String, usize> = BTreeMap::new();
    for f in &forwarded {
        *by_host.entry(f.host.clone()).or_default() += 1;
    }
    let log = sandbox.log();
    for kind in ProviderKind::ALL {
        let host = format!("{kind}.proxied.test");
        let seen = by_host.get(&host).copied().unwrap_or(0);
        let n_rows = rows.iter().filter(|r| r.kind == kind).count();
        let logged = log.iter().filter(|l| l.kind == kind).count();
        assert!(n_rows > 0);
        assert!(
            seen >= n_rows && seen >= logged,
            "{host}: the proxy forwarded {seen} requests for {n_rows} rows; the sandbox logged {logged}"
        );
    }
    assert!(
        forwarded.iter().any(|f| f.host == "aerospike.proxied.test"
            && f.method == "POST"
            && f.path.starts_with("/oauth/token")),
        "the token request went through the proxy: {by_host:?}"
    );
    assert!(proxy.refused().is_empty(), "{:?}", proxy.refused());
}

// ---------------------------------------------------------------------------------------------
// A relay: a forward proxy mapping made-up hosts to the sandbox, or a plain front to one port
// (behind TLS). It counts what it forwarded and what it refused.

/// Where a relay sends what it receives.
enum Route {
    /// A forward proxy: absolute-form requests (`http://factory.proxied.test/api/...`), the host
    /// mapped to a sandbox port on 127.0.0.1; anything else is refused with 502.
    Forward(HashMap<String, u16>),
    /// Every request to this port on 127.0.0.1.
    Reverse(u16),
}

#[derive(Debug, Clone)]
struct Forwarded {
    host: String,
    method: String,
    path: String,
}

struct Relay {
    addr: SocketAddr,
    state: Arc<RelayState>,
    task: JoinHandle<()>,
}

struct RelayState {
    route: Route,
    /// The `Proxy-Authorization` every request must carry (407 otherwise).
    credentials: Option<String>,
    client: reqwest::Client,
    forwarded: Mutex<Vec<Forwarded>>,
    /// (status, host) of every request refused.
    refused: Mutex<Vec<(u16, String)>>,
}

impl Relay {
    /// A forward proxy on 127.0.0.1:0.
    async fn forward(hosts: HashMap<String, u16>, credentials: Option<String>) -> Relay {
        let state = RelayState::new(Route::Forward(hosts), credentials);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = relay_router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Relay { addr, state, task }
    }

    fn forwarded(&self) -> Vec<Forwarded> {
        self.state.forwarded.lock().unwrap().clone()
    }

    fn refused(&self) -> Vec<(u16, String)> {
        self.state.refused.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RelayState {
    fn new(route: Route, credentials: Option<String>) -> Arc<RelayState> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .no_gzip()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Arc::new(RelayState {
            route,
            credentials,
            client,
            forwarded: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
        })
    }

    fn refuse(&self, status: StatusCode, host: String) -> Response {
        self.refused.lock().unwrap().push((status.as_u16(), host));
        let mut r = Response::new(Body::from(status.to_string()));
        *r.status_mut() = status;
        if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            r.headers_mut().insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"offboard-it\""),
            );
        }
        r
    }
}

fn relay_router(state: Arc<RelayState>) -> Router {
    Router::new().fallback(relay).with_state(state)
}

/// Headers that concern one hop, not the request: never forwarded either way.
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::HOST,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::CONTENT_LENGTH,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .filter(|(name, _)| !hop_by_hop(name))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

async fn relay(State(relay): State<Arc<RelayState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let host = parts.uri.host().unwrap_or("").to_ascii_lowercase();
    if let Some(want) = &relay.credentials {
        let given = parts.headers.get(header::PROXY_AUTHORIZATION);
        if given.and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            return relay.refuse(StatusCode::PROXY_AUTHENTICATION_REQUIRED, host);
        }
    }
    let port = match &relay.route {
        Route::Forward(hosts) => {
            let absolute = parts.uri.scheme_str() == Some("http") && parts.uri.port().is_none();
            match hosts.get(&host) {
                Some(port) if absolute => *port,
                _ => return relay.refuse(StatusCode::BAD_GATEWAY, host),
            }
        }
        Route::Reverse(port) => *port,
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let Ok(body) = axum::body::to_bytes(body, 16 << 20).await else {
        return relay.refuse(StatusCode::BAD_REQUEST, host);
    };
    let sent = relay
        .client
        .request(
            parts.method.clone(),
            format!("http://127.0.0.1:{port}{path}"),
        )
        .headers(end_to_end(&parts.headers))
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(a) => a,
        Err(_) => return relay.refuse(StatusCode::BAD_GATEWAY, host),
    };
    let status = answer.status();
    let headers = end_to_end(answer.headers());
    let Ok(bytes) = answer.bytes().await else {
        return relay.refuse(StatusCode::BAD_GATEWAY, host);
    };
    relay.forwarded.lock().unwrap().push(Forwarded {
        host,
        method: parts.method.to_string(),
        path,
    });
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_is_the_standard_one() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(
        base64(b"Aladdin:open sesame"),
        "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
}

// ---------------------------------------------------------------------------------------------
// A private CA, and an HTTPS front on loopback with a certificate it signed.

pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    cert: rustls::pki_types::CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
    /// The server's certificate and key as PEM files take them.
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl Pki {
    /// A CA, and a server certificate it signed for `localhost` and `127.0.0.1`.
    pub(crate) fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "offboard transport tests CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = server.signed_by(&key, &ca).unwrap();
        Pki {
            ca_pem: ca.pem(),
            cert: cert.der().clone(),
            key_pkcs8: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(self.key_pkcs8.clone());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key.into())
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// HTTPS on 127.0.0.1:0 relaying every request to one port; counts TCP connections and failed
/// handshakes.
struct TlsFront {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    failed_handshakes: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl TlsFront {
    async fn start(pki: &Pki, port: u16) -> TlsFront {
        let tcp = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
        let connections = Arc::new(AtomicUsize::new(0));
        let failed_handshakes = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel(16);
        let accepting = {
            let (connections, failed) = (connections.clone(), failed_handshakes.clone());
            tokio::spawn(async move {
                while let Ok((stream, peer)) = tcp.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (acceptor, tx, failed) = (acceptor.clone(), tx.clone(), failed.clone());
                    tokio::spawn(async move {
                        let shake = acceptor.accept(stream);
                        match tokio::time::timeout(Duration::from_secs(5), shake).await {
                            Ok(Ok(tls)) => {
                                let _ = tx.send((tls, peer)).await;
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    });
                }
            })
        };
        let router = relay_router(RelayState::new(Route::Reverse(port), None));
        let serving = tokio::spawn(async move {
            let _ = axum::serve(TlsListener { rx, addr }, router).await;
        });
        TlsFront {
            addr,
            connections,
            failed_handshakes,
            tasks: vec![accepting, serving],
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Handshakes that failed so far, once `expected` of them have (the server may learn of a
    /// failure a moment after the client): waits up to 5 s for that count.
    async fn failed_handshakes(&self, expected: usize) -> usize {
        let start = std::time::Instant::now();
        loop {
            let n = self.failed_handshakes.load(Ordering::SeqCst);
            if n >= expected || start.elapsed() > Duration::from_secs(5) {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Connections whose handshake succeeded, for axum to serve.
struct TlsListener {
    rx: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
