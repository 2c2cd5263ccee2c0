//! The cluster's PKI as assets: certificate authorities, the keys and certificates they sign, the
//! service-account key pair and the kubelet bootstrap token (`tls/`, `auth/bootstrap-token`).
//!
//! Certificate authorities are made once. Leaves are signed by the CA read back from disk, so a
//! leaf re-signed later (because it was about to expire, or its names changed) chains to the same
//! CA, and pointer configs that embed the root CA stay valid.

use std::net::IpAddr;

use kindling_config::{ClusterDescription, Machine, Role};
use kindling_pki::{BootstrapToken, Ca, LeafSpec, Usage};

use crate::engine::{Asset, AssetError, Context, Dependency, Output};
use crate::storage::Mode;

/// A certificate authority: `<base>.crt` and `<base>.key`.
pub struct CaAsset {
    pub id: &'static str,
    /// Path without extension, e.g. `tls/root-ca`.
    pub base: &'static str,
    pub common_name: &'static str,
}

pub static ROOT_CA: CaAsset = CaAsset {
    id: "root-ca",
    base: "tls/root-ca",
    common_name: "kindling-root-ca",
};
pub static ETCD_CA: CaAsset = CaAsset {
    id: "etcd-ca",
    base: "tls/etcd-ca",
    common_name: "kindling-etcd-ca",
};
pub static FRONT_PROXY_CA: CaAsset = CaAsset {
    id: "front-proxy-ca",
    base: "tls/front-proxy-ca",
    common_name: "kindling-front-proxy-ca",
};

/// The CA that signs the kubelets' certificates (the controller manager's CSR signer), under
/// the root: the masters hold its key, so the root CA's key never leaves the asset directory.
/// OpenShift's kube-csr-signer does the same.
pub static CSR_SIGNER_CA: IntermediateCa = IntermediateCa {
    id: "csr-signer-ca",
    parent: &ROOT_CA,
    base: "tls/csr-signer",
    common_name: "kindling-csr-signer",
};

/// What the API server and the controller manager trust for client and kubelet serving
/// certificates: the root CA and the CSR signer.
pub const CLIENT_CA_BUNDLE: &str = "tls/client-ca-bundle.crt";

impl CaAsset {
    pub fn cert(&self) -> String {
        format!("{}.crt", self.base)
    }
    pub fn key(&self) -> String {
        format!("{}.key", self.base)
    }

    fn load(&self, ctx: &Context<'_>) -> Result<Ca, AssetError> {
        let cert = ctx.read_text(&self.cert())?;
        let key = ctx.read_text(&self.key())?;
        Ca::from_pem(&cert, &key).map_err(|e| AssetError::Generate {
            asset: self.id,
            message: format!(
                "{} or {} cannot be read back: {e}; restore them from a backup",
                self.cert(),
                self.key()
            ),
        })
    }
}

impl Asset for CaAsset {
    fn id(&self) -> &'static str {
        self.id
    }

    fn is_authority(&self) -> bool {
        true
    }

    fn depends_on(&self) -> &'static [Dependency] {
        &[]
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let s = ctx.settings;
        let ca = Ca::generate(self.common_name, s.key_algorithm, s.now, s.lifetimes.root)
            .map_err(|e| pki_error(self.id, e))?;
        Ok(pem_pair(self.base, ca.cert_pem.clone(), ca.key_pem()).into())
    }
}

/// A certificate authority signed by another: `<base>.crt`, `<base>.key`, and
/// [`CLIENT_CA_BUNDLE`], the parent's certificate followed by its own. It lives as long as the
/// root, like the other CAs, so that every certificate it signed stays valid.
pub struct IntermediateCa {
    pub id: &'static str,
    pub parent: &'static CaAsset,
    pub base: &'static str,
    pub common_name: &'static str,
}

impl IntermediateCa {
    pub fn cert(&self) -> String {
        format!("{}.crt", self.base)
    }
    pub fn key(&self) -> String {
        format!("{}.key", self.base)
    }
}

