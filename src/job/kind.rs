//! The five provider APIs this tool speaks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The five provider APIs this tool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Factory,
    Aitronos,
    Telnyx,
    Aerospike,
    Cognee,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 5] = [
        ProviderKind::Factory,
        ProviderKind::Aitronos,
        ProviderKind::Telnyx,
        ProviderKind::Aerospike,
        ProviderKind::Cognee,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Factory => "factory",
            ProviderKind::Aitronos => "aitronos",
            ProviderKind::Telnyx => "telnyx",
            ProviderKind::Aerospike => "aerospike",
            ProviderKind::Cognee => "cognee",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ProviderKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown provider kind `{s}` (expected factory, aitronos, telnyx, aerospike or cognee)"))
    }
}
