//! What the machines fetch from the provisioning host instead of the internet: every image the
//! cluster's manifests name, and on Fedora CoreOS and Flatcar, which ship no kubelet, the node
//! binaries. `kindling mirror` puts them in `D/mirror`; `create ignition-configs` refuses a
//! machine whose payload is not all there, rather than let it fail on its first boot.

use std::collections::BTreeSet;
use std::path::Path;

use kindling_config::ClusterDescription;
use kindling_mirror::{FileRecord, Mirror, NodeFiles, Reference};
use kindling_node::Node;
use kindling_node::mirror::SiteMirror;

use crate::engine::Context;
use crate::manifests::Images;
use crate::manifests_asset::MANIFESTS_DIR;
use crate::{AssetError, Dependency};

/// `D/mirror`, relative to the asset directory.
pub const MIRROR_DIR: &str = "mirror";

/// The mirror's indexes: configs that pin the mirror's binaries change when they do.
pub const MIRROR_DEPS: [Dependency; 2] = [
    Dependency::OptionalInput("mirror/index.json"),
    Dependency::OptionalInput("mirror/files.json"),
];

/// Everything the cluster pulls: kindling's own images and every `image:` in the manifests the
/// user put in `manifests/`, sorted and without repeats.
pub fn images(ctx: &Context<'_>) -> Result<Vec<String>, AssetError> {
    let mut texts = Vec::new();
    for path in ctx.list(MANIFESTS_DIR)? {
        texts.push(ctx.read_text(&path)?);
    }
    Ok(images_of(ctx.description, &texts))
}

fn images_of(d: &ClusterDescription, manifests: &[String]) -> Vec<String> {
    let mut all: BTreeSet<String> = Images::for_version(&d.inventory.kubernetes.version)
        .all()
        .iter()
        .map(|i| i.to_string())
        .collect();
    for text in manifests {
        all.extend(images_in(text));
    }
    all.into_iter().collect()
}

/// What `D/mirror` lacks for this description: node binaries (under `mirror/files/`) and
/// images, with the manifests as they are on disk. For `kindling mirror`.
pub fn missing(
    dir: &Path,
    d: &ClusterDescription,
) -> Result<(Vec<String>, Vec<String>), AssetError> {
    let mut texts = Vec::new();
    for path in crate::engine::list_files(dir, MANIFESTS_DIR)? {
        let full = dir.join(&path);
        let text = std::fs::read_to_string(&full)
            .map_err(|source| AssetError::Read { path: full, source })?;
        texts.push(text);
    }
    let mirror =
        Mirror::open(&dir.join(MIRROR_DIR)).map_err(|e| AssetError::UserFile(e.to_string()))?;
    let (_, files, images) = lookup(d, &mirror, &images_of(d, &texts))?;
    Ok((files, images))
}

/// The values of `image:` keys in a YAML or JSON manifest, read line by line: every container
/// spec writes the key on a line of its own.
pub fn images_in(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().filter_map(|line| {
        let line = line.trim_start().trim_start_matches("- ").trim_start();
        let value = line
            .strip_prefix("image:")
            .or_else(|| line.strip_prefix("\"image\":"))?;
        let value = value
            .trim()
            .trim_end_matches(',')
            .trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty() && !value.contains(char::is_whitespace)).then(|| value.to_string())
    })
}

/// The node binaries and images the machines of this description need, found in the mirror.
pub struct Resolved {
    pub node: Node,
    pub binaries: Binaries,
}

/// Finds the payload in `D/mirror`, or says what is missing and how to add it.
pub fn resolve(ctx: &Context<'_>) -> Result<Resolved, AssetError> {
    let d = ctx.description;
    let mirror =
        Mirror::open(&ctx.dir.join(MIRROR_DIR)).map_err(|e| AssetError::UserFile(e.to_string()))?;
    let (binaries, files, images) = lookup(d, &mirror, &images(ctx)?)?;
    if files.is_empty() && images.is_empty() {
        return Ok(Resolved {
            node: Node::new(d.inventory.provisioning.os),
            binaries,
        });
    }
    Err(AssetError::MirrorIncomplete {
        dir: ctx.dir.display().to_string(),
        version: d.inventory.kubernetes.version.clone(),
        files,
        images,
    })
}

/// `(path on the machine, URL, record)` for each binary kindling brings.
pub type Binaries = Vec<(String, String, FileRecord)>;

