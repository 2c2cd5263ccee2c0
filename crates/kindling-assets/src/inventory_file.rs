//! Rewriting the user's inventory.yaml, for the commands that change it (`kindling remove
//! machine`, `kindling machines accept`): the file as it was goes to `.kindling/backups/`
//! first, and the new one keeps the old one's mode.

use std::path::{Path, PathBuf};

use crate::{AtomicFiles, Mode, Storage as _};

/// Replaces `<dir>/inventory.yaml`, whose text was `before`, with `after`; `before` is kept as
/// `.kindling/backups/inventory.yaml.<UTC time>`. On an error, the path it concerns.
pub fn rewrite(
    dir: &Path,
    before: &str,
    after: &str,
) -> Result<PathBuf, (PathBuf, std::io::Error)> {
    let path = dir.join(kindling_config::INVENTORY_FILE);
    let stamp = crate::file_stamp(time::OffsetDateTime::now_utc());
    let backup = dir.join(format!(".kindling/backups/inventory.yaml.{stamp}"));
    AtomicFiles
        .write(&backup, before.as_bytes(), Mode::Public)
        .map_err(|e| (backup.clone(), e))?;
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        match std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777) {
            Ok(0o600) => Mode::Secret,
            Ok(0o640) => Mode::ServerReadable,
            _ => Mode::Public,
        }
    };
    AtomicFiles
        .write(&path, after.as_bytes(), mode)
        .map_err(|e| (path.clone(), e))?;
    Ok(backup)
}
