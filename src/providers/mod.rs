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
pub mod quota;
pub mod telnyx;

use std::time::Duration;

use ::http::StatusCode;
use ::http::header::HeaderMap;

use crate::job::{ProviderKind, Target};
pub use auth::Auth;
pub use client::HttpSpec;
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

    /// One page of the member list (or of the search for `email`, where the API searches) within
    /// `organization` (the org or tenant, for the kinds that name one), starting at `at`.
    fn list(
        &self,
        http: &Client,
        organization: Option<&str>,
        email: Option<&str>,
        at: &lookup::Cursor,
    ) -> RequestBuilder;

    /// Reads a successful list answer strictly in the page's documented shape, or says why it
    /// is not one (naming the field or key).
    fn read_list(
        &self,
        body: &[u8],
        at: &lookup::Cursor,
    ) -> Result<lookup::MemberPage, lookup::Unreadable>;

    /// The smallest authenticated read-only request of this API (one member of the list), which
    /// proves the base URL, the credential and its permission before any removal.
    fn probe(&self, http: &Client, organization: Option<&str>) -> RequestBuilder;

    /// Whether the list ignores the email (no filter): one whole read serves every lookup.
    fn whole_list(&self) -> bool;

    /// Whether the list marks the organization's owner ([`lookup::Member::owner`]): the
    /// preflight then reads the whole list, so the owner is protected whichever way a row names
    /// them.
    fn owner_listed(&self) -> bool {
        false
    }

    /// What the page promises of a whole list beyond each record (Telnyx: exactly one owner),
    /// checked once every page is read.
    fn check_whole(&self, _members: &[lookup::Member]) -> Result<(), lookup::Unreadable> {
        Ok(())
    }
}

