//! Protected accounts: never removed, whichever way a row names them.

/// Accounts that are never removed (break-glass admins, service accounts, owners): emails, ids and
/// glob patterns (`*`, `?`, `[...]`), matched against a job's user without regard to case.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    patterns: Vec<String>,
    set: globset::GlobSet,
}

impl Protected {
    pub fn new(patterns: &[String]) -> Result<Protected, String> {
        let mut b = globset::GlobSetBuilder::new();
        for p in patterns {
            let glob = globset::GlobBuilder::new(p.trim())
                .case_insensitive(true)
                .literal_separator(false)
                .build()
                .map_err(|e| format!("`{p}` is not a pattern: {e}"))?;
            b.add(glob);
        }
        let set = b.build().map_err(|e| e.to_string())?;
        Ok(Protected {
            patterns: patterns.to_vec(),
            set,
        })
    }

    /// The patterns as configured.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The first pattern `user` matches.
    pub fn matches(&self, user: &str) -> Option<&str> {
        self.set
            .matches(user)
            .first()
            .map(|i| self.patterns[*i].as_str())
    }
}
