//! A filled `D/mirror` for tests that run `create ignition-configs`, which refuses a cluster
//! whose machines would lack their binaries or images. The binaries are stand-ins (shell
//! scripts that say so), and every image is the same small busybox image under each name: the
//! tests check what kindling does with them, not Kubernetes itself.

use std::path::Path;

use kindling_mirror::{NodeFiles, Store, import};

/// Fills `<dir>/mirror` with stand-in node binaries for `kubernetes_version` and a busybox
/// image under each of `images`.
pub fn seed(dir: &Path, kubernetes_version: &str, images: &[&str]) {
    let store = Store::open(&dir.join("mirror")).unwrap();
    for path in NodeFiles::for_version(kubernetes_version).all() {
        let name = path.rsplit('/').next().unwrap_or(path);
        let script =
            format!("#!/bin/sh\n# A stand-in for {name}, made by kindling's tests.\necho {name}\n");
        store
            .put_file(path, script.as_bytes(), None, "kindling-testkit")
            .unwrap();
    }
    let Some((first, rest)) = images.split_first() else {
        return;
    };
    let layout = tempfile::tempdir().unwrap();
    crate::oci::write_busybox(layout.path(), first);
    import::archive(&store, layout.path(), None, &mut |_| {}).unwrap();
    let index = store.index().unwrap();
    let descriptor = index.manifests[index.manifests.len() - 1].clone();
    for image in rest {
        store.tag(&image.parse().unwrap(), &descriptor).unwrap();
    }
}
