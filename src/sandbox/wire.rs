//! Small readers and writers of the providers' wire: headers, forms, times, keys.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;

use crate::job::ProviderKind;

/// Whether the kind has organizations in its URLs (else the credential picks it).
pub(super) fn has_organizations(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::Aitronos | ProviderKind::Cognee)
}

pub(super) fn org_key(kind: ProviderKind, organization: Option<&str>) -> Option<String> {
    if has_organizations(kind) {
        organization.map(key)
    } else {
        None
    }
}

/// The comparison key of a user or organization: canonical for uuids, lowercase otherwise.
pub(super) fn key(s: &str) -> String {
    let s = s.trim();
    match uuid::Uuid::try_parse(s) {
        Ok(u) => u.hyphenated().to_string(),
        Err(_) => s.to_ascii_lowercase(),
    }
}

/// FNV-1a, 64 bits: a hash that is the same on every run and every machine.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The bearer token of an `Authorization` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub(super) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

/// Decodes an `application/x-www-form-urlencoded` string (also a query string).
pub(super) fn form_pairs(s: &str) -> Vec<(String, String)> {
    pub(super) fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match u8::from_str_radix(
                        std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"),
                        16,
                    ) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `2026-11-22T17:11:55Z`.
pub(super) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A creation time fixed per user, somewhere in 2021-2024 (`2022-03-04T05:06:07.000Z`).
pub(super) fn created_at(user: &str) -> String {
    let t =
        UNIX_EPOCH + Duration::from_secs(1_610_000_000 + fnv1a(key(user).as_bytes()) % 100_000_000);
    rfc3339(t).replace('Z', ".000Z")
}

/// The words of an email's local part, capitalized: `ava.anderson@acme.example` -> `["Ava",
/// "Anderson"]`, `person17@bulk.example` -> `["Person17"]`.
pub(super) fn name_words(email: &str) -> Vec<String> {
    let local = email.split('@').next().unwrap_or(email);
    local
        .split(['.', '_', '-', '+'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

pub(super) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
