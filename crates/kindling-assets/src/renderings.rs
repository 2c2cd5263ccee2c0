//! Renderings: each pool's config, named by its content (`rendered-<pool>-<hash>`, as the
//! machine-config-operator names its rendered MachineConfigs) and kept, so that a machine can be
//! told exactly which config it is meant to run and a rollback is a pointer move.
//!
//! `create ignition-configs` writes `ignition/<pool>.ign`, the newest config the description
//! makes; [`publish`] then copies it to `ignition/rendered/<name>.ign` and records it in the
//! pool's state, `ignition/pools/<pool>.json`:
//! - `target`: the rendering the pool is on, or moving to. A machine that installs gets it.
//! - `machines`: the rendering each machine is meant to be on, where that is not `target`. A
//!   machine that was served a config ([`served`], which `kindling serve` records) stays on it
//!   when the target moves, until `kindling update` moves it: a running machine is never
//!   changed behind the rolling update's back. A machine that never fetched its config simply
//!   follows the target.
//! - `latest`: what the description rendered last. The target moves only when that changes,
//!   so a `create` after a rollback does not undo it.
//! - `renderings`: every rendering of the pool, oldest first, with when it was made.
//!
//! The pool's state is changed only by kindling's commands (create, update, rollback), each
//! with one atomic write; `kindling serve` only reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ignition::pool_path;
use crate::state::Digest;
use crate::storage::{Mode, Storage};

/// Where renderings are kept, relative to the asset directory.
pub const RENDERED_DIR: &str = "ignition/rendered";
/// Where each pool's state lives.
pub const POOLS_DIR: &str = "ignition/pools";
/// Where `kindling serve` records the rendering it served each machine.
pub const SERVED_DIR: &str = ".kindling/served";

/// Why renderings could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RenderingError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a pool state kindling wrote: {message}; restore it from a backup, or delete it to start the pool's history again"
    )]
    BadState { path: PathBuf, message: String },
    #[error("the {pool} pool has no rendering {name}; its renderings are: {known}")]
    Unknown {
        pool: String,
        name: String,
        known: String,
    },
    #[error("the {pool} pool has no rendering yet; run kindling create ignition-configs first")]
    NoRendering { pool: String },
    #[error("the {pool} pool has no rendering before {target}: there is nothing to roll back to")]
    NothingEarlier { pool: String, target: String },
}

/// The name of a pool's rendering with these bytes: `rendered-<pool>-<first 16 hex digits of
/// their sha256>`.
pub fn name_of(pool: &str, bytes: &[u8]) -> String {
    let digest = Digest::of(bytes);
    let hex = &digest.as_str()["sha256:".len()..];
    format!("rendered-{pool}-{}", &hex[..16])
}

/// The pool a rendering's name says it belongs to.
pub fn pool_of_name(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("rendered-")?;
    let (pool, hash) = rest.rsplit_once('-')?;
    (hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(pool)
}

/// `ignition/rendered/<name>.ign`.
pub fn rendering_path(name: &str) -> String {
    format!("{RENDERED_DIR}/{name}.ign")
}

/// `ignition/pools/<pool>.json`.
pub fn state_path(pool: &str) -> String {
    format!("{POOLS_DIR}/{pool}.json")
}

/// One rendering in a pool's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rendering {
    pub name: String,
    /// RFC 3339.
    pub created: String,
}

/// A pool's state: see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolState {
    pub pool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
    #[serde(default)]
    pub renderings: Vec<Rendering>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub machines: BTreeMap<String, String>,
}

