//! A replica follows the store: each revision made current is laid out locally and handed to
//! the server, which switches to it whole.

use std::time::Duration;

use kindling_etcd::{Change, Range};

use crate::cache::{BlobSources, Cache, Materialized};
use crate::{CURRENT, Store, StoreError};

/// How long to wait before asking etcd again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// Lays out every revision made current from now on (and the current one, if it is newer than
/// `after`), and hands each to `apply`, in order, until `stop` turns true. etcd being away is
/// not an end: the replica keeps what it serves, says so once (and to `trouble`), and follows
/// again when etcd is back (`trouble` is then told None).
pub async fn follow(
    store: Store,
    cache: Cache,
    sources: BlobSources,
    after: u64,
    mut apply: impl FnMut(Materialized) + Send,
    mut trouble: impl FnMut(Option<String>) + Send,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut applied = after;
    let mut failing: Option<String> = None;
    loop {
        let mut watching = || {
            if failing.take().is_some() {
                tracing::info!("following the store again");
                trouble(None);
            }
        };
        let followed = follow_once(
            &store,
            &cache,
            &sources,
            &mut applied,
            &mut apply,
            &mut watching,
        )
        .await;
        let Err(e) = followed;
        if e.is_quiet_watch() {
            continue;
        }
        let message = e.to_string();
        if failing.as_deref() != Some(message.as_str()) {
            tracing::warn!(
                "following the store ({}): {message}; still serving revision {applied}",
                store.describe()
            );
            trouble(Some(format!(
                "serving revision {applied}, but the store cannot be followed: {message}"
            )));
            failing = Some(message);
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// Catches up with the current revision, then watches `current` until the watch fails.
async fn follow_once(
    store: &Store,
    cache: &Cache,
    sources: &BlobSources,
    applied: &mut u64,
    apply: &mut (impl FnMut(Materialized) + Send),
    watching: &mut (impl FnMut() + Send),
) -> Result<std::convert::Infallible, StoreError> {
    let watched_from = match store.current().await? {
        Some((revision, mod_revision)) => {
            if revision.number > *applied {
                take(store, cache, sources, revision.number, applied, apply).await?;
            }
            mod_revision + 1
        }
        None => 0,
    };
    let etcd_error = |source| StoreError::Etcd {
        what: "watching the current revision".into(),
        source: Box::new(source),
    };
    let mut watch = store
        .etcd
        .watch(&Range::key(store.key(CURRENT)), watched_from)
        .await
        .map_err(etcd_error)?;
    watching();
    loop {
        let changes = watch.next().await.map_err(etcd_error)?;
        let newest = changes
            .changes
            .iter()
            .rev()
            .find_map(|change| match change {
                Change::Put(kv) => std::str::from_utf8(&kv.value)
                    .ok()?
                    .trim()
                    .parse::<u64>()
                    .ok(),
                Change::Delete(..) => None,
            });
        if let Some(number) = newest
            && number > *applied
        {
            take(store, cache, sources, number, applied, apply).await?;
        }
    }
}

async fn take(
    store: &Store,
    cache: &Cache,
    sources: &BlobSources,
    number: u64,
    applied: &mut u64,
    apply: &mut (impl FnMut(Materialized) + Send),
) -> Result<(), StoreError> {
    let revision = store.revision(number).await?;
    let laid_out = cache.materialize(store, &revision, sources).await?;
    for entry in &laid_out.missing {
        tracing::warn!(
            "revision {number}: {} ({}) is kept outside etcd and no blob source has it yet; it is not served",
            entry.path,
            entry.digest
        );
    }
    *applied = number;
    apply(laid_out);
    cache.prune(KEEP);
    Ok(())
}

/// Revisions kept laid out: the one served and the ones before it, for machines that are
/// still part-way through a boot that started on them.
pub const KEEP: usize = 3;
