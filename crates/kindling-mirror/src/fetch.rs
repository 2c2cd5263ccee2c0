//! Pulling images from a registry into the mirror, on a host that is online: oci-client speaks
//! the distribution protocol (token auth, manifests, blobs, ranges); the store checks every blob
//! against its digest before keeping it. A blob cut off half way is kept as `.partial` and
//! resumed with a range request on the next run.

use std::fs::OpenOptions;
use std::io::Write as _;

use futures_util::TryStreamExt as _;
use oci_client::client::{BlobResponse, Certificate, CertificateEncoding, ClientConfig};
use oci_client::secrets::RegistryAuth;

use crate::import::Imported;
use crate::layout::{self, Descriptor, Parsed};
use crate::{Digest, MirrorError, Reference, Store};

/// Where images are pulled from, and how.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// A registry (`host[:port]`) that holds every image under its full name
    /// (`<via>/registry.k8s.io/pause:3.10.1`): another kindling serve, or a site's mirror laid
    /// out so. `None`: each image's own registry.
    pub via: Option<String>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_pem: Option<Vec<u8>>,
    /// Basic credentials; anonymous (with the registry's token flow) without.
    pub credentials: Option<(String, String)>,
}

const ACCEPTED: &[&str] = &[
    layout::OCI_INDEX,
    layout::DOCKER_LIST,
    layout::OCI_MANIFEST,
    layout::DOCKER_MANIFEST,
];

/// Pulls images into a store, one runtime and client for all of them.
pub struct Puller {
    runtime: tokio::runtime::Runtime,
    client: oci_client::Client,
    auth: RegistryAuth,
    via: Option<String>,
}

