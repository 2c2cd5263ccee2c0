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
    /// Every file under a directory the user writes (which may not exist).
    InputDir(&'static str),
    /// Every file another asset generates.
    Asset(&'static str),
    /// A file another command writes (`kindling mirror`'s indexes), which may not exist yet.
    OptionalInput(&'static str),
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
    /// Whether files that are otherwise up to date must be made again now, e.g. certificates
    /// close to expiry. `own` are the asset's files on disk that the user has not edited.
    fn needs_renewal(&self, _ctx: &Context<'_>, _own: &[String]) -> Result<bool, AssetError> {
        Ok(false)
    }
    /// Whether the asset is a trust anchor (a certificate authority): made once, and never made
    /// again silently, since everything signed by it would change. A missing file of one made
    /// before is an error, unless the run rotates authorities on purpose ([`Settings::rotate_ca`]).
    fn is_authority(&self) -> bool {
        false
    }
    /// What the files depend on besides the dependencies' files: a choice made on the command
    /// line (`create infra --phase`) or a fact found in the directory (OpenShift companion
    /// mode). The engine folds it into the input digest it records, so that a change
    /// regenerates the asset although no file it reads changed. Empty (the default) adds
    /// nothing, so the digests of assets without parameters stay what they were.
    fn parameters(&self, _ctx: &Context<'_>) -> Result<String, AssetError> {
        Ok(String::new())
    }
}

/// What a generator may look at.
pub struct Context<'a> {
    pub description: &'a ClusterDescription,
    pub dir: &'a Path,
    pub settings: &'a Settings,
    /// Files generated earlier in this run and not yet written: reads see them first.
    overlay: &'a BTreeMap<String, Vec<u8>>,
}

/// Choices made on the command line rather than in the description.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The time certificates are issued at and checked against; tests move it.
    pub now: time::OffsetDateTime,
    pub key_algorithm: kindling_pki::KeyAlgorithm,
    pub lifetimes: kindling_pki::Lifetimes,
    /// sha512 (hex) of the kindling binary machines download from `<serverURL>/assets/kindling`;
    /// needed only for Ignition configs.
    pub agent_sha512: Option<String>,
    /// Make missing certificate authorities again, and everything signed by them
    /// (`--rotate-ca`), rather than stop.
    pub rotate_ca: bool,
    /// Re-sign every leaf that expires within this long (`kindling certs renew`); leaves are
    /// always re-signed within the bootstrap window.
    pub renew_before: time::Duration,
}

impl Settings {
    /// Until when every leaf must stay valid: a leaf that expires before is re-signed.
    pub fn valid_until(&self) -> time::OffsetDateTime {
        self.now + self.lifetimes.bootstrap_window.max(self.renew_before)
    }
}

impl Context<'_> {
    /// Reads a file of the asset directory, as this run leaves it.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, AssetError> {
        if let Some(bytes) = self.overlay.get(path) {
            return Ok(bytes.clone());
        }
        let full = self.dir.join(path);
        std::fs::read(&full).map_err(|source| AssetError::Read { path: full, source })
    }

    /// Reads a text file of the asset directory.
    pub fn read_text(&self, path: &str) -> Result<String, AssetError> {
        let bytes = self.read(path)?;
        String::from_utf8(bytes).map_err(|_| AssetError::Read {
            path: self.dir.join(path),
            source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"),
        })
    }

    /// The files under a directory of the asset directory, relative to it, sorted; none if the
    /// directory does not exist.
    pub fn list(&self, dir: &str) -> Result<Vec<String>, AssetError> {
        list_with_overlay(self.dir, dir, self.overlay)
    }
}

