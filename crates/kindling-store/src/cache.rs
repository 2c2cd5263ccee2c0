//! A replica's local copy of the store: the blobs it has fetched, by digest, and each revision it
//! serves laid out as an asset directory, built beside the others and renamed into place whole.
//!
//! ```text
//! <root>/blobs/<sha256>        verified bytes (0600: some are secrets)
//! <root>/revisions/<n>/        revision n as an asset directory, each file with its mode
//! ```
//!
//! Everything here can be fetched again, so nothing is synced to disk; a replica that starts
//! without etcd serves the newest revision it has here.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kindling_etcd::{Op, Range, Txn};

use crate::push::chunks;
use crate::snapshot::{Entry, Manifest, digest, is_safe};
use crate::{Revision, Store, StoreError, blob_key};

/// Where a replica looks for the files kept outside etcd: directories the hosts share, each
/// holding them by digest (`kindling store push --blobs-to`).
#[derive(Debug, Clone, Default)]
pub struct BlobSources {
    pub dirs: Vec<PathBuf>,
}

/// A replica's local copy; see the module docs.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A revision laid out on disk.
#[derive(Debug, Clone)]
pub struct Materialized {
    pub number: u64,
    pub dir: PathBuf,
    /// Files kept outside etcd that no source had: left out of `dir`.
    pub missing: Vec<Entry>,
}

/// Chunk reads in one transaction, and their expected bytes at most.
const READ_OPS: usize = 100;
const READ_BYTES: u64 = 1024 * 1024;
const PARALLEL: usize = 4;