impl Asset for IntermediateCa {
    fn id(&self) -> &'static str {
        self.id
    }

    fn is_authority(&self) -> bool {
        true
    }

    fn depends_on(&self) -> &'static [Dependency] {
        &[Dependency::Asset("root-ca")]
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let parent = self.parent.load(ctx)?;
        let s = ctx.settings;
        let ca = parent
            .issue_ca(self.common_name, s.key_algorithm, s.now, s.lifetimes.root)
            .map_err(|e| pki_error(self.id, e))?;
        let bundle = format!("{}{}", parent.cert_pem, ca.cert_pem);
        let mut outputs: Vec<Output> =
            pem_pair(self.base, ca.cert_pem.clone(), ca.key_pem()).into();
        outputs.push(Output {
            path: CLIENT_CA_BUNDLE.into(),
            contents: bundle.into_bytes(),
            mode: Mode::Public,
        });
        Ok(outputs)
    }
}

/// `<base>.crt` (public) and `<base>.key` (secret).
fn pem_pair(base: &str, cert_pem: String, key_pem: String) -> [Output; 2] {
    [
        Output {
            path: format!("{base}.crt"),
            contents: cert_pem.into_bytes(),
            mode: Mode::Public,
        },
        Output {
            path: format!("{base}.key"),
            contents: key_pem.into_bytes(),
            mode: Mode::Secret,
        },
    ]
}

fn pki_error(asset: &'static str, e: kindling_pki::PkiError) -> AssetError {
    AssetError::Generate {
        asset,
        message: e.to_string(),
    }
}

/// How long a leaf lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// `Lifetimes::leaf`: one year.
    Leaf,
    /// Only on the bootstrap machine: twice the bootstrap window.
    Bootstrap,
}

/// One or more leaf certificates signed by one CA: `<base>.crt` and `<base>.key` each.
pub struct LeafAsset {
    pub id: &'static str,
    pub ca: &'static CaAsset,
    pub depends_on: &'static [Dependency],
    pub lifetime: Lifetime,
    /// The certificates: path base (e.g. `tls/apiserver`) and what goes in them.
    pub certs: fn(&ClusterDescription) -> Vec<(String, LeafSpec)>,
}

impl Asset for LeafAsset {
    fn id(&self) -> &'static str {
        self.id
    }

    fn depends_on(&self) -> &'static [Dependency] {
        self.depends_on
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let ca = self.ca.load(ctx)?;
        let s = ctx.settings;
        let lifetime = match self.lifetime {
            Lifetime::Leaf => s.lifetimes.leaf,
            Lifetime::Bootstrap => s.lifetimes.bootstrap_leaf(),
        };
        let mut outputs = Vec::new();
        // A leaf is re-issued only when what it says would change, or it is near expiry.
        let valid_until = s.valid_until();
        for (base, spec) in (self.certs)(ctx.description) {
            let existing = (
                ctx.read_text(&format!("{base}.crt")),
                ctx.read_text(&format!("{base}.key")),
            );
            let (cert_pem, key_pem) = match existing {
                (Ok(c), Ok(k)) if kindling_pki::reusable(&c, &k, &spec, &ca, valid_until) => (c, k),
                _ => {
                    let issued = ca
                        .issue(&spec, s.key_algorithm, s.now, lifetime)
                        .map_err(|e| pki_error(self.id, e))?;
                    (issued.cert_pem, issued.key_pem)
                }
            };
            outputs.extend(pem_pair(&base, cert_pem, key_pem));
        }
        Ok(outputs)
    }

    /// A certificate that is expired, or will be within the bootstrap window (or the renewal
    /// horizon of `kindling certs renew`), is re-signed.
    fn needs_renewal(&self, ctx: &Context<'_>, own: &[String]) -> Result<bool, AssetError> {
        let deadline = ctx.settings.valid_until();
        for path in own.iter().filter(|p| p.ends_with(".crt")) {
            let expiry = kindling_pki::not_after(&ctx.read_text(path)?);
            match expiry {
                Ok(expiry) if expiry > deadline => {}
                // Expiring, or unreadable: either way it cannot be served as it is.
                _ => return Ok(true),
            }
        }
        Ok(false)
    }
}

