//! `kindling store pull`: a revision written back as an asset directory, for a host that lost
//! its own (or a new provisioning host).

use std::path::{Path, PathBuf};

use crate::cache::{BlobSources, Cache};
use crate::snapshot::Entry;
use crate::{Revision, Store, StoreError};

/// What a pull wrote.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub revision: Revision,
    /// Files kept outside etcd that no blob source had: not written.
    pub missing: Vec<Entry>,
}

/// Writes revision `number` (the current one when None) into `dir`, which must not hold an
/// asset directory already: a pull never overwrites a description.
pub async fn pull(
    store: &Store,
    number: Option<u64>,
    dir: &Path,
    sources: &BlobSources,
) -> Result<Pulled, StoreError> {
    for file in ["install-config.yaml", "inventory.yaml"] {
        let path = dir.join(file);
        if path.exists() {
            return Err(StoreError::Write {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a pull writes only into a directory that holds no asset directory yet; pull into an empty one",
                ),
            });
        }
    }
    let revision = match number {
        Some(number) => store.revision(number).await?,
        None => store.current().await?.ok_or(StoreError::Empty)?.0,
    };
    // Laid out beside the files it becomes (same file system), then moved into place.
    let scratch = dir.join(".kindling/store");
    let cache = Cache::open(&scratch)?;
    let laid = cache.materialize(store, &revision, sources).await?;
    move_tree(&laid.dir, &laid.dir, dir)?;
    std::fs::remove_dir_all(&scratch).map_err(|source| StoreError::Write {
        path: scratch,
        source,
    })?;
    Ok(Pulled {
        revision,
        missing: laid.missing,
    })
}

/// Moves every file under `at` (part of the tree at `root`) to the same place under `to`.
fn move_tree(root: &Path, at: &Path, to: &Path) -> Result<(), StoreError> {
    let read_error = |source| StoreError::Read {
        path: at.to_path_buf(),
        source,
    };
    for item in std::fs::read_dir(at).map_err(read_error)? {
        let path = item.map_err(read_error)?.path();
        if path.is_dir() {
            move_tree(root, &path, to)?;
            continue;
        }
        let target: PathBuf = to.join(path.strip_prefix(root).unwrap_or(&path));
        let write_error = |source| StoreError::Write {
            path: target.clone(),
            source,
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        std::fs::rename(&path, &target).map_err(write_error)?;
    }
    Ok(())
}
