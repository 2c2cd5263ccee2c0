//! The asset directory: the graph of generated files, the state that records what each was made
//! from, and the writes that never leave half a file.
//!
//! `create manifests` (and later `create ignition-configs`) run the [`Engine`] over the assets of
//! a [`Target`]. See `engine` for the rules on user edits, deletions and interruptions.

pub mod cluster;
pub mod companion;
pub mod engine;
pub mod ignition;
pub mod inventory_file;
pub mod layout;
pub mod manifests;
pub mod manifests_asset;
pub mod payload;
pub mod pki;
pub mod renderings;
pub mod state;
pub mod storage;

use std::path::Path;

pub use engine::{
    Action, Asset, AssetError, AssetOutcome, Context, Dependency, Engine, Output, Settings,
    StaleEdit, stale_assets,
};
use kindling_config::{ClusterDescription, INSTALL_CONFIG_FILE, INVENTORY_FILE};
pub use storage::{AtomicFiles, Mode, Storage};

/// How far a `create` command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `create manifests`.
    Manifests,
    /// `create ignition-configs`.
    IgnitionConfigs,
}

impl Target {
    /// The assets this target brings up to date, in dependency order.
    pub fn assets(self) -> Vec<&'static dyn Asset> {
        match self {
            Target::Manifests => {
                let mut assets = cluster::manifests_target();
                assets.extend(pki::assets());
                assets.push(&manifests_asset::Manifests);
                assets
            }
            Target::IgnitionConfigs => {
                let mut assets = Target::Manifests.assets();
                assets.extend(ignition::assets());
                assets
            }
        }
    }
}

/// The sha512 of a file, hex: what Ignition checks a download against.
pub fn file_sha512(path: &Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    let bytes = std::fs::read(path)?;
    Ok(format!("{:x}", sha2::Sha512::digest(bytes)))
}

/// A UTC time as it goes into a file's name: `20261207T174500Z`.
pub fn file_stamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// [`file_sha512`] of the kindling binary, remembered in `cache_dir` (in the user's cache
/// directory), one entry per binary (its path, size and modification time), so that a debug and
/// a release build, or several checkouts, do not evict each other. Hashing a debug build
/// (~100 MB) takes seconds of CPU: `before_hashing` is told the size first, to say so. Without a
/// cache directory it is simply computed.
pub fn binary_sha512(
    binary: &Path,
    cache_dir: Option<&Path>,
    before_hashing: impl FnOnce(u64),
) -> std::io::Result<String> {
    let meta = std::fs::metadata(binary)?;
    let Some(cache_dir) = cache_dir else {
        before_hashing(meta.len());
        return file_sha512(binary);
    };
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let key = format!("{} {} {}", binary.display(), meta.len(), mtime);
    let entry =
        cache_dir.join(&state::Digest::of(key.as_bytes()).as_str()["sha256:".len()..][..32]);
    if let Ok(text) = std::fs::read_to_string(&entry)
        && let Some((cached_key, hash)) = text.trim_end().rsplit_once(' ')
        && cached_key == key
        && hash.len() == 128
    {
        return Ok(hash.to_string());
    }
    before_hashing(meta.len());
    let hash = file_sha512(binary)?;
    // A cache that cannot be written only costs time.
    let _ = std::fs::create_dir_all(cache_dir);
    let _ = AtomicFiles.write(&entry, format!("{key} {hash}\n").as_bytes(), Mode::Public);
    Ok(hash)
}

/// The admin token of `kindling serve`'s dashboard and read APIs, in the asset directory (made
/// by serve at its first start, 0600).
pub const ADMIN_TOKEN_FILE: &str = "auth/kindling-admin-token";

/// The files the user writes; no command deletes or rewrites them.
pub const INPUTS: &[&str] = &[INSTALL_CONFIG_FILE, INVENTORY_FILE];

/// Brings the assets of `target` up to date in `dir`.
pub fn create(
    dir: &Path,
    description: &ClusterDescription,
    target: Target,
    settings: &Settings,
    storage: &dyn Storage,
) -> Result<Vec<AssetOutcome>, AssetError> {
    Engine::new(dir, storage, INPUTS).run(description, &target.assets(), settings)
}

#[cfg(test)]
mod tests;
