//! The assets that exist as soon as the description is valid: the normalised summary of the
//! cluster (`cluster.json`), its identity (`.kindling/cluster-id`) and `metadata.json`.

use std::collections::BTreeMap;

use kindling_config::inventory::{Network, Provisioning, Role, Taint};
use kindling_config::{INSTALL_CONFIG_FILE, INVENTORY_FILE, MacAddr};
use serde::Serialize;

use crate::engine::{Asset, AssetError, Context, Dependency, Output};
use crate::storage::Mode;

pub const CLUSTER_JSON: &str = "cluster.json";
pub const CLUSTER_ID: &str = ".kindling/cluster-id";
pub const METADATA_JSON: &str = "metadata.json";

/// `cluster.json`: the validated description with every default filled in and every derived name
/// spelled out. It holds no secrets (the pull secret is left out).
pub struct ClusterSummary;

/// `.kindling/cluster-id`: a random UUID made once and kept for the cluster's life.
pub struct ClusterId;

/// `metadata.json`: cluster name, ID, infrastructure ID and API URL, as openshift-install writes it.
pub struct Metadata;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary<'a> {
    cluster_name: &'a str,
    base_domain: &'a str,
    cluster_domain: String,
    #[serde(rename = "apiURL")]
    api_url: String,
    api_int_host: String,
    apps_domain: String,
    #[serde(rename = "mcsURL")]
    mcs_url: String,
    platform: kindling_config::install_config::Platform,
    fips: bool,
    networking: Networking<'a>,
    provisioning: &'a Provisioning,
    network: &'a Network,
    load_balancer: &'a kindling_config::inventory::LoadBalancer,
    ssh_keys: Vec<&'a str>,
    machines: Vec<SummaryMachine<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Networking<'a> {
    cluster_network: &'a [kindling_config::install_config::ClusterNetwork],
    service_network: &'a [ipnet::IpNet],
    machine_network: &'a [ipnet::IpNet],
    network_type: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryMachine<'a> {
    name: &'a str,
    fqdn: String,
    role: Role,
    macs: &'a [MacAddr],
    ip: std::net::IpAddr,
    install_disk: &'a str,
    labels: &'a BTreeMap<String, String>,
    taints: &'a [Taint],
}

fn json(value: &impl Serialize) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("summary serializes");
    out.push(b'\n');
    out
}

impl Asset for ClusterSummary {
    fn id(&self) -> &'static str {
        "cluster-summary"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        &[
            Dependency::Input(INSTALL_CONFIG_FILE),
            Dependency::Input(INVENTORY_FILE),
        ]
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let d = ctx.description;
        let ic = &d.install_config;
        let inv = &d.inventory;
        let summary = Summary {
            cluster_name: &ic.cluster_name,
            base_domain: &ic.base_domain,
            cluster_domain: d.cluster_domain(),
            api_url: d.api_url(),
            api_int_host: d.api_int_host(),
            apps_domain: d.apps_domain(),
            mcs_url: d.mcs_url(),
            platform: ic.platform,
            fips: ic.fips,
            networking: Networking {
                cluster_network: &ic.networking.cluster_network,
                service_network: &ic.networking.service_network,
                machine_network: &d.machine_networks,
                network_type: &ic.networking.network_type,
            },
            provisioning: &inv.provisioning,
            network: &inv.network,
            load_balancer: &inv.load_balancer,
            ssh_keys: ic
                .ssh_key
                .iter()
                .flat_map(|k| k.lines())
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect(),
            machines: inv
                .machines
                .iter()
                .map(|m| SummaryMachine {
                    name: &m.name,
                    fqdn: d.fqdn(m),
                    role: m.role,
                    macs: &m.macs,
                    ip: m.ip,
                    install_disk: m.install_disk(&inv.provisioning),
                    labels: &m.labels,
                    taints: &m.taints,
                })
                .collect(),
        };
        Ok(vec![Output {
            path: CLUSTER_JSON.into(),
            contents: json(&summary),
            mode: Mode::Public,
        }])
    }
}

impl Asset for ClusterId {
    fn id(&self) -> &'static str {
        "cluster-id"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        &[]
    }

    fn generate(&self, _ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        Ok(vec![Output {
            path: CLUSTER_ID.into(),
            contents: format!("{}\n", uuid::Uuid::new_v4()).into_bytes(),
            mode: Mode::Public,
        }])
    }
}

impl Asset for Metadata {
    fn id(&self) -> &'static str {
        "metadata"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        &[
            Dependency::Asset("cluster-summary"),
            Dependency::Asset("cluster-id"),
        ]
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let invalid = |message: String| AssetError::Generate {
            asset: "metadata",
            message,
        };
        let summary: serde_json::Value = serde_json::from_slice(&ctx.read(CLUSTER_JSON)?)
            .map_err(|e| invalid(format!("{CLUSTER_JSON} is not valid JSON ({e}); fix your edit or delete the file to regenerate it")))?;
        let field = |key: &str| {
            summary
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| invalid(format!("{CLUSTER_JSON} has no string field '{key}'; fix your edit or delete the file to regenerate it")))
        };
        let cluster_name = field("clusterName")?;
        let api_url = field("apiURL")?;
        let id = String::from_utf8_lossy(&ctx.read(CLUSTER_ID)?)
            .trim()
            .to_string();
        let cluster_id = uuid::Uuid::parse_str(&id).map_err(|_| {
            invalid(format!(
                "{CLUSTER_ID} does not hold a UUID; delete it to make a new one"
            ))
        })?;
        // Like openshift-install: the name plus five characters that tell clusters of that name apart.
        let infra_id = format!("{}-{}", cluster_name, &cluster_id.simple().to_string()[..5]);
        let metadata = serde_json::json!({
            "clusterName": cluster_name,
            "clusterID": cluster_id.to_string(),
            "infraID": infra_id,
            "apiURL": api_url,
        });
        Ok(vec![Output {
            path: METADATA_JSON.into(),
            contents: json(&metadata),
            mode: Mode::Public,
        }])
    }
}

/// The assets that `create manifests` brings up to date, in dependency order.
pub fn manifests_target() -> Vec<&'static dyn Asset> {
    vec![&ClusterSummary, &ClusterId, &Metadata]
}
