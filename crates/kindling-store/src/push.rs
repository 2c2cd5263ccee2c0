//! `kindling store push`: an asset directory published as the store's next revision.

use std::collections::BTreeSet;
use std::path::Path;

use kindling_etcd::{Compare, Op, Range, Txn};

use crate::election::Leadership;
use crate::snapshot::{Snapshot, digest};
use crate::{CURRENT, Revision, Store, StoreError, blob_key, revision_key};

/// The most bytes of one blob chunk: well under etcd's request limit (1.5 MiB by default), with
/// room for base64 on the way.
pub const CHUNK: usize = 512 * 1024;
/// The most operations in one transaction (etcd's `--max-txn-ops` is 128 by default).
const BATCH_OPS: usize = 100;
/// The most chunk bytes in one transaction.
const BATCH_BYTES: usize = 1024 * 1024;
/// Transactions in flight at once.
const PARALLEL: usize = 4;

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions<'a> {
    /// A directory the replicas share, to copy the files kept outside etcd into.
    pub blobs_to: Option<&'a Path>,
    /// Files that stay as the current revision has them (the key the machines' tokens are
    /// made with: changing it would void every token handed out). Missing from the directory,
    /// each is taken from the store; different, the push is refused unless it is in `replace`.
    pub pinned: &'a [Pinned],
    /// Pinned files to push as they are, on purpose.
    pub replace: bool,
}

/// A file of the asset directory that a push keeps as the store has it.
#[derive(Debug, Clone, Copy)]
pub struct Pinned {
    pub path: &'static str,
    /// What changing it would do, for the refusal.
    pub why: &'static str,
    /// The option that changes it on purpose.
    pub flag: &'static str,
    /// Makes it in the directory when neither the directory nor the store has one, so that
    /// every replica gets the same (a replica would otherwise make its own).
    pub make: fn(&Path) -> std::io::Result<()>,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub revision: Revision,
    /// False when the directory was the current revision already: nothing was written.
    pub new: bool,
    /// Chunks written (those etcd had already were not).
    pub chunks_written: usize,
    pub bytes_written: u64,
    /// Pinned files the directory lacked, written into it from the store.
    pub taken: Vec<&'static str>,
}

/// How many chunks a blob of `size` bytes takes (an empty blob is one empty chunk).
pub fn chunks(size: u64) -> u64 {
    size.div_ceil(CHUNK as u64).max(1)
}

/// Publishes `dir` as the next revision. The blobs go first; then one transaction creates the
/// revision and makes it current, provided that no other push landed meanwhile. See
/// [`PushOptions`] for the rest.
pub async fn push(
    store: &Store,
    dir: &Path,
    options: &PushOptions<'_>,
) -> Result<Pushed, StoreError> {
    let writer = crate::writer(store).await?;
    let pushed = push_as_writer(store, dir, options, &writer).await;
    writer.resign().await;
    pushed
}

async fn push_as_writer(
    store: &Store,
    dir: &Path,
    options: &PushOptions<'_>,
    writer: &Leadership,
) -> Result<Pushed, StoreError> {
    let current = store.current().await?;
    let taken = pin(store, dir, current.as_ref().map(|(r, _)| r), options).await?;
    let snapshot = {
        let dir = dir.to_path_buf();
        match tokio::task::spawn_blocking(move || Snapshot::read(&dir)).await {
            Ok(read) => read?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    };
    let manifest_json =
        serde_json::to_vec(&snapshot.manifest).map_err(|e| StoreError::Damaged {
            key: "the manifest".into(),
            reason: e.to_string(),
        })?;
    let manifest_digest = digest(&manifest_json);
    if let Some((revision, _)) = &current
        && revision.manifest == manifest_digest
    {
        return Ok(Pushed {
            revision: revision.clone(),
            new: false,
            chunks_written: 0,
            bytes_written: 0,
            taken,
        });
    }
    if let Some(shared) = options.blobs_to {
        copy_external(dir, &snapshot, shared)?;
    }

    let existing = existing_chunks(store).await?;
    let mut pending: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let blobs = snapshot
        .inline
        .iter()
        .map(|(digest, bytes)| (digest.as_str(), bytes.as_slice()))
        .chain([(manifest_digest.as_str(), manifest_json.as_slice())]);
    for (digest, bytes) in blobs {
        let count = chunks(bytes.len() as u64);
        for i in 0..count {
            let key = store.key(&blob_key(digest, i));
            if existing.contains(&key) {
                continue;
            }
            let start = (i as usize) * CHUNK;
            let end = (start + CHUNK).min(bytes.len());
            pending.push((key, bytes[start..end].to_vec()));
        }
    }
    let chunks_written = pending.len();
    let bytes_written = pending.iter().map(|(_, b)| b.len() as u64).sum();
    write_chunks(store, pending).await?;

    let (number, guard) = match &current {
        Some((revision, mod_revision)) => (
            revision.number + 1,
            Compare::Modified(store.key(CURRENT), *mod_revision),
        ),
        None => (1, Compare::Created(store.key(CURRENT), 0)),
    };
    let revision = Revision {
        number,
        manifest: manifest_digest,
        manifest_size: manifest_json.len() as u64,
        files: snapshot.manifest.files.len(),
        bytes: snapshot.manifest.files.iter().map(|e| e.size).sum(),
        pushed_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        pushed_from: format!("{}:{}", crate::hostname(), dir.display()),
    };
    let record = serde_json::to_vec(&revision).map_err(|e| StoreError::Damaged {
        key: revision_key(number),
        reason: e.to_string(),
    })?;
    let txn = Txn {
        compare: vec![guard, writer.held()],
        success: vec![
            Op::put(store.key(&revision_key(number)), record),
            Op::put(store.key(CURRENT), number.to_string()),
        ],
        failure: vec![Op::Get(Range::key(store.key(CURRENT)))],
    };
    let result = store
        .etcd
        .txn(&txn)
        .await
        .map_err(|source| StoreError::Etcd {
            what: format!("making revision {number} current"),
            source: Box::new(source),
        })?;
    if !result.succeeded {
        let found = result
            .ranges
            .first()
            .and_then(|r| r.kvs.first())
            .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok())
            .unwrap_or(0);
        if found + 1 == number {
            // `current` is as it was: the comparison that failed is the writer lease's.
            return Err(StoreError::LostLease(crate::WRITER.into()));
        }
        return Err(StoreError::Conflict {
            expected: match &current {
                Some((revision, _)) => revision.number.to_string(),
                None => "an empty store".into(),
            },
            found,
        });
    }
    Ok(Pushed {
        revision,
        new: true,
        chunks_written,
        bytes_written,
        taken,
    })
}

