//! The node binaries from where their projects publish them, on a host that is online: the
//! kubelet and kubectl from dl.k8s.io, crictl from cri-tools' releases, the CNI plugins from
//! containernetworking's, each with the `.sha256` published beside it. Downloads land in
//! `D/mirror/.downloads/`, grow as `<file>.partial` (resumed by range after an interruption)
//! and are taken into the mirror by [`import::binaries`](crate::import::binaries), which checks
//! each against its `.sha256`. Fedora CoreOS's PXE images come from its stream metadata, each
//! checked against the sha256 the metadata gives.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::files::{FileRecord, companion_versions};
use crate::{MirrorError, Store, import};

/// One file to download: its URL and the name it is saved under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub url: String,
    pub name: String,
}

/// The files a node needs for `kubernetes_version`, each followed by its `.sha256`. With `base`,
/// every URL is `<base>/<host>/<path>`: a web server that mirrors the publishers' paths.
pub fn downloads(kubernetes_version: &str, base: Option<&str>) -> Vec<Download> {
    let v = format!("v{}", kubernetes_version.trim_start_matches('v'));
    let (crictl, cni) = companion_versions(&v);
    let mut files = Vec::new();
    let mut add = |host: &str, path: String, name: String| {
        let url = match base {
            Some(base) => format!("{}/{host}/{path}", base.trim_end_matches('/')),
            None => format!("https://{host}/{path}"),
        };
        files.push(Download {
            url: format!("{url}.sha256"),
            name: format!("{name}.sha256"),
        });
        files.push(Download { url, name });
    };
    for binary in ["kubelet", "kubectl"] {
        add(
            "dl.k8s.io",
            format!("release/{v}/bin/linux/amd64/{binary}"),
            binary.to_string(),
        );
    }
    let crictl_file = format!("crictl-{crictl}-linux-amd64.tar.gz");
    add(
        "github.com",
        format!("kubernetes-sigs/cri-tools/releases/download/{crictl}/{crictl_file}"),
        crictl_file,
    );
    let cni_file = format!("cni-plugins-linux-amd64-{cni}.tgz");
    add(
        "github.com",
        format!("containernetworking/plugins/releases/download/{cni}/{cni_file}"),
        cni_file,
    );
    files
}

