//! Provider adapters: one API page each, and the small shared machinery they read answers with.
//!
//! An adapter builds the removal request (method, URL, query, body) and reads the answer into an
//! [`Answer`]. It never sleeps, retries or counts: pacing is the lane's job and deciding what an
//! answer means for the job is [`crate::retry::classify`]'s.

pub mod aerospike;
pub mod aitronos;
pub mod auth;
pub mod client;
pub mod cognee;
pub mod factory;
pub mod http;
pub mod lookup;
pub mod telnyx;

use std::time::Duration;

use ::http::StatusCode;
use ::http::header::HeaderMap;

use crate::job::{ProviderKind, Target};
pub use auth::Auth;
pub use client::{Client, RequestBuilder};
pub use http::{Answer, Hint, ProviderError, Transport};

/// One provider's API page.
pub trait Adapter: Send + Sync + 'static {
    fn kind(&self) -> ProviderKind;

    /// The removal request for `target`, without credentials. `target` is of this adapter's kind:
    /// [`Provider`] checks that before calling.
    fn removal(&self, http: &Client, target: &Target) -> RequestBuilder;

    /// Reads an answer to the removal (status, headers, body) into the uniform shape.
    fn read(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Answer;

    /// The member search or list request that finds `email`, page `page` (from 0), within
    /// `organization` (the org or tenant, for the kinds that name one). None for a provider that
    /// takes emails directly (Factory).
    fn lookup(
        &self,
        _http: &Client,
        _organization: Option<&str>,
        _email: &str,
        _page: u32,
    ) -> Option<RequestBuilder> {
        None
    }

    /// Reads a successful search or list answer.
    fn read_lookup(&self, _body: &[u8], _page: u32) -> Option<lookup::MemberPage> {
        None
    }

    /// Whether `lookup` returns every member at once, whatever the email.
    fn whole_list(&self) -> bool {
        false
    }
}

/// Builds the adapter for a provider kind with its base URL (no trailing slash).
pub fn adapter(kind: ProviderKind, base_url: &str) -> Box<dyn Adapter> {
    let base = base_url.trim_end_matches('/').to_owned();
    match kind {
        ProviderKind::Factory => Box::new(factory::Factory { base }),
        ProviderKind::Aitronos => Box::new(aitronos::Aitronos { base }),
        ProviderKind::Telnyx => Box::new(telnyx::Telnyx { base }),
        ProviderKind::Aerospike => Box::new(aerospike::Aerospike { base }),
        ProviderKind::Cognee => Box::new(cognee::Cognee { base }),
    }
}

/// An adapter with its credentials and HTTP client: sends one removal, reads one answer.
pub struct Provider {
    adapter: Box<dyn Adapter>,
    auth: Auth,
    http: Client,
    /// Whole member lists by organization ("" when the key picks it), with when they were read.
    lists: std::sync::Mutex<std::collections::HashMap<String, CachedList>>,
    list_fetch: tokio::sync::Mutex<()>,
}

/// A whole member list and when it was read.
type CachedList = (std::time::Instant, std::sync::Arc<Vec<lookup::Member>>);

/// How long a whole member list serves lookups before it is read again.
pub const LIST_CACHE_TTL: Duration = Duration::from_secs(60);

impl Provider {
    pub fn new(adapter: Box<dyn Adapter>, auth: Auth, http: Client) -> Provider {
        Provider {
            adapter,
            auth,
            http,
            lists: Default::default(),
            list_fetch: Default::default(),
        }
    }

    pub fn kind(&self) -> ProviderKind {
        self.adapter.kind()
    }

    /// Whether a 401 may be cured by fetching a new token (OAuth), once.
    pub fn refreshable(&self) -> bool {
        self.auth.refreshable()
    }

    /// Drops a cached token that the provider refused on a request sent at `sent_at`, so the next
    /// request fetches a new one.
    pub fn invalidate_token(&self, sent_at: std::time::Instant) {
        self.auth.invalidate(sent_at);
    }

    /// Builds one removal request with its credentials (fetching a token if needed). `Err` holds
    /// what to classify instead when no request could be built: the token endpoint's refusal, or
    /// its silence.
    ///
    /// Kept apart from [`Provider::send`] so the lane admits a request only once it is ready to
    /// leave: a token fetch between admission and sending would bunch requests up behind it and
    /// send them as a burst the limiter never allowed.
    pub async fn prepare(
        &self,
        target: &Target,
    ) -> Result<RequestBuilder, Result<Answer, Transport>> {
        assert_eq!(
            target.kind(),
            self.adapter.kind(),
            "a job reached the lane of another provider kind"
        );
        let request = self.adapter.removal(&self.http, target);
        match self.auth.apply(request).await {
            Ok(r) => Ok(r),
            // The token endpoint's own refusal is an answer too, classified like any other.
            Err(auth::AuthFailure::Answer(answer)) => Err(Ok(answer)),
            Err(auth::AuthFailure::Transport(t)) => Err(Err(t)),
        }
    }

    /// Sends a prepared request and reads its answer. `Err` only when no answer came back.
    pub async fn send(&self, request: RequestBuilder) -> Result<Answer, Transport> {
        let (status, headers, body) = request.send().await?;
        Ok(self.adapter.read(status, &headers, &body))
    }

    /// Whether this provider's member list comes whole (no filter, no paging), so one fetch can
    /// serve every lookup for a while (Aerospike's members; a Cognee tenant's users).
    pub fn whole_list(&self) -> bool {
        self.adapter.whole_list()
    }

