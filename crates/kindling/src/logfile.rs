//! `<dir>/.kindling/kindling.log`: every command's full debug log, appended, as
//! openshift-install keeps `.openshift_install.log`; with the asset directory's secrets, tokens
//! and private keys redacted. A failure points at it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where a command on asset directory `dir` logs.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(".kindling/kindling.log")
}

/// The log file of `dir`, opened for appending (0600), or `None` where there is no asset
/// directory yet: a command does not create one just to log.
pub fn open(dir: &Path) -> Option<Redacting> {
    if !dir.is_dir() {
        return None;
    }
    let path = path(dir);
    std::fs::create_dir_all(path.parent()?).ok()?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .ok()?;
    Some(Redacting {
        file,
        secrets: kindling_cluster::gather::known_secrets(dir),
    })
}

/// Appends whole log records with secrets taken out.
pub struct Redacting {
    file: File,
    secrets: Vec<String>,
}

impl Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = kindling_cluster::gather::redact(&text, &self.secrets);
        self.file.write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
