//! The HTTP client removals, lookups and token requests go through: reqwest with rustls, set up for
//! a tool that deletes things.
//!
//! - No redirects: a redirected DELETE could land on an endpoint nobody asked for; a 3xx is an
//!   answer, classified like any other.
//! - Proxies: the standard `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` variables, unless
//!   `[http] proxy` names one explicitly (then that one, with `NO_PROXY` still honoured).
//! - Trust: the platform's roots (rustls-platform-verifier), plus `[http] ca_file` for a private CA.
//! - Timeouts: one for the whole exchange (connect, send, read the answer), one for the connect.
//! - Bodies: a removal's answer is read up to [`ANSWER_CAP`] (error envelopes are small; the rest
//!   is dropped); a member list is read whole up to `[http] max_list_bytes`, and an answer above
//!   that is a failure that says so, never a cut list.
//!
//! A hand-made client on hyper was tried before: it saved a few microseconds a request, while the
//! providers allow a few requests a second, and it could not go through a proxy or trust a private
//! CA, which is what users behind a corporate egress need first.

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::http::Transport;

/// The most of a removal's (or token request's) answer we keep: error envelopes are small, and a
/// runaway body must not grow memory.
pub const ANSWER_CAP: usize = 64 * 1024;

/// Default for `[http] max_list_bytes`: a 50,000-member organization's list is a few megabytes.
pub const DEFAULT_LIST_CAP: usize = 256 * 1024 * 1024;

/// What the client needs to know, produced by the config (providers never read the config).
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// The most one exchange may take.
    pub timeout: Duration,
    /// An explicit proxy for every request; None: the standard environment variables.
    pub proxy: Option<ProxySpec>,
    /// A PEM bundle trusted besides the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// The most of a member list answer we read.
    pub max_list_bytes: usize,
}

impl HttpSpec {
    /// The defaults with `timeout`: environment proxies, platform roots, [`DEFAULT_LIST_CAP`].
    pub fn new(timeout: Duration) -> HttpSpec {
        HttpSpec {
            timeout,
            proxy: None,
            ca_file: None,
            max_list_bytes: DEFAULT_LIST_CAP,
        }
    }
}

/// An explicit proxy: its URL (without credentials) and, if it asks for them, Basic credentials.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

/// The client could not be built: a proxy URL or CA file that does not work.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct BuildError(String);

/// A provider entry's HTTP client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: reqwest::Client,
    list_cap: usize,
}

impl Client {
    /// A client with the defaults and `timeout` (tests, one-off calls).
    pub fn new(timeout: Duration) -> Result<Client, BuildError> {
        Client::with(&HttpSpec::new(timeout))
    }

    pub fn with(spec: &HttpSpec) -> Result<Client, BuildError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("offboard/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(spec.timeout)
            .connect_timeout(spec.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .gzip(true);
        if let Some(p) = &spec.proxy {
            let mut proxy = reqwest::Proxy::all(&p.url)
                .map_err(|e| BuildError(format!("http.proxy: {}", chain(&e))))?
                .no_proxy(reqwest::NoProxy::from_env());
            if let Some(user) = &p.username {
                let password = p.password.as_ref().map(|s| s.expose_secret()).unwrap_or("");
                proxy = proxy.basic_auth(user, password);
            }
            b = b.proxy(proxy);
        }
        if let Some(path) = &spec.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                BuildError(format!("http.ca_file: cannot read {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                BuildError(format!(
                    "http.ca_file: {} is not a PEM bundle: {}",
                    path.display(),
                    chain(&e)
                ))
            })?;
            if certs.is_empty() {
                return Err(BuildError(format!(
                    "http.ca_file: {} holds no certificate",
                    path.display()
                )));
            }
            b = b.tls_certs_merge(certs);
        }
        let inner = b.build().map_err(|e| BuildError(chain(&e)))?;
        Ok(Client {
            inner,
            list_cap: spec.max_list_bytes,
        })
    }

    pub fn get(&self, url: impl AsRef<str>) -> RequestBuilder {
        self.request(reqwest::Method::GET, url.as_ref())
    }

    pub fn post(&self, url: impl AsRef<str>) -> RequestBuilder {
        self.request(reqwest::Method::POST, url.as_ref())
    }

    pub fn delete(&self, url: impl AsRef<str>) -> RequestBuilder {
        self.request(reqwest::Method::DELETE, url.as_ref())
    }

    fn request(&self, method: reqwest::Method, url: &str) -> RequestBuilder {
        RequestBuilder {
            inner: self.inner.request(method, url),
            list_cap: self.list_cap,
            list: false,
        }
    }
}

/// One request being built: reqwest's builder, and how much of the answer to read.
pub struct RequestBuilder {
    inner: reqwest::RequestBuilder,
    list_cap: usize,
    /// A member list: read whole up to `list_cap`, or fail; otherwise cut at [`ANSWER_CAP`].
    list: bool,
}