const ROOT_LEAF_DEPS: &[Dependency] = &[
    Dependency::Asset("root-ca"),
    Dependency::Asset("cluster-summary"),
];
const ETCD_LEAF_DEPS: &[Dependency] = &[
    Dependency::Asset("etcd-ca"),
    Dependency::Asset("cluster-summary"),
];
const FRONT_PROXY_LEAF_DEPS: &[Dependency] = &[Dependency::Asset("front-proxy-ca")];

fn ip(text: &str) -> IpAddr {
    text.parse().expect("a literal address")
}

/// The kube-apiserver serving certificates, one for each machine that runs an apiserver
/// (`tls/apiserver/<machine>`): every name a client may use to reach the API, plus the machine's
/// own address and names, as kubeadm does, so that `https://<master-ip>:6443` verifies too.
fn apiserver_certs(d: &ClusterDescription, role: Role) -> Vec<(String, LeafSpec)> {
    let lb = &d.inventory.load_balancer;
    d.inventory
        .with_role(role)
        .map(|m| {
            let mut ips = vec![
                kubernetes_service_ip(d),
                ip("127.0.0.1"),
                lb.api_vip,
                lb.api_int_vip,
                m.ip,
            ];
            ips.dedup();
            let mut dns_names = vec![d.api_host(), d.api_int_host(), d.fqdn(m), m.name.clone()];
            dns_names.extend(
                [
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                    "localhost",
                ]
                .map(String::from),
            );
            let spec = LeafSpec {
                common_name: "kube-apiserver".into(),
                organizations: vec![],
                dns_names,
                ips,
                usage: Usage::Server,
            };
            (apiserver_base(&m.name), spec)
        })
        .collect()
}

/// Where a machine's apiserver serving certificate and key are: `<base>.crt`, `<base>.key`.
pub fn apiserver_base(machine: &str) -> String {
    format!("tls/apiserver/{machine}")
}

/// The masters' apiserver serving certificates.
pub static APISERVER: LeafAsset = LeafAsset {
    id: "apiserver-cert",
    ca: &ROOT_CA,
    depends_on: ROOT_LEAF_DEPS,
    lifetime: Lifetime::Leaf,
    certs: |d| apiserver_certs(d, Role::Master),
};

/// The bootstrap machine's apiserver serving certificate: short-lived, like everything only it
/// holds.
pub static APISERVER_BOOTSTRAP: LeafAsset = LeafAsset {
    id: "apiserver-bootstrap-cert",
    ca: &ROOT_CA,
    depends_on: ROOT_LEAF_DEPS,
    lifetime: Lifetime::Bootstrap,
    certs: |d| apiserver_certs(d, Role::Bootstrap),
};

/// The first address of the service network: the `kubernetes` Service's ClusterIP.
pub fn kubernetes_service_ip(d: &ClusterDescription) -> IpAddr {
    kindling_config::template::nth_address(d.install_config.service_network(), 1)
}

/// kube-apiserver's client certificate towards the kubelets (logs, exec, port-forward).
pub static APISERVER_KUBELET_CLIENT: LeafAsset = LeafAsset {
    id: "apiserver-kubelet-client-cert",
    ca: &ROOT_CA,
    depends_on: &[Dependency::Asset("root-ca")],
    lifetime: Lifetime::Leaf,
    certs: |_| {
        vec![(
            "tls/apiserver-kubelet-client".into(),
            LeafSpec::client("kube-apiserver-kubelet-client", &[]),
        )]
    },
};

/// kube-apiserver's client certificate towards etcd.
pub static APISERVER_ETCD_CLIENT: LeafAsset = LeafAsset {
    id: "apiserver-etcd-client-cert",
    ca: &ETCD_CA,
    depends_on: &[Dependency::Asset("etcd-ca")],
    lifetime: Lifetime::Leaf,
    certs: |_| {
        vec![(
            "tls/apiserver-etcd-client".into(),
            LeafSpec::client("kube-apiserver-etcd-client", &[]),
        )]
    },
};

/// The aggregation layer's client certificate.
pub static FRONT_PROXY_CLIENT: LeafAsset = LeafAsset {
    id: "front-proxy-client-cert",
    ca: &FRONT_PROXY_CA,
    depends_on: FRONT_PROXY_LEAF_DEPS,
    lifetime: Lifetime::Leaf,
    certs: |_| {
        vec![(
            "tls/front-proxy-client".into(),
            LeafSpec::client("front-proxy-client", &[]),
        )]
    },
};

