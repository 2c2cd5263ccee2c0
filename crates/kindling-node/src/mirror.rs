//! The registry mirror settings that send every image to the provisioning host.
//!
//! kindling's registry keeps each image under its full name, so an image of `registry.k8s.io`
//! is `https://<mirror>/v2/registry.k8s.io/<repository>/...`. containerd gets, per upstream
//! registry, a `hosts.toml` whose host has that path and `override_path` (containerd
//! docs/hosts.md); CRI-O gets a `[[registry.mirror]]` at `<mirror>/<upstream>` in a
//! registries.conf drop-in (containers-registries.conf(5)). Both trust the cluster's root CA and
//! send the machine's own credentials, which only the server can make: it adds these files when
//! it serves the machine its config.

use base64::Engine as _;

use crate::{CONTAINERD_HOSTS_DIR, CRIO_AUTH, CRIO_REGISTRIES, Runtime};

/// kindling's registry as a machine reaches it.
#[derive(Debug, Clone, Copy)]
pub struct RegistryAccess<'a> {
    /// `https://host:port`, the machine config server's URL without a path.
    pub url: &'a str,
    /// The CA certificate on the machine that signed the registry's certificate.
    pub ca_path: &'a str,
    /// The machine's name and token, sent as Basic credentials; `None` where the server tells
    /// machines apart by address, or not at all.
    pub credentials: Option<(&'a str, &'a str)>,
}

/// A mirror the site already runs (install-config's `imageContentSources` /
/// `imageDigestSources`): the images of `source` are at `location`, under the same names below
/// its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteMirror {
    /// A registry (`quay.io`), or for CRI-O also a repository in it.
    pub source: String,
    /// `host[:port][/path]`.
    pub location: String,
    /// The CA file on the machine that signed the mirror's certificate (the install-config's
    /// `additionalTrustBundle`); `None` for one the OS trusts.
    pub ca: Option<String>,
    /// The pull secret's `auth` for the mirror's host (base64 of `user:password`).
    pub auth: Option<String>,
}

impl SiteMirror {
    fn host(&self) -> &str {
        self.location.split('/').next().unwrap_or(&self.location)
    }
}

/// One file or link for the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File {
        path: String,
        contents: String,
        mode: u32,
    },
    Link {
        path: String,
        target: String,
    },
}

impl RegistryAccess<'_> {
    /// `host:port`, as registries.conf and certs.d name a registry.
    pub fn host(&self) -> &str {
        let rest = self
            .url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"))
            .unwrap_or(self.url);
        rest.split('/').next().unwrap_or(rest)
    }

    fn basic(&self) -> Option<String> {
        self.credentials.map(|(name, token)| {
            base64::engine::general_purpose::STANDARD.encode(format!("{name}:{token}"))
        })
    }
}

/// The files that make `runtime` pull every image of `upstreams` (`registry.k8s.io`, `ghcr.io`,
/// …) from kindling's registry, and the images of each of `site`'s sources from that mirror.
/// A source the site mirrors is not sent to kindling's registry.
pub fn entries(
    runtime: Runtime,
    access: &RegistryAccess<'_>,
    upstreams: &[String],
    site: &[SiteMirror],
) -> Vec<Entry> {
    let ours: Vec<&String> = upstreams
        .iter()
        .filter(|u| !site.iter().any(|s| &s.source == *u))
        .collect();
    match runtime {
        Runtime::Containerd => {
            let mut entries: Vec<Entry> = ours
                .iter()
                .map(|upstream| Entry::File {
                    path: format!("{CONTAINERD_HOSTS_DIR}/{upstream}/hosts.toml"),
                    contents: hosts_toml(upstream, access),
                    mode: if access.credentials.is_some() {
                        0o600
                    } else {
                        0o644
                    },
                })
                .collect();
            for mirror in site {
                entries.push(Entry::File {
                    path: format!("{CONTAINERD_HOSTS_DIR}/{}/hosts.toml", mirror.source),
                    contents: site_hosts_toml(mirror),
                    mode: if mirror.auth.is_some() { 0o600 } else { 0o644 },
                });
            }
            entries
        }
        Runtime::CriO => {
            let mut entries = vec![
                Entry::File {
                    path: CRIO_REGISTRIES.to_string(),
                    contents: registries_conf(access, &ours, site),
                    mode: 0o644,
                },
                Entry::Link {
                    path: format!("/etc/containers/certs.d/{}/ca.crt", access.host()),
                    target: access.ca_path.to_string(),
                },
            ];
            let mut auths = Vec::new();
            if let Some(auth) = access.basic() {
                auths.push(format!("\"{}\":{{\"auth\":\"{auth}\"}}", access.host()));
            }
            for mirror in site {
                if let Some(ca) = &mirror.ca {
                    entries.push(Entry::Link {
                        path: format!("/etc/containers/certs.d/{}/ca.crt", mirror.host()),
                        target: ca.clone(),
                    });
                }
                if let Some(auth) = &mirror.auth {
                    auths.push(format!("\"{}\":{{\"auth\":\"{auth}\"}}", mirror.host()));
                }
            }
            entries.push(Entry::File {
                path: CRIO_AUTH.to_string(),
                contents: format!("{{\"auths\":{{{}}}}}\n", auths.join(",")),
                mode: 0o600,
            });
            entries
        }
    }
}

