//! The `RELEASES` document: versioned, human-readable JSON.

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::release::{Invariant, ReleaseState, Releases};

/// The format this build reads and writes.
pub const FORMAT: &str = "emqx-relup/releases/v1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format: String,
    releases: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    version: String,
    state: ReleaseState,
}

/// The document for a set of releases, newest first.
pub fn encode(releases: &Releases) -> String {
    let doc = Document {
        format: FORMAT.to_string(),
        releases: releases
            .newest_first()
            .map(|(v, state)| Entry {
                version: v.to_string(),
                state,
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// Why a state document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not JSON.
    #[error("not valid JSON ({0})")]
    Json(String),
    /// Another format tag.
    #[error("unknown format {0} (this build reads \"{FORMAT}\")")]
    Unknown(String),
    /// No format tag.
    #[error("no \"format\" key")]
    Untagged,
    /// Our tag, but not our document.
    #[error("malformed ({0})")]
    Malformed(String),
    /// A version that is not semantic.
    #[error("invalid version '{0}'")]
    Version(String),
    /// The releases break an invariant.
    #[error(transparent)]
    Invariant(#[from] Invariant),
}

/// Reads a document; any doubt is an error, never a guess.
pub fn decode(bytes: &[u8]) -> Result<Releases, FormatError> {
    #[derive(Deserialize)]
    struct Probe {
        format: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| FormatError::Json(e.to_string()))?;
    match probe.format {
        Some(serde_json::Value::String(f)) if f == FORMAT => {}
        Some(other) => return Err(FormatError::Unknown(other.to_string())),
        None => return Err(FormatError::Untagged),
    }
    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
    let mut entries = Vec::with_capacity(doc.releases.len());
    for entry in doc.releases {
        let version =
            Version::parse(&entry.version).map_err(|_| FormatError::Version(entry.version))?;
        entries.push((version, entry.state));
    }
    Ok(Releases::from_entries(entries)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Releases::from_entries([
            (Version::new(5, 0, 1), ReleaseState::Permanent),
            (Version::new(5, 0, 0), ReleaseState::Old),
        ])
        .unwrap();
        let text = encode(&r);
        assert!(text.contains("\"format\": \"emqx-relup/releases/v1\""));
        assert_eq!(decode(text.as_bytes()).unwrap(), r);
    }

    #[test]
    fn doubtful_documents_are_refused() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"releases": []}"#,
            r#"{"format": "emqx-relup/releases/v2", "releases": []}"#,
            r#"{"format": "emqx-relup/releases/v1", "releases": [{"version": "v5", "state": "old"}]}"#,
            r#"{"format": "emqx-relup/releases/v1", "releases": [{"version": "5.0.0", "state": "weird"}]}"#,
            r#"{"format": "emqx-relup/releases/v1", "releases": [], "extra": 1}"#,
            r#"{"format": "emqx-relup/releases/v1", "releases": [{"version": "5.0.0", "state": "permanent"}, {"version": "5.0.1", "state": "permanent"}]}"#,
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "accepted: {bad}");
        }
    }
}
