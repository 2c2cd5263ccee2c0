//! Every certificate, key and token kindling made or approved, with when it stops working:
//! the CAs and leaves under `tls/`, the client certificates inside `auth/` kubeconfigs, the
//! bootstrap token, and the kubelets' client and serving certificates from the cluster's CSRs.

use std::path::{Path, PathBuf};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;
use time::OffsetDateTime;

/// What kind of credential an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Ca,
    Leaf,
    /// A kubeconfig's client certificate.
    Kubeconfig,
    /// The kubelet bootstrap token.
    Token,
    KubeletClient,
    KubeletServing,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ca => "CA",
            Kind::Leaf => "leaf",
            Kind::Kubeconfig => "kubeconfig",
            Kind::Token => "token",
            Kind::KubeletClient => "kubelet client",
            Kind::KubeletServing => "kubelet serving",
        }
    }
}

/// One credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    /// Where it is: a path of the asset directory, or `csr/<name>`.
    pub source: String,
    pub kind: Kind,
    pub subject: String,
    pub issuer: String,
    pub names: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The machine it belongs to, when it is one machine's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The bootstrap machine's, or the bootstrap token: meant to expire once the cluster runs.
    pub bootstrap_only: bool,
}

impl Credential {
    /// Whole days from `now` until it stops working (negative once it has).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
}

/// Why the credentials could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("reading {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(transparent)]
    Cluster(#[from] kindling_cluster::ClusterError),
}

fn read_error(path: &Path, message: impl std::fmt::Display) -> CertsError {
    CertsError::Read {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn from_info(
    source: String,
    kind: Kind,
    info: kindling_pki::inspect::CertInfo,
    machine: Option<String>,
) -> Credential {
    Credential {
        source,
        kind,
        subject: info.subject,
        issuer: info.issuer,
        names: info.names,
        not_after: info.not_after,
        machine,
        bootstrap_only: false,
    }
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, found)?;
        } else if path.extension().is_some_and(|e| e == "crt") {
            found.push(path);
        }
    }
    Ok(())
}

/// The machine a file under `tls/` is one machine's, by the machine names of the inventory
/// that its path names (`tls/apiserver/master0.crt`, `tls/etcd/master0-peer.crt`).
fn machine_of(rel: &str, machines: &[String]) -> Option<String> {
    let file = rel.rsplit('/').next()?.trim_end_matches(".crt");
    machines
        .iter()
        .find(|m| file == m.as_str() || file.starts_with(&format!("{m}-")))
        .cloned()
}

/// The credentials in the asset directory `dir` of the cluster `description` describes.
pub fn of_description(
    dir: &Path,
    description: &kindling_config::ClusterDescription,
) -> Result<Vec<Credential>, CertsError> {
    let names = |role: Option<kindling_config::Role>| -> Vec<String> {
        description
            .inventory
            .machines
            .iter()
            .filter(|m| role.is_none_or(|r| m.role == r))
            .map(|m| m.name.clone())
            .collect()
    };
    local(
        dir,
        &names(None),
        &names(Some(kindling_config::Role::Bootstrap)),
    )
}

/// The credentials in the asset directory `dir`, of a cluster with these `machines` and
/// `bootstrap` machines.
pub fn local(
    dir: &Path,
    machines: &[String],
    bootstrap: &[String],
) -> Result<Vec<Credential>, CertsError> {
    let mut out = Vec::new();
    let tls = dir.join("tls");
    let mut files = Vec::new();
    if tls.is_dir() {
        walk(&tls, &mut files).map_err(|e| read_error(&tls, e))?;
    }
    files.sort();
    for path in files {
        let rel = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let pem = std::fs::read_to_string(&path).map_err(|e| read_error(&path, e))?;
        let certs = kindling_pki::inspect::inspect_pem(&pem).map_err(|e| read_error(&path, e))?;
        // A bundle (client-ca-bundle.crt) repeats CAs listed on their own.
        if certs.len() > 1 {
            continue;
        }
        for info in certs {
            let kind = if info.is_ca { Kind::Ca } else { Kind::Leaf };
            let machine = machine_of(&rel, machines);
            let mut credential = from_info(rel.clone(), kind, info, machine);
            credential.bootstrap_only = rel.starts_with("tls/bootstrap/")
                || credential
                    .machine
                    .as_ref()
                    .is_some_and(|m| bootstrap.contains(m));
            out.push(credential);
        }
    }
    let auth = dir.join("auth");
    let mut kubeconfigs: Vec<PathBuf> = std::fs::read_dir(&auth)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("kubeconfig"))
        })
        .collect();
    kubeconfigs.sort();
    for path in kubeconfigs {
        let rel = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let config =
            kube::config::Kubeconfig::read_from(&path).map_err(|e| read_error(&path, e))?;
        for user in config.auth_infos {
            let Some(data) = user.auth_info.and_then(|a| a.client_certificate_data) else {
                continue;
            };
            use base64::Engine as _;
            let pem = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| read_error(&path, e))?;
            let pem = String::from_utf8_lossy(&pem);
            for info in
                kindling_pki::inspect::inspect_pem(&pem).map_err(|e| read_error(&path, e))?
            {
                let mut credential = from_info(rel.clone(), Kind::Kubeconfig, info, None);
                credential.bootstrap_only = rel.starts_with("auth/bootstrap");
                out.push(credential);
            }
        }
    }
    let expiration = dir.join("auth/bootstrap-token-expiration");
    if let Ok(text) = std::fs::read_to_string(&expiration) {
        let not_after =
            OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
                .map_err(|e| read_error(&expiration, e))?;
        out.push(Credential {
            source: "auth/bootstrap-token".into(),
            kind: Kind::Token,
            subject: "kubelet bootstrap token (system:bootstrappers)".into(),
            issuer: "kindling".into(),
            names: Vec::new(),
            not_after,
            machine: None,
            bootstrap_only: true,
        });
    }
    Ok(out)
}

/// The kubelets' certificates the cluster issued, the newest of each kind for each node.
pub async fn kubelets(client: &kube::Client) -> Result<Vec<Credential>, CertsError> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let list = csrs.list(&ListParams::default()).await.map_err(|e| {
        kindling_cluster::ClusterError::api("listing CertificateSigningRequests", e)
    })?;
    let mut newest: std::collections::BTreeMap<(String, Kind), Credential> = Default::default();
    for csr in list.items {
        let kind = match csr.spec.signer_name.as_str() {
            "kubernetes.io/kube-apiserver-client-kubelet" => Kind::KubeletClient,
            "kubernetes.io/kubelet-serving" => Kind::KubeletServing,
            _ => continue,
        };
        let Some(cert) = csr.status.and_then(|s| s.certificate) else {
            continue;
        };
        let pem = String::from_utf8_lossy(&cert.0);
        let Ok(infos) = kindling_pki::inspect::inspect_pem(&pem) else {
            continue;
        };
        let Some(info) = infos.into_iter().next() else {
            continue;
        };
        let Some(node) = info
            .common_name
            .as_deref()
            .and_then(|cn| cn.strip_prefix("system:node:"))
            .map(str::to_string)
        else {
            continue;
        };
        let name = csr.metadata.name.unwrap_or_default();
        let entry = from_info(format!("csr/{name}"), kind, info, Some(node.clone()));
        let key = (node, kind);
        if newest
            .get(&key)
            .is_none_or(|e| e.not_after < entry.not_after)
        {
            newest.insert(key, entry);
        }
    }
    Ok(newest.into_values().collect())
}