/// The provider's public API, where an entry names no `base_url` (each page's server; Cognee's
/// self-hosted default, since its cloud URL names the tenant).
pub fn default_base_url(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Factory => "https://api.factory.ai",
        ProviderKind::Aitronos => "https://api.aitronos.com",
        ProviderKind::Telnyx => "https://api.telnyx.com",
        ProviderKind::Aerospike => "https://api.aerospike.com/v1",
        ProviderKind::Cognee => "http://localhost:8000",
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

/// Which token a request carried: a request refused with a 401 drops the token only if it is
/// still the current one, so concurrent refusals of one token cause one refresh, and a refusal
/// of an old token never drops a new one. 0 for fixed credentials.
pub type Generation = u64;

/// A request ready to leave, and the token generation it carries.
pub struct Prepared {
    pub request: RequestBuilder,
    pub generation: Generation,
}

/// An adapter with its credentials and HTTP client: sends one request, reads one answer.
pub struct Provider {
    adapter: Box<dyn Adapter>,
    auth: Auth,
    http: Client,
}

impl Provider {
    pub fn new(adapter: Box<dyn Adapter>, auth: Auth, http: Client) -> Provider {
        Provider {
            adapter,
            auth,
            http,
        }
    }

    pub fn kind(&self) -> ProviderKind {
        self.adapter.kind()
    }

    /// Whether a 401 may be cured by fetching a new token (OAuth).
    pub fn refreshable(&self) -> bool {
        self.auth.refreshable()
    }

    /// Drops the cached token if it is still generation `generation` (the one a refused request
    /// carried), so the next request fetches a new one.
    pub fn invalidate_token(&self, generation: Generation) {
        self.auth.invalidate(generation);
    }

    /// Whether the list ignores the email, so one whole read serves every lookup.
    pub fn whole_list(&self) -> bool {
        self.adapter.whole_list()
    }

    /// See [`Adapter::check_whole`].
    pub fn check_whole(&self, members: &[lookup::Member]) -> Result<(), lookup::Unreadable> {
        self.adapter.check_whole(members)
    }

    /// Whether the list marks the organization's owner (see [`Adapter::owner_listed`]).
    pub fn owner_listed(&self) -> bool {
        self.adapter.owner_listed()
    }

    /// Attaches credentials (fetching a token if needed). `Err` holds what to classify instead
    /// when no request could be built: the token endpoint's refusal, or its silence.
    ///
    /// Kept apart from sending so the lane admits a request only once it is ready to leave: a
    /// token fetch between admission and sending would bunch requests up behind it and send them
    /// as a burst the limiter never allowed.
    async fn authorize(
        &self,
        request: RequestBuilder,
    ) -> Result<Prepared, Result<Answer, Transport>> {
        match self.auth.apply(request).await {
            Ok((request, generation)) => Ok(Prepared {
                request,
                generation,
            }),
            // The token endpoint's own refusal is an answer too, classified like any other.
            Err(auth::AuthFailure::Answer(answer)) => Err(Ok(answer)),
            Err(auth::AuthFailure::Transport(t)) => Err(Err(t)),
        }
    }

    /// One removal request with its credentials.
    pub async fn prepare(&self, target: &Target) -> Result<Prepared, Result<Answer, Transport>> {
        assert_eq!(
            target.kind(),
            self.adapter.kind(),
            "a job reached the lane of another provider kind"
        );
        self.authorize(self.adapter.removal(&self.http, target))
            .await
    }

    /// Sends a prepared removal and reads its answer. `Err` only when no answer came back.
    pub async fn send(&self, request: RequestBuilder) -> Result<Answer, Transport> {
        let (status, headers, body) = request.send().await?;
        Ok(self.read(status, &headers, &body))
    }

    /// The adapter's reading of an answer, with what its headers say of the rate limit.
    fn read(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Answer {
        let mut answer = self.adapter.read(status, headers, body);
        answer.quota = quota::read(headers, std::time::SystemTime::now());
        answer
    }

    /// One page of the member list or search, with its credentials.
    pub async fn prepare_list(
        &self,
        organization: Option<&str>,
        email: Option<&str>,
        at: &lookup::Cursor,
    ) -> Result<Prepared, Result<Answer, Transport>> {
        self.authorize(self.adapter.list(&self.http, organization, email, at))
            .await
    }

    /// The probe request (see [`Adapter::probe`]), with its credentials.
    pub async fn prepare_probe(
        &self,
        organization: Option<&str>,
    ) -> Result<Prepared, Result<Answer, Transport>> {
        self.authorize(self.adapter.probe(&self.http, organization))
            .await
    }

    /// Sends a prepared list, search or probe and reads it: the answer (classified like any
    /// other) and, on a 2xx in the documented shape, the page. A 2xx in any other shape is an
    /// answer we cannot read: its error says why, and it reads as no page.
    pub async fn send_list(
        &self,
        request: RequestBuilder,
        at: &lookup::Cursor,
    ) -> Result<(Answer, Option<lookup::MemberPage>), Transport> {
        let (status, headers, body) = request.list().send().await?;
        let mut answer = self.read(status, &headers, &body);
        // A list is not a removal: a not-a-member or owner reading means nothing here (a 404 to
        // a list is a wrong URL or organization). What concerns the credential or the
        // organization still does.
        if !matches!(
            answer.hint,
            Hint::TokenExpired | Hint::TokenDenied | Hint::OrganizationRefused
        ) {
            answer.hint = Hint::None;
        }
        answer.subject = None;
        if !status.is_success() {
            return Ok((answer, None));
        }
        match self.adapter.read_list(&body, at) {
            Ok(page) => Ok((answer, Some(page))),
            Err(why) => {
                let said = http::text_excerpt(status, &body);
                Ok((unreadable(answer, format!("{why}; it said: {said}")), None))
            }
        }
    }

    /// Reads every page at once, unpaced (tests and one-off calls; the lane paces each page).
    /// `Err` holds the answer that ended the read: a refusal, or an unreadable list.
    pub async fn members(
        &self,
        organization: Option<&str>,
        email: Option<&str>,
    ) -> Result<Vec<lookup::Member>, Result<Answer, Transport>> {
        let mut read = lookup::Collect::new(email.is_none() || self.whole_list());
        let mut at = lookup::Cursor::default();
        loop {
            let prepared = self.prepare_list(organization, email, &at).await?;
            let (answer, page) = self.send_list(prepared.request, &at).await.map_err(Err)?;
            let Some(page) = page else {
                return Err(Ok(answer));
            };
            match read.add(page) {
                Ok(Some(next)) => at = next,
                Ok(None) => {
                    let members = read.into_members();
                    if email.is_none() || self.whole_list() {
                        if let Err(why) = self.check_whole(&members) {
                            return Err(Ok(unreadable(answer, why.to_string())));
                        }
                    }
                    return Ok(members);
                }
                Err(why) => return Err(Ok(unreadable(answer, why.to_string()))),
            }
        }
    }

    /// Finds the member with exactly this email, reading every page (tests and one-off calls).
    /// A search's `NoMember` is only what the search answered: the lane confirms an absence
    /// against the whole list, and so must any other caller.
    pub async fn find(
        &self,
        organization: Option<&str>,
        email: &str,
    ) -> Result<lookup::Resolution, Result<Answer, Transport>> {
        let members = self.members(organization, Some(email)).await?;
        Ok(lookup::resolve(email, &members))
    }

    /// Prepares and sends at once (no pacing in between): for tests and one-off calls.
    pub async fn remove(&self, target: &Target) -> Result<Answer, Transport> {
        match self.prepare(target).await {
            Ok(p) => self.send(p.request).await,
            Err(result) => result,
        }
    }
}

pub use lookup::MAX_PAGES;

/// `answer`, whose 2xx carried a member list that cannot be proof, marked so with `why`: it is
/// classified as a failure (`unreadable_list`), never as an empty list.
pub fn unreadable(mut answer: Answer, why: String) -> Answer {
    answer.hint = Hint::Unreadable;
    answer.error = Some(ProviderError {
        code: Some("unreadable_list".into()),
        message: format!("the member list cannot be read: {why}"),
    });
    answer
}

/// The HTTP client of one provider entry with the defaults (see [`client`]): rustls, no
/// redirects, proxies from the environment, our User-Agent, every exchange within `timeout`.
pub fn client(timeout: Duration) -> Result<Client, client::BuildError> {
    Client::new(timeout)
}

/// What one provider entry needs, as the config produces it.
pub struct ProviderSpec {
    pub kind: ProviderKind,
    pub base_url: String,
    pub credential: auth::Credential,
    /// Its own timeout included.
    pub http: HttpSpec,
}

/// Builds a provider entry's adapter, credentials and client.
pub fn build(spec: &ProviderSpec) -> Result<Provider, String> {
    use auth::Credential;
    let http = Client::with(&spec.http).map_err(|e| e.to_string())?;
    let auth = match &spec.credential {
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
        adapter(spec.kind, &spec.base_url),
        auth,
        http,
    ))
}
