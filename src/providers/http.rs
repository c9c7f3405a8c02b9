//! The uniform answer every adapter reads a provider's reply into, and helpers to read headers.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use http::header::{HeaderMap, HeaderName, RETRY_AFTER};
use serde::Serialize;

/// A provider's error, read from its own error body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProviderError {
    /// The provider's own code (`10005`, `CANNOT_DELETE_OWNER`, a problem `type`), when it gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

impl ProviderError {
    /// An error body that is not the provider's documented envelope (a proxy's page, a wrong
    /// URL): its text, shortened, as the message.
    pub fn unparsed(status: StatusCode, body: &[u8]) -> ProviderError {
        ProviderError {
            code: None,
            message: text_excerpt(status, body),
        }
    }
}

/// What the adapter, knowing its page, says the answer means beyond its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// A documented success status: the membership is gone.
    Removed,
    /// A 404 in the provider's own not-a-member shape: this person is not a member (any more).
    /// Believed only once the entry's preflight proved its base URL.
    NotAMember,
    /// A 404 the page does not document (Aerospike's): the person may be gone, or the URL may be
    /// wrong. Believed only once the member list confirms the person is not on it.
    NotAMemberUnconfirmed,
    /// A 404 that says the organization or tenant does not exist, or the URL is wrong.
    NoSuchOrganization,
    /// A refusal about this target, not about our credentials (an owner who cannot be removed).
    TargetRefused,
    /// A refusal scoped to one organization or tenant (no permission there): that organization's
    /// jobs fail, the entry's others go on.
    OrganizationRefused,
    /// The access token expired or was revoked: a new one may cure it.
    TokenExpired,
    /// The token endpoint refused our client credentials: a new token will not help.
    TokenDenied,
    /// The provider says the request lacked what we always send (Aitronos' `confirm: true`): the
    /// body was lost on the way, and every removal will meet the same fate.
    BodyLost,
    /// A 2xx to a member list that is not the page's documented list (see `lookup`).
    Unreadable,
    /// Nothing beyond the status code.
    None,
}

/// One answer, read: the same shape for every provider.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub hint: Hint,
    pub error: Option<ProviderError>,
    pub request_id: Option<String>,
    /// How long the provider asks us to wait (Retry-After, or its own reset header).
    pub wait: Option<Duration>,
    /// What the headers say of the rate limit (limit, remaining, reset), for the lane's pacing.
    pub quota: Option<super::quota::Quota>,
    /// The user a success answer names as removed, where the page's answer names one (Telnyx's
    /// `data.id`): a success naming another user is no success.
    pub subject: Option<String>,
}

impl Answer {
    /// An answer with nothing but its status and hint.
    pub fn new(status: StatusCode, hint: Hint) -> Answer {
        Answer {
            status,
            hint,
            error: None,
            request_id: None,
            wait: None,
            quota: None,
            subject: None,
        }
    }
}

/// No answer came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Transport {
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Other(String),
    /// The TLS handshake or the certificate check failed: retrying will not help.
    #[error(
        "TLS failed (check the provider's certificate, http.ca_file, or a TLS-inspecting proxy): {0}"
    )]
    Tls(String),
    /// A list answer larger than we agreed to read: a failure, never a cut list.
    #[error("{0}")]
    TooLarge(String),
}

/// A header as text, when present and readable.
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(HeaderName::from_bytes(name.as_bytes()).ok()?)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `Retry-After`, as delay-seconds or as an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A header holding seconds to wait (`x-ratelimit-reset: 7`, fractions allowed).
pub fn seconds_header(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let secs: f64 = header(headers, name)?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// A duration such as `1s`, `250ms`, `6m0s` (the `x-ratelimit-reset-requests` style).
pub fn go_duration_header(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let v = header(headers, name)?;
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return None,
        };
        total += n * unit;
    }
    if !num.is_empty() {
        total += num.parse::<f64>().ok()?;
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total.min(86_400.0)))
}

/// The body as JSON of type `T`, if it is.
pub fn json<'b, T: serde::Deserialize<'b>>(body: &'b [u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

/// The body as short text for an error message when it is not the documented envelope.
pub fn text_excerpt(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        text.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    fn h(name: &'static str, v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(name, HeaderValue::from_str(v).unwrap());
        m
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&h("retry-after", "7"), now),
            Some(Duration::from_secs(7))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&h("retry-after", &date), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            retry_after(&h("retry-after", &past), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&h("retry-after", "soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn reset_headers_in_their_styles() {
        // A Unix time: `quota::reset_in`, tested there.
        assert_eq!(
            seconds_header(&h("x-ratelimit-reset", "2.5"), "x-ratelimit-reset"),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            seconds_header(&h("x-ratelimit-reset", "-1"), "x-ratelimit-reset"),
            None
        );
        let g = |v| {
            go_duration_header(
                &h("x-ratelimit-reset-requests", v),
                "x-ratelimit-reset-requests",
            )
        };
        assert_eq!(g("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(g("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(g("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(g("3"), Some(Duration::from_secs(3)));
        assert_eq!(g("x"), None);
    }
}
