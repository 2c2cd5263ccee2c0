//! The asset directory: the graph of generated files, the state that records what each was made
//! from, and the writes that never leave half a file.
//!
//! `create manifests` (and later `create ignition-configs`) run the [`Engine`] over the assets of
//! a [`Target`]. See `engine` for the rules on user edits, deletions and interruptions.

pub mod cluster;
pub mod engine;
pub mod layout;
pub mod manifests;
pub mod state;
pub mod storage;

use std::path::Path;

pub use engine::{Action, Asset, AssetError, AssetOutcome, Context, Dependency, Engine, Output};
use kindling_config::{ClusterDescription, INSTALL_CONFIG_FILE, INVENTORY_FILE};
pub use storage::{AtomicFiles, Mode, Storage};

/// How far a `create` command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `create manifests`.
    Manifests,
}

impl Target {
    /// The assets this target brings up to date, in dependency order.
    pub fn assets(self) -> Vec<&'static dyn Asset> {
        match self {
            Target::Manifests => cluster::manifests_target(),
        }
    }
}

/// The files the user writes; no command deletes or rewrites them.
pub const INPUTS: &[&str] = &[INSTALL_CONFIG_FILE, INVENTORY_FILE];

/// Brings the assets of `target` up to date in `dir`.
pub fn create(
    dir: &Path,
    description: &ClusterDescription,
    target: Target,
    storage: &dyn Storage,
) -> Result<Vec<AssetOutcome>, AssetError> {
    Engine::new(dir, storage, INPUTS).run(
        description,
        &target.assets(),
        time::OffsetDateTime::now_utc(),
    )
}

#[cfg(test)]
mod tests;
