//! The site's shared state in etcd, for several `kindling serve` replicas with no single point of
//! failure. The asset directory stays the source of truth on the host where the user runs
//! `kindling create`; `kindling store push` publishes it here as a numbered revision, and every
//! replica follows the revisions and serves the newest from a local copy.
//!
//! Layout under the store's prefix (`/kindling` unless the address names another):
//!
//! ```text
//! blobs/<sha256>/<chunk>   a file's bytes (or a manifest's), in chunks of at most 512 KiB
//! revisions/<n>            a revision: its manifest's digest, when and from where it was pushed
//! current                  the number of the newest revision
//! events/<writer>/<seq>    the event journal (see `journal`); events/report/<machine>/<id>
//! leaders/<name>           who leads an election, on a lease (see `election`); leaders/writer:
//!                          the push or prune under way
//! fleet/<pool>             a pool's reboot slots and policy (kindling-fleet's `slots`)
//! updates/<pool>           a pool's rolling update under way (kindling-fleet's `update`)
//! ```
//!
//! Blobs are content-addressed and never change, so a push writes only what is new, and one
//! transaction then creates `revisions/<n>` and moves `current` to it: a replica sees a whole
//! revision or none of it. Large files (OS images, the mirror) are not put in etcd: the
//! manifest lists them by digest, and a replica gets them from a directory shared between the
//! hosts (see [`cache::BlobSources`]).

pub mod cache;
pub mod election;
pub mod follow;
pub mod journal;
pub mod prune;
pub mod pull;
pub mod push;
pub mod snapshot;

use std::path::PathBuf;

use kindling_etcd::EtcdError;
use serde::{Deserialize, Serialize};

pub use cache::{BlobSources, Cache};
pub use prune::{Pruned, prune};
pub use pull::{Pulled, pull};
pub use push::{Pinned, PushOptions, Pushed, push};
pub use snapshot::{Entry, Manifest};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("'{given}' is not a store address: {reason}")]
    Address { given: String, reason: String },
    #[error("{what}: {source}")]
    Etcd {
        what: String,
        #[source]
        source: Box<EtcdError>,
    },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "revision {found} was pushed while this push was under way (it started from {expected}); nothing was changed: push again if this directory should win"
    )]
    Conflict { expected: String, found: u64 },
    #[error(
        "nothing has been pushed to the store yet: run kindling store push --dir <asset directory>"
    )]
    Empty,
    #[error(
        "{holder} holds the store's {what} lease (waited {} s): it is running now, or died less than {} s ago; try again",
        waited.as_secs(), election::TTL
    )]
    Busy {
        what: String,
        holder: String,
        waited: std::time::Duration,
    },
    #[error(
        "this host's hold on the store's {0} lease ran out before it was done (etcd too slow?); nothing past that point was changed: run it again"
    )]
    LostLease(String),
    #[error("the store has no revision {0}")]
    NoSuchRevision(u64),
    #[error("the store's {key} is damaged: {reason}")]
    Damaged { key: String, reason: String },
    #[error(
        "{} differs from the one revision {revision} has: {why}; take the store's (delete it here, and push again), or change it on purpose ({flag})",
        path.display()
    )]
    PinnedChanged {
        path: PathBuf,
        revision: u64,
        why: &'static str,
        flag: &'static str,
    },
}

impl StoreError {
    /// A watch that was quiet for a while and is to be made again: no failure.
    pub fn is_quiet_watch(&self) -> bool {
        matches!(self, StoreError::Etcd { source, .. } if matches!(**source, EtcdError::WatchQuiet { .. }))
    }
}

/// The etcd cluster and the prefix the site's state lives under.
#[derive(Clone, Debug)]
pub struct Store {
    etcd: kindling_etcd::Client,
    prefix: String,
}

/// Where the store is: etcd's client URLs and the key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub endpoints: Vec<String>,
    /// Without a trailing slash.
    pub prefix: String,
}

/// The prefix when the address names none.
pub const DEFAULT_PREFIX: &str = "/kindling";