/// Client certificates of the control-plane components and of the cluster admin.
pub static CLIENTS: LeafAsset = LeafAsset {
    id: "client-certs",
    ca: &ROOT_CA,
    depends_on: &[Dependency::Asset("root-ca")],
    lifetime: Lifetime::Leaf,
    certs: |_| {
        vec![
            (
                "tls/admin".into(),
                LeafSpec::client("system:admin", &["system:masters"]),
            ),
            (
                "tls/controller-manager".into(),
                LeafSpec::client("system:kube-controller-manager", &[]),
            ),
            (
                "tls/scheduler".into(),
                LeafSpec::client("system:kube-scheduler", &[]),
            ),
        ]
    },
};

/// The admin identity of `kindling agent bootstrap`: it lives on the bootstrap machine only, so
/// it is short-lived.
pub static BOOTSTRAP_ADMIN: LeafAsset = LeafAsset {
    id: "bootstrap-admin-cert",
    ca: &ROOT_CA,
    depends_on: &[Dependency::Asset("root-ca")],
    lifetime: Lifetime::Bootstrap,
    certs: |_| {
        vec![(
            "tls/bootstrap/admin".into(),
            LeafSpec::client("system:kindling-bootstrap", &["system:masters"]),
        )]
    },
};

fn etcd_member_certs(d: &ClusterDescription, m: &Machine) -> Vec<(String, LeafSpec)> {
    let names = vec![m.name.clone(), d.fqdn(m), "localhost".into()];
    let ips = vec![m.ip, ip("127.0.0.1")];
    let spec = |usage| LeafSpec {
        common_name: m.name.clone(),
        organizations: vec![],
        dns_names: names.clone(),
        ips: ips.clone(),
        usage,
    };
    vec![
        (
            format!("tls/etcd/{}-server", m.name),
            spec(Usage::ServerAndClient),
        ),
        (
            format!("tls/etcd/{}-peer", m.name),
            spec(Usage::ServerAndClient),
        ),
    ]
}

/// The etcd member certificates of the masters.
pub static ETCD_MASTERS: LeafAsset = LeafAsset {
    id: "etcd-master-certs",
    ca: &ETCD_CA,
    depends_on: ETCD_LEAF_DEPS,
    lifetime: Lifetime::Leaf,
    certs: |d| {
        d.inventory
            .with_role(Role::Master)
            .flat_map(|m| etcd_member_certs(d, m))
            .collect()
    },
};

/// The bootstrap member's etcd certificates: short-lived, like everything only it holds.
pub static ETCD_BOOTSTRAP: LeafAsset = LeafAsset {
    id: "etcd-bootstrap-certs",
    ca: &ETCD_CA,
    depends_on: ETCD_LEAF_DEPS,
    lifetime: Lifetime::Bootstrap,
    certs: |d| {
        d.inventory
            .with_role(Role::Bootstrap)
            .flat_map(|m| etcd_member_certs(d, m))
            .collect()
    },
};

/// The machine config server's serving certificate: the api-int name and VIP (through the load
/// balancer) and the provisioning host (where `kindling serve` runs).
pub static MCS: LeafAsset = LeafAsset {
    id: "mcs-cert",
    ca: &ROOT_CA,
    depends_on: ROOT_LEAF_DEPS,
    lifetime: Lifetime::Leaf,
    certs: |d| {
        let mut dns_names = vec![d.api_int_host()];
        let mut ips = vec![d.inventory.load_balancer.api_int_vip];
        for url in [
            Some(d.inventory.provisioning.server_url.clone()),
            Some(d.mcs_url()),
        ]
        .into_iter()
        .flatten()
        {
            match url_host(&url) {
                Some(UrlHost::Ip(addr)) if !ips.contains(&addr) => ips.push(addr),
                Some(UrlHost::Name(name)) if !dns_names.contains(&name) => dns_names.push(name),
                _ => {}
            }
        }
        vec![(
            "tls/mcs".into(),
            LeafSpec {
                common_name: "machine-config-server".into(),
                organizations: vec![],
                dns_names,
                ips,
                usage: Usage::Server,
            },
        )]
    },
};