/// The files under `dir` on disk and in the overlay, sorted.
fn list_with_overlay(
    root: &Path,
    dir: &str,
    overlay: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<String>, AssetError> {
    let mut found = list_files(root, dir)?;
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    found.extend(overlay.keys().filter(|p| p.starts_with(&prefix)).cloned());
    found.sort();
    found.dedup();
    Ok(found)
}

/// The files under `dir` (relative to `root`), as sorted relative paths with '/' separators.
pub(crate) fn list_files(root: &Path, dir: &str) -> Result<Vec<String>, AssetError> {
    let mut found = Vec::new();
    let mut stack = vec![root.join(dir)];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(AssetError::Read { path: d, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| AssetError::Read {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                found.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    found.sort();
    Ok(found)
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
    /// A file the user wrote is invalid (a Butane snippet, a manifest); the text names the
    /// file, the line and what is wrong. It is bad input, as an invalid description is.
    #[error("{0}")]
    UserFile(String),
    #[error(
        "{} is missing, but {}: a new {asset} would change everything signed by it, and every pointer config handed out would stop working. Restore {} from a backup; or, to make a new one on purpose, run the same command with --rotate-ca",
        missing.join(" and "),
        signed_by_it(signed, *more),
        missing.join(" and ")
    )]
    AuthorityMissing {
        asset: &'static str,
        missing: Vec<String>,
        /// Certificates on disk it signed (the first few), and how many more.
        signed: Vec<String>,
        more: usize,
    },
    /// The machines need binaries or images that `D/mirror` does not hold.
    #[error(
        "the machines would boot without what they need: {dir}/mirror lacks {}. Add it with `kindling mirror --dir {dir} --from-dir <kubelet, crictl and CNI plugins for Kubernetes {version}> --from-archive <docker save, OCI layout or skopeo copy output of each image>`; then run this again",
        missing_list(files, images)
    )]
    MirrorIncomplete {
        dir: String,
        version: String,
        /// Under `mirror/files/`.
        files: Vec<String>,
        images: Vec<String>,
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

fn missing_list(files: &[String], images: &[String]) -> String {
    let mut parts = Vec::new();
    if !files.is_empty() {
        parts.push(format!("the node binaries {}", files.join(", ")));
    }
    if !images.is_empty() {
        parts.push(format!("the images {}", images.join(", ")));
    }
    parts.join(", and ")
}

fn signed_by_it(signed: &[String], more: usize) -> String {
    match (signed, more) {
        ([], _) => {
            "certificates it signed may be in use (in the cluster, or in configs handed out)".into()
        }
        (_, 0) => format!("{} signed by it exist", signed.join(", ")),
        (_, more) => format!("{} (and {more} more) signed by it exist", signed.join(", ")),
    }
}

/// What happened to one asset in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetOutcome {
    pub asset: &'static str,
    pub action: Action,
    /// Files kept as the user edited them (not overwritten).
    pub kept_edits: Vec<String>,
    /// Kept files whose inputs changed since: kindling's new version is beside each.
    pub stale_edits: Vec<StaleEdit>,
}

/// A kept edit that what it is made from has moved on from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleEdit {
    /// The user's file.
    pub path: String,
    /// kindling's version now, beside it.
    pub new_path: String,
    /// The inputs that changed (files of the asset directory; `parameters` for command-line
    /// choices); empty when the state does not record them (made by an older kindling).
    pub changed_inputs: Vec<String>,
    /// Lines in kindling's version and not in the user's, and the other way round.
    pub added: usize,
    pub removed: usize,
}

