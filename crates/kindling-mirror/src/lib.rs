//! Images and binaries for disconnected installs, in `D/mirror`.
//!
//! `D/mirror` is an OCI image layout ([`layout`]) that holds every image the cluster runs under its
//! full name (`registry.k8s.io/pause:3.10.1`), plus `files/` with the node binaries
//! ([`files`]). [`Store`] fills it (every blob checked against its digest before it is kept;
//! [`import`] reads `docker save`, OCI layouts and `skopeo copy` output, and directories of
//! binaries); [`Mirror`] is the read side the server's registry answers from.

pub mod digest;
pub mod fetch;
pub mod files;
pub mod import;
pub mod layout;
mod reference;
pub mod release;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use digest::Digest;
pub use files::{FileRecord, Files, NodeFiles};
pub use layout::Descriptor;
pub use reference::{Reference, is_repository, is_tag};
pub use store::Store;

/// Why the mirror could not be read or filled.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// Bytes that are not what their digest says: refused, never stored.
    #[error(
        "{what}: the content's digest is {actual} ({size} bytes), not {expected}; it was not stored"
    )]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("{0}")]
    Source(String),
}

impl MirrorError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> MirrorError {
        MirrorError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn invalid(path: &Path, message: impl std::fmt::Display) -> MirrorError {
        MirrorError::Invalid {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// A manifest or index the registry can serve: its digest, media type and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// `D/mirror`, read into memory: which names and tags exist, what every manifest is. Blobs stay
/// on disk and are checked against their digest before they are first served.
#[derive(Debug, Default)]
pub struct Mirror {
    root: PathBuf,
    /// name → tag → the manifest or index it points to.
    tags: HashMap<String, BTreeMap<String, Served>>,
    /// name → every manifest or index under it, by digest (tagged ones and their children).
    manifests: HashMap<String, HashMap<Digest, Served>>,
    pub files: Files,
    /// Blobs proven to match their digest, with the file state they were proven in.
    verified: Mutex<HashMap<Digest, Stamp>>,
    /// One lock per blob being hashed: concurrent first requests for a blob hash it once, and
    /// other blobs do not wait for it.
    hashing: Mutex<HashMap<Digest, std::sync::Arc<Mutex<()>>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
    }
}

impl Mirror {
    /// Reads `root` (`D/mirror`); an absent directory is an empty mirror.
    pub fn open(root: &Path) -> Result<Mirror, MirrorError> {
        let mut mirror = Mirror {
            root: root.to_path_buf(),
            ..Mirror::default()
        };
        if !root.exists() {
            return Ok(mirror);
        }
        let index = store::read_index(root)?;
        for top in &index.manifests {
            let Some(name) = top.annotations.get(layout::REF_NAME) else {
                continue;
            };
            let reference: Reference = name
                .parse()
                .map_err(|e: String| MirrorError::invalid(&root.join(layout::INDEX), e))?;
            let repository = reference.name();
            let served = Served {
                digest: top.digest.clone(),
                media_type: top.media_type.clone(),
                size: top.size,
            };
            if let Some(tag) = &reference.tag {
                mirror
                    .tags
                    .entry(repository.clone())
                    .or_default()
                    .insert(tag.clone(), served.clone());
            }
            let manifests = mirror.manifests.entry(repository).or_default();
            manifests.insert(served.digest.clone(), served.clone());
            if layout::is_index(&top.media_type) {
                let path = root.join("blobs/sha256").join(top.digest.hex());
                let bytes = std::fs::read(&path).map_err(|e| MirrorError::io(&path, e))?;
                let layout::Parsed::Index(child_index) =
                    layout::parse_manifest(&bytes, &top.media_type)
                        .map_err(|e| MirrorError::invalid(&path, e))?
                else {
                    unreachable!("parse_manifest follows the declared type")
                };
                for child in child_index.manifests {
                    manifests.insert(
                        child.digest.clone(),
                        Served {
                            digest: child.digest,
                            media_type: child.media_type,
                            size: child.size,
                        },
                    );
                }
            }
        }
        mirror.files = Files::read(root)?;
        Ok(mirror)
    }

    /// Whether any image is kept under `name` (`registry.k8s.io/pause`).
    pub fn has_repository(&self, name: &str) -> bool {
        self.manifests.contains_key(name)
    }

    /// The manifest `reference` (a tag or a digest) names under `name`.
    pub fn manifest(&self, name: &str, reference: &str) -> Option<&Served> {
        match reference.parse::<Digest>() {
            Ok(digest) => self.manifests.get(name)?.get(&digest),
            Err(_) => self.tags.get(name)?.get(reference),
        }
    }

    /// The tags under `name`, in lexical order.
    pub fn tags(&self, name: &str) -> Option<impl Iterator<Item = &str>> {
        self.tags.get(name).map(|t| t.keys().map(String::as_str))
    }

    /// Every image kept, as full references (`registry.k8s.io/pause:3.10.1`).
    pub fn images(&self) -> impl Iterator<Item = String> + '_ {
        self.tags
            .iter()
            .flat_map(|(name, tags)| tags.keys().map(move |t| format!("{name}:{t}")))
    }

    /// The upstream registries of the images kept (`registry.k8s.io`, `ghcr.io`), sorted.
    pub fn registries(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .tags
            .keys()
            .filter_map(|name| name.split_once('/').map(|(host, _)| host.to_string()))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Whether the image `reference` is kept, by tag or by digest.
    pub fn has_image(&self, reference: &Reference) -> bool {
        let name = reference.name();
        match (&reference.digest, &reference.tag) {
            (Some(digest), _) => self.manifest(&name, digest.as_str()).is_some(),
            (None, Some(tag)) => self.manifest(&name, tag).is_some(),
            (None, None) => false,
        }
    }

    /// Where the blob `digest` is kept, whether or not it exists.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// The blob `digest`, once proven to match its digest: hashed on first use and again
    /// whenever the file changes (size, modification time or inode), so a tampered or
    /// truncated blob is refused rather than served.
    pub fn verified_blob(&self, digest: &Digest) -> Result<(PathBuf, u64), BlobError> {
        let path = self.blob_path(digest);
        let meta = std::fs::metadata(&path).map_err(|_| BlobError::Missing)?;
        let now = stamp(&meta);
        let proven = |verified: &Mutex<HashMap<Digest, Stamp>>| {
            let verified = verified.lock().unwrap_or_else(|p| p.into_inner());
            verified.get(digest) == Some(&now)
        };
        if proven(&self.verified) {
            return Ok((path, now.len));
        }
        let lock = {
            let mut hashing = self.hashing.lock().unwrap_or_else(|p| p.into_inner());
            std::sync::Arc::clone(hashing.entry(digest.clone()).or_default())
        };
        let _hashing = lock.lock().unwrap_or_else(|p| p.into_inner());
        // Another request may have proven it while this one waited.
        if proven(&self.verified) {
            return Ok((path, now.len));
        }
        let file = std::fs::File::open(&path).map_err(|_| BlobError::Missing)?;
        let (actual, _) =
            digest::sha256_of(file).map_err(|e| BlobError::Unreadable(e.to_string()))?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if actual != *digest {
            verified.remove(digest);
            return Err(BlobError::Corrupt { actual });
        }
        verified.insert(digest.clone(), now);
        Ok((path, now.len))
    }

    /// `files/<relative>`, the path of a stored node binary.
    pub fn file_path(&self, relative: &str) -> PathBuf {
        self.root.join("files").join(relative)
    }
}

/// Why a blob cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobError {
    Missing,
    /// The file's content does not match its digest.
    Corrupt {
        actual: Digest,
    },
    Unreadable(String),
}