impl PoolState {
    /// The pool's state in `dir`; a pool without one has no rendering yet.
    pub fn load(dir: &Path, pool: &str) -> Result<PoolState, RenderingError> {
        let path = dir.join(state_path(pool));
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PoolState {
                    pool: pool.to_string(),
                    ..PoolState::default()
                });
            }
            Err(source) => return Err(RenderingError::Read { path, source }),
        };
        let state: PoolState =
            serde_json::from_slice(&bytes).map_err(|e| RenderingError::BadState {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if state.pool != pool {
            return Err(RenderingError::BadState {
                path,
                message: format!("it is the state of pool {:?}", state.pool),
            });
        }
        Ok(state)
    }

    /// Writes the state, atomically.
    pub fn save(&self, dir: &Path, storage: &dyn Storage) -> Result<(), RenderingError> {
        let path = dir.join(state_path(&self.pool));
        let mut json = serde_json::to_vec_pretty(self).expect("a pool state serializes");
        json.push(b'\n');
        storage
            .write(&path, &json, Mode::Public)
            .map_err(|source| RenderingError::Write { path, source })
    }

    /// The rendering `machine` is meant to be on: its own, or the pool's target.
    pub fn desired(&self, machine: &str) -> Option<&str> {
        self.machines
            .get(machine)
            .or(self.target.as_ref())
            .map(String::as_str)
    }

    fn knows(&self, name: &str) -> bool {
        self.renderings.iter().any(|r| r.name == name)
    }

    fn known(&self) -> String {
        let names: Vec<&str> = self.renderings.iter().map(|r| r.name.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// Checks that `name` is one of this pool's renderings.
    pub fn check(&self, name: &str) -> Result<(), RenderingError> {
        if self.knows(name) {
            Ok(())
        } else {
            Err(RenderingError::Unknown {
                pool: self.pool.clone(),
                name: name.to_string(),
                known: self.known(),
            })
        }
    }

    /// The rendering made before the target: what a rollback goes back to.
    pub fn previous(&self) -> Result<&str, RenderingError> {
        let target = self
            .target
            .as_deref()
            .ok_or_else(|| RenderingError::NoRendering {
                pool: self.pool.clone(),
            })?;
        let at = self.renderings.iter().position(|r| r.name == target);
        at.and_then(|at| at.checked_sub(1))
            .map(|before| self.renderings[before].name.as_str())
            .ok_or_else(|| RenderingError::NothingEarlier {
                pool: self.pool.clone(),
                target: target.to_string(),
            })
    }

    /// Moves the pool's target to `name`, keeping every machine that was served a config on
    /// what it runs (see the module documentation). `served` is [`served`] of the asset
    /// directory; `members` are the pool's machines.
    pub fn retarget(
        &mut self,
        name: &str,
        members: &[&str],
        served: &BTreeMap<String, String>,
    ) -> Result<(), RenderingError> {
        self.check(name)?;
        // Machines that left the pool are forgotten, so that a name used again starts afresh.
        self.machines.retain(|m, _| members.contains(&m.as_str()));
        for member in members {
            if self.machines.contains_key(*member) {
                continue;
            }
            if let Some(on) = served.get(*member).filter(|on| self.knows(on)) {
                self.machines.insert(member.to_string(), on.clone());
            }
        }
        self.target = Some(name.to_string());
        self.machines.retain(|_, on| on != name);
        Ok(())
    }

    /// Says that `machine` is meant to be on `name` from now on (a rolling update's step).
    pub fn pin(&mut self, machine: &str, name: &str) -> Result<(), RenderingError> {
        self.check(name)?;
        if self.target.as_deref() == Some(name) {
            self.machines.remove(machine);
        } else {
            self.machines.insert(machine.to_string(), name.to_string());
        }
        Ok(())
    }
}

/// What [`publish`] did for one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub pool: String,
    pub rendering: String,
    /// This rendering was made now (not found among the pool's earlier ones).
    pub new: bool,
    /// The target before, when this moved it.
    pub moved_from: Option<String>,
    /// Machines that stay on an earlier rendering until `kindling update` moves them.
    pub behind: usize,
}

/// The rendering `kindling serve` last served each machine (`.kindling/served/<machine>`).
pub fn served(dir: &Path) -> Result<BTreeMap<String, String>, RenderingError> {
    let root = dir.join(SERVED_DIR);
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(RenderingError::Read { path: root, source }),
    };
    let mut served = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|source| RenderingError::Read {
            path: root.clone(),
            source,
        })?;
        let Some(machine) = entry.file_name().to_str().map(String::from) else {
            continue;
        };
        if machine.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let name = std::fs::read_to_string(&path)
            .map_err(|source| RenderingError::Read { path, source })?;
        served.insert(machine, name.trim().to_string());
    }
    Ok(served)
}

