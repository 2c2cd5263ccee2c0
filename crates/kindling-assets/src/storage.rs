//! Writing files so that a crash never leaves half of one: temp file, fsync, rename, fsync the
//! directory.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Who may read a file kindling writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// 0644: configs and manifests without secrets.
    Public,
    /// 0640: a secret that a server process must read through its group.
    ServerReadable,
    /// 0600: keys, tokens, kubeconfigs, bootstrap.ign.
    Secret,
}

impl Mode {
    pub fn bits(self) -> u32 {
        match self {
            Mode::Public => 0o644,
            Mode::ServerReadable => 0o640,
            Mode::Secret => 0o600,
        }
    }
}

/// Where the engine's writes go. The real one is [`AtomicFiles`]; tests inject failures here.
pub trait Storage {
    /// Replaces `path` with `contents` as one step: afterwards the file holds either its old
    /// contents or all of the new ones, with `mode`.
    fn write(&self, path: &Path, contents: &[u8], mode: Mode) -> io::Result<()>;

    /// Writes many files, each atomically; on failure, says which file failed.
    fn write_all(&self, files: &[(PathBuf, &[u8], Mode)]) -> Result<(), (PathBuf, io::Error)> {
        for (path, contents, mode) in files {
            self.write(path, contents, *mode)
                .map_err(|e| (path.clone(), e))?;
        }
        Ok(())
    }
}

/// Atomic writes to the local file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct AtomicFiles;

impl Storage for AtomicFiles {
    fn write(&self, path: &Path, contents: &[u8], mode: Mode) -> io::Result<()> {
        fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let tmp = temp_path(path)?;
        write_temp(&tmp, contents, mode)?;
        fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    }

    /// Each file is synced and renamed into place; each directory is synced once at the end,
    /// which makes all the renames durable.
    fn write_all(&self, files: &[(PathBuf, &[u8], Mode)]) -> Result<(), (PathBuf, io::Error)> {
        let dirs: BTreeSet<PathBuf> = files
            .iter()
            .map(|(path, _, _)| path.parent().unwrap_or(Path::new(".")).to_path_buf())
            .collect();
        for dir in &dirs {
            fs::create_dir_all(dir).map_err(|e| (dir.clone(), e))?;
        }
        for (path, contents, mode) in files {
            let step = || -> io::Result<()> {
                let tmp = temp_path(path)?;
                write_temp(&tmp, contents, *mode)?;
                fs::rename(&tmp, path).inspect_err(|_| {
                    let _ = fs::remove_file(&tmp);
                })
            };
            step().map_err(|e| (path.clone(), e))?;
        }
        for dir in dirs {
            sync_dir(&dir).map_err(|e| (dir.clone(), e))?;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The temp file beside `path`; the same directory, so the rename stays on one file system.
/// The directory must exist.
pub fn temp_path(path: &Path) -> io::Result<std::path::PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(dir.join(format!(".{}.kindling-tmp", name.to_string_lossy())))
}

/// Writes and syncs the temp file with its final mode, so the secret is never readable by others,
/// not even for a moment. A temp file that could not be written whole (a full disk) is removed.
pub fn write_temp(tmp: &Path, contents: &[u8], mode: Mode) -> io::Result<()> {
    // A temp file left by an earlier crash is ours to replace.
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode.bits())
        .open(tmp)?;
    let written = (|| {
        // The umask may have narrowed the mode given to open; the mode must be exact.
        file.set_permissions(fs::Permissions::from_mode(mode.bits()))?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(tmp);
    }
    written
}

/// Renames the temp file over the target and syncs the directory so the rename is durable.
pub fn commit(tmp: &Path, path: &Path) -> io::Result<()> {
    fs::rename(tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_with_exact_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key.pem");
        AtomicFiles.write(&path, b"one", Mode::Secret).unwrap();
        AtomicFiles.write(&path, b"two", Mode::Secret).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        AtomicFiles.write(&path, b"three", Mode::Public).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["key.pem"]);
    }

    #[test]
    fn a_stale_temp_file_from_a_crash_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        fs::write(temp_path(&path).unwrap(), b"half").unwrap();
        AtomicFiles.write(&path, b"whole", Mode::Public).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
    }
}