impl Cache {
    /// Opens (and makes, 0700) the copy at `root`.
    pub fn open(root: &Path) -> Result<Cache, StoreError> {
        for dir in [
            root.to_path_buf(),
            root.join("blobs"),
            root.join("revisions"),
        ] {
            std::fs::create_dir_all(&dir)
                .and_then(|()| {
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|source| StoreError::Write { path: dir, source })?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    /// Where revision `number` is laid out.
    pub fn revision_dir(&self, number: u64) -> PathBuf {
        self.root.join("revisions").join(number.to_string())
    }

    /// The newest revision laid out here, from an earlier run.
    pub fn newest(&self) -> Option<(u64, PathBuf)> {
        std::fs::read_dir(self.root.join("revisions"))
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let number: u64 = e.file_name().to_str()?.parse().ok()?;
                Some((number, e.path()))
            })
            .max_by_key(|(number, _)| *number)
    }

    /// Removes the revisions laid out here but the newest `keep`.
    pub fn prune(&self, keep: usize) {
        let Ok(read) = std::fs::read_dir(self.root.join("revisions")) else {
            return;
        };
        let mut numbers: Vec<u64> = read
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let drop = numbers.len().saturating_sub(keep);
        for number in &numbers[..drop] {
            let _ = std::fs::remove_dir_all(self.revision_dir(*number));
        }
    }

    /// Lays `revision` out as an asset directory, fetching the blobs this copy lacks: from
    /// etcd, or for the files kept outside it, from `sources`.
    pub async fn materialize(
        &self,
        store: &Store,
        revision: &Revision,
        sources: &BlobSources,
    ) -> Result<Materialized, StoreError> {
        let manifest_bytes = self
            .blob(store, &revision.manifest, revision.manifest_size)
            .await?;
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| StoreError::Damaged {
                key: format!("the manifest of revision {}", revision.number),
                reason: e.to_string(),
            })?;
        if let Some(bad) = manifest.files.iter().find(|e| !is_safe(&e.path)) {
            return Err(StoreError::Damaged {
                key: format!("the manifest of revision {}", revision.number),
                reason: format!("{:?} is not a relative path inside the directory", bad.path),
            });
        }
        let wanted: BTreeMap<&str, u64> = manifest
            .files
            .iter()
            .filter(|e| !e.external && !self.has(&e.digest))
            .map(|e| (e.digest.as_str(), e.size))
            .collect();
        self.fetch(store, &wanted).await?;

        let (cache, sources, number) = (self.clone(), sources.clone(), revision.number);
        match tokio::task::spawn_blocking(move || cache.lay_out(number, &manifest, &sources)).await
        {
            Ok(laid_out) => laid_out,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs").join(digest)
    }

    fn has(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// One blob, from here or else from etcd (and then kept here).
    async fn blob(&self, store: &Store, digest: &str, size: u64) -> Result<Vec<u8>, StoreError> {
        if let Ok(bytes) = std::fs::read(self.blob_path(digest)) {
            return Ok(bytes);
        }
        let bytes = store.blob(digest, size).await?;
        self.keep(digest, &bytes, 0o600)?;
        Ok(bytes)
    }

    /// Fetches the blobs `wanted` (digest → size) from etcd, a few transactions at a time, and
    /// keeps each here once its digest is checked.
    async fn fetch(&self, store: &Store, wanted: &BTreeMap<&str, u64>) -> Result<(), StoreError> {
        // Whole blobs per batch, so that each batch can be checked and kept on its own; a blob
        // larger than a batch is read on its own, a chunk pair at a time.
        for (digest, size) in wanted.iter().filter(|(_, size)| **size > READ_BYTES) {
            let bytes = store.blob(digest, *size).await?;
            self.keep(digest, &bytes, 0o600)?;
        }
        let mut batches: Vec<Vec<(String, u64)>> = Vec::new();
        let (mut ops, mut bytes) = (0, 0);
        for (digest, size) in wanted.iter().filter(|(_, size)| **size <= READ_BYTES) {
            let n = chunks(*size) as usize;
            let full = batches
                .last()
                .is_none_or(|_| ops + n > READ_OPS || bytes + size > READ_BYTES);
            if full {
                batches.push(Vec::new());
                (ops, bytes) = (0, 0);
            }
            ops += n;
            bytes += size;
            if let Some(batch) = batches.last_mut() {
                batch.push((digest.to_string(), *size));
            }
        }
        let mut running = tokio::task::JoinSet::new();
        let mut batches = batches.into_iter();
        loop {
            while running.len() < PARALLEL
                && let Some(batch) = batches.next()
            {
                let (store, cache) = (store.clone(), self.clone());
                running.spawn(async move { cache.fetch_batch(&store, batch).await });
            }
            match running.join_next().await {
                None => return Ok(()),
                Some(Ok(done)) => done?,
                Some(Err(e)) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    }

    async fn fetch_batch(
        &self,
        store: &Store,
        batch: Vec<(String, u64)>,
    ) -> Result<(), StoreError> {
        let mut reads = Vec::new();
        for (digest, size) in &batch {
            for i in 0..chunks(*size) {
                reads.push(Op::Get(Range::key(store.key(&blob_key(digest, i)))));
            }
        }
        let txn = Txn {
            success: reads,
            ..Txn::default()
        };
        let answer = store
            .etcd
            .txn(&txn)
            .await
            .map_err(|source| StoreError::Etcd {
                what: "reading blobs".into(),
                source: Box::new(source),
            })?;
        let mut found = answer
            .ranges
            .into_iter()
            .map(|r| r.kvs.into_iter().next().map(|kv| kv.value));
        for (digest, size) in batch {
            let chunks = found.by_ref().take(chunks(size) as usize);
            let bytes = crate::assemble(store, &digest, size, chunks)?;
            self.keep(&digest, &bytes, 0o600)?;
        }
        Ok(())
    }

    /// Writes a verified blob here, whole or not at all.
    fn keep(&self, digest: &str, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        write_new(&path, bytes, mode).map_err(|source| StoreError::Write { path, source })
    }

    /// Finds a file kept outside etcd in `sources`, checks its digest, and keeps it here
    /// (hard-linked where the file system allows, as images are large).
    fn bring(&self, entry: &Entry, sources: &BlobSources) -> Result<bool, StoreError> {
        for dir in &sources.dirs {
            let candidate = dir.join(&entry.digest);
            let Ok(bytes) = std::fs::read(&candidate) else {
                continue;
            };
            if digest(&bytes) != entry.digest {
                tracing::warn!(
                    "{} does not have the digest its name says; not used",
                    candidate.display()
                );
                continue;
            }
            let path = self.blob_path(&entry.digest);
            if std::fs::hard_link(&candidate, &path).is_err() {
                self.keep(&entry.digest, &bytes, 0o644)?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Builds `revisions/.<n>.partial`, then renames it to `revisions/<n>`.
    fn lay_out(
        &self,
        number: u64,
        manifest: &Manifest,
        sources: &BlobSources,
    ) -> Result<Materialized, StoreError> {
        let dir = self.revision_dir(number);
        if dir.is_dir() {
            let missing = manifest
                .files
                .iter()
                .filter(|e| !dir.join(&e.path).exists())
                .cloned()
                .collect();
            return Ok(Materialized {
                number,
                dir,
                missing,
            });
        }
        let partial = self
            .root
            .join("revisions")
            .join(format!(".{number}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        let mut missing = Vec::new();
        for entry in &manifest.files {
            if entry.external && !self.has(&entry.digest) && !self.bring(entry, sources)? {
                missing.push(entry.clone());
                continue;
            }
            let target = partial.join(&entry.path);
            let write_error = |source| StoreError::Write {
                path: target.clone(),
                source,
            };
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(write_error)?;
            }
            let blob = self.blob_path(&entry.digest);
            if entry.external {
                // Large and public: shared with the blob, not copied.
                std::fs::hard_link(&blob, &target)
                    .or_else(|_| std::fs::copy(&blob, &target).map(|_| ()))
                    .map_err(write_error)?;
            } else {
                let bytes = std::fs::read(&blob).map_err(|source| StoreError::Read {
                    path: blob.clone(),
                    source,
                })?;
                write_file(&target, &bytes, entry.mode).map_err(write_error)?;
            }
        }
        std::fs::rename(&partial, &dir).map_err(|source| StoreError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Materialized {
            number,
            dir,
            missing,
        })
    }
}

/// Writes `bytes` to `path`, which does not exist yet, whole or not at all (a temporary file
/// renamed into place), with `mode` from the start; its directory is made if need be.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{}.kindling-tmp", name.unwrap_or_default()));
    write_file(&tmp, bytes, mode)?;
    std::fs::rename(&tmp, path)
}

/// Creates `path` with `mode` from the start (a secret is never readable by others), and
/// writes `bytes`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    // The umask may have taken bits away.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}