/// containerd's `hosts.toml` for one upstream registry, served by kindling's registry.
pub fn hosts_toml(upstream: &str, access: &RegistryAccess<'_>) -> String {
    let url = format!("{}/v2/{upstream}", access.url.trim_end_matches('/'));
    let mut toml = format!(
        "# Images of {upstream} come from kindling's mirror on the provisioning host. Generated by kindling.\n\
         server = \"{}\"\n\
         \n\
         [host.\"{url}\"]\n  \
           capabilities = [\"pull\", \"resolve\"]\n  \
           ca = \"{ca}\"\n  \
           override_path = true\n",
        upstream_server(upstream),
        ca = access.ca_path,
    );
    if let Some(auth) = access.basic() {
        toml.push_str(&format!(
            "\n[host.\"{url}\".header]\n  Authorization = \"Basic {auth}\"\n"
        ));
    }
    toml
}

/// containerd's `hosts.toml` for a registry the site mirrors.
fn site_hosts_toml(mirror: &SiteMirror) -> String {
    let (host, path) = mirror
        .location
        .split_once('/')
        .map_or((mirror.location.as_str(), ""), |(h, p)| (h, p));
    // A mirror with a path holds the upstream's repositories below it: the API root moves too.
    let (url, override_path) = if path.is_empty() {
        (format!("https://{host}"), "")
    } else {
        (
            format!("https://{host}/v2/{path}"),
            "  override_path = true\n",
        )
    };
    let mut toml = format!(
        "# Images of {source} come from the site's mirror {location} (install-config.yaml's image sources). Generated by kindling.\n\
         server = \"{server}\"\n\
         \n\
         [host.\"{url}\"]\n  \
           capabilities = [\"pull\", \"resolve\"]\n{override_path}",
        source = mirror.source,
        location = mirror.location,
        server = upstream_server(&mirror.source),
    );
    if let Some(ca) = &mirror.ca {
        toml.push_str(&format!("  ca = \"{ca}\"\n"));
    }
    if let Some(auth) = &mirror.auth {
        toml.push_str(&format!(
            "\n[host.\"{url}\".header]\n  Authorization = \"Basic {auth}\"\n"
        ));
    }
    toml
}

fn upstream_server(upstream: &str) -> String {
    if upstream == "docker.io" {
        "https://registry-1.docker.io".to_string()
    } else {
        format!("https://{upstream}")
    }
}

