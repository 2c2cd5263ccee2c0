//! `.kindling/state.json`: what each asset was generated from and what it wrote.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::storage::Mode;

/// Where the state lives, relative to the asset directory.
pub const STATE_FILE: &str = ".kindling/state.json";
const VERSION: u32 = 1;

/// A content digest, written `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{:x}", Sha256::digest(bytes)))
    }

    /// The digest of a sequence of labelled parts; each part is length-prefixed so that no two
    /// different sequences collide by concatenation.
    pub fn of_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Digest {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Digest(format!("sha256:{:x}", hasher.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub assets: BTreeMap<String, AssetRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetRecord {
    /// The digest of everything the asset was generated from.
    pub input_digest: Digest,
    /// RFC 3339.
    pub generated_at: String,
    /// Every file the asset generated, by path relative to the asset directory.
    pub files: BTreeMap<String, FileRecord>,
    /// Digests of files being written right now. A file found with one of these was written by
    /// kindling in a run that was interrupted; it is not a user edit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, Digest>,
    /// The digest of each file it was made from (and of its parameters, as `parameters`), to
    /// say which changed since.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Digest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub digest: Digest,
    pub mode: Mode,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a kindling state file ({source}); move it aside and run again: files that are on disk are then kept as your own"
    )]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
    #[error(
        "{path} has version {found}, but this kindling reads version {VERSION}; use a newer kindling"
    )]
    Version { path: String, found: u32 },
}

impl State {
    /// Reads the state of the asset directory `dir`; none yet is an empty state.
    pub fn load(dir: &Path) -> Result<State, StateError> {
        let path = dir.join(STATE_FILE);
        let shown = path.display().to_string();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    version: VERSION,
                    assets: BTreeMap::new(),
                });
            }
            Err(source) => {
                return Err(StateError::Read {
                    path: shown,
                    source,
                });
            }
        };
        let state: State = serde_json::from_slice(&text).map_err(|source| StateError::Corrupt {
            path: shown.clone(),
            source,
        })?;
        if state.version != VERSION {
            return Err(StateError::Version {
                path: shown,
                found: state.version,
            });
        }
        Ok(state)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("state serializes");
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_and_part_boundaries_matter() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(
            Digest::of_parts([&b"ab"[..], b"c"]),
            Digest::of_parts([&b"a"[..], b"bc"])
        );
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".kindling")).unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let err = State::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("state.json") && err.contains("move it aside"),
            "{err}"
        );
    }
}