impl Address {
    /// Parses `etcd://host1:2379,host2:2379[/prefix]`. The members are asked over TLS when
    /// `tls` is set (kindling serve's `--etcd-ca`), else over plain HTTP.
    pub fn parse(given: &str, tls: bool) -> Result<Address, StoreError> {
        let bad = |reason: &str| StoreError::Address {
            given: given.to_string(),
            reason: reason.to_string(),
        };
        let rest = given
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("it must start with etcd:// (etcd://host1:2379,host2:2379)"))?;
        let (hosts, prefix) = match rest.find('/') {
            Some(slash) => (&rest[..slash], rest[slash..].trim_end_matches('/')),
            None => (rest, DEFAULT_PREFIX),
        };
        if prefix.is_empty() {
            return Err(bad(
                "the prefix after the hosts is empty: leave it out, or name one such as /kindling",
            ));
        }
        if hosts.split(',').any(|host| host.trim().is_empty()) {
            return Err(bad(
                "it names no etcd member, or an empty one between commas",
            ));
        }
        let scheme = if tls { "https" } else { "http" };
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(|host| format!("{scheme}://{}", host.trim()))
            .collect();
        for endpoint in &endpoints {
            kindling_etcd::Endpoint::parse(endpoint).map_err(|e| match e {
                EtcdError::Url { reason, .. } => bad(&reason),
                other => bad(&other.to_string()),
            })?;
        }
        Ok(Address {
            endpoints,
            prefix: prefix.to_string(),
        })
    }
}

/// How long a store request may wait for a member: less than a machine waits on a report, so
/// that a replica without a quorum can still keep the report locally in time (etcd itself
/// gives up on a write without a quorum after about 7 s).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

impl Store {
    /// The store under `prefix` of the cluster `etcd` reaches, asked with this crate's
    /// timeouts.
    pub fn new(etcd: kindling_etcd::Client, prefix: &str) -> Store {
        Store {
            etcd: etcd.with_timeouts(CONNECT_TIMEOUT, REQUEST_TIMEOUT),
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// The etcd client, for the other kinds of shared state (events, elections).
    pub fn etcd(&self) -> &kindling_etcd::Client {
        &self.etcd
    }

    /// The full key of `path` under the prefix.
    pub fn key(&self, path: &str) -> Vec<u8> {
        format!("{}/{path}", self.prefix).into_bytes()
    }

    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        let endpoints: Vec<&str> = self.etcd.endpoints().collect();
        format!("{} under {}", endpoints.join(","), self.prefix)
    }

    /// The newest revision, if any has been pushed; with the etcd revision of `current`.
    pub async fn current(&self) -> Result<Option<(Revision, i64)>, StoreError> {
        let key = self.key(CURRENT);
        let found = self
            .etcd
            .get(&key)
            .await
            .map_err(|source| StoreError::Etcd {
                what: format!("reading the current revision from {}", self.describe()),
                source: Box::new(source),
            })?;
        let Some(kv) = found else {
            return Ok(None);
        };
        let number = parse_number(&kv.value, &key)?;
        Ok(Some((self.revision(number).await?, kv.mod_revision)))
    }

    /// The manifest of `revision`.
    pub async fn manifest(&self, revision: &Revision) -> Result<Manifest, StoreError> {
        let bytes = self
            .blob(&revision.manifest, revision.manifest_size)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
            key: format!("the manifest of revision {}", revision.number),
            reason: e.to_string(),
        })
    }

    /// One blob, read from etcd and checked against its digest and size.
    pub async fn blob(&self, digest: &str, size: u64) -> Result<Vec<u8>, StoreError> {
        // Two chunks (1 MiB) per read, so that no answer is large whatever the blob's size.
        let indexes: Vec<u64> = (0..push::chunks(size)).collect();
        let mut chunks = Vec::with_capacity(indexes.len());
        for pair in indexes.chunks(2) {
            let reads = pair
                .iter()
                .map(|i| {
                    kindling_etcd::Op::Get(kindling_etcd::Range::key(
                        self.key(&blob_key(digest, *i)),
                    ))
                })
                .collect();
            let txn = kindling_etcd::Txn {
                success: reads,
                ..kindling_etcd::Txn::default()
            };
            let answer = self
                .etcd
                .txn(&txn)
                .await
                .map_err(|source| StoreError::Etcd {
                    what: format!("reading blob {digest}"),
                    source: Box::new(source),
                })?;
            chunks.extend(
                answer
                    .ranges
                    .into_iter()
                    .map(|r| r.kvs.into_iter().next().map(|kv| kv.value)),
            );
        }
        assemble(self, digest, size, chunks)
    }

    /// Revision `number`.
    pub async fn revision(&self, number: u64) -> Result<Revision, StoreError> {
        let key = self.key(&revision_key(number));
        let found = self
            .etcd
            .get(&key)
            .await
            .map_err(|source| StoreError::Etcd {
                what: format!("reading revision {number}"),
                source: Box::new(source),
            })?;
        let kv = found.ok_or(StoreError::NoSuchRevision(number))?;
        serde_json::from_slice(&kv.value).map_err(|e| StoreError::Damaged {
            key: String::from_utf8_lossy(&key).into_owned(),
            reason: e.to_string(),
        })
    }
}

