//! Importing into the mirror and reading it back, with images made by the test kit.

use std::fs;

use crate::import::{archive, binaries};
use crate::{BlobError, Digest, Mirror, MirrorError, Reference, Store};

fn reference(s: &str) -> Reference {
    s.parse().unwrap()
}

#[test]
fn an_oci_layout_is_imported_under_its_full_name_and_served_by_tag_and_digest() {
    let src = tempfile::tempdir().unwrap();
    let written = kindling_testkit::oci::write_busybox(src.path(), "1.36");
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(&d.path().join("mirror")).unwrap();

    // A bare tag needs the repository it is for.
    let err = archive(&store, src.path(), None, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("--as"), "{err}");

    let mut seen = 0;
    let imported = archive(
        &store,
        src.path(),
        Some("registry.k8s.io/test/busybox"),
        &mut |n| seen += n,
    )
    .unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(
        imported[0].reference.to_string(),
        "registry.k8s.io/test/busybox:1.36"
    );
    assert_eq!(imported[0].digest.as_str(), written.manifest_digest);
    assert!(seen >= written.layer_size, "progress heard {seen} bytes");

    let mirror = Mirror::open(store.root()).unwrap();
    assert!(mirror.has_image(&reference("registry.k8s.io/test/busybox:1.36")));
    assert!(!mirror.has_image(&reference("registry.k8s.io/test/busybox:1.37")));
    let by_tag = mirror
        .manifest("registry.k8s.io/test/busybox", "1.36")
        .unwrap();
    let by_digest = mirror
        .manifest("registry.k8s.io/test/busybox", &written.manifest_digest)
        .unwrap();
    assert_eq!(by_tag, by_digest);
    let layer: Digest = written.layer_digest.parse().unwrap();
    assert_eq!(mirror.verified_blob(&layer).unwrap().1, written.layer_size);

    // A blob changed on disk is refused, not served.
    let path = mirror.blob_path(&layer);
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        mirror.verified_blob(&layer),
        Err(BlobError::Corrupt { .. })
    ));

    // Importing again is a no-op that keeps one entry per name, and repairs nothing it need not.
    let again = archive(
        &store,
        src.path(),
        Some("registry.k8s.io/test/busybox"),
        &mut |_| {},
    );
    assert!(again.is_ok());
    assert_eq!(store.index().unwrap().manifests.len(), 1);
}

#[test]
fn a_tampered_archive_is_refused_and_nothing_of_it_is_named() {
    let src = tempfile::tempdir().unwrap();
    let written = kindling_testkit::oci::write_busybox(src.path(), "registry.k8s.io/pause:3.10.1");
    let layer = src
        .path()
        .join("blobs/sha256")
        .join(&written.layer_digest["sha256:".len()..]);
    let mut bytes = fs::read(&layer).unwrap();
    bytes[10] ^= 1;
    fs::write(&layer, bytes).unwrap();
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let err = archive(&store, src.path(), None, &mut |_| {}).unwrap_err();
    assert!(matches!(err, MirrorError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("registry.k8s.io/pause:3.10.1"),
        "{err}"
    );
    assert!(store.index().unwrap().manifests.is_empty());
    let leftovers: Vec<_> = fs::read_dir(d.path().join("blobs/sha256"))
        .unwrap()
        .collect();
    // The config went in (it was right); the bad layer and the manifest did not.
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn an_oci_archive_and_an_old_docker_save_are_read() {
    let src = tempfile::tempdir().unwrap();
    let layout = src.path().join("layout");
    let written = kindling_testkit::oci::write_busybox(&layout, "ghcr.io/x/busybox:1");
    let tar_path = src.path().join("image.tar");
    let mut tar = tar::Builder::new(fs::File::create(&tar_path).unwrap());
    tar.append_dir_all(".", &layout).unwrap();
    tar.finish().unwrap();
    drop(tar);
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let imported = archive(&store, &tar_path, None, &mut |_| {}).unwrap();
    assert_eq!(imported[0].digest.as_str(), written.manifest_digest);

    // docker save before Docker 25: manifest.json, a config file and uncompressed layer tars.
    let save = src.path().join("save");
    fs::create_dir_all(save.join("abc")).unwrap();
    let layer = b"not really a tar, but bytes with a digest".to_vec();
    fs::write(save.join("abc/layer.tar"), &layer).unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        Digest::of(&layer)
    );
    fs::write(save.join("config.json"), &config).unwrap();
    fs::write(
        save.join("manifest.json"),
        r#"[{"Config":"config.json","RepoTags":["busybox:old"],"Layers":["abc/layer.tar"]}]"#,
    )
    .unwrap();
    let save_tar = src.path().join("save.tar");
    let mut tar = tar::Builder::new(fs::File::create(&save_tar).unwrap());
    tar.append_dir_all(".", &save).unwrap();
    tar.finish().unwrap();
    drop(tar);
    let imported = archive(&store, &save_tar, None, &mut |_| {}).unwrap();
    assert_eq!(
        imported[0].reference.to_string(),
        "docker.io/library/busybox:old"
    );
    let mirror = Mirror::open(d.path()).unwrap();
    assert!(mirror.has_image(&reference("busybox:old")));
    assert!(mirror.has_image(&reference("ghcr.io/x/busybox:1")));
    mirror.verified_blob(&Digest::of(&layer)).unwrap();
}

#[test]
fn binaries_are_recorded_with_their_digests_and_a_wrong_companion_digest_stops_the_import() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    fs::write(s.join("kubelet"), b"#!/bin/sh\necho kubelet\n").unwrap();
    let good = Digest::of(b"#!/bin/sh\necho kubelet\n");
    fs::write(s.join("kubelet.sha256"), format!("{}\n", good.hex())).unwrap();
    fs::create_dir_all(s.join("cni")).unwrap();
    for plugin in crate::files::CNI_PLUGINS {
        fs::write(s.join("cni").join(plugin), plugin.as_bytes()).unwrap();
    }
    // crictl comes as cri-tools' tarball.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut tar = tar::Builder::new(&mut gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(6);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, "crictl", &b"crictl"[..])
            .unwrap();
        tar.finish().unwrap();
    }
    fs::write(
        s.join("crictl-v1.34.0-linux-amd64.tar.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    fs::write(s.join("notes.txt"), b"x").unwrap();

    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let got = binaries(&store, s, "1.34.1").unwrap();
    assert_eq!(got.ignored, ["notes.txt"]);
    let files = store.files().unwrap();
    let kubelet = files.get("kubernetes/v1.34.1/kubelet").unwrap();
    assert_eq!(kubelet.sha256, good.hex());
    assert_eq!(kubelet.sha512.len(), 128);
    assert_eq!(
        fs::read(d.path().join("files/kubernetes/v1.34.1/crictl")).unwrap(),
        b"crictl"
    );
    for plugin in crate::files::CNI_PLUGINS {
        assert!(files.get(&format!("cni/{plugin}")).is_some(), "{plugin}");
    }

    fs::write(s.join("kubelet.sha256"), "0".repeat(64)).unwrap();
    let err = binaries(&store, s, "1.34.1").unwrap_err();
    assert!(matches!(err, MirrorError::DigestMismatch { .. }), "{err}");
    // The good copy stored before is untouched.
    assert_eq!(
        store
            .files()
            .unwrap()
            .get("kubernetes/v1.34.1/kubelet")
            .unwrap()
            .sha256,
        good.hex()
    );
}
