//! The pacing state file: the rate each `"auto"` entry learned, so the next run or worker start
//! begins near it rather than from a slow start. A small JSON object by entry name; a rate is used
//! again only for the same kind and base URL (another URL is another provider, or another plan).
//! Written whole to a temporary file, then renamed: a crash leaves the old file or the new one.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Entry;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Learned {
    pub kind: String,
    pub base_url: String,
    /// Requests per second.
    pub rate: f64,
    /// Where it came from (`throttled`, `probing`, `provider`, ...).
    pub source: String,
    /// RFC 3339, when it was written.
    pub at: String,
}

/// What the file holds, by entry name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Remembered {
    pub entries: BTreeMap<String, Learned>,
}

impl Remembered {
    /// The file at `path`; nothing when there is none. A file that cannot be read is said and
    /// ignored: the lanes start afresh, which is slower, never wrong.
    pub fn load(path: Option<&Path>) -> Remembered {
        let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
            return Remembered::default();
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "the pacing state file is not readable: starting afresh");
                Remembered::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Remembered::default(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the pacing state file: starting afresh");
                Remembered::default()
            }
        }
    }

    /// The rate learned for entry `name`, if it was learned against the same kind and base URL.
    pub fn rate(&self, name: &str, entry: &Entry) -> Option<f64> {
        let l = self.entries.get(name)?;
        (l.kind == entry.kind.to_string() && l.base_url == entry.base_url())
            .then_some(l.rate)
            .filter(|r| r.is_finite() && *r > 0.0)
    }

    /// Writes the file at `path`: a temporary file beside it, then a rename.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let tmp: PathBuf = {
            let mut name = path.file_name().unwrap_or_default().to_owned();
            name.push(".tmp");
            path.with_file_name(name)
        };
        let body = serde_json::to_vec_pretty(self).expect("serializable");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: &str) -> Entry {
        let s = crate::config::Settings::from_toml(
            &format!("[providers.t]\nkind = \"telnyx\"\ntoken_env = \"X\"\nbase_url = \"{base}\"\nrate_per_second = \"auto\"\n"),
            "t.toml",
        )
        .unwrap();
        s.providers["t"].clone()
    }

    #[test]
    fn round_trip_and_only_for_the_same_provider() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pacing.json");
        let e = entry("https://api.telnyx.com");
        let mut r = Remembered::default();
        r.entries.insert(
            "t".into(),
            Learned {
                kind: "telnyx".into(),
                base_url: e.base_url(),
                rate: 23.5,
                source: "throttled".into(),
                at: "2026-11-28T09:00:00Z".into(),
            },
        );
        r.save(&path).unwrap();
        let back = Remembered::load(Some(&path));
        assert_eq!(back, r);
        assert_eq!(back.rate("t", &e), Some(23.5));
        assert_eq!(back.rate("t", &entry("https://other.example")), None);
        assert_eq!(back.rate("nobody", &e), None);
        assert!(!dir.path().join("pacing.json.tmp").exists());
    }

    #[test]
    fn a_missing_or_broken_file_is_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pacing.json");
        assert_eq!(Remembered::load(Some(&path)), Remembered::default());
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(Remembered::load(Some(&path)), Remembered::default());
        assert_eq!(Remembered::load(None), Remembered::default());
    }
}