/// Checks the pinned files of `dir` against the current `revision`'s: one it lacks is written
/// from the store (with its mode), or made when the store has none either; one that differs is
/// refused unless `options.replace`. The paths taken from the store.
async fn pin(
    store: &Store,
    dir: &Path,
    revision: Option<&Revision>,
    options: &PushOptions<'_>,
) -> Result<Vec<&'static str>, StoreError> {
    if options.pinned.is_empty() {
        return Ok(Vec::new());
    }
    let manifest = match revision {
        Some(revision) => Some(store.manifest(revision).await?),
        None => None,
    };
    let mut taken = Vec::new();
    for pin in options.pinned {
        let entry = manifest
            .as_ref()
            .and_then(|m| m.files.iter().find(|e| e.path == pin.path));
        let path = dir.join(pin.path);
        match (std::fs::read(&path), entry) {
            (Ok(bytes), Some(entry)) if digest(&bytes) != entry.digest && !options.replace => {
                return Err(StoreError::PinnedChanged {
                    path,
                    revision: revision.map_or(0, |r| r.number),
                    why: pin.why,
                    flag: pin.flag,
                });
            }
            (Ok(_), _) => {}
            (Err(e), Some(entry)) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = store.blob(&entry.digest, entry.size).await?;
                crate::cache::write_new(&path, &bytes, entry.mode)
                    .map_err(|source| StoreError::Write { path, source })?;
                taken.push(pin.path);
            }
            (Err(e), None) if e.kind() == std::io::ErrorKind::NotFound => {
                (pin.make)(dir).map_err(|source| StoreError::Write { path, source })?;
            }
            (Err(source), _) => return Err(StoreError::Read { path, source }),
        }
    }
    Ok(taken)
}

/// Every chunk key the store has, read a page at a time.
pub(crate) async fn existing_chunks(store: &Store) -> Result<BTreeSet<Vec<u8>>, StoreError> {
    let prefix = store.key("blobs/");
    let end = kindling_etcd::prefix_end(&prefix);
    let mut keys = BTreeSet::new();
    let mut from = prefix;
    loop {
        let page = store
            .etcd
            .range(&Range {
                key: from.clone(),
                end: Some(end.clone()),
                limit: 10_000,
                keys_only: true,
                ..Range::default()
            })
            .await
            .map_err(|source| StoreError::Etcd {
                what: "listing the store's blobs".into(),
                source: Box::new(source),
            })?;
        let Some(last) = page.kvs.last().map(|kv| kv.key.clone()) else {
            break;
        };
        keys.extend(page.kvs.into_iter().map(|kv| kv.key));
        if !page.more {
            break;
        }
        from = last;
        from.push(0);
    }
    Ok(keys)
}

/// Writes `chunks` in transactions of a bounded size, a few at a time.
async fn write_chunks(store: &Store, chunks: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StoreError> {
    let mut batches: Vec<Vec<Op>> = Vec::new();
    let mut size = 0;
    for (key, bytes) in chunks {
        let full = batches
            .last()
            .is_none_or(|b| b.len() >= BATCH_OPS || size + bytes.len() > BATCH_BYTES);
        if full {
            batches.push(Vec::new());
            size = 0;
        }
        size += bytes.len();
        if let Some(batch) = batches.last_mut() {
            batch.push(Op::put(key, bytes));
        }
    }
    let mut running = tokio::task::JoinSet::new();
    let mut batches = batches.into_iter();
    loop {
        while running.len() < PARALLEL
            && let Some(batch) = batches.next()
        {
            let etcd = store.etcd.clone();
            running.spawn(async move {
                let txn = Txn {
                    success: batch,
                    ..Txn::default()
                };
                etcd.txn(&txn).await
            });
        }
        let Some(done) = running.join_next().await else {
            return Ok(());
        };
        let written = match done {
            Ok(written) => written,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        written.map_err(|source| StoreError::Etcd {
            what: "writing blobs".into(),
            source: Box::new(source),
        })?;
    }
}

/// Copies the files kept outside etcd into `shared/<digest>`, unless it has them.
fn copy_external(dir: &Path, snapshot: &Snapshot, shared: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(shared).map_err(|source| StoreError::Write {
        path: shared.to_path_buf(),
        source,
    })?;
    for entry in snapshot.manifest.files.iter().filter(|e| e.external) {
        let target = shared.join(&entry.digest);
        if target.exists() {
            continue;
        }
        let tmp = shared.join(format!(".{}.kindling-tmp", entry.digest));
        std::fs::copy(dir.join(&entry.path), &tmp)
            .and_then(|_| std::fs::rename(&tmp, &target))
            .map_err(|source| StoreError::Write {
                path: target.clone(),
                source,
            })?;
    }
    Ok(())
}