/// Downloads every file of [`downloads`] (resuming partial ones), then stores them in the mirror,
/// each checked against its `.sha256`. `ca_pem` adds a CA to trust (for `base`).
pub fn fetch(
    store: &Store,
    kubernetes_version: &str,
    base: Option<&str>,
    ca_pem: Option<&[u8]>,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<Vec<FileRecord>, MirrorError> {
    let staging = store.root().join(".downloads");
    fs::create_dir_all(&staging).map_err(|e| MirrorError::io(&staging, e))?;
    let (runtime, client) = http(ca_pem)?;
    for download in downloads(kubernetes_version, base) {
        let target = staging.join(&download.name);
        if target.exists() {
            continue;
        }
        runtime.block_on(get(&client, &download, &target, progress))?;
    }
    let got = import::binaries(store, &staging, kubernetes_version)?;
    // Kept until everything is in: a failed check leaves what was downloaded for a look.
    fs::remove_dir_all(&staging).map_err(|e| MirrorError::io(&staging, e))?;
    Ok(got.stored)
}

async fn get(
    client: &reqwest::Client,
    download: &Download,
    target: &Path,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(), MirrorError> {
    let partial = PathBuf::from(format!("{}.partial", target.display()));
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&partial)
        .map_err(|e| MirrorError::io(&partial, e))?;
    let have = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut request = client.get(&download.url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let failed =
        |e: reqwest::Error| MirrorError::Source(format!("downloading {}: {e}", download.url));
    let mut response = request.send().await.map_err(failed)?;
    match response.status() {
        reqwest::StatusCode::PARTIAL_CONTENT => progress(&download.name, have),
        reqwest::StatusCode::OK => file.set_len(0).map_err(|e| MirrorError::io(&partial, e))?,
        status => {
            return Err(MirrorError::Source(format!(
                "downloading {}: {status}",
                download.url
            )));
        }
    }
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        file.write_all(&chunk)
            .map_err(|e| MirrorError::io(&partial, e))?;
        progress(&download.name, chunk.len() as u64);
    }
    file.sync_all().map_err(|e| MirrorError::io(&partial, e))?;
    fs::rename(&partial, target).map_err(|e| MirrorError::io(target, e))
}

/// Fedora CoreOS's PXE images, by their key in the stream metadata's
/// `architectures.x86_64.artifacts.metal.formats.pxe`, and the names kindling serve's boot
/// scripts give them under `assets/fcos/`.
pub const FCOS_PXE: [(&str, &str); 3] = [
    ("kernel", "fedora-coreos-live-kernel-x86_64"),
    ("initramfs", "fedora-coreos-live-initramfs.x86_64.img"),
    ("rootfs", "fedora-coreos-live-rootfs.x86_64.img"),
];

/// Fetches Fedora CoreOS's PXE images for `stream` (stable, testing, next) into `assets`
/// (`<dir>/assets/fcos/`): their URLs and sha256 from the stream metadata at
/// builds.coreos.fedoraproject.org (or `<base>/<host>/<path>`), each file checked before it
/// takes its name. Files already there are kept. Returns the names written.
pub fn fetch_fcos(
    assets: &Path,
    stream: &str,
    base: Option<&str>,
    ca_pem: Option<&[u8]>,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<Vec<String>, MirrorError> {
    let rebase = |url: &str| match (base, url.split_once("://")) {
        (Some(base), Some((_, rest))) => format!("{}/{rest}", base.trim_end_matches('/')),
        _ => url.to_string(),
    };
    let (runtime, client) = http(ca_pem)?;
    let meta_url = rebase(&format!(
        "https://builds.coreos.fedoraproject.org/streams/{stream}.json"
    ));
    let meta: serde_json::Value = runtime.block_on(async {
        let response = client
            .get(&meta_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| MirrorError::Source(format!("fetching {meta_url}: {e}")))?;
        let body = response
            .bytes()
            .await
            .map_err(|e| MirrorError::Source(format!("fetching {meta_url}: {e}")))?;
        serde_json::from_slice(&body)
            .map_err(|e| MirrorError::Source(format!("{meta_url} is not stream metadata: {e}")))
    })?;
    let pxe = &meta["architectures"]["x86_64"]["artifacts"]["metal"]["formats"]["pxe"];
    fs::create_dir_all(assets).map_err(|e| MirrorError::io(assets, e))?;
    let mut written = Vec::new();
    for (key, name) in FCOS_PXE {
        let target = assets.join(name);
        if target.exists() {
            continue;
        }
        let (Some(location), Some(sha256)) =
            (pxe[key]["location"].as_str(), pxe[key]["sha256"].as_str())
        else {
            return Err(MirrorError::Source(format!(
                "{meta_url} names no x86_64 metal pxe {key} with a location and a sha256"
            )));
        };
        let download = Download {
            url: rebase(location),
            name: name.to_string(),
        };
        let staged = assets.join(format!(".{name}"));
        runtime.block_on(get(&client, &download, &staged, progress))?;
        let (digest, size) = fs::File::open(&staged)
            .and_then(crate::digest::sha256_of)
            .map_err(|e| MirrorError::io(&staged, e))?;
        if digest.hex() != sha256 {
            let _ = fs::remove_file(&staged);
            return Err(MirrorError::DigestMismatch {
                what: format!("{} (Fedora CoreOS {stream})", download.url),
                expected: format!("sha256:{sha256}")
                    .parse()
                    .map_err(|e: String| MirrorError::Source(e))?,
                actual: digest,
                size,
            });
        }
        fs::rename(&staged, &target).map_err(|e| MirrorError::io(&target, e))?;
        written.push(name.to_string());
    }
    Ok(written)
}

fn http(ca_pem: Option<&[u8]>) -> Result<(tokio::runtime::Runtime, reqwest::Client), MirrorError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| MirrorError::Source(format!("starting the download runtime: {e}")))?;
    let mut client = reqwest::Client::builder();
    if let Some(pem) = ca_pem {
        let certificate = reqwest::Certificate::from_pem(pem)
            .map_err(|e| MirrorError::Source(format!("the CA to trust: {e}")))?;
        client = client.add_root_certificate(certificate);
    }
    let client = client
        .build()
        .map_err(|e| MirrorError::Source(format!("the HTTP client: {e}")))?;
    Ok((runtime, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publishers_urls_for_a_version() {
        let files = downloads("1.34.1", None);
        let urls: Vec<&str> = files.iter().map(|d| d.url.as_str()).collect();
        assert!(urls.contains(&"https://dl.k8s.io/release/v1.34.1/bin/linux/amd64/kubelet"));
        assert!(urls.contains(&"https://dl.k8s.io/release/v1.34.1/bin/linux/amd64/kubelet.sha256"));
        assert!(urls.contains(&"https://github.com/kubernetes-sigs/cri-tools/releases/download/v1.34.0/crictl-v1.34.0-linux-amd64.tar.gz"));
        assert!(urls.contains(&"https://github.com/containernetworking/plugins/releases/download/v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz"));
        let local = downloads("1.34.1", Some("http://127.0.0.1:8000/"));
        assert_eq!(
            local[1].url,
            "http://127.0.0.1:8000/dl.k8s.io/release/v1.34.1/bin/linux/amd64/kubelet"
        );
    }
}
