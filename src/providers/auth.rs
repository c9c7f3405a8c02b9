//! Credentials on the wire: a fixed header, or an OAuth2 client-credentials token (Aerospike).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::http::StatusCode;
use ::http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use arc_swap::ArcSwapOption;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::client::{Client, RequestBuilder};
use super::http::{self, Answer, Hint, ProviderError, Transport};

/// A credential, read from where the config said (it never prints).
#[derive(Clone)]
pub enum Credential {
    Bearer(SecretString),
    ApiKey(SecretString),
    OAuth {
        token_url: String,
        client_id: SecretString,
        client_secret: SecretString,
        body: TokenBody,
    },
}

/// How a provider entry proves who it is.
pub enum Auth {
    /// A fixed header: `Authorization: Bearer …`, `X-API-Key: …`. The value is marked sensitive, so
    /// no `Debug` of a request or header map prints it.
    Header {
        name: HeaderName,
        value: HeaderValue,
    },
    /// `Authorization: Bearer <token>` from an OAuth2 client-credentials grant.
    OAuth(Arc<TokenSource>),
}

/// Why credentials could not be attached.
pub enum AuthFailure {
    /// The token endpoint answered with a refusal or an error.
    Answer(Answer),
    /// The token endpoint did not answer.
    Transport(Transport),
}

impl Auth {
    /// A fixed header from a secret. Fails when the secret cannot be a header value.
    pub fn header(name: &'static str, prefix: &str, secret: &SecretString) -> Result<Auth, String> {
        let mut value =
            HeaderValue::from_str(&format!("{prefix}{}", secret.expose_secret().trim())).map_err(
                |_| "the credential holds characters an HTTP header cannot carry".to_owned(),
            )?;
        value.set_sensitive(true);
        Ok(Auth::Header {
            name: HeaderName::from_static(name),
            value,
        })
    }

    pub fn bearer(secret: &SecretString) -> Result<Auth, String> {
        Auth::header("authorization", "Bearer ", secret)
    }

    /// The request with credentials, and the token generation it carries (0 for a fixed header).
    pub(crate) async fn apply(
        &self,
        request: RequestBuilder,
    ) -> Result<(RequestBuilder, u64), AuthFailure> {
        match self {
            Auth::Header { name, value } => Ok((request.header(name.clone(), value.clone()), 0)),
            Auth::OAuth(source) => {
                let (header, generation) = source.header().await?;
                Ok((request.header(AUTHORIZATION, header), generation))
            }
        }
    }

    pub fn refreshable(&self) -> bool {
        matches!(self, Auth::OAuth(_))
    }

    /// Drops the cached token if it is still generation `generation` (the one a refused request
    /// carried), so concurrent refusals of one token cause one refresh, not one each, and a
    /// refusal of an old token never drops a newer one.
    pub fn invalidate(&self, generation: u64) {
        if let Auth::OAuth(source) = self {
            source.invalidate(generation);
        }
    }
}

/// How the token request's body is encoded: OAuth2 (RFC 6749) says form; Aerospike's docs show JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenBody {
    #[default]
    Form,
    Json,
}

struct Token {
    header: HeaderValue,
    /// Which fetch this token came from (1, 2, ...): requests remember it, and a refusal drops
    /// the token only while it is still this one. Identity, not timing: a request's refusal says
    /// nothing about when its token was served.
    generation: u64,
    fresh_until: Instant,
}

/// Fetches and caches an access token: one refresh at a time, shared by every waiting request.
pub struct TokenSource {
    http: Client,
    url: String,
    client_id: SecretString,
    client_secret: SecretString,
    body: TokenBody,
    current: ArcSwapOption<Token>,
    refresh: tokio::sync::Mutex<()>,
    grants: std::sync::atomic::AtomicU64,
}

#[derive(Deserialize)]
struct Grant {
    access_token: SecretString,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<f64>,
}

impl TokenSource {
    pub fn new(
        http: Client,
        url: String,
        client_id: SecretString,
        client_secret: SecretString,
        body: TokenBody,
    ) -> TokenSource {
        TokenSource {
            http,
            url,
            client_id,
            client_secret,
            body,
            current: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(()),
            grants: Default::default(),
        }
    }

    /// How many tokens this source has fetched.
    pub fn grants(&self) -> u64 {
        self.grants.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fresh(&self) -> Option<(HeaderValue, u64)> {
        let t = self.current.load();
        t.as_ref()
            .filter(|t| t.fresh_until > Instant::now())
            .map(|t| (t.header.clone(), t.generation))
    }

    async fn header(&self) -> Result<(HeaderValue, u64), AuthFailure> {
        if let Some(h) = self.fresh() {
            return Ok(h);
        }
        let _one_at_a_time = self.refresh.lock().await;
        // Whoever held the lock before us may have fetched one already.
        if let Some(h) = self.fresh() {
            return Ok(h);
        }
        let token = self.fetch().await?;
        let out = (token.header.clone(), token.generation);
        self.current.store(Some(Arc::new(token)));
        Ok(out)
    }

    fn invalidate(&self, generation: u64) {
        // Swap only if the current token is the refused one: a concurrent refresh may already
        // have put a newer one in place, which this refusal says nothing about.
        self.current.rcu(|cur| match cur {
            Some(t) if t.generation == generation => None,
            other => other.clone(),
        });
    }

    async fn fetch(&self) -> Result<Token, AuthFailure> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.expose_secret()),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        let request = self.http.post(&self.url);
        let request = match self.body {
            TokenBody::Form => request.form(&form),
            TokenBody::Json => request.json(&std::collections::BTreeMap::from(form)),
        };
        let issued_at = Instant::now();
        let (status, headers, body) = request.send().await.map_err(AuthFailure::Transport)?;
        let refused = |message: String| {
            let mut a = Answer::new(status, Hint::TokenDenied);
            a.error = Some(ProviderError {
                code: Some("token_endpoint".into()),
                message,
            });
            a.wait = http::retry_after(&headers, std::time::SystemTime::now());
            AuthFailure::Answer(a)
        };
        if status != StatusCode::OK {
            #[derive(Deserialize)]
            struct OAuthError {
                error: String,
                #[serde(default)]
                error_description: Option<String>,
            }
            let message = match http::json::<OAuthError>(&body) {
                Some(e) => match e.error_description {
                    Some(d) => format!("token endpoint: {}: {d}", e.error),
                    None => format!("token endpoint: {}", e.error),
                },
                None => format!("token endpoint: {}", http::text_excerpt(status, &body)),
            };
            return Err(refused(message));
        }
        let grant: Grant = http::json(&body)
            .ok_or_else(|| refused("token endpoint: answer is not a token grant".into()))?;
        if grant
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(refused("token endpoint: token_type is not Bearer".into()));
        }
        let ttl = Duration::from_secs_f64(
            grant
                .expires_in
                .filter(|s| s.is_finite() && *s > 0.0)
                .unwrap_or(60.0)
                .min(86_400.0),
        );
        // Renew shortly before expiry: a tenth of the lifetime, at most 30 s early.
        let early = (ttl / 10).min(Duration::from_secs(30));
        let mut header =
            HeaderValue::from_str(&format!("Bearer {}", grant.access_token.expose_secret()))
                .map_err(|_| refused("token endpoint: token is not a valid header value".into()))?;
        header.set_sensitive(true);
        let generation = self
            .grants
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        Ok(Token {
            header,
            generation,
            fresh_until: issued_at + ttl - early,
        })
    }
}