impl Puller {
    pub fn new(source: &Source) -> Result<Puller, MirrorError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MirrorError::Source(format!("starting the download runtime: {e}")))?;
        let config = ClientConfig {
            extra_root_certificates: source
                .ca_pem
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            // The nodes are linux/amd64; an index keeps only that platform's manifest.
            platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
            ..ClientConfig::default()
        };
        let auth = match &source.credentials {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Ok(Puller {
            runtime,
            client: oci_client::Client::new(config),
            auth,
            via: source.via.clone(),
        })
    }

    /// Pulls `image` (with everything it points to, for linux/amd64) into `store` and names it
    /// there. `progress` hears of the bytes of each blob as they arrive.
    pub fn pull(
        &self,
        store: &Store,
        image: &Reference,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Imported, MirrorError> {
        let remote = match &self.via {
            Some(via) => format!("{via}/{image}"),
            None => image.to_string(),
        };
        let remote: oci_client::Reference = remote
            .parse()
            .map_err(|e| MirrorError::Source(format!("{remote}: {e}")))?;
        self.runtime.block_on(async {
            let what = image.to_string();
            let (top, bytes) = self.manifest(&remote, None, &what).await?;
            let mut total = top.size;
            match layout::parse_manifest(&bytes, &top.media_type)
                .map_err(|e| MirrorError::Source(format!("{what}: {e}")))?
            {
                Parsed::Index(index) => {
                    let mut found = false;
                    for child in index.manifests.iter().filter(|c| is_linux_amd64(c)) {
                        found = true;
                        let (child, bytes) = self.manifest(&remote, Some(child), &what).await?;
                        total += child.size
                            + self
                                .image(store, &remote, &bytes, &child, &what, progress)
                                .await?;
                    }
                    if !found {
                        return Err(MirrorError::Source(format!(
                            "{what} has no linux/amd64 image"
                        )));
                    }
                }
                Parsed::Manifest(_) => {
                    total += self
                        .image(store, &remote, &bytes, &top, &what, progress)
                        .await?;
                }
            }
            store.put_blob(&top.digest, Some(top.size), &bytes[..], &what)?;
            store.tag(image, &top)?;
            Ok(Imported {
                reference: image.clone(),
                digest: top.digest,
                bytes: total,
            })
        })
    }

    /// A manifest or index: by the remote reference, or by `child`'s digest. Its bytes must
    /// match the digest asked for (or the one the registry declares).
    async fn manifest(
        &self,
        remote: &oci_client::Reference,
        child: Option<&Descriptor>,
        what: &str,
    ) -> Result<(Descriptor, Vec<u8>), MirrorError> {
        let by = match child {
            Some(child) => remote.clone_with_digest(child.digest.to_string()),
            None => remote.clone(),
        };
        let (bytes, declared) = self
            .client
            .pull_manifest_raw(&by, &self.auth, ACCEPTED)
            .await
            .map_err(|e| {
                MirrorError::Source(format!("{what}: fetching the manifest of {by}: {e}"))
            })?;
        let actual = Digest::of(&bytes);
        let expected = match (child, remote.digest()) {
            (Some(child), _) => Some(child.digest.clone()),
            (None, Some(d)) => d.parse().ok(),
            (None, None) => declared.parse().ok(),
        };
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(MirrorError::DigestMismatch {
                what: format!("{what}: manifest"),
                expected,
                actual,
                size: bytes.len() as u64,
            });
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| MirrorError::Source(format!("{what}: the manifest is not JSON: {e}")))?;
        let media_type = match (value["mediaType"].as_str(), child) {
            (Some(t), _) => t.to_string(),
            (None, Some(child)) => child.media_type.clone(),
            (None, None) if value.get("manifests").is_some() => layout::OCI_INDEX.to_string(),
            (None, None) => layout::OCI_MANIFEST.to_string(),
        };
        Ok((
            Descriptor {
                media_type,
                digest: actual,
                size: bytes.len() as u64,
                platform: child.and_then(|c| c.platform.clone()),
                annotations: Default::default(),
            },
            bytes.to_vec(),
        ))
    }

    /// One image manifest's config and layers, then the manifest itself; their bytes.
    async fn image(
        &self,
        store: &Store,
        remote: &oci_client::Reference,
        bytes: &[u8],
        manifest: &Descriptor,
        what: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, MirrorError> {
        let Ok(Parsed::Manifest(parsed)) = layout::parse_manifest(bytes, &manifest.media_type)
        else {
            return Err(MirrorError::Source(format!(
                "{what}: {} is not an image manifest",
                manifest.digest
            )));
        };
        let mut total = 0;
        for blob in std::iter::once(&parsed.config).chain(&parsed.layers) {
            self.blob(store, remote, blob, what, progress).await?;
            total += blob.size;
        }
        store.put_blob(&manifest.digest, Some(manifest.size), bytes, what)?;
        Ok(total)
    }

    async fn blob(
        &self,
        store: &Store,
        remote: &oci_client::Reference,
        blob: &Descriptor,
        what: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), MirrorError> {
        if store.has_blob(&blob.digest, blob.size) {
            progress(blob.size);
            return Ok(());
        }
        let partial = store.partial_path(&blob.digest);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&partial)
            .map_err(|e| MirrorError::Source(format!("{}: {e}", partial.display())))?;
        let have = file.metadata().map(|m| m.len()).unwrap_or(0);
        let digest = blob.digest.as_str();
        let fail = |e: oci_client::errors::OciDistributionError| {
            MirrorError::Source(format!("{what}: fetching blob {digest}: {e}"))
        };
        let mut stream = if have > 0 && have < blob.size {
            match self
                .client
                .pull_blob_stream_partial(remote, digest, have, Some(blob.size - have))
                .await
                .map_err(fail)?
            {
                BlobResponse::Partial(stream) => {
                    progress(have);
                    stream
                }
                // The registry sent it whole: start the file again.
                BlobResponse::Full(stream) => {
                    file.set_len(0)
                        .map_err(|e| MirrorError::Source(format!("{}: {e}", partial.display())))?;
                    stream
                }
            }
        } else {
            file.set_len(0)
                .map_err(|e| MirrorError::Source(format!("{}: {e}", partial.display())))?;
            self.client
                .pull_blob_stream(remote, digest)
                .await
                .map_err(fail)?
        };
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| MirrorError::Source(format!("{what}: fetching blob {digest}: {e}")))?
        {
            file.write_all(&chunk)
                .map_err(|e| MirrorError::Source(format!("{}: {e}", partial.display())))?;
            progress(chunk.len() as u64);
        }
        store.finish_blob(&blob.digest, Some(blob.size), std::io::empty(), file, what)
    }
}

fn is_linux_amd64(descriptor: &Descriptor) -> bool {
    descriptor.platform.as_ref().is_none_or(|p| {
        p["os"].as_str().is_none_or(|os| os == "linux")
            && p["architecture"].as_str().is_none_or(|a| a == "amd64")
    })
}
