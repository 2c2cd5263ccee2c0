//! Filling the mirror from local sources: image archives (an OCI image layout as a directory or
//! a tar, which is what `skopeo copy … oci:DIR`, `skopeo copy … oci-archive:F` and Docker 25's
//! `docker save` write; and the older `docker save` format with only `manifest.json`), and
//! directories of node binaries.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::files::{FileRecord, NodeFiles};
use crate::layout::{self, Descriptor, Index, Parsed};
use crate::{Digest, MirrorError, Reference, Store};

/// One image an import stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub reference: Reference,
    pub digest: Digest,
    /// Bytes of every blob of the image, stored now or already there.
    pub bytes: u64,
}

/// Imports every image in the archive at `path`. An archive that names an image only by its tag
/// (as `skopeo copy … oci:DIR:TAG` does) needs `name_as`, the repository it is for
/// (`registry.k8s.io/pause`). `progress` hears of each blob's bytes as they are stored.
pub fn archive(
    store: &Store,
    path: &Path,
    name_as: Option<&str>,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Imported>, MirrorError> {
    let meta = fs::metadata(path).map_err(|e| MirrorError::io(path, e))?;
    if meta.is_dir() {
        return layout_dir(store, path, name_as, progress);
    }
    // A tar is unpacked beside the mirror first: blobs are then read by digest, in any order.
    let scratch = store.root().join(format!(".import-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| MirrorError::io(&scratch, e))?;
    let result = (|| {
        let file = File::open(path).map_err(|e| MirrorError::io(path, e))?;
        tar::Archive::new(file)
            .unpack(&scratch)
            .map_err(|e| MirrorError::invalid(path, format!("not a readable tar archive: {e}")))?;
        if scratch.join(layout::OCI_LAYOUT).exists() {
            layout_dir(store, &scratch, name_as, progress)
        } else if scratch.join("manifest.json").exists() {
            docker_save(store, &scratch, path, progress)
        } else {
            Err(MirrorError::invalid(
                path,
                "neither an OCI image layout (no oci-layout file) nor a docker save archive \
                 (no manifest.json)",
            ))
        }
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn layout_dir(
    store: &Store,
    dir: &Path,
    name_as: Option<&str>,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Imported>, MirrorError> {
    if !dir.join(layout::OCI_LAYOUT).exists() {
        return Err(MirrorError::invalid(
            dir,
            "not an OCI image layout (no oci-layout file); give an OCI layout, an OCI archive \
             or a docker save archive",
        ));
    }
    let index_path = dir.join(layout::INDEX);
    let bytes = fs::read(&index_path).map_err(|e| MirrorError::io(&index_path, e))?;
    let index: Index =
        serde_json::from_slice(&bytes).map_err(|e| MirrorError::invalid(&index_path, e))?;
    if index.manifests.is_empty() {
        return Err(MirrorError::invalid(
            &index_path,
            "the layout holds no image",
        ));
    }
    let mut imported = Vec::new();
    for top in &index.manifests {
        let reference = name_of(top, name_as, &index_path)?;
        let what = reference.to_string();
        let bytes = copy_tree(store, dir, top, &what, progress)?;
        store.tag(&reference, top)?;
        imported.push(Imported {
            reference,
            digest: top.digest.clone(),
            bytes,
        });
    }
    Ok(imported)
}

/// The image a layout's index entry is: its containerd name, its `ref.name` when that is a
/// full reference, or `name_as` with the `ref.name` as the tag.
fn name_of(
    top: &Descriptor,
    name_as: Option<&str>,
    index_path: &Path,
) -> Result<Reference, MirrorError> {
    let full = top.annotations.get(layout::CONTAINERD_NAME).or_else(|| {
        top.annotations
            .get(layout::REF_NAME)
            .filter(|n| n.contains('/'))
    });
    let name = match (full, top.annotations.get(layout::REF_NAME), name_as) {
        (Some(full), _, _) => full.clone(),
        (None, Some(tag), Some(name)) => format!("{name}:{tag}"),
        (None, None, Some(name)) => name.to_string(),
        (None, tag, None) => {
            return Err(MirrorError::invalid(
                index_path,
                format!(
                    "image {} is named {}; say which image it is with --as, e.g. --as registry.k8s.io/pause",
                    top.digest,
                    tag.map_or("by nothing but its digest".to_string(), |t| format!(
                        "only by its tag {t:?}"
                    )),
                ),
            ));
        }
    };
    name.parse()
        .map_err(|e: String| MirrorError::invalid(index_path, e))
}

/// Copies the manifest or index `top` and everything it points to from the layout at `dir`,
/// children first, so the mirror never holds a manifest whose blobs are missing. Returns the
/// bytes of every blob.
fn copy_tree(
    store: &Store,
    dir: &Path,
    top: &Descriptor,
    what: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, MirrorError> {
    let source = |digest: &Digest| dir.join("blobs/sha256").join(digest.hex());
    let path = source(&top.digest);
    let bytes = fs::read(&path).map_err(|e| MirrorError::io(&path, e))?;
    if Digest::of(&bytes) != top.digest || bytes.len() as u64 != top.size {
        return Err(MirrorError::DigestMismatch {
            what: format!("{what}: manifest {}", path.display()),
            expected: top.digest.clone(),
            actual: Digest::of(&bytes),
            size: bytes.len() as u64,
        });
    }
    let mut total = top.size;
    match layout::parse_manifest(&bytes, &top.media_type)
        .map_err(|e| MirrorError::invalid(&path, e))?
    {
        Parsed::Index(index) => {
            let mut copied = 0;
            for child in &index.manifests {
                // `skopeo copy` and `docker save` keep one platform of a multi-platform image.
                if !source(&child.digest).exists() {
                    continue;
                }
                total += copy_tree(store, dir, child, what, progress)?;
                copied += 1;
            }
            if copied == 0 {
                return Err(MirrorError::invalid(
                    &path,
                    format!("{what}: the archive holds none of the index's platforms"),
                ));
            }
        }
        Parsed::Manifest(manifest) => {
            for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                let path = source(&blob.digest);
                let file = File::open(&path).map_err(|e| MirrorError::io(&path, e))?;
                let counted = Counted {
                    inner: file,
                    progress: &mut *progress,
                };
                store.put_blob(
                    &blob.digest,
                    Some(blob.size),
                    counted,
                    &format!("{what}: blob {}", blob.digest),
                )?;
                total += blob.size;
            }
        }
    }
    store.put_blob(&top.digest, Some(top.size), &bytes[..], what)?;
    Ok(total)
}

/// The older `docker save` format: `manifest.json` lists each image's config file, its
/// uncompressed layer tars and its tags. Each becomes an OCI image manifest.
fn docker_save(
    store: &Store,
    dir: &Path,
    archive: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Imported>, MirrorError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        #[serde(default)]
        repo_tags: Vec<String>,
        layers: Vec<String>,
    }
    let manifest_path = dir.join("manifest.json");
    let bytes = fs::read(&manifest_path).map_err(|e| MirrorError::io(&manifest_path, e))?;
    let entries: Vec<Entry> = serde_json::from_slice(&bytes)
        .map_err(|e| MirrorError::invalid(archive, format!("manifest.json: {e}")))?;
    let mut imported = Vec::new();
    for entry in entries {
        if entry.repo_tags.is_empty() {
            return Err(MirrorError::invalid(
                archive,
                format!(
                    "image {} has no tag in manifest.json; save it by name (docker save NAME:TAG)",
                    entry.config
                ),
            ));
        }
        let mut put = |relative: &str, media_type: &str| -> Result<Descriptor, MirrorError> {
            let path = safe_join(dir, relative, archive)?;
            let (digest, size) = File::open(&path)
                .and_then(crate::digest::sha256_of)
                .map_err(|e| MirrorError::io(&path, e))?;
            let file = File::open(&path).map_err(|e| MirrorError::io(&path, e))?;
            store.put_blob(
                &digest,
                Some(size),
                Counted {
                    inner: file,
                    progress: &mut *progress,
                },
                relative,
            )?;
            Ok(Descriptor {
                media_type: media_type.to_string(),
                digest,
                size,
                platform: None,
                annotations: Default::default(),
            })
        };
        let config = put(&entry.config, layout::OCI_CONFIG)?;
        let layers = entry
            .layers
            .iter()
            .map(|l| put(l, layout::OCI_LAYER_TAR))
            .collect::<Result<Vec<_>, _>>()?;
        let bytes: u64 = config.size + layers.iter().map(|l| l.size).sum::<u64>();
        let manifest = layout::Manifest {
            schema_version: 2,
            media_type: Some(layout::OCI_MANIFEST.to_string()),
            config,
            layers,
        };
        let json = serde_json::to_vec(&manifest).map_err(|e| MirrorError::invalid(archive, e))?;
        let top = Descriptor {
            media_type: layout::OCI_MANIFEST.to_string(),
            digest: Digest::of(&json),
            size: json.len() as u64,
            platform: None,
            annotations: Default::default(),
        };
        store.put_blob(&top.digest, Some(top.size), &json[..], "manifest")?;
        for tag in &entry.repo_tags {
            let reference: Reference = tag
                .parse()
                .map_err(|e: String| MirrorError::invalid(archive, e))?;
            store.tag(&reference, &top)?;
            imported.push(Imported {
                reference,
                digest: top.digest.clone(),
                bytes: bytes + top.size,
            });
        }
    }
    Ok(imported)
}

fn safe_join(dir: &Path, relative: &str, archive: &Path) -> Result<PathBuf, MirrorError> {
    let rel = Path::new(relative);
    if rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        Ok(dir.join(rel))
    } else {
        Err(MirrorError::invalid(
            archive,
            format!("manifest.json names {relative:?}, outside the archive"),
        ))
    }
}

/// A reader that reports the bytes that pass through it.
struct Counted<'p, R> {
    inner: R,
    progress: &'p mut dyn FnMut(u64),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// What a directory of binaries gave: the files stored, and the names that were not used.
#[derive(Debug, Default)]
pub struct BinariesImported {
    pub stored: Vec<FileRecord>,
    pub ignored: Vec<String>,
}

/// Imports node binaries from `dir` for `kubernetes_version`: `kubelet`, `kubectl`, `crictl` (or
/// cri-tools' `crictl-*.tar.gz`), the CNI plugins (`cni-plugins-*.tgz` or a `cni/` directory),
/// and `kindling`. A `<name>.sha256` beside a file (as dl.k8s.io publishes) must match it.
pub fn binaries(
    store: &Store,
    dir: &Path,
    kubernetes_version: &str,
) -> Result<BinariesImported, MirrorError> {
    let node = NodeFiles::for_version(kubernetes_version);
    let mut out = BinariesImported::default();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| MirrorError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let source = path.display().to_string();
        let target = match name.as_str() {
            "kubelet" => Some(node.kubelet.clone()),
            "kubectl" => Some(node.kubectl.clone()),
            "crictl" => Some(node.crictl.clone()),
            "kindling" => Some("kindling".to_string()),
            _ => None,
        };
        if let Some(target) = target {
            let expected = companion_sha256(&path)?;
            let file = File::open(&path).map_err(|e| MirrorError::io(&path, e))?;
            out.stored
                .push(store.put_file(&target, file, expected.as_deref(), &source)?);
        } else if name == "cni" && path.is_dir() {
            let mut plugins: Vec<PathBuf> = fs::read_dir(&path)
                .map_err(|e| MirrorError::io(&path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            plugins.sort();
            for plugin in plugins {
                let plugin_name = plugin
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                let file = File::open(&plugin).map_err(|e| MirrorError::io(&plugin, e))?;
                out.stored.push(store.put_file(
                    &format!("cni/{plugin_name}"),
                    file,
                    None,
                    &plugin.display().to_string(),
                )?);
            }
        } else if (name.starts_with("crictl-") && name.ends_with(".tar.gz"))
            || (name.starts_with("cni-plugins-") && name.ends_with(".tgz"))
        {
            let expected = companion_sha256(&path)?;
            if let Some(expected) = expected {
                let (digest, _) = File::open(&path)
                    .and_then(crate::digest::sha256_of)
                    .map_err(|e| MirrorError::io(&path, e))?;
                if digest.hex() != expected {
                    return Err(MirrorError::DigestMismatch {
                        what: source,
                        expected: format!("sha256:{expected}")
                            .parse()
                            .map_err(|e: String| MirrorError::invalid(&path, e))?,
                        actual: digest,
                        size: 0,
                    });
                }
            }
            let prefix = if name.starts_with("crictl-") {
                None
            } else {
                Some("cni/")
            };
            let file = File::open(&path).map_err(|e| MirrorError::io(&path, e))?;
            let mut tarball = tar::Archive::new(flate2::read::GzDecoder::new(file));
            let entries = tarball
                .entries()
                .map_err(|e| MirrorError::invalid(&path, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| MirrorError::invalid(&path, e))?;
                if entry.header().entry_type() != tar::EntryType::Regular {
                    continue;
                }
                let inner = entry.path().map_err(|e| MirrorError::invalid(&path, e))?;
                let Some(file_name) = inner.file_name().and_then(|n| n.to_str()).map(String::from)
                else {
                    continue;
                };
                let target = match prefix {
                    Some(prefix) => format!("{prefix}{file_name}"),
                    None if file_name == "crictl" => node.crictl.clone(),
                    None => continue,
                };
                if file_name.starts_with('.') || file_name == "LICENSE" || file_name == "README.md"
                {
                    continue;
                }
                out.stored.push(store.put_file(
                    &target,
                    entry,
                    None,
                    &format!("{source}!{file_name}"),
                )?);
            }
        } else if !name.ends_with(".sha256") {
            out.ignored.push(name);
        }
    }
    Ok(out)
}

/// The hex digest in `<path>.sha256`, if there is one (its first word, as dl.k8s.io writes it).
fn companion_sha256(path: &Path) -> Result<Option<String>, MirrorError> {
    let companion = PathBuf::from(format!("{}.sha256", path.display()));
    match fs::read_to_string(&companion) {
        Ok(text) => {
            let hex = text
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(Some(hex))
            } else {
                Err(MirrorError::invalid(
                    &companion,
                    "not a sha256 digest (64 hex digits)",
                ))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MirrorError::io(&companion, e)),
    }
}
