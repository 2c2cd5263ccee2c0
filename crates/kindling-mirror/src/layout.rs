//! The OCI image layout that `D/mirror` is (opencontainers/image-spec image-layout.md): an
//! `oci-layout` file, `index.json` naming every image, and `blobs/sha256/<hex>`. Each image in
//! the index carries its full reference in `org.opencontainers.image.ref.name`
//! (`registry.k8s.io/pause:3.10.1`), so one layout holds images of every upstream registry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Digest;

pub const OCI_LAYOUT: &str = "oci-layout";
pub const OCI_LAYOUT_CONTENTS: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";
pub const INDEX: &str = "index.json";
/// The annotation holding an image's name in an OCI layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's and Docker's annotation for the full image name in `docker save`/`ctr export`.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Whether `media_type` is an index (a multi-platform list) rather than one image's manifest.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Whether `media_type` is a manifest or an index, which the registry serves from `/manifests/`.
pub fn is_manifest(media_type: &str) -> bool {
    is_index(media_type) || media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A content descriptor: what a manifest or index says about the blob it points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (`index.json`, or a multi-platform image's top manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests: Vec::new(),
        }
    }
}

/// One image's manifest: its config and layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// What a manifest blob is, read from its own bytes: an index lists manifests, a manifest has a
/// config and layers. `declared` is the media type the descriptor pointing at it gave.
pub enum Parsed {
    Index(Index),
    Manifest(Manifest),
}

pub fn parse_manifest(bytes: &[u8], declared: &str) -> Result<Parsed, String> {
    if is_index(declared) {
        serde_json::from_slice(bytes)
            .map(Parsed::Index)
            .map_err(|e| format!("not an image index ({declared}): {e}"))
    } else {
        serde_json::from_slice(bytes)
            .map(Parsed::Manifest)
            .map_err(|e| format!("not an image manifest ({declared}): {e}"))
    }
}