enum UrlHost {
    Ip(IpAddr),
    Name(String),
}

/// The host of an http(s) URL that validation has already accepted.
fn url_host(url: &str) -> Option<UrlHost> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => host_port.split(':').next()?,
    };
    Some(match host.parse() {
        Ok(addr) => UrlHost::Ip(addr),
        Err(_) => UrlHost::Name(host.to_ascii_lowercase()),
    })
}

/// The service-account token signing key pair: `tls/sa.key`, `tls/sa.pub`.
pub struct ServiceAccountKey;

impl Asset for ServiceAccountKey {
    fn id(&self) -> &'static str {
        "service-account-key"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        &[]
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let key = kindling_pki::generate_key(ctx.settings.key_algorithm)
            .map_err(|e| pki_error(self.id(), e))?;
        let public = kindling_pki::public_key_pem(&key).map_err(|e| pki_error(self.id(), e))?;
        Ok(vec![
            Output {
                path: "tls/sa.key".into(),
                contents: key.into_bytes(),
                mode: Mode::Secret,
            },
            Output {
                path: "tls/sa.pub".into(),
                contents: public.into_bytes(),
                mode: Mode::Public,
            },
        ])
    }
}

pub const BOOTSTRAP_TOKEN_FILE: &str = "auth/bootstrap-token";

/// The kubelet bootstrap token, `<id>.<secret>`, made once.
pub struct BootstrapTokenAsset;

/// When the bootstrap token expires (RFC 3339).
pub const BOOTSTRAP_TOKEN_EXPIRATION_FILE: &str = "auth/bootstrap-token-expiration";

impl BootstrapTokenAsset {
    /// Reads the token back, for the assets that embed it.
    pub fn load(ctx: &Context<'_>) -> Result<BootstrapToken, AssetError> {
        BootstrapToken::parse(&ctx.read_text(BOOTSTRAP_TOKEN_FILE)?).ok_or_else(|| AssetError::Generate {
            asset: "bootstrap-token",
            message: format!("{BOOTSTRAP_TOKEN_FILE} is not <6 of [a-z0-9]>.<16 of [a-z0-9]>; delete it to make a new token"),
        })
    }

    /// When the token expires, as written.
    pub fn expiration(ctx: &Context<'_>) -> Result<String, AssetError> {
        let text = ctx.read_text(BOOTSTRAP_TOKEN_EXPIRATION_FILE)?;
        let text = text.trim();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(|_| text.to_string())
            .map_err(|e| AssetError::Generate {
                asset: "bootstrap-token",
                message: format!(
                    "{BOOTSTRAP_TOKEN_EXPIRATION_FILE}: {text:?} is not an RFC 3339 time ({e}); delete it and run create again"
                ),
            })
    }
}

impl Asset for BootstrapTokenAsset {
    fn id(&self) -> &'static str {
        "bootstrap-token"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        &[]
    }

    /// The token lives one bootstrap window (24 h, as kubeadm's), and `create` extends it when
    /// less than half of that is left: kubelets join while the install runs, and not for ever
    /// after. The token itself is kept, so configs already handed out stay good.
    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let token = BootstrapTokenAsset::load(ctx).unwrap_or_else(|_| BootstrapToken::generate());
        let s = ctx.settings;
        let expiration = (s.now + s.lifetimes.bootstrap_window)
            .replace_nanosecond(0)
            .unwrap_or(s.now)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| pki_error_text(self.id(), e.to_string()))?;
        Ok(vec![
            Output {
                path: BOOTSTRAP_TOKEN_FILE.into(),
                contents: format!("{}\n", token.token()).into_bytes(),
                mode: Mode::Secret,
            },
            Output {
                path: BOOTSTRAP_TOKEN_EXPIRATION_FILE.into(),
                contents: format!("{expiration}\n").into_bytes(),
                mode: Mode::Public,
            },
        ])
    }

    fn needs_renewal(&self, ctx: &Context<'_>, _own: &[String]) -> Result<bool, AssetError> {
        let Ok(text) = ctx.read_text(BOOTSTRAP_TOKEN_EXPIRATION_FILE) else {
            return Ok(true);
        };
        let s = ctx.settings;
        Ok(
            match time::OffsetDateTime::parse(
                text.trim(),
                &time::format_description::well_known::Rfc3339,
            ) {
                Ok(expiration) => expiration - s.now < s.lifetimes.bootstrap_window / 2,
                Err(_) => true,
            },
        )
    }
}

