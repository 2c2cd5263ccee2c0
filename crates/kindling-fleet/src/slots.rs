//! A pool's reboot slots: a counting semaphore with owners, as the FleetLock protocol defines
//! it (a holder taking its slot again is granted; releasing a slot one does not hold is a
//! success), kept in `.kindling/fleet/<pool>.json` with the pool's [`Policy`].
//!
//! Zincati's requests (through `kindling serve`) and `kindling update` run in different
//! processes and take from the same slots, so every change holds an exclusive lock on
//! `.kindling/fleet/<pool>.lock` while it reads, decides and writes; the write is atomic, so a
//! process killed midway leaves the slots as they were before or after, never half.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use kindling_assets::{AtomicFiles, Mode, Storage};
use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use crate::window;

/// Where the pools' slots and policies are kept, relative to the asset directory.
pub const FLEET_DIR: &str = ".kindling/fleet";

/// Why the slots could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SlotsError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not what kindling wrote: {message}; fix or delete it (deleting it frees every slot)"
    )]
    Damaged { path: PathBuf, message: String },
    #[error("the {pool} pool's policy in {path} is invalid: {message}")]
    BadPolicy {
        pool: String,
        path: PathBuf,
        message: String,
    },
    #[error("the {pool} pool's slots in the store: {message}")]
    Store { pool: String, message: String },
}

/// Who holds a slot, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// `zincati <id>` or `kindling update`.
    pub by: String,
    /// RFC 3339.
    pub since: String,
}

/// What is kept for a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolFleet {
    #[serde(default)]
    pub policy: Policy,
    /// By machine name.
    #[serde(default)]
    pub slots: BTreeMap<String, Slot>,
}

/// Why a slot was not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is held; by whom.
    Full { max: usize, holders: Vec<String> },
    /// No window is open now.
    OutsideWindow { windows: Vec<String> },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Full { max, holders } => write!(
                f,
                "{max} of the pool's machines may be out at once, and {} are: {}",
                holders.len(),
                holders.join(", ")
            ),
            Refusal::OutsideWindow { windows } => write!(
                f,
                "outside the pool's maintenance windows ({})",
                windows.join("; ")
            ),
        }
    }
}

/// A pool's slots, locked against every other process until dropped; or, read from the store,
/// to be written there only if no other replica changed them meanwhile (see [`change_in_store`]).
#[derive(Debug)]
pub struct Locked {
    /// The file lock; none for slots read from the store.
    _lock: Option<File>,
    /// Where they are kept, for messages.
    path: PathBuf,
    pool: String,
    pub fleet: PoolFleet,
    /// [`Locked::save`] was called on slots from the store.
    saved: bool,
}

/// `.kindling/fleet/<pool>.json`.
pub fn path(dir: &Path, pool: &str) -> PathBuf {
    dir.join(FLEET_DIR).join(format!("{pool}.json"))
}

/// Locks `pool`'s slots (waiting for another process to finish) and reads them.
pub fn lock(dir: &Path, pool: &str) -> Result<Locked, SlotsError> {
    let fleet_dir = dir.join(FLEET_DIR);
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| SlotsError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&fleet_dir).map_err(io("creating", &fleet_dir))?;
    let lock_path = fleet_dir.join(format!("{pool}.lock"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("opening", &lock_path))?;
    lock.lock().map_err(io("locking", &lock_path))?;
    let path = path(dir, pool);
    let fleet = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SlotsError::Damaged {
            path: path.clone(),
            message: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PoolFleet::default(),
        Err(e) => return Err(io("reading", &path)(e)),
    };
    Ok(Locked {
        _lock: Some(lock),
        path,
        pool: pool.to_string(),
        fleet,
        saved: false,
    })
}

/// Where the pools' slots are kept: the asset directory, or the store the replicas of
/// `kindling serve --store` share (and `kindling update --store` takes from).
#[derive(Debug, Clone)]
pub enum Home {
    Dir(PathBuf),
    Store(Box<kindling_store::Store>),
}

impl Home {
    /// Runs `change` on `pool`'s slots, alone: under the file lock (a short blocking wait), or
    /// in the store (see [`change_in_store`]). What `change` saves is kept.
    pub async fn change<T>(
        &self,
        pool: &str,
        mut change: impl FnMut(&mut Locked) -> Result<T, SlotsError>,
    ) -> Result<T, SlotsError> {
        match self {
            Home::Dir(dir) => {
                let mut slots = lock(dir, pool)?;
                change(&mut slots)
            }
            Home::Store(store) => change_in_store(store, pool, change).await,
        }
    }
}

/// Runs `change` on `pool`'s slots as the store holds them (`fleet/<pool>`), for the replicas of
/// `kindling serve --store`, which share them: what `change` saves is written only if no one
/// changed the slots since they were read (a transaction on their revision); else they are read
/// again and `change` runs again.
pub async fn change_in_store<T>(
    store: &kindling_store::Store,
    pool: &str,
    mut change: impl FnMut(&mut Locked) -> Result<T, SlotsError>,
) -> Result<T, SlotsError> {
    use kindling_etcd::{Compare, Op, Txn};
    let key = store.key(&format!("fleet/{pool}"));
    let failed = |e: kindling_etcd::EtcdError| SlotsError::Store {
        pool: pool.to_string(),
        message: e.to_string(),
    };
    let path = PathBuf::from(format!(
        "{} ({})",
        String::from_utf8_lossy(&key),
        store.describe()
    ));
    for _ in 0..20 {
        let found = store.etcd().get(&key).await.map_err(failed)?;
        let (fleet, guard) = match found {
            Some(kv) => (
                serde_json::from_slice(&kv.value).map_err(|e| SlotsError::Damaged {
                    path: path.clone(),
                    message: e.to_string(),
                })?,
                Compare::Modified(key.clone(), kv.mod_revision),
            ),
            None => (PoolFleet::default(), Compare::Created(key.clone(), 0)),
        };
        let mut slots = Locked {
            _lock: None,
            path: path.clone(),
            pool: pool.to_string(),
            fleet,
            saved: false,
        };
        let outcome = change(&mut slots)?;
        if !slots.saved {
            return Ok(outcome);
        }
        let json = serde_json::to_vec_pretty(&slots.fleet).expect("slots serialize");
        let txn = Txn {
            compare: vec![guard],
            success: vec![Op::put(key.clone(), json)],
            failure: Vec::new(),
        };
        if store.etcd().txn(&txn).await.map_err(failed)?.succeeded {
            return Ok(outcome);
        }
    }
    Err(SlotsError::Store {
        pool: pool.to_string(),
        message: "other replicas changed them 20 times in a row while this one tried; try again"
            .into(),
    })
}