/// Records that `machine` was served `rendering` (what `kindling serve` calls).
pub fn record_served(
    dir: &Path,
    storage: &dyn Storage,
    machine: &str,
    rendering: &str,
) -> Result<(), RenderingError> {
    let path = dir.join(SERVED_DIR).join(machine);
    if std::fs::read_to_string(&path).is_ok_and(|on| on.trim() == rendering) {
        return Ok(());
    }
    storage
        .write(&path, format!("{rendering}\n").as_bytes(), Mode::Public)
        .map_err(|source| RenderingError::Write { path, source })
}

/// Keeps each pool's newest config (`ignition/<pool>.ign`) as a rendering, and moves the
/// pool's target to it when the description rendered something else than the last time. `pools` are the pools with their members' names. `now` is RFC 3339.
pub fn publish(
    dir: &Path,
    storage: &dyn Storage,
    pools: &[(&str, Vec<&str>)],
    now: &str,
) -> Result<Vec<Published>, RenderingError> {
    let served = served(dir)?;
    let mut published = Vec::new();
    for (pool, members) in pools {
        let source = dir.join(pool_path(pool));
        let bytes = match std::fs::read(&source) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source_error) => {
                return Err(RenderingError::Read {
                    path: source,
                    source: source_error,
                });
            }
        };
        let name = name_of(pool, &bytes);
        let kept = dir.join(rendering_path(&name));
        if !kept.exists() {
            let mode = secret_or_not(&source)?;
            storage
                .write(&kept, &bytes, mode)
                .map_err(|source| RenderingError::Write { path: kept, source })?;
        }
        let mut state = PoolState::load(dir, pool)?;
        let new = !state.knows(&name);
        if new {
            state.renderings.push(Rendering {
                name: name.clone(),
                created: now.to_string(),
            });
        }
        let before = state.target.clone();
        // Machines that left the pool are forgotten, so that a name used again starts afresh.
        state.machines.retain(|m, _| members.contains(&m.as_str()));
        if state.latest.as_deref() != Some(name.as_str()) || before.is_none() {
            state.retarget(&name, members, &served)?;
            state.latest = Some(name.clone());
        }
        state.save(dir, storage)?;
        published.push(Published {
            pool: pool.to_string(),
            rendering: name.clone(),
            new,
            moved_from: before.filter(|b| Some(b) != state.target.as_ref()),
            behind: state.machines.len(),
        });
    }
    Ok(published)
}

