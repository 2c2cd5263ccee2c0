//! Small OCI images made here, since no image can come from the internet: a layer tar from
//! given files (busybox-static, say), its config and manifest, written as an OCI image layout
//! (opencontainers/image-spec image-layout.md) that skopeo, containerd and `kindling mirror`
//! read.

use std::io::Write;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// A file of the image's root filesystem.
pub struct ImageFile<'a> {
    pub path: &'a str,
    pub contents: &'a [u8],
    pub mode: u32,
}

/// What [`write_layout`] wrote.
pub struct Written {
    /// `sha256:<hex>` of the image manifest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the (gzip-compressed) layer.
    pub layer_digest: String,
    pub layer_size: u64,
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn put(dir: &Path, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let path = dir.join("blobs/sha256").join(&digest["sha256:".len()..]);
    std::fs::write(path, bytes).unwrap();
    digest
}

/// Writes a linux/amd64 image with `files` (and `links`, symlink path → target) in one gzip
/// layer as an OCI layout at `dir`, named `ref_name` in its index (a bare tag, as `skopeo
/// copy … oci:DIR:TAG` writes it, or a full reference). Its command is `/bin/sh`.
pub fn write_layout(
    dir: &Path,
    ref_name: &str,
    files: &[ImageFile<'_>],
    links: &[(&str, &str)],
) -> Written {
    write_image(dir, ref_name, files, links, &["/bin/sh"])
}

/// [`write_layout`] with the image's command (`Cmd`).
pub fn write_image(
    dir: &Path,
    ref_name: &str,
    files: &[ImageFile<'_>],
    links: &[(&str, &str)],
    cmd: &[&str],
) -> Written {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.contents.len() as u64);
        header.set_mode(file.mode);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(
            &mut header,
            file.path.trim_start_matches('/'),
            file.contents,
        )
        .unwrap();
    }
    for (path, target) in links {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_mtime(0);
        tar.append_link(&mut header, path.trim_start_matches('/'), target)
            .unwrap();
    }
    let layer_tar = tar.into_inner().unwrap();
    let diff_id = sha256(&layer_tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer_tar).unwrap();
    let layer = gz.finish().unwrap();
    let layer_digest = put(dir, &layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string();
    let config_digest = put(dir, config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let manifest_digest = put(dir, manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    Written {
        manifest_digest,
        layer_digest,
        layer_size: layer.len() as u64,
    }
}

/// A busybox image: `/bin/busybox` from Debian's busybox-static and `/bin/sh` linking to it.
pub fn write_busybox(dir: &Path, ref_name: &str) -> Written {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox: run ./test.sh, which installs busybox-static");
    write_layout(
        dir,
        ref_name,
        &[ImageFile {
            path: "bin/busybox",
            contents: &busybox,
            mode: 0o755,
        }],
        &[("bin/sh", "busybox")],
    )
}