impl RequestBuilder {
    /// Appends `pairs` to the URL's query, form-encoded.
    pub fn query(self, pairs: &[(&str, &str)]) -> Self {
        self.map(|r| r.query(pairs))
    }

    /// A JSON body, with its content type.
    pub fn json<T: serde::Serialize + ?Sized>(self, body: &T) -> Self {
        self.map(|r| r.json(body))
    }

    /// A form-encoded body, with its content type.
    pub fn form(self, pairs: &[(&str, &str)]) -> Self {
        self.map(|r| r.form(pairs))
    }

    /// Adds a header (sensitive values stay hidden from `Debug`).
    pub fn header(self, name: HeaderName, value: HeaderValue) -> Self {
        self.map(|r| r.header(name, value))
    }

    /// This request reads a member list: its answer is read whole, up to `[http] max_list_bytes`.
    pub fn list(mut self) -> Self {
        self.list = true;
        self
    }

    fn map(mut self, f: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> Self {
        self.inner = f(self.inner);
        self
    }

    /// Sends the request and reads status, headers and body, all within the client's timeout.
    /// `Err` when no whole answer came back, or when a list answer is larger than its cap.
    pub async fn send(self) -> Result<(StatusCode, HeaderMap, Bytes), Transport> {
        let RequestBuilder {
            inner,
            list_cap,
            list,
        } = self;
        let cap = if list { list_cap } else { ANSWER_CAP };
        let mut response = inner.send().await.map_err(transport)?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            let room = cap - body.len();
            if chunk.len() > room {
                if list {
                    return Err(Transport::TooLarge(format!(
                        "the member list answer is larger than http.max_list_bytes ({cap} bytes): raise it"
                    )));
                }
                body.extend_from_slice(&chunk[..room]);
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body.freeze()))
    }
}

/// What no answer means, in words that never repeat the URL (it may hold an email).
fn transport(e: reqwest::Error) -> Transport {
    let tls = is_tls(&e);
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let text = chain(&e.without_url());
    if tls {
        Transport::Tls(text)
    } else if timeout {
        Transport::Timeout(text)
    } else if connect {
        Transport::Connect(text)
    } else {
        Transport::Other(text)
    }
}

/// Whether a TLS handshake or certificate check failed somewhere in the error's causes: retrying
/// will not fix a certificate nobody trusts.
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // reqwest wraps rustls' error in an io::Error in an io::Error, and io::Error's
        // `source()` skips what it wraps: look inside each layer.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_tls(inner) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// An error and its causes, as one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[tokio::test]
    async fn a_redirect_is_an_answer_not_followed() {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .and(path("/users/1"))
            .respond_with(ResponseTemplate::new(307).insert_header("location", "/elsewhere/1"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/elsewhere/1"))
            .respond_with(ResponseTemplate::new(204))
            .expect(0)
            .mount(&server)
            .await;
        let c = Client::new(Duration::from_secs(2)).unwrap();
        let (status, headers, _) = c
            .delete(format!("{}/users/1", server.uri()))
            .send()
            .await
            .unwrap();
        assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(headers["location"], "/elsewhere/1");
    }

    #[tokio::test]
    async fn an_error_does_not_repeat_the_url() {
        let c = Client::new(Duration::from_secs(1)).unwrap();
        // Nothing listens on port 9 of loopback: the connection is refused.
        let err = c
            .delete("http://127.0.0.1:9/users?email=secret.person%40x.example")
            .send()
            .await
            .unwrap_err();
        assert!(matches!(err, Transport::Connect(_)), "{err:?}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[tokio::test]
    async fn a_list_is_read_whole_up_to_its_cap_and_a_removal_answer_is_cut() {
        let server = MockServer::start().await;
        let big = "x".repeat(3 * ANSWER_CAP);
        Mock::given(path("/big"))
            .respond_with(ResponseTemplate::new(200).set_body_string(big.clone()))
            .mount(&server)
            .await;
        let url = format!("{}/big", server.uri());
        let c = Client::new(Duration::from_secs(2)).unwrap();
        let (_, _, body) = c.get(&url).list().send().await.unwrap();
        assert_eq!(body.len(), big.len(), "a list is read whole");
        let (_, _, body) = c.get(&url).send().await.unwrap();
        assert_eq!(body.len(), ANSWER_CAP, "a removal's answer is capped");
        let mut spec = HttpSpec::new(Duration::from_secs(2));
        spec.max_list_bytes = ANSWER_CAP;
        let small = Client::with(&spec).unwrap();
        let err = small.get(&url).list().send().await.map(|_| ()).unwrap_err();
        assert!(
            matches!(&err, Transport::TooLarge(m) if m.contains("http.max_list_bytes")),
            "{err:?}"
        );
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate").unwrap();
        let mut spec = HttpSpec::new(Duration::from_secs(1));
        spec.ca_file = Some(file.clone());
        let err = Client::with(&spec).err().unwrap().to_string();
        assert!(err.contains("http.ca_file"), "{err}");
        spec.ca_file = Some(dir.path().join("missing.pem"));
        let err = Client::with(&spec).err().unwrap().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