    /// Builds one page of a member search with its credentials. None for a provider that takes
    /// emails directly; `Err` as for [`Provider::prepare`].
    pub async fn prepare_lookup(
        &self,
        organization: Option<&str>,
        email: &str,
        page: u32,
    ) -> Option<Result<RequestBuilder, Result<Answer, Transport>>> {
        let request = self.adapter.lookup(&self.http, organization, email, page)?;
        Some(match self.auth.apply(request).await {
            Ok(r) => Ok(r),
            Err(auth::AuthFailure::Answer(answer)) => Err(Ok(answer)),
            Err(auth::AuthFailure::Transport(t)) => Err(Err(t)),
        })
    }

    /// Sends a prepared search and reads it: the answer (classified like any other) and, on a 2xx
    /// that reads as a page, the page.
    pub async fn send_lookup(
        &self,
        request: RequestBuilder,
        page: u32,
    ) -> Result<(Answer, Option<lookup::MemberPage>), Transport> {
        let (status, headers, body) = request.send().await?;
        let mut answer = self.adapter.read(status, &headers, &body);
        if status.is_success() {
            // A search that answered is not a removal: only its page matters.
            answer.hint = Hint::None;
            let page = self.adapter.read_lookup(&body, page);
            return Ok((answer, page));
        }
        // A search's 404 says nothing about membership: the organization or the URL is wrong.
        if answer.hint == Hint::NotAMember {
            answer.hint = Hint::NoSuchOrganization;
        }
        Ok((answer, None))
    }

    /// One page, prepared and sent at once (tests and one-off calls).
    pub async fn lookup_page(
        &self,
        organization: Option<&str>,
        email: &str,
        page: u32,
    ) -> Result<(Answer, Option<lookup::MemberPage>), Option<Result<Answer, Transport>>> {
        match self.prepare_lookup(organization, email, page).await {
            None => Err(None),
            Some(Err(r)) => Err(Some(r)),
            Some(Ok(request)) => self
                .send_lookup(request, page)
                .await
                .map_err(|t| Some(Err(t))),
        }
    }

    /// The cached whole member list for `organization`, while fresh.
    pub fn cached_members(
        &self,
        organization: Option<&str>,
    ) -> Option<std::sync::Arc<Vec<lookup::Member>>> {
        let cache = self.lists.lock().expect("list cache lock");
        cache
            .get(organization.unwrap_or(""))
            .filter(|(at, _)| at.elapsed() < LIST_CACHE_TTL)
            .map(|(_, m)| m.clone())
    }

    pub fn cache_members(
        &self,
        organization: Option<&str>,
        members: std::sync::Arc<Vec<lookup::Member>>,
    ) {
        let mut cache = self.lists.lock().expect("list cache lock");
        cache.insert(
            organization.unwrap_or("").to_owned(),
            (std::time::Instant::now(), members),
        );
    }

    /// Held while one job fetches a whole list, so the others wait for the cache instead of each
    /// fetching it.
    pub fn list_fetch(&self) -> &tokio::sync::Mutex<()> {
        &self.list_fetch
    }

    /// Finds the member with exactly this email, reading every page (for tests and one-off calls;
    /// the lane paces each page like any request).
    pub async fn find(
        &self,
        organization: Option<&str>,
        email: &str,
    ) -> Result<lookup::Resolution, Option<Result<Answer, Transport>>> {
        let mut members = Vec::new();
        for page in 0..1000 {
            let (answer, read) = self.lookup_page(organization, email, page).await?;
            let Some(read) = read else {
                return Err(Some(Ok(answer)));
            };
            members.extend(read.members);
            if !read.more {
                break;
            }
        }
        Ok(lookup::resolve(email, &members))
    }

    /// Prepares and sends at once (no pacing in between): for tests and one-off calls.
    pub async fn remove(&self, target: &Target) -> Result<Answer, Transport> {
        match self.prepare(target).await {
            Ok(request) => self.send(request).await,
            Err(result) => result,
        }
    }
}

/// The HTTP client of one provider entry (see [`client`]): rustls, no redirects, no proxy from
/// the environment, our User-Agent, every exchange within `timeout`.
pub fn client(timeout: Duration) -> Result<Client, client::BuildError> {
    Client::new(timeout)
}

/// Builds a provider entry's adapter, credentials and client from its configuration.
pub fn build(
    entry: &crate::config::Entry,
    credential: &crate::config::Credential,
) -> Result<Provider, String> {
    use crate::config::Credential;
    let http = client(Duration::from_millis(entry.timeout_ms)).map_err(|e| e.to_string())?;
    let auth = match credential {
        Credential::Bearer(token) => Auth::bearer(token)?,
        // Aitronos spells it X-API-Key, Cognee X-Api-Key: header names are case-insensitive.
        Credential::ApiKey(key) => Auth::header("x-api-key", "", key)?,
        Credential::OAuth {
            token_url,
            client_id,
            client_secret,
            body,
        } => Auth::OAuth(std::sync::Arc::new(auth::TokenSource::new(
            http.clone(),
            token_url.clone(),
            client_id.clone(),
            client_secret.clone(),
            *body,
        ))),
    };
    Ok(Provider::new(
        adapter(entry.kind, &entry.base_url()),
        auth,
        http,
    ))
}
