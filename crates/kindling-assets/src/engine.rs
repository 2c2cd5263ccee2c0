//! The asset graph: each asset names what it is made from and generates its files.
//!
//! This is openshift-install's asset graph with its faults fixed:
//! - an output the user edited is kept, and only what depends on it is regenerated;
//! - a deleted output is regenerated;
//! - inputs (install-config.yaml, inventory.yaml) are read, never deleted or rewritten;
//! - every write is atomic, and an interrupted run leaves the previous state valid.
//!
//! Whether an asset must be regenerated is decided by digests, not timestamps: the digest of
//! everything it is made from (its dependencies' files as they are on disk, edits included) is
//! compared with the one recorded in `.kindling/state.json`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};

use kindling_config::ClusterDescription;

use crate::state::{AssetRecord, Digest, FileRecord, STATE_FILE, State, StateError};
use crate::storage::{Mode, Storage};

/// What an asset is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// A file the user writes, relative to the asset directory.
    Input(&'static str),
    /// Every file another asset generates.
    Asset(&'static str),
}

/// One file an asset generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Relative to the asset directory, with '/' separators.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: Mode,
}

/// A node of the graph.
pub trait Asset {
    /// A stable name, used in the state file and in messages.
    fn id(&self) -> &'static str;
    /// What the asset is made from. Dependencies must come earlier in the run.
    fn depends_on(&self) -> &'static [Dependency];
    /// Generates the files. Dependencies' files are read through `ctx`, so user edits flow down.
    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError>;
}

/// What a generator may look at.
pub struct Context<'a> {
    pub description: &'a ClusterDescription,
    pub dir: &'a Path,
    pub now: time::OffsetDateTime,
}

impl Context<'_> {
    /// Reads a file of the asset directory.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, AssetError> {
        let full = self.dir.join(path);
        std::fs::read(&full).map_err(|source| AssetError::Read { path: full, source })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{asset}: {message}")]
    Generate {
        asset: &'static str,
        message: String,
    },
    #[error("{asset} depends on {dependency}, which has not been generated before it")]
    Order {
        asset: &'static str,
        dependency: &'static str,
    },
    #[error(
        "{asset} would write {path}, which is not a plain path inside the asset directory or is an input"
    )]
    BadOutput { asset: &'static str, path: String },
}

/// What happened to one asset in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetOutcome {
    pub asset: &'static str,
    pub action: Action,
    /// Files kept as the user edited them (not overwritten).
    pub kept_edits: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Made for the first time.
    Generated,
    /// Made again because what it is made from changed, or a file of it was deleted.
    Regenerated,
    /// Nothing to do.
    UpToDate,
}

/// Runs assets in order against an asset directory.
pub struct Engine<'a> {
    dir: &'a Path,
    storage: &'a dyn Storage,
    inputs: &'a [&'a str],
}

