//! The intake: an HTTP door identity systems push deprovisioning to (Okta Event Hooks at
//! `/hooks/okta`, SCIM 2.0 at `/scim/v2`). It authenticates, validates and publishes one
//! person-level message per person into the broker's intake queue (the worker splits it into
//! jobs), and answers success only once the broker confirmed. It holds no provider credential.

pub mod okta;
pub mod publish;
pub mod scim;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderName};
use axum::routing::get;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::config::{IntakeSecrets, IntakeTarget, Settings};
use crate::metrics::Metrics;
use publish::IntakePublisher;

#[derive(Debug, Error)]
pub enum IntakeError {
    #[error("the intake needs a broker: set OFFBOARD_AMQP_URL or amqp.url")]
    NoBroker,
    #[error("nothing to serve: configure [intake.okta] and/or [intake.scim]")]
    NoDoor,
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read intake.tls_cert_file / intake.tls_key_file: {0}")]
    Tls(std::io::Error),
    #[error(transparent)]
    Store(#[from] scim::store::StoreError),
}

/// Where the intake listens by default (`offboard intake` without `[intake] listen`).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// The intake's state, shared by every request.
pub struct Intake {
    publisher: IntakePublisher,
    targets: Vec<IntakeTarget>,
    okta: Option<OktaAuth>,
    scim: Option<scim::ScimDoor>,
    metrics: Arc<Metrics>,
    /// `intake.max_body_bytes`: for the doors that read their body themselves.
    max_body: usize,
}

struct OktaAuth {
    header: HeaderName,
    secret: SecretString,
    event_types: HashSet<String>,
}

/// Whether `given` is `secret`, in time that does not depend on where they differ.
fn same_secret(given: &[u8], secret: &SecretString) -> bool {
    given.ct_eq(secret.expose_secret().as_bytes()).into()
}

impl Intake {
    fn okta_authorized(&self, headers: &HeaderMap) -> bool {
        let Some(okta) = &self.okta else {
            return false;
        };
        headers
            .get(&okta.header)
            .is_some_and(|v| same_secret(v.as_bytes(), &okta.secret))
    }
}

/// How much of the intake a request may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of a body.
    pub max_body: usize,
    /// From the headers to the answer.
    pub request_timeout: Duration,
    /// Requests at once.
    pub concurrent: Arc<tokio::sync::Semaphore>,
}

impl Limits {
    pub fn from_config(cfg: &crate::config::Intake) -> Limits {
        Limits {
            max_body: cfg.max_body_bytes,
            request_timeout: Duration::from_millis(cfg.request_timeout_ms),
            concurrent: Arc::new(tokio::sync::Semaphore::new(
                cfg.max_concurrent_requests.max(1),
            )),
        }
    }
}

/// The routes of the configured doors, within `limits`.
pub fn router(intake: Arc<Intake>, limits: Limits) -> Router {
    let mut app = Router::new();
    if intake.okta.is_some() {
        app = app.route("/hooks/okta", get(okta::verify).post(okta::deliver));
    }
    if intake.scim.is_some() {
        app = app.nest("/scim/v2", scim::routes(intake.clone()));
    }
    let max_body = limits.max_body;
    app.layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(limits, bounded))
        .with_state(intake)
}

/// At most `limits.concurrent` requests at once (the next answered 503 at once, so that a crowd
/// of slow senders cannot queue up behind each other) and each within `limits.request_timeout`
/// (408 past it: a body trickled byte by byte does not hold a slot for long).
async fn bounded(
    axum::extract::State(limits): axum::extract::State<Limits>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(_slot) = limits.concurrent.clone().try_acquire_owned() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            "too many requests at once; retry\n",
        )
            .into_response();
    };
    match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => (
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "the request took too long; retry\n",
        )
            .into_response(),
    }
}

/// A running intake: where it listens, and its stopping.
pub struct Running {
    pub addr: SocketAddr,
    pub done: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Opens the SCIM store, binds, and serves the intake until `stop` (requests in flight are given
/// `grace` to finish).
pub async fn serve(
    settings: &Settings,
    secrets: IntakeSecrets,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    grace: Duration,
) -> Result<Running, IntakeError> {
    let cfg = &settings.intake;
    let url = settings.amqp.url().ok_or(IntakeError::NoBroker)?;
    let okta = match (&cfg.okta, secrets.okta) {
        (Some(o), Some(secret)) => Some(OktaAuth {
            header: HeaderName::from_bytes(o.header.as_bytes()).expect("checked at load"),
            secret,
            event_types: o.event_types.iter().cloned().collect(),
        }),
        _ => None,
    };
    let scim = match (&cfg.scim, secrets.scim) {
        (Some(s), Some(token)) => {
            let store = scim::store::Store::open(s.database.clone()).await?;
            Some(scim::ScimDoor::new(token, store))
        }
        _ => None,
    };
    if okta.is_none() && scim.is_none() {
        return Err(IntakeError::NoDoor);
    }
    let intake = Arc::new(Intake {
        publisher: IntakePublisher::new(
            url,
            settings.amqp.clone(),
            Duration::from_millis(cfg.publish_timeout_ms),
        )
        .shadow(cfg.mode == crate::config::IntakeMode::Shadow),
        targets: cfg.targets.clone(),
        okta,
        scim,
        metrics,
        max_body: cfg.max_body_bytes,
    });
    let app = router(intake, Limits::from_config(cfg));
    let addr = cfg.listen.unwrap_or(DEFAULT_LISTEN);
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| IntakeError::Listen { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| IntakeError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| IntakeError::Listen { addr, source })?;
    let handle = axum_server::Handle::new();
    {
        let handle = handle.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            handle.graceful_shutdown(Some(grace));
        });
    }
    let service = app.into_make_service();
    let done = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(cert), Some(key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(IntakeError::Tls)?;
            // HTTP/1.1 only: a client must not be offered HTTP/2 by ALPN.
            let mut only_h1 = (*tls.get_inner()).clone();
            only_h1.alpn_protocols = vec![b"http/1.1".to_vec()];
            tls.reload_from_config(Arc::new(only_h1));
            let mut server = axum_server::tls_rustls::from_tcp_rustls(listener, tls)
                .map_err(|source| IntakeError::Listen { addr, source })?
                .handle(handle)
                // What Okta and Entra speak; no HTTP/2 streams to multiply a connection.
                .http1_only();
            slow_senders(server.http_builder());
            tokio::spawn(server.serve(service))
        }
        _ => {
            let mut server = axum_server::from_tcp(listener)
                .map_err(|source| IntakeError::Listen { addr, source })?
                .handle(handle)
                // What Okta and Entra speak; no HTTP/2 streams to multiply a connection.
                .http1_only();
            slow_senders(server.http_builder());
            tokio::spawn(server.serve(service))
        }
    };
    tracing::info!(%bound, tls = cfg.tls_cert_file.is_some(), "intake listening");
    Ok(Running { addr: bound, done })
}

/// A sender has 10 s to send its headers: a connection trickling bytes is not kept open forever.
fn slow_senders(b: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>) {
    b.http1()
        .header_read_timeout(Duration::from_secs(10))
        .timer(hyper_util::rt::TokioTimer::new());
}