/// The inputs whose digests differ between two records, added and removed ones included.
fn changed_inputs(
    before: &BTreeMap<String, Digest>,
    now: &BTreeMap<String, Digest>,
) -> Vec<String> {
    if before.is_empty() {
        return Vec::new();
    }
    let mut changed: Vec<String> = now
        .iter()
        .filter(|(path, digest)| before.get(*path) != Some(digest))
        .map(|(path, _)| path.clone())
        .chain(before.keys().filter(|p| !now.contains_key(*p)).cloned())
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

/// How many lines `new` has that `old` lacks, and the other way round (as multisets): a
/// one-line summary of a difference, not a diff.
fn line_changes(old: &[u8], new: &[u8]) -> (usize, usize) {
    let mut counts: HashMap<&[u8], isize> = HashMap::new();
    for line in new.split(|b| *b == b'\n') {
        *counts.entry(line).or_default() += 1;
    }
    for line in old.split(|b| *b == b'\n') {
        *counts.entry(line).or_default() -= 1;
    }
    let added = counts
        .values()
        .filter(|c| **c > 0)
        .map(|c| *c as usize)
        .sum();
    let removed = counts
        .values()
        .filter(|c| **c < 0)
        .map(|c| c.unsigned_abs())
        .sum();
    (added, removed)
}

/// The assets recorded in `dir` that what they were made from has moved on from (an input
/// file changed since), leaving out `except`: what a user must make again. Each with the
/// inputs that changed.
pub fn stale_assets(dir: &Path, except: &[&str]) -> Result<Vec<(String, Vec<String>)>, AssetError> {
    let state = State::load(dir)?;
    let mut stale = Vec::new();
    for (id, record) in &state.assets {
        if except.contains(&id.as_str()) {
            continue;
        }
        let changed: Vec<String> = record
            .inputs
            .iter()
            .filter(|(path, _)| *path != "parameters")
            .filter(|(path, digest)| {
                std::fs::read(dir.join(path)).map_or(true, |bytes| Digest::of(&bytes) != **digest)
            })
            .map(|(path, _)| path.clone())
            .collect();
        if !changed.is_empty() {
            stale.push((id.clone(), changed));
        }
    }
    Ok(stale)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Made for the first time.
    Generated,
    /// Made again because what it is made from changed, or a file of it was deleted.
    Regenerated,
    /// Made again because a file of it was about to expire.
    Renewed,
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
    ///
    /// It works in two phases. First every asset that needs it is generated in memory, later
    /// assets reading earlier ones' new files from memory. Then the changes are committed: the
    /// state is saved with the digests about to be written (pending), the files are written, and
    /// the state is saved again. An interruption anywhere leaves files that are either old or
    /// new and a state that knows both, so the next run neither loses work nor mistakes
    /// kindling's own files for user edits.
    pub fn run(
        &self,
        description: &ClusterDescription,
        assets: &[&dyn Asset],
        settings: &Settings,
    ) -> Result<Vec<AssetOutcome>, AssetError> {
        let mut state = State::load(self.dir)?;
        // What each asset's files are after this run, by path, with their digests.
        let mut current: HashMap<&'static str, BTreeMap<String, Digest>> = HashMap::new();
        let mut overlay: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut listing = Listing::default();
        let mut changes: Vec<Change> = Vec::new();
        let mut outcomes = Vec::new();
        for asset in assets {
            let ctx = Context {
                description,
                dir: self.dir,
                settings,
                overlay: &overlay,
            };
            let parameters = asset.parameters(&ctx)?;
            let (input_digest, inputs) =
                self.input_digest(*asset, &parameters, &current, &overlay)?;
            let record = state.assets.get(asset.id());
            let on_disk = self.scan(&mut listing, record)?;
            let missing = record.is_some_and(|r| r.files.keys().any(|p| !on_disk.contains_key(p)));
            // Pending digests mean the last run stopped while writing this asset.
            let up_to_date = record
                .is_some_and(|r| r.input_digest == input_digest && r.pending.is_empty())
                && !missing;
            if missing && asset.is_authority() && !settings.rotate_ca {
                self.refuse_silent_rotation(*asset, assets, &state, record, &on_disk)?;
            }
            let kept = record.map(|r| edited(r, &on_disk)).unwrap_or_default();
            let renew = up_to_date && {
                let own: Vec<String> = on_disk
                    .keys()
                    .filter(|p| !kept.contains(p))
                    .cloned()
                    .collect();
                asset.needs_renewal(&ctx, &own)?
            };
            if up_to_date && !renew {
                current.insert(asset.id(), on_disk);
                outcomes.push(AssetOutcome {
                    asset: asset.id(),
                    action: Action::UpToDate,
                    kept_edits: kept,
                    stale_edits: Vec::new(),
                });
                continue;
            }

            let outputs = asset.generate(&ctx)?;
            let mut change = self.plan(&mut listing, asset.id(), outputs, input_digest, record)?;
            // A kept edit whose inputs changed since: kindling's new version goes beside it,
            // and the user is told what changed. An edit made again to the same inputs is
            // just kept.
            let inputs_changed = record.is_some_and(|r| r.input_digest != change.input_digest);
            let mut stale_edits = Vec::new();
            if inputs_changed {
                let changed = record
                    .map(|r| changed_inputs(&r.inputs, &inputs))
                    .unwrap_or_default();
                for output in &mut change.beside {
                    let mine = std::fs::read(self.dir.join(&output.path)).unwrap_or_default();
                    let (added, removed) = line_changes(&mine, &output.contents);
                    stale_edits.push(StaleEdit {
                        path: output.path.clone(),
                        new_path: format!("{}.new", output.path),
                        changed_inputs: changed.clone(),
                        added,
                        removed,
                    });
                    output.path = format!("{}.new", output.path);
                }
            } else {
                change.beside.clear();
            }
            change.inputs = inputs;
            let mut files = BTreeMap::new();
            for (path, file) in &change.files {
                let digest = match change.kept.contains(path) {
                    true => self
                        .digest_on_disk(&mut listing, path)?
                        .unwrap_or_else(|| file.digest.clone()),
                    false => file.digest.clone(),
                };
                files.insert(path.clone(), digest);
            }
            current.insert(asset.id(), files);
            for output in &change.to_write {
                overlay.insert(output.path.clone(), output.contents.clone());
            }
            // Made again to the same bytes (a certificate whose names did not change is kept):
            // nothing changed, and the user is told so.
            let unchanged = change.to_write.is_empty()
                && change.kept.is_empty()
                && record.is_some_and(|r| r.files.keys().eq(change.files.keys()));
            outcomes.push(AssetOutcome {
                asset: asset.id(),
                action: match record {
                    None => Action::Generated,
                    Some(_) if unchanged => Action::UpToDate,
                    Some(_) if renew => Action::Renewed,
                    Some(_) => Action::Regenerated,
                },
                kept_edits: change.kept.clone(),
                stale_edits,
            });
            changes.push(change);
        }
        self.commit(&mut state, changes, settings.now)?;
        Ok(outcomes)
    }

    /// Stops a run that would make an authority made before again.
    fn refuse_silent_rotation(
        &self,
        authority: &dyn Asset,
        assets: &[&dyn Asset],
        state: &State,
        record: Option<&crate::state::AssetRecord>,
        on_disk: &BTreeMap<String, Digest>,
    ) -> Result<(), AssetError> {
        let missing: Vec<String> = record
            .map(|r| {
                r.files
                    .keys()
                    .filter(|p| !on_disk.contains_key(*p))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let signed: Vec<String> = assets
            .iter()
            .filter(|a| a.depends_on().contains(&Dependency::Asset(authority.id())))
            .filter_map(|a| state.assets.get(a.id()))
            .flat_map(|r| r.files.keys())
            .filter(|p| p.ends_with(".crt") && self.dir.join(p).exists())
            .cloned()
            .collect();
        Err(AssetError::AuthorityMissing {
            asset: authority.id(),
            missing,
            more: signed.len().saturating_sub(3),
            signed: signed.into_iter().take(3).collect(),
        })
    }

    fn input_digest(
        &self,
        asset: &dyn Asset,
        parameters: &str,
        current: &HashMap<&'static str, BTreeMap<String, Digest>>,
        overlay: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(Digest, BTreeMap<String, Digest>), AssetError> {
        let mut parts: Vec<Vec<u8>> = vec![asset.id().as_bytes().to_vec()];
        let mut inputs = BTreeMap::new();
        if !parameters.is_empty() {
            parts.push(b"parameters".to_vec());
            parts.push(parameters.as_bytes().to_vec());
            inputs.insert("parameters".to_string(), Digest::of(parameters.as_bytes()));
        }
        let digest_of = |path: &str| -> Result<Digest, AssetError> {
            Ok(match overlay.get(path) {
                Some(bytes) => Digest::of(bytes),
                None => {
                    let full = self.dir.join(path);
                    let bytes = std::fs::read(&full)
                        .map_err(|source| AssetError::Read { path: full, source })?;
                    Digest::of(&bytes)
                }
            })
        };
        let file = |path: &str, parts: &mut Vec<Vec<u8>>, inputs: &mut BTreeMap<String, Digest>| {
            let digest = digest_of(path)?;
            parts.push(path.as_bytes().to_vec());
            parts.push(digest.as_str().as_bytes().to_vec());
            inputs.insert(path.to_string(), digest);
            Ok::<(), AssetError>(())
        };
        for dependency in asset.depends_on() {
            match dependency {
                Dependency::Input(path) => file(path, &mut parts, &mut inputs)?,
                Dependency::OptionalInput(path) => {
                    if overlay.contains_key(*path) || self.dir.join(path).exists() {
                        file(path, &mut parts, &mut inputs)?;
                    } else {
                        parts.push(path.as_bytes().to_vec());
                        parts.push(b"absent".to_vec());
                    }
                }
                Dependency::InputDir(dir) => {
                    for path in list_with_overlay(self.dir, dir, overlay)? {
                        file(&path, &mut parts, &mut inputs)?;
                    }
                }
                Dependency::Asset(id) => {
                    let files = current.get(id).ok_or(AssetError::Order {
                        asset: asset.id(),
                        dependency: id,
                    })?;
                    for (path, digest) in files {
                        parts.push(path.as_bytes().to_vec());
                        parts.push(digest.as_str().as_bytes().to_vec());
                        inputs.insert(path.clone(), digest.clone());
                    }
                }
            }
        }
        Ok((Digest::of_parts(parts.iter().map(Vec::as_slice)), inputs))
    }

    /// The digests of an asset's recorded files that exist on disk.
    fn scan(
        &self,
        listing: &mut Listing,
        record: Option<&AssetRecord>,
    ) -> Result<BTreeMap<String, Digest>, AssetError> {
        let mut found = BTreeMap::new();
        for path in record.map(|r| r.files.keys()).into_iter().flatten() {
            if let Some(digest) = self.digest_on_disk(listing, path)? {
                found.insert(path.clone(), digest);
            }
        }
        Ok(found)
    }

    fn digest_on_disk(
        &self,
        listing: &mut Listing,
        path: &str,
    ) -> Result<Option<Digest>, AssetError> {
        let full = self.dir.join(path);
        if !listing.may_exist(&full) {
            return Ok(None);
        }
        match std::fs::read(&full) {
            Ok(bytes) => Ok(Some(Digest::of(&bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AssetError::Read { path: full, source }),
        }
    }

    /// Decides which of an asset's new outputs to write: a file on disk that kindling did not
    /// write (or wrote differently) is the user's, and is kept.
    fn plan(
        &self,
        listing: &mut Listing,
        asset: &'static str,
        outputs: Vec<Output>,
        input_digest: Digest,
        previous: Option<&AssetRecord>,
    ) -> Result<Change, AssetError> {
        let mut change = Change {
            asset,
            input_digest,
            inputs: BTreeMap::new(),
            beside: Vec::new(),
            files: BTreeMap::new(),
            kept: Vec::new(),
            to_write: Vec::new(),
        };
        for output in outputs {
            if !self.is_plain_output(&output.path) {
                return Err(AssetError::BadOutput {
                    asset,
                    path: output.path,
                });
            }
            let digest = Digest::of(&output.contents);
            let on_disk = self.digest_on_disk(listing, &output.path)?;
            let generated_before = previous.is_some_and(|r| {
                let recorded = r.files.get(&output.path).map(|f| &f.digest);
                let pending = r.pending.get(&output.path);
                on_disk
                    .as_ref()
                    .is_some_and(|d| Some(d) == recorded || Some(d) == pending)
            });
            let same_mode = previous
                .and_then(|r| r.files.get(&output.path))
                .is_some_and(|f| f.mode == output.mode);
            change.files.insert(
                output.path.clone(),
                FileRecord {
                    digest: digest.clone(),
                    mode: output.mode,
                },
            );
            match on_disk {
                Some(d) if !generated_before && d != digest => {
                    change.kept.push(output.path.clone());
                    change.beside.push(output);
                }
                // Already there, byte for byte and with its mode: nothing to write.
                Some(d) if d == digest && same_mode => {}
                _ => change.to_write.push(output),
            }
        }
        Ok(change)
    }

    /// Writes every change: pending digests first, then the files, then the final records.
    fn commit(
        &self,
        state: &mut State,
        changes: Vec<Change>,
        now: time::OffsetDateTime,
    ) -> Result<(), AssetError> {
        if changes.is_empty() {
            return Ok(());
        }
        for change in &changes {
            let record = state
                .assets
                .entry(change.asset.to_string())
                .or_insert_with(|| AssetRecord {
                    input_digest: change.input_digest.clone(),
                    generated_at: String::new(),
                    files: BTreeMap::new(),
                    pending: BTreeMap::new(),
                    inputs: BTreeMap::new(),
                });
            record.pending = change
                .files
                .iter()
                .map(|(p, f)| (p.clone(), f.digest.clone()))
                .collect();
        }
        self.save(state)?;

        let writes: Vec<(PathBuf, &[u8], Mode)> = changes
            .iter()
            .flat_map(|c| c.to_write.iter().chain(&c.beside))
            .map(|o| (self.dir.join(&o.path), o.contents.as_slice(), o.mode))
            .collect();
        self.storage
            .write_all(&writes)
            .map_err(|(path, source)| AssetError::Write { path, source })?;

        let generated_at = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        for change in changes {
            state.assets.insert(
                change.asset.to_string(),
                AssetRecord {
                    input_digest: change.input_digest,
                    generated_at: generated_at.clone(),
                    files: change.files,
                    pending: BTreeMap::new(),
                    inputs: change.inputs,
                },
            );
        }
        self.save(state)
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

/// Which files exist, learnt one directory at a time: on a first run thousands of outputs do
/// not exist yet, and asking for each costs a system call (measured: most of a 1,000-machine
/// run). Nothing is written before the commit, so the listings stay true until then.
#[derive(Default)]
struct Listing {
    dirs: HashMap<PathBuf, Option<std::collections::HashSet<std::ffi::OsString>>>,
}

impl Listing {
    /// False only when the file's directory is known not to hold it.
    fn may_exist(&mut self, path: &Path) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return true;
        };
        let names = self.dirs.entry(dir.to_path_buf()).or_insert_with(|| {
            std::fs::read_dir(dir).ok().map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect()
            })
        });
        names.as_ref().is_some_and(|names| names.contains(name))
    }
}

/// What one asset's run changes.
struct Change {
    asset: &'static str,
    input_digest: Digest,
    inputs: BTreeMap<String, Digest>,
    /// kindling's versions of kept files whose inputs changed, written beside them as
    /// `<file>.new`; not recorded as the asset's files.
    beside: Vec<Output>,
    /// Every file the asset generated, with what was generated (kept files included).
    files: BTreeMap<String, FileRecord>,
    /// Files kept as the user edited them.
    kept: Vec<String>,
    to_write: Vec<Output>,
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
