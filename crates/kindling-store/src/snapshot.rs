//! What of an asset directory goes into a revision, and its manifest.
//!
//! Everything `kindling serve` reads goes in, secrets included (the store is etcd with client
//! certificates): the description, the PKI, the Ignition configs and renderings, the token key.
//! What kindling writes as it runs stays out: its log, the event log and the records of what was served
//! (the replicas keep those in the store themselves), the fleet's working state, backups and
//! temporary files. OS images, the kindling binary and the mirror (`assets/`, `mirror/`) are
//! listed by digest only and kept outside etcd.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// One file of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the asset directory, `/`-separated.
    pub path: String,
    /// Permission bits (0644, 0600, ...).
    pub mode: u32,
    pub size: u64,
    /// sha256 of its bytes, lowercase hex.
    pub digest: String,
    /// Kept outside etcd (see the module docs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
}

/// The files of a revision, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<Entry>,
}

/// An asset directory read for a push: its manifest, and the bytes of each file kept in etcd,
/// by digest.
pub struct Snapshot {
    pub manifest: Manifest,
    pub inline: BTreeMap<String, Vec<u8>>,
}

/// How a path of the asset directory is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Not part of a revision.
    Out,
    /// Its bytes go into etcd.
    Inline,
    /// Listed by digest; its bytes stay outside etcd.
    External,
}

/// Where `path` (relative, `/`-separated) goes.
pub fn kept(path: &str) -> Kept {
    const OUT: [&str; 7] = [
        ".kindling/events.jsonl",
        ".kindling/kindling.log",
        ".kindling/served/",
        ".kindling/fleet/",
        ".kindling/backups/",
        ".kindling/arm/",
        ".kindling/store/",
    ];
    let name = path.rsplit('/').next().unwrap_or(path);
    if OUT.iter().any(|out| path.starts_with(out)) || name.ends_with(".kindling-tmp") {
        return Kept::Out;
    }
    if path.starts_with("assets/") || path.starts_with("mirror/") {
        return Kept::External;
    }
    Kept::Inline
}

impl Snapshot {
    /// Reads the asset directory `dir`. Symbolic links are followed; anything that is not a
    /// file or a directory is left out.
    pub fn read(dir: &Path) -> Result<Snapshot, StoreError> {
        let mut snapshot = Snapshot {
            manifest: Manifest::default(),
            inline: BTreeMap::new(),
        };
        let mut pending = vec![dir.to_path_buf()];
        while let Some(at) = pending.pop() {
            let read_error = |source| StoreError::Read {
                path: at.clone(),
                source,
            };
            for item in std::fs::read_dir(&at).map_err(read_error)? {
                let item = item.map_err(read_error)?;
                let path = item.path();
                let Some(relative) = path
                    .strip_prefix(dir)
                    .ok()
                    .and_then(|r| r.to_str())
                    .map(String::from)
                else {
                    tracing::warn!("{}: not UTF-8, left out of the push", path.display());
                    continue;
                };
                let metadata = std::fs::metadata(&path).map_err(|source| StoreError::Read {
                    path: path.clone(),
                    source,
                })?;
                if metadata.is_dir() {
                    if kept(&format!("{relative}/")) != Kept::Out {
                        pending.push(path);
                    }
                    continue;
                }
                let how = kept(&relative);
                if !metadata.is_file() || how == Kept::Out {
                    continue;
                }
                let bytes = std::fs::read(&path).map_err(|source| StoreError::Read {
                    path: path.clone(),
                    source,
                })?;
                let digest = digest(&bytes);
                snapshot.manifest.files.push(Entry {
                    path: relative,
                    mode: metadata.permissions().mode() & 0o7777,
                    size: bytes.len() as u64,
                    digest: digest.clone(),
                    external: how == Kept::External,
                });
                if how == Kept::Inline {
                    snapshot.inline.insert(digest, bytes);
                }
            }
        }
        snapshot.manifest.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(snapshot)
    }
}

/// sha256 of `bytes`, lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `path` from a manifest is a plain relative path that stays inside the directory it
/// is written to: no `..`, no absolute path, no empty part.
pub fn is_safe(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_state_stays_out_and_images_stay_outside_etcd() {
        assert_eq!(kept("inventory.yaml"), Kept::Inline);
        assert_eq!(kept("tls/mcs.key"), Kept::Inline);
        assert_eq!(kept(".kindling/state.json"), Kept::Inline);
        assert_eq!(kept(".kindling/token.key"), Kept::Inline);
        assert_eq!(kept(".kindling/events.jsonl"), Kept::Out);
        assert_eq!(kept(".kindling/kindling.log"), Kept::Out);
        assert_eq!(kept(".kindling/served/worker0"), Kept::Out);
        assert_eq!(kept(".kindling/fleet/"), Kept::Out);
        assert_eq!(kept("ignition/.worker.ign.kindling-tmp"), Kept::Out);
        assert_eq!(kept("assets/fcos/kernel"), Kept::External);
        assert_eq!(kept("mirror/blobs/sha256/ab"), Kept::External);
    }

    #[test]
    fn a_directory_is_read_with_modes_and_digests() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str, mode: u32| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("inventory.yaml", "machines: []\n", 0o644);
        write("tls/mcs.key", "secret", 0o600);
        write("assets/fcos/kernel", "kernel", 0o644);
        write(".kindling/events.jsonl", "{}\n", 0o644);
        let snapshot = Snapshot::read(dir.path()).unwrap();
        let paths: Vec<(&str, u32, bool)> = snapshot
            .manifest
            .files
            .iter()
            .map(|e| (e.path.as_str(), e.mode, e.external))
            .collect();
        assert_eq!(
            paths,
            [
                ("assets/fcos/kernel", 0o644, true),
                ("inventory.yaml", 0o644, false),
                ("tls/mcs.key", 0o600, false),
            ]
        );
        // sha256("secret"), as sha256sum prints it.
        let key = &snapshot.manifest.files[2];
        assert_eq!(
            key.digest,
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        assert_eq!(snapshot.inline[&key.digest], b"secret");
        assert!(
            !snapshot
                .inline
                .contains_key(&snapshot.manifest.files[0].digest)
        );
    }

    #[test]
    fn only_plain_relative_paths_are_safe() {
        assert!(is_safe("ignition/worker.ign"));
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a"] {
            assert!(!is_safe(bad), "{bad}");
        }
    }
}