/// The binaries found, and the binaries and images missing.
fn lookup(
    d: &ClusterDescription,
    mirror: &Mirror,
    images: &[String],
) -> Result<(Binaries, Vec<String>, Vec<String>), AssetError> {
    let node = Node::new(d.inventory.provisioning.os);
    let mut missing_files = Vec::new();
    let mut binaries = Vec::new();
    if let Some(bin) = node.bin_dir() {
        let wanted = NodeFiles::for_version(&d.inventory.kubernetes.version);
        let server = d.inventory.provisioning.server_url.trim_end_matches('/');
        let mut place = |relative: &str, target: String| match mirror.files.get(relative) {
            Some(record) => binaries.push((
                target,
                format!("{server}/assets/mirror/{relative}"),
                record.clone(),
            )),
            None => missing_files.push(relative.to_string()),
        };
        place(&wanted.kubelet, format!("{bin}/kubelet"));
        place(&wanted.crictl, format!("{bin}/crictl"));
        for plugin in &wanted.cni {
            let name = plugin.rsplit('/').next().unwrap_or(plugin);
            place(plugin, format!("{}/{name}", kindling_node::CNI_BIN_DIR));
        }
    }
    check_site_mirrors(d)?;
    let mut missing_images = Vec::new();
    for image in images {
        let reference: Reference = image
            .parse()
            .map_err(|e: String| AssetError::UserFile(format!("{MANIFESTS_DIR}: {e}")))?;
        let name = reference.name();
        // An image the site mirrors itself is pulled from there, not from kindling.
        let on_site = d
            .install_config
            .image_sources
            .iter()
            .any(|s| s.mirror_of(&name).is_some());
        if !on_site && !mirror.has_image(&reference) {
            missing_images.push(reference.to_string());
        }
    }
    Ok((binaries, missing_files, missing_images))
}

/// The site's own mirrors (install-config's `imageContentSources` / `imageDigestSources`), as
/// the machines' runtime reaches them: their first location, the additional trust bundle as
/// their CA when there is one, and the pull secret's credentials for their host.
pub fn site_mirrors(d: &ClusterDescription) -> Vec<SiteMirror> {
    let ic = &d.install_config;
    let auths: serde_json::Value = ic
        .pull_secret
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    ic.image_sources
        .iter()
        .filter_map(|source| {
            let location = source.mirrors.first()?.clone();
            let host = location.split('/').next().unwrap_or(&location);
            let auth = auths["auths"][host]["auth"].as_str().map(String::from);
            Some(SiteMirror {
                source: source.source.clone(),
                location,
                ca: ic
                    .additional_trust_bundle
                    .as_ref()
                    .map(|_| kindling_node::ADDITIONAL_TRUST_BUNDLE.to_string()),
                auth,
            })
        })
        .collect()
}

/// A site mirror containerd cannot use: it maps whole registries, so a source must be one.
fn check_site_mirrors(d: &ClusterDescription) -> Result<(), AssetError> {
    if Node::new(d.inventory.provisioning.os).runtime() != kindling_node::Runtime::Containerd {
        return Ok(());
    }
    for (i, source) in d.install_config.image_sources.iter().enumerate() {
        if source.source.contains('/') {
            return Err(AssetError::UserFile(format!(
                "install-config.yaml: image source {i} ({}): containerd, the runtime of {} machines, mirrors whole registries, not repositories; give the registry ({}) with a mirror that holds its repositories under the same names, or leave these images to kindling's mirror",
                source.source,
                format!("{:?}", d.inventory.provisioning.os).to_lowercase(),
                source.source.split('/').next().unwrap_or_default()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_keys_are_found_in_yaml_and_json() {
        let yaml = "spec:\n  containers:\n    - name: a\n      image: quay.io/x/y:1\n    - image: \"ghcr.io/z:2\"\n  imagePullPolicy: x\n";
        assert_eq!(
            images_in(yaml).collect::<Vec<_>>(),
            ["quay.io/x/y:1", "ghcr.io/z:2"]
        );
        let json = r#"{"containers":[{"image": "busybox:1.36",}]}"#
            .replace("[{", "[{\n")
            .replace(",}", ",\n}");
        assert_eq!(images_in(&json).collect::<Vec<_>>(), ["busybox:1.36"]);
    }
}