/// The mode a kept copy gets: that of the pool config it was made from.
fn secret_or_not(source: &Path) -> Result<Mode, RenderingError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(source).map_err(|e| RenderingError::Read {
        path: source.to_path_buf(),
        source: e,
    })?;
    Ok(match meta.permissions().mode() & 0o777 {
        0o600 => Mode::Secret,
        0o640 => Mode::ServerReadable,
        _ => Mode::Public,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::AtomicFiles;

    fn write_pool(dir: &Path, pool: &str, text: &str) {
        AtomicFiles
            .write(&dir.join(pool_path(pool)), text.as_bytes(), Mode::Secret)
            .unwrap();
    }

    #[test]
    fn names_are_content_addressed_and_say_their_pool() {
        let a = name_of("worker", b"one");
        assert_eq!(a, name_of("worker", b"one"));
        assert_ne!(a, name_of("worker", b"two"));
        assert!(a.starts_with("rendered-worker-") && a.len() == "rendered-worker-".len() + 16);
        assert_eq!(pool_of_name(&a), Some("worker"));
        assert_eq!(pool_of_name(&name_of("my-pool", b"x")), Some("my-pool"));
        assert_eq!(pool_of_name("rendered-worker-nothex!"), None);
        assert_eq!(pool_of_name("worker"), None);
    }

    #[test]
    fn served_machines_stay_until_updated_and_new_ones_follow_the_target() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let members = vec![("worker", vec!["w0", "w1", "w2"])];

        write_pool(dir, "worker", "{\"v\":1}");
        let first = publish(dir, &AtomicFiles, &members, "2026-12-01T00:00:00Z").unwrap();
        let a = first[0].rendering.clone();
        assert!(first[0].new && first[0].moved_from.is_none());
        // The kept copy is the pool's config byte for byte, and as secret as it.
        let kept = dir.join(rendering_path(&a));
        assert_eq!(std::fs::read(&kept).unwrap(), b"{\"v\":1}");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // w0 installs on A; w1 and w2 have not booted yet.
        record_served(dir, &AtomicFiles, "w0", &a).unwrap();
        write_pool(dir, "worker", "{\"v\":2}");
        let second = publish(dir, &AtomicFiles, &members, "2026-12-02T00:00:00Z").unwrap();
        let b = second[0].rendering.clone();
        assert_eq!(second[0].moved_from.as_deref(), Some(a.as_str()));
        assert_eq!(second[0].behind, 1);
        let state = PoolState::load(dir, "worker").unwrap();
        assert_eq!(
            state.desired("w0"),
            Some(a.as_str()),
            "w0 is not moved behind the update's back"
        );
        assert_eq!(state.desired("w1"), Some(b.as_str()));
        assert_eq!(
            state.desired("w9"),
            Some(b.as_str()),
            "a machine added later installs the target"
        );
        assert_eq!(state.previous().unwrap(), a);

        // Publishing the same config again changes nothing.
        let again = publish(dir, &AtomicFiles, &members, "2026-12-03T00:00:00Z").unwrap();
        assert!(!again[0].new && again[0].moved_from.is_none());
        assert_eq!(PoolState::load(dir, "worker").unwrap(), state);

        // A rolling update moves w0; a rollback moves the target back, and w0 stays on B.
        let mut state = state;
        state.pin("w0", &b).unwrap();
        assert!(state.machines.is_empty());
        record_served(dir, &AtomicFiles, "w0", &b).unwrap();
        let served = served(dir).unwrap();
        state.retarget(&a, &["w0", "w1", "w2"], &served).unwrap();
        assert_eq!(state.desired("w0"), Some(b.as_str()));
        assert_eq!(state.desired("w1"), Some(a.as_str()));
        assert!(matches!(
            state.previous(),
            Err(RenderingError::NothingEarlier { .. })
        ));
        state.save(dir, &AtomicFiles).unwrap();
        // The description still renders B: a create after the rollback does not undo it.
        let after = publish(dir, &AtomicFiles, &members, "2026-12-04T00:00:00Z").unwrap();
        assert!(after[0].moved_from.is_none());
        assert_eq!(
            PoolState::load(dir, "worker").unwrap().target.as_deref(),
            Some(a.as_str())
        );
        // A description that renders something else again moves it.
        write_pool(dir, "worker", "{\"v\":3}");
        let third = publish(dir, &AtomicFiles, &members, "2026-12-05T00:00:00Z").unwrap();
        assert_eq!(third[0].moved_from.as_deref(), Some(a.as_str()));
        let err = state
            .pin("w1", "rendered-worker-0000000000000000")
            .unwrap_err();
        assert!(
            err.to_string().contains(&a) && err.to_string().contains(&b),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_state_is_named_and_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(state_path("worker"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{not json").unwrap();
        write_pool(tmp.path(), "worker", "{}");
        let err = publish(tmp.path(), &AtomicFiles, &[("worker", vec![])], "now").unwrap_err();
        assert!(
            err.to_string().contains("ignition/pools/worker.json"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
    }
}
