//! The site's event journal in etcd: every replica's events under `events/`, each written once,
//! each with a global id that grows. The id is the etcd revision it was written at, times
//! [`PER_REVISION`], plus its rank by key among the events of that revision (one transaction
//! writes several). Any replica can so show every replica's events in one order, and an id
//! from one is good on another.
//!
//! Each event has a key of its own, and a write creates keys only where they do not exist yet,
//! so a write retried after an answer was lost (or a report a machine sent again, to another
//! replica) is not written twice.

use kindling_etcd::{Change, Compare, Op, Range, Txn, Watch};

use crate::{Store, StoreError};

/// One event to write.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Unique to the event, under `events/`: `<writer>/<sequence>`, or for a report a machine
    /// sent, `report/<machine>/<its id>`.
    pub key: String,
    /// The event, as JSON.
    pub json: String,
}

/// The most events written in one transaction (etcd's `--max-txn-ops` is 128 by default).
pub const BATCH: usize = 100;

/// Ids per etcd revision: more than a transaction writes.
pub const PER_REVISION: u64 = 1024;

/// The journal of a store.
#[derive(Debug, Clone)]
pub struct Journal {
    store: Store,
}

impl Journal {
    pub fn new(store: Store) -> Journal {
        Journal { store }
    }

    /// Writes `records` (at most [`BATCH`]), each unless it is there already.
    pub async fn append(&self, records: &[Record]) -> Result<(), StoreError> {
        let key = |r: &Record| self.store.key(&format!("events/{}", r.key));
        let create = |records: &[Record]| Txn {
            compare: records
                .iter()
                .map(|r| Compare::Created(key(r), 0))
                .collect(),
            success: records
                .iter()
                .map(|r| Op::put(key(r), r.json.as_bytes()))
                .collect(),
            failure: Vec::new(),
        };
        let failed = |source| StoreError::Etcd {
            what: format!("writing {} event(s)", records.len()),
            source: Box::new(source),
        };
        let all = self
            .store
            .etcd
            .txn(&create(records))
            .await
            .map_err(failed)?;
        if all.succeeded || records.len() == 1 {
            return Ok(());
        }
        // One of them was written before: each on its own, so that the others are not lost.
        for record in records {
            self.store
                .etcd
                .txn(&create(std::slice::from_ref(record)))
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    /// The events after id `after` (0: all), oldest first, about `limit` of them (whole
    /// revisions); whether more follow; and the store's revision when they were read.
    pub async fn read_after(
        &self,
        after: u64,
        limit: i64,
    ) -> Result<(Vec<(u64, Vec<u8>)>, bool, i64), StoreError> {
        let read = self
            .store
            .etcd
            .range(&Range {
                limit,
                // The revision of `after` may have more events after it.
                min_mod_revision: (after / PER_REVISION) as i64,
                by_mod_revision: true,
                ..Range::prefix(self.store.key("events/"))
            })
            .await
            .map_err(|source| StoreError::Etcd {
                what: format!("reading the events after {after}"),
                source: Box::new(source),
            })?;
        let mut kvs: Vec<(i64, Vec<u8>, Vec<u8>)> = read
            .kvs
            .into_iter()
            .map(|kv| (kv.mod_revision, kv.key, kv.value))
            .collect();
        if read.more
            && let Some(last) = kvs.last().map(|kv| kv.0)
            && kvs.first().is_some_and(|kv| kv.0 < last)
        {
            // The page may end inside a revision: that one comes whole with the next page.
            kvs.retain(|kv| kv.0 < last);
        }
        let events = identify(kvs)
            .into_iter()
            .filter(|(id, _)| *id > after)
            .collect();
        Ok((events, read.more, read.revision))
    }

    /// A watch on the events written from id `from` on; see [`events`].
    pub async fn watch(&self, from: i64) -> Result<Watch, StoreError> {
        self.store
            .etcd
            .watch(&Range::prefix(self.store.key("events/")), from)
            .await
            .map_err(|source| StoreError::Etcd {
                what: "watching the events".into(),
                source: Box::new(source),
            })
    }
}

/// The events among a watch's changes (etcd sends a revision's changes together): (id, JSON),
/// in order.
pub fn events(changes: Vec<Change>) -> Vec<(u64, Vec<u8>)> {
    let kvs = changes
        .into_iter()
        .filter_map(|change| match change {
            Change::Put(kv) if kv.create_revision == kv.mod_revision => {
                Some((kv.mod_revision, kv.key, kv.value))
            }
            _ => None,
        })
        .collect();
    identify(kvs)
}

/// Each event's id, from its revision and its key's rank among the revision's; in id order.
fn identify(mut kvs: Vec<(i64, Vec<u8>, Vec<u8>)>) -> Vec<(u64, Vec<u8>)> {
    kvs.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut ids = Vec::with_capacity(kvs.len());
    let (mut revision, mut rank) = (-1, 0);
    for (mod_revision, _, value) in kvs {
        if mod_revision != revision {
            (revision, rank) = (mod_revision, 0);
        }
        ids.push((mod_revision as u64 * PER_REVISION + rank, value));
        rank += 1;
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_one_revision_get_ids_by_key() {
        let kv = |revision, key: &str| (revision, key.as_bytes().to_vec(), key.as_bytes().to_vec());
        let ids: Vec<(u64, Vec<u8>)> = identify(vec![kv(9, "b"), kv(7, "x"), kv(9, "a")]);
        assert_eq!(
            ids,
            [
                (7 * PER_REVISION, b"x".to_vec()),
                (9 * PER_REVISION, b"a".to_vec()),
                (9 * PER_REVISION + 1, b"b".to_vec()),
            ]
        );
    }
}
