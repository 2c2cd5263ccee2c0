//! Writing `D/mirror`: blobs are checked against their digest before they are stored, written to
//! a `.partial` file, synced and renamed into place, so a blob under its digest is always whole
//! and right. `index.json` and `files.json` are replaced atomically after each image or file, so
//! an interrupted run keeps everything it finished and the next run goes on from there.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::files::{FileRecord, Files};
use crate::layout::{self, Descriptor, Index};
use crate::{Digest, MirrorError, Reference};

/// `D/mirror`, opened for writing.
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating) the layout at `root`.
    pub fn open(root: &Path) -> Result<Store, MirrorError> {
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| MirrorError::io(&blobs, e))?;
        let marker = root.join(layout::OCI_LAYOUT);
        if !marker.exists() {
            write_atomic(&marker, layout::OCI_LAYOUT_CONTENTS.as_bytes())?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` is kept.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the blob is stored (it was verified when it was).
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.len() == size)
    }

    /// Where a blob being downloaded grows; a resumed download appends to it.
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(format!(".{}.partial", digest.hex()))
    }

    /// Stores `reader`'s bytes as the blob `digest`, or refuses them: wrong digest, or (when
    /// `size` is known) wrong size. `what` names the blob in an error (an image and its part).
    pub fn put_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        reader: impl Read,
        what: &str,
    ) -> Result<(), MirrorError> {
        if size.is_some_and(|s| self.has_blob(digest, s)) {
            return Ok(());
        }
        let partial = self.partial_path(digest);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(|e| MirrorError::io(&partial, e))?;
        self.finish_blob(digest, size, reader, file, what)
    }

    /// Appends `reader` to the partial blob `file` (opened to read and write; a resumed download
    /// holds the bytes fetched before) and stores the whole, checked.
    pub fn finish_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        reader: impl Read,
        mut file: File,
        what: &str,
    ) -> Result<(), MirrorError> {
        let partial = self.partial_path(digest);
        let result = (|| {
            let _ = file.seek(io::SeekFrom::End(0))?;
            io::copy(&mut { reader }, &mut file)?;
            file.sync_all()?;
            file.seek(io::SeekFrom::Start(0))?;
            crate::digest::sha256_of(&mut file)
        })();
        let (actual, actual_size) = result.map_err(|e| MirrorError::io(&partial, e))?;
        if actual != *digest || size.is_some_and(|s| s != actual_size) {
            let _ = fs::remove_file(&partial);
            return Err(MirrorError::DigestMismatch {
                what: what.to_string(),
                expected: digest.clone(),
                actual,
                size: actual_size,
            });
        }
        let blob = self.blob_path(digest);
        fs::rename(&partial, &blob).map_err(|e| MirrorError::io(&blob, e))?;
        sync_dir(blob.parent().unwrap_or(&self.root))?;
        Ok(())
    }

    /// The images in `index.json`, read fresh.
    pub fn index(&self) -> Result<Index, MirrorError> {
        read_index(&self.root)
    }

    /// Names `descriptor` (a manifest or index already stored) as `reference` in `index.json`,
    /// replacing what the name meant before.
    pub fn tag(&self, reference: &Reference, descriptor: &Descriptor) -> Result<(), MirrorError> {
        let mut index = self.index()?;
        let name = reference.to_string();
        index
            .manifests
            .retain(|d| d.annotations.get(layout::REF_NAME) != Some(&name));
        let mut named = descriptor.clone();
        named.annotations.clear();
        named.annotations.insert(layout::REF_NAME.into(), name);
        index.manifests.push(named);
        index.manifests.sort_by(|a, b| {
            a.annotations
                .get(layout::REF_NAME)
                .cmp(&b.annotations.get(layout::REF_NAME))
        });
        let path = self.root.join(layout::INDEX);
        let json = serde_json::to_vec_pretty(&index).map_err(|e| MirrorError::invalid(&path, e))?;
        write_atomic(&path, &json)
    }

    /// The node binaries recorded in `files.json`.
    pub fn files(&self) -> Result<Files, MirrorError> {
        Files::read(&self.root)
    }

    /// Stores `reader` as `files/<relative>` and records its digests. `expected_sha256`, when
    /// the source publishes one, must match.
    pub fn put_file(
        &self,
        relative: &str,
        reader: impl Read,
        expected_sha256: Option<&str>,
        source: &str,
    ) -> Result<FileRecord, MirrorError> {
        let path = self.root.join("files").join(relative);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| MirrorError::io(&dir, e))?;
        let partial = dir.join(format!(
            ".{}.partial",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
        ));
        let mut file = File::create(&partial).map_err(|e| MirrorError::io(&partial, e))?;
        let hashes = crate::digest::hash_reader(reader, &mut file)
            .and_then(|h| file.sync_all().map(|()| h))
            .map_err(|e| MirrorError::io(&partial, e))?;
        if let Some(expected) = expected_sha256
            && expected != hashes.sha256.hex()
        {
            let _ = fs::remove_file(&partial);
            return Err(MirrorError::DigestMismatch {
                what: format!("{relative} (from {source})"),
                expected: format!("sha256:{expected}").parse().map_err(|e: String| {
                    MirrorError::Invalid {
                        path: path.clone(),
                        message: e,
                    }
                })?,
                actual: hashes.sha256,
                size: hashes.size,
            });
        }
        set_mode(&partial, 0o755)?;
        fs::rename(&partial, &path).map_err(|e| MirrorError::io(&path, e))?;
        let record = FileRecord {
            path: relative.to_string(),
            size: hashes.size,
            sha256: hashes.sha256.hex().to_string(),
            sha512: hashes.sha512,
            source: source.to_string(),
        };
        let mut files = self.files()?;
        files.insert(record.clone());
        files.write(&self.root)?;
        Ok(record)
    }
}

pub(crate) fn read_index(root: &Path) -> Result<Index, MirrorError> {
    let path = root.join(layout::INDEX);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MirrorError::invalid(&path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
        Err(e) => Err(MirrorError::io(&path, e)),
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MirrorError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })()
    .map_err(|e| MirrorError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| MirrorError::io(path, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), MirrorError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| MirrorError::io(dir, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), MirrorError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| MirrorError::io(path, e))
}