/// CRI-O's registries.conf drop-in: each upstream mirrored at `<mirror>/<upstream>`, and each
/// source the site mirrors at its location.
fn registries_conf(
    access: &RegistryAccess<'_>,
    upstreams: &[&String],
    site: &[SiteMirror],
) -> String {
    let mut conf = String::from(
        "# Every image comes from a mirror: kindling's on the provisioning host, or the site's. Generated by kindling.\n",
    );
    let mut add = |prefix: &str, location: &str| {
        conf.push_str(&format!(
            "\n[[registry]]\nprefix = \"{prefix}\"\nlocation = \"{prefix}\"\n\n[[registry.mirror]]\nlocation = \"{location}\"\n"
        ));
    };
    for upstream in upstreams {
        add(upstream, &format!("{}/{upstream}", access.host()));
    }
    for mirror in site {
        add(&mirror.source, &mirror.location);
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCESS: RegistryAccess<'static> = RegistryAccess {
        url: "https://api-int.demo.example.com:22623",
        ca_path: "/etc/kubernetes/pki/ca.crt",
        credentials: Some(("worker0", "t0k3n")),
    };

    #[test]
    fn containerd_sends_each_upstream_to_its_path_on_the_mirror_with_the_machines_credentials() {
        let entries = entries(
            Runtime::Containerd,
            &ACCESS,
            &["registry.k8s.io".into(), "docker.io".into()],
            &[],
        );
        let Entry::File {
            path,
            contents,
            mode,
        } = &entries[0]
        else {
            panic!()
        };
        assert_eq!(path, "/etc/containerd/certs.d/registry.k8s.io/hosts.toml");
        assert_eq!(*mode, 0o600);
        assert!(
            contents
                .contains("[host.\"https://api-int.demo.example.com:22623/v2/registry.k8s.io\"]"),
            "{contents}"
        );
        assert!(contents.contains("override_path = true"));
        // base64("worker0:t0k3n")
        assert!(
            contents.contains("Authorization = \"Basic d29ya2VyMDp0MGszbg==\""),
            "{contents}"
        );
        let Entry::File { contents, .. } = &entries[1] else {
            panic!()
        };
        assert!(contents.contains("server = \"https://registry-1.docker.io\""));
    }

    #[test]
    fn crio_gets_a_mirror_per_upstream_the_ca_and_its_credentials() {
        let entries = entries(Runtime::CriO, &ACCESS, &["ghcr.io".into()], &[]);
        let Entry::File { contents, .. } = &entries[0] else {
            panic!()
        };
        assert!(
            contents.contains("location = \"api-int.demo.example.com:22623/ghcr.io\""),
            "{contents}"
        );
        assert_eq!(
            entries[1],
            Entry::Link {
                path: "/etc/containers/certs.d/api-int.demo.example.com:22623/ca.crt".into(),
                target: "/etc/kubernetes/pki/ca.crt".into()
            }
        );
        let Entry::File { contents, mode, .. } = &entries[2] else {
            panic!()
        };
        assert_eq!(*mode, 0o600);
        assert!(contents.contains("d29ya2VyMDp0MGszbg=="));
    }

    #[test]
    fn a_registry_the_site_mirrors_goes_to_the_sites_mirror_not_to_kindlings() {
        let site = SiteMirror {
            source: "quay.io".into(),
            location: "mirror.example.com:5000/quay".into(),
            ca: Some("/etc/kindling/additional-trust-bundle.pem".into()),
            auth: Some("dXNlcjpwYXNz".into()),
        };
        let upstreams = ["quay.io".to_string(), "registry.k8s.io".to_string()];
        let files = entries(
            Runtime::Containerd,
            &ACCESS,
            &upstreams,
            std::slice::from_ref(&site),
        );
        let paths: Vec<&str> = files
            .iter()
            .map(|e| match e {
                Entry::File { path, .. } | Entry::Link { path, .. } => path.as_str(),
            })
            .collect();
        assert_eq!(
            paths,
            [
                "/etc/containerd/certs.d/registry.k8s.io/hosts.toml",
                "/etc/containerd/certs.d/quay.io/hosts.toml"
            ]
        );
        let Entry::File { contents, .. } = &files[1] else {
            panic!()
        };
        assert!(
            contents.contains("[host.\"https://mirror.example.com:5000/v2/quay\"]"),
            "{contents}"
        );
        assert!(contents.contains("ca = \"/etc/kindling/additional-trust-bundle.pem\""));
        assert!(contents.contains("Authorization = \"Basic dXNlcjpwYXNz\""));
        let crio = entries(Runtime::CriO, &ACCESS, &upstreams, &[site]);
        let Entry::File { contents, .. } = &crio[0] else {
            panic!()
        };
        assert!(contents.contains("prefix = \"quay.io\"\nlocation = \"quay.io\"\n\n[[registry.mirror]]\nlocation = \"mirror.example.com:5000/quay\""), "{contents}");
        assert!(
            !contents.contains("api-int.demo.example.com:22623/quay.io"),
            "{contents}"
        );
    }
}