impl<'a> Engine<'a> {
    /// `inputs` are the user's files; the engine refuses to write them.
    pub fn new(dir: &'a Path, storage: &'a dyn Storage, inputs: &'a [&'a str]) -> Engine<'a> {
        Engine {
            dir,
            storage,
            inputs,
        }
    }

    /// Brings every asset up to date, in the order given.
    pub fn run(
        &self,
        description: &ClusterDescription,
        assets: &[&dyn Asset],
        now: time::OffsetDateTime,
    ) -> Result<Vec<AssetOutcome>, AssetError> {
        let mut state = State::load(self.dir)?;
        // The files each finished asset has on disk now, with their digests.
        let mut current: HashMap<&'static str, BTreeMap<String, Digest>> = HashMap::new();
        let ctx = Context {
            description,
            dir: self.dir,
            now,
        };
        let mut outcomes = Vec::new();
        for asset in assets {
            let input_digest = self.input_digest(*asset, &current)?;
            let record = state.assets.get(asset.id()).cloned();
            let record = record.as_ref();
            let on_disk = self.scan(record)?;
            let missing = record.is_some_and(|r| r.files.keys().any(|p| !on_disk.contains_key(p)));
            // Pending digests mean the last run stopped while writing this asset.
            let up_to_date = record
                .is_some_and(|r| r.input_digest == input_digest && r.pending.is_empty())
                && !missing;

            let (action, kept_edits) = if up_to_date {
                let kept = record.map(|r| edited(r, &on_disk)).unwrap_or_default();
                (Action::UpToDate, kept)
            } else {
                let outputs = asset.generate(&ctx)?;
                let kept = self.write(asset.id(), &outputs, input_digest, &mut state, now)?;
                let action = if record.is_some() {
                    Action::Regenerated
                } else {
                    Action::Generated
                };
                (action, kept)
            };
            let files = self.scan(state.assets.get(asset.id()))?;
            current.insert(asset.id(), files);
            outcomes.push(AssetOutcome {
                asset: asset.id(),
                action,
                kept_edits,
            });
        }
        Ok(outcomes)
    }

    fn input_digest(
        &self,
        asset: &dyn Asset,
        current: &HashMap<&'static str, BTreeMap<String, Digest>>,
    ) -> Result<Digest, AssetError> {
        let mut parts: Vec<Vec<u8>> = vec![asset.id().as_bytes().to_vec()];
        for dependency in asset.depends_on() {
            match dependency {
                Dependency::Input(path) => {
                    let full = self.dir.join(path);
                    let bytes = std::fs::read(&full)
                        .map_err(|source| AssetError::Read { path: full, source })?;
                    parts.push(path.as_bytes().to_vec());
                    parts.push(Digest::of(&bytes).as_str().as_bytes().to_vec());
                }
                Dependency::Asset(id) => {
                    let files = current.get(id).ok_or(AssetError::Order {
                        asset: asset.id(),
                        dependency: id,
                    })?;
                    for (path, digest) in files {
                        parts.push(path.as_bytes().to_vec());
                        parts.push(digest.as_str().as_bytes().to_vec());
                    }
                }
            }
        }
        Ok(Digest::of_parts(parts.iter().map(Vec::as_slice)))
    }

    /// The digests of an asset's recorded files that exist on disk.
    fn scan(&self, record: Option<&AssetRecord>) -> Result<BTreeMap<String, Digest>, AssetError> {
        let mut found = BTreeMap::new();
        for path in record.map(|r| r.files.keys()).into_iter().flatten() {
            if let Some(digest) = self.digest_on_disk(path)? {
                found.insert(path.clone(), digest);
            }
        }
        Ok(found)
    }

    fn digest_on_disk(&self, path: &str) -> Result<Option<Digest>, AssetError> {
        let full = self.dir.join(path);
        match std::fs::read(&full) {
            Ok(bytes) => Ok(Some(Digest::of(&bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AssetError::Read { path: full, source }),
        }
    }

    /// Writes an asset's outputs, keeping files the user edited, and records them. The state is
    /// saved before (with the pending digests) and after the writes, so an interruption at any
    /// point leaves a state that the next run reads correctly.
    fn write(
        &self,
        asset: &'static str,
        outputs: &[Output],
        input_digest: Digest,
        state: &mut State,
        now: time::OffsetDateTime,
    ) -> Result<Vec<String>, AssetError> {
        let previous = state.assets.get(asset).cloned();
        let mut kept = Vec::new();
        let mut to_write = Vec::new();
        for output in outputs {
            if !self.is_plain_output(&output.path) {
                return Err(AssetError::BadOutput {
                    asset,
                    path: output.path.clone(),
                });
            }
            let on_disk = self.digest_on_disk(&output.path)?;
            let generated_before = previous.as_ref().and_then(|r| {
                let recorded = r.files.get(&output.path).map(|f| &f.digest);
                let pending = r.pending.get(&output.path);
                on_disk
                    .as_ref()
                    .filter(|d| Some(*d) == recorded || Some(*d) == pending)
            });
            // A file on disk that kindling did not write (or wrote differently) is the user's.
            if on_disk.is_some()
                && generated_before.is_none()
                && on_disk != Some(Digest::of(&output.contents))
            {
                kept.push(output.path.clone());
            } else {
                to_write.push(output);
            }
        }

        let files: BTreeMap<String, FileRecord> = outputs
            .iter()
            .map(|o| {
                (
                    o.path.clone(),
                    FileRecord {
                        digest: Digest::of(&o.contents),
                        mode: o.mode,
                    },
                )
            })
            .collect();
        let mut record = previous.unwrap_or_else(|| AssetRecord {
            input_digest: input_digest.clone(),
            generated_at: String::new(),
            files: BTreeMap::new(),
            pending: BTreeMap::new(),
        });
        record.pending = files
            .iter()
            .map(|(p, f)| (p.clone(), f.digest.clone()))
            .collect();
        state.assets.insert(asset.to_string(), record.clone());
        self.save(state)?;

        for output in to_write {
            let path = self.dir.join(&output.path);
            self.storage
                .write(&path, &output.contents, output.mode)
                .map_err(|source| AssetError::Write { path, source })?;
        }

        record.input_digest = input_digest;
        record.generated_at = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        record.files = files;
        record.pending.clear();
        state.assets.insert(asset.to_string(), record);
        self.save(state)?;
        Ok(kept)
    }

    fn save(&self, state: &State) -> Result<(), AssetError> {
        let path = self.dir.join(STATE_FILE);
        self.storage
            .write(&path, &state.to_json(), Mode::Public)
            .map_err(|source| AssetError::Write { path, source })
    }

    fn is_plain_output(&self, path: &str) -> bool {
        let p = Path::new(path);
        !path.is_empty()
            && p.components().all(|c| matches!(c, Component::Normal(_)))
            && !self.inputs.contains(&path)
            && path != STATE_FILE
    }
}

/// The recorded files whose content on disk is not what kindling wrote.
fn edited(record: &AssetRecord, on_disk: &BTreeMap<String, Digest>) -> Vec<String> {
    record
        .files
        .iter()
        .filter(|(path, file)| {
            on_disk
                .get(*path)
                .is_some_and(|d| *d != file.digest && record.pending.get(*path) != Some(d))
        })
        .map(|(path, _)| path.clone())
        .collect()
}
