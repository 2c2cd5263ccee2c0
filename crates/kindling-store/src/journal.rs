//! The site's event journal in etcd: every replica's events under `events/`, each written once,
//! each with a global id that grows. A replica writes its events a few hundred at a time, as one
//! entry (JSON lines under one key); a machine's report, which must be recorded once however often
//! it is sent, is an entry of its own under a key made from its id. An event's id is the etcd
//! revision of its entry, times [`PER_REVISION`], plus its rank among that revision's events
//! (entries by key, then lines in order). Any replica can so show every replica's events in one
//! order, and an id from one is good on another.
//!
//! An entry is written only where its key does not exist yet, so an entry sent again after an
//! answer was lost (or a report sent to two replicas) is not written twice.

use kindling_etcd::{Change, Compare, Op, Range, Txn, Watch};

use crate::{Store, StoreError};

/// The most events in one entry.
pub const MAX_EVENTS: usize = 500;

/// Ids per etcd revision: more than one entry holds (each revision is one entry).
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

    /// Writes `lines` (at most [`MAX_EVENTS`] events, as JSON lines) as the entry `key`, unless
    /// an entry has that key already.
    pub async fn append(&self, key: &str, lines: String) -> Result<(), StoreError> {
        let events = lines.lines().count();
        let key = self.store.key(&format!("events/{key}"));
        let txn = Txn {
            compare: vec![Compare::Created(key.clone(), 0)],
            success: vec![Op::put(key, lines)],
            failure: Vec::new(),
        };
        self.store
            .etcd
            .txn(&txn)
            .await
            .map_err(|source| StoreError::Etcd {
                what: format!("writing {events} event(s)"),
                source: Box::new(source),
            })?;
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

/// The events of entries (revision, key, lines), each with its id; in id order.
fn identify(mut kvs: Vec<(i64, Vec<u8>, Vec<u8>)>) -> Vec<(u64, Vec<u8>)> {
    kvs.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut ids = Vec::with_capacity(kvs.len());
    let (mut revision, mut rank) = (-1, 0);
    for (mod_revision, _, value) in kvs {
        if mod_revision != revision {
            (revision, rank) = (mod_revision, 0);
        }
        for line in value.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            ids.push((mod_revision as u64 * PER_REVISION + rank, line.to_vec()));
            rank += 1;
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_get_ids_by_revision_then_key_then_line() {
        let kv = |revision, key: &str, lines: &str| {
            (revision, key.as_bytes().to_vec(), lines.as_bytes().to_vec())
        };
        let ids: Vec<(u64, Vec<u8>)> = identify(vec![
            kv(9, "b", "b1"),
            kv(7, "x", "x1\nx2"),
            kv(9, "a", "a1"),
        ]);
        assert_eq!(
            ids,
            [
                (7 * PER_REVISION, b"x1".to_vec()),
                (7 * PER_REVISION + 1, b"x2".to_vec()),
                (9 * PER_REVISION, b"a1".to_vec()),
                (9 * PER_REVISION + 1, b"b1".to_vec()),
            ]
        );
    }
}
