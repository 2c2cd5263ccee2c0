//! `kindling store prune`: the revisions older than the newest few, and the blobs only they
//! used, deleted from the store.
//!
//! A prune holds the writer lease that pushes hold (see [`crate::WRITER`]): a push lists the
//! blobs the store has and writes only the others, so a blob deleted between that listing and
//! the push's revision would leave the revision pointing at nothing. Every delete is a
//! transaction that also checks the lease is still held.
//!
//! etcd keeps what is deleted in its history until it is compacted; the space comes back after
//! a compaction and a defragmentation (the README says how).

use std::collections::{BTreeMap, BTreeSet};

use kindling_etcd::{Op, Range, Txn};

use crate::election::Leadership;
use crate::{Store, StoreError, revision_key};

/// Deletes per transaction (etcd's `--max-txn-ops` is 128 by default).
const BATCH_OPS: usize = 100;

/// What a prune removed, and what it kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The revisions kept, oldest first.
    pub kept: Vec<u64>,
    /// The revisions removed, oldest first.
    pub removed: Vec<u64>,
    /// Blobs removed (files no kept revision has).
    pub blobs_removed: usize,
    /// Their chunks (of at most 512 KiB each).
    pub chunks_removed: usize,
}

/// Keeps the newest `keep` revisions (at least the current one) and deletes the rest, with every
/// blob that no kept revision uses.
pub async fn prune(store: &Store, keep: u64) -> Result<Pruned, StoreError> {
    let writer = crate::writer(store).await?;
    let pruned = prune_as_writer(store, keep.max(1), &writer).await;
    writer.resign().await;
    pruned
}

async fn prune_as_writer(
    store: &Store,
    keep: u64,
    writer: &Leadership,
) -> Result<Pruned, StoreError> {
    let (current, _) = store.current().await?.ok_or(StoreError::Empty)?;
    let numbers = revision_numbers(store).await?;
    let oldest_kept = current.number.saturating_sub(keep - 1);
    let (kept, removed): (Vec<u64>, Vec<u64>) = numbers.iter().partition(|n| **n >= oldest_kept);

    let mut used = BTreeSet::new();
    for number in &kept {
        let revision = store.revision(*number).await?;
        let manifest = store.manifest(&revision).await?;
        used.insert(revision.manifest);
        used.extend(
            manifest
                .files
                .into_iter()
                .filter(|e| !e.external)
                .map(|e| e.digest),
        );
    }
    // Chunk keys by blob: <prefix>/blobs/<digest>/<chunk>.
    let blobs_prefix = store.key("blobs/");
    let mut blobs: BTreeMap<String, usize> = BTreeMap::new();
    for key in crate::push::existing_chunks(store).await? {
        let rest = String::from_utf8_lossy(&key[blobs_prefix.len()..]).into_owned();
        if let Some((digest, _chunk)) = rest.split_once('/') {
            *blobs.entry(digest.to_string()).or_default() += 1;
        }
    }
    blobs.retain(|digest, _| !used.contains(digest));

    // Revisions first, so that no revision is left whose blobs are gone.
    let mut deletes: Vec<Op> = removed
        .iter()
        .map(|n| Op::Delete {
            key: store.key(&revision_key(*n)),
            end: None,
        })
        .collect();
    deletes.extend(blobs.keys().map(|digest| {
        let key = store.key(&format!("blobs/{digest}/"));
        let end = kindling_etcd::prefix_end(&key);
        Op::Delete {
            key,
            end: Some(end),
        }
    }));
    for batch in deletes.chunks(BATCH_OPS) {
        let txn = Txn {
            compare: vec![writer.held()],
            success: batch.to_vec(),
            failure: Vec::new(),
        };
        let done = store
            .etcd
            .txn(&txn)
            .await
            .map_err(|source| StoreError::Etcd {
                what: "deleting old revisions and their blobs".into(),
                source: Box::new(source),
            })?;
        if !done.succeeded {
            return Err(StoreError::LostLease(crate::WRITER.into()));
        }
    }
    Ok(Pruned {
        kept,
        removed,
        blobs_removed: blobs.len(),
        chunks_removed: blobs.values().sum(),
    })
}

/// The number of every revision the store has, in order.
async fn revision_numbers(store: &Store) -> Result<Vec<u64>, StoreError> {
    let prefix = store.key("revisions/");
    let found = store
        .etcd
        .range(&Range {
            key: prefix.clone(),
            end: Some(kindling_etcd::prefix_end(&prefix)),
            keys_only: true,
            ..Range::default()
        })
        .await
        .map_err(|source| StoreError::Etcd {
            what: "listing the store's revisions".into(),
            source: Box::new(source),
        })?;
    let mut numbers: Vec<u64> = found
        .kvs
        .iter()
        .filter_map(|kv| {
            std::str::from_utf8(&kv.key[prefix.len()..])
                .ok()?
                .parse()
                .ok()
        })
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}