fn pki_error_text(asset: &'static str, message: String) -> AssetError {
    AssetError::Generate { asset, message }
}

/// Kubeconfigs, built from the certificates on disk (so an edited certificate flows into them).
pub struct Kubeconfigs;

pub const ADMIN_KUBECONFIG: &str = "auth/kubeconfig";
pub const CONTROLLER_MANAGER_KUBECONFIG: &str = "auth/controller-manager.kubeconfig";
pub const SCHEDULER_KUBECONFIG: &str = "auth/scheduler.kubeconfig";
pub const BOOTSTRAP_ADMIN_KUBECONFIG: &str = "auth/bootstrap-admin.kubeconfig";
pub const KUBELET_BOOTSTRAP_KUBECONFIG: &str = "auth/kubelet-bootstrap.kubeconfig";

impl Asset for Kubeconfigs {
    fn id(&self) -> &'static str {
        "kubeconfigs"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        &[
            Dependency::Asset("cluster-summary"),
            Dependency::Asset("root-ca"),
            Dependency::Asset("client-certs"),
            Dependency::Asset("bootstrap-admin-cert"),
            Dependency::Asset("bootstrap-token"),
        ]
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        use kindling_pki::kubeconfig::{Credentials, render};
        let d = ctx.description;
        let cluster = &d.install_config.cluster_name;
        let ca = ctx.read_text(&ROOT_CA.cert())?;
        let api = d.api_url();
        let api_int = format!("https://{}:6443", d.api_int_host());
        let local = "https://127.0.0.1:6443";
        let token = BootstrapTokenAsset::load(ctx)?.token();
        let mut outputs = Vec::new();
        for (path, server, user, base) in [
            (ADMIN_KUBECONFIG, api.as_str(), "admin", Some("tls/admin")),
            (
                CONTROLLER_MANAGER_KUBECONFIG,
                local,
                "system:kube-controller-manager",
                Some("tls/controller-manager"),
            ),
            (
                SCHEDULER_KUBECONFIG,
                local,
                "system:kube-scheduler",
                Some("tls/scheduler"),
            ),
            (
                BOOTSTRAP_ADMIN_KUBECONFIG,
                local,
                "kindling-bootstrap",
                Some("tls/bootstrap/admin"),
            ),
            (
                KUBELET_BOOTSTRAP_KUBECONFIG,
                api_int.as_str(),
                "kubelet-bootstrap",
                None,
            ),
        ] {
            let text = match base {
                Some(base) => {
                    let cert = ctx.read_text(&format!("{base}.crt"))?;
                    let key = ctx.read_text(&format!("{base}.key"))?;
                    render(
                        cluster,
                        server,
                        &ca,
                        user,
                        &Credentials::ClientCert {
                            cert_pem: &cert,
                            key_pem: &key,
                        },
                    )
                }
                None => render(cluster, server, &ca, user, &Credentials::Token(&token)),
            };
            outputs.push(Output {
                path: path.into(),
                contents: text.into_bytes(),
                mode: Mode::Secret,
            });
        }
        Ok(outputs)
    }
}

/// The PKI assets in dependency order.
pub fn assets() -> Vec<&'static dyn Asset> {
    vec![
        &ROOT_CA,
        &CSR_SIGNER_CA,
        &ETCD_CA,
        &FRONT_PROXY_CA,
        &ServiceAccountKey,
        &BootstrapTokenAsset,
        &APISERVER,
        &APISERVER_BOOTSTRAP,
        &APISERVER_KUBELET_CLIENT,
        &APISERVER_ETCD_CLIENT,
        &FRONT_PROXY_CLIENT,
        &CLIENTS,
        &BOOTSTRAP_ADMIN,
        &ETCD_MASTERS,
        &ETCD_BOOTSTRAP,
        &MCS,
        &Kubeconfigs,
    ]
}
