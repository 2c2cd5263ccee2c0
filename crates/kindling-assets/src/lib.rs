//! The asset directory: the graph of generated files, the state that records what each was made
//! from, and the writes that never leave half a file.
//!
//! `create manifests` (and later `create ignition-configs`) run the [`Engine`] over the assets of
//! a [`Target`]. See `engine` for the rules on user edits, deletions and interruptions.

pub mod cluster;
pub mod engine;
pub mod ignition;
pub mod layout;
pub mod manifests;
pub mod manifests_asset;
pub mod pki;
pub mod state;
pub mod storage;

use std::path::Path;

pub use engine::{
    Action, Asset, AssetError, AssetOutcome, Context, Dependency, Engine, Output, Settings,
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