impl Locked {
    /// Gives `machine` a slot for `by`, if it holds none: when a window is open and fewer than
    /// the policy's maximum are held. A machine that holds one keeps it (and is told so).
    /// `members` is the pool's size. Not saved until [`Locked::save`].
    pub fn take(
        &mut self,
        machine: &str,
        by: &str,
        members: usize,
        now: Timestamp,
    ) -> Result<Result<(), Refusal>, SlotsError> {
        if let Some(slot) = self.fleet.slots.get_mut(machine) {
            slot.by = by.to_string();
            return Ok(Ok(()));
        }
        let policy = &self.fleet.policy;
        let bad = |message: String| SlotsError::BadPolicy {
            pool: self.pool.clone(),
            path: self.path.clone(),
            message,
        };
        let windows = policy.windows().map_err(|e| bad(e.to_string()))?;
        if !window::open(&windows, now) {
            return Ok(Err(Refusal::OutsideWindow {
                windows: policy.windows.clone(),
            }));
        }
        let max = policy.max_unavailable().map_err(bad)?.of(members);
        if self.fleet.slots.len() >= max {
            let holders = self
                .fleet
                .slots
                .iter()
                .map(|(m, s)| format!("{m} ({})", s.by))
                .collect();
            return Ok(Err(Refusal::Full { max, holders }));
        }
        let since = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let slot = Slot {
            by: by.to_string(),
            since,
        };
        self.fleet.slots.insert(machine.to_string(), slot);
        Ok(Ok(()))
    }

    /// Frees `machine`'s slot; whether it held one.
    pub fn release(&mut self, machine: &str) -> bool {
        self.fleet.slots.remove(machine).is_some()
    }

    /// Writes the slots and policy, atomically; the lock is released when `self` is dropped.
    /// Slots from the store are written by [`change_in_store`] once `change` returns.
    pub fn save(&mut self) -> Result<(), SlotsError> {
        if self._lock.is_none() {
            self.saved = true;
            return Ok(());
        }
        let mut json = serde_json::to_vec_pretty(&self.fleet).expect("slots serialize");
        json.push(b'\n');
        AtomicFiles
            .write(&self.path, &json, Mode::Public)
            .map_err(|source| SlotsError::Io {
                action: "writing",
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-05T01:30:00Z".parse().unwrap()
    }

    #[test]
    fn slots_are_owned_counted_and_kept_across_processes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut slots = lock(dir, "worker").unwrap();
        slots.fleet.policy.max_unavailable = Some("2".into());
        assert_eq!(slots.take("w0", "zincati a", 6, now()).unwrap(), Ok(()));
        assert_eq!(
            slots.take("w1", "kindling update", 6, now()).unwrap(),
            Ok(())
        );
        // Taking again is granted to its holder; a third machine waits.
        assert_eq!(slots.take("w0", "zincati a", 6, now()).unwrap(), Ok(()));
        let Err(Refusal::Full { max, holders }) = slots.take("w2", "zincati c", 6, now()).unwrap()
        else {
            panic!("a third slot was given");
        };
        assert_eq!((max, holders.len()), (2, 2));
        slots.save().unwrap();
        drop(slots);

        let mut slots = lock(dir, "worker").unwrap();
        assert_eq!(slots.fleet.slots.len(), 2);
        assert!(slots.release("w0"));
        assert!(!slots.release("w0"), "releasing what one does not hold");
        assert_eq!(slots.take("w2", "zincati c", 6, now()).unwrap(), Ok(()));
    }

    #[test]
    fn no_slot_outside_the_window() {
        let tmp = tempfile::tempdir().unwrap();
        let mut slots = lock(tmp.path(), "worker").unwrap();
        slots.fleet.policy.windows = vec!["Sat,Sun 02:00-06:00 Europe/Paris".into()];
        assert_eq!(slots.take("w0", "x", 3, now()).unwrap(), Ok(()));
        let monday = "2026-12-07T12:00:00Z".parse().unwrap();
        let refused = slots.take("w1", "x", 3, monday).unwrap().unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("Sat,Sun 02:00-06:00 Europe/Paris"),
            "{refused}"
        );
        // A machine that holds its slot keeps it when the window closes: it has started.
        assert_eq!(slots.take("w0", "x", 3, monday).unwrap(), Ok(()));
    }

    #[test]
    fn a_damaged_file_is_named_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(FLEET_DIR)).unwrap();
        std::fs::write(path(tmp.path(), "worker"), "{").unwrap();
        let err = lock(tmp.path(), "worker").unwrap_err().to_string();
        assert!(err.contains(".kindling/fleet/worker.json"), "{err}");
        assert_eq!(
            std::fs::read_to_string(path(tmp.path(), "worker")).unwrap(),
            "{"
        );
    }
}