/// The lease that `push` and `prune` hold while they write, so that a prune never deletes a blob
/// that a push found in the store and is about to make a revision of.
pub(crate) const WRITER: &str = "writer";

/// How long a push or a prune waits for another one to finish.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes the [`WRITER`] lease, as this host and process.
pub(crate) async fn writer(store: &Store) -> Result<election::Leadership, StoreError> {
    let me = format!("{} (pid {})", hostname(), std::process::id());
    election::Election::new(store.clone(), WRITER, &me)
        .lead_within(WRITER_WAIT)
        .await
}

/// This host's name, for what a replica or a push writes about itself.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The key of the newest revision's number.
pub(crate) const CURRENT: &str = "current";

pub(crate) fn revision_key(number: u64) -> String {
    // Zero-padded, so that the keys sort by number.
    format!("revisions/{number:020}")
}

pub(crate) fn blob_key(digest: &str, chunk: u64) -> String {
    format!("blobs/{digest}/{chunk:04}")
}

/// A blob from its chunks as etcd gave them (None: missing), checked against its digest and
/// size.
pub(crate) fn assemble(
    store: &Store,
    digest: &str,
    size: u64,
    chunks: impl IntoIterator<Item = Option<Vec<u8>>>,
) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::with_capacity(size as usize);
    let mut chunks = chunks.into_iter();
    for i in 0..push::chunks(size) {
        let Some(Some(chunk)) = chunks.next() else {
            return Err(StoreError::Damaged {
                key: String::from_utf8_lossy(&store.key(&blob_key(digest, i))).into_owned(),
                reason: "missing".into(),
            });
        };
        bytes.extend_from_slice(&chunk);
    }
    if bytes.len() as u64 != size || snapshot::digest(&bytes) != digest {
        return Err(StoreError::Damaged {
            key: String::from_utf8_lossy(&store.key(&format!("blobs/{digest}"))).into_owned(),
            reason: format!(
                "its {} bytes do not have that digest and size ({size} bytes)",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

fn parse_number(value: &[u8], key: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| StoreError::Damaged {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: "not a revision number".into(),
        })
}

/// A pushed asset directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub number: u64,
    /// The digest of its [`Manifest`]'s JSON, itself a blob.
    pub manifest: String,
    pub manifest_size: u64,
    pub files: usize,
    /// The files' bytes, in etcd and outside it.
    pub bytes: u64,
    /// RFC 3339.
    pub pushed_at: String,
    /// The host and directory it was pushed from.
    pub pushed_from: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_bad_ones_say_why() {
        let a = Address::parse("etcd://10.0.0.1:2379,10.0.0.2:2379", true).unwrap();
        assert_eq!(
            a.endpoints,
            ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
        );
        assert_eq!(a.prefix, "/kindling");
        let a = Address::parse("etcd://etcd.lab/sites/paris/", false).unwrap();
        assert_eq!(
            (a.endpoints, a.prefix),
            (
                vec!["http://etcd.lab".to_string()],
                "/sites/paris".to_string()
            )
        );
        for (given, why) in [
            ("https://10.0.0.1:2379", "must start with etcd://"),
            ("etcd://", "no etcd member"),
            ("etcd://a:2379,,b:2379", "empty one"),
            ("etcd://10.0.0.1:99999", "port"),
            ("etcd://10.0.0.1:2379//", "prefix"),
        ] {
            let e = Address::parse(given, true).unwrap_err().to_string();
            assert!(e.contains(given) && e.contains(why), "{given}: {e}");
        }
    }
}
