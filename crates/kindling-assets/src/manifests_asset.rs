//! `manifests/`: the Kubernetes manifests as files the user may read and edit before
//! `create ignition-configs` puts them into the machines' configs.
//!
//! - `manifests/cluster/`: add-ons the bootstrap agent applies (CNI, CoreDNS, kube-proxy, RBAC,
//!   the bootstrap token);
//! - `manifests/bootstrap/`: the bootstrap machine's temporary control plane (static pods);
//! - `manifests/masters/<name>/`: each master's static pods and its etcd member pod;
//! - `manifests/kubelet/`: the kubelet unit and KubeletConfiguration of the nodes
//!   (`kubelet.service`, `config.yaml`) and of the bootstrap machine (`bootstrap-kubelet.service`,
//!   `bootstrap-config.yaml`). Each machine's own kubelet arguments go into its Ignition config.

use kindling_config::Role;

use crate::engine::{Asset, AssetError, Context, Dependency, Output};
use crate::manifests::{self, BootstrapToken, KubeletMode};
use crate::pki::BootstrapTokenAsset;
use crate::storage::Mode;

pub const MANIFESTS_DIR: &str = "manifests";
pub const CLUSTER_DIR: &str = "manifests/cluster";
pub const BOOTSTRAP_DIR: &str = "manifests/bootstrap";

pub fn master_dir(name: &str) -> String {
    format!("manifests/masters/{name}")
}

pub const KUBELET_DIR: &str = "manifests/kubelet";

/// The kubelet unit of a machine with this role.
pub fn kubelet_unit(role: Role) -> String {
    match KubeletMode::of(role) {
        KubeletMode::Node => format!("{KUBELET_DIR}/kubelet.service"),
        KubeletMode::Standalone => format!("{KUBELET_DIR}/bootstrap-kubelet.service"),
    }
}

/// The KubeletConfiguration of a machine with this role.
pub fn kubelet_config(role: Role) -> String {
    match KubeletMode::of(role) {
        KubeletMode::Node => format!("{KUBELET_DIR}/config.yaml"),
        KubeletMode::Standalone => format!("{KUBELET_DIR}/bootstrap-config.yaml"),
    }
}

/// Every manifest kindling generates.
pub struct Manifests;

impl Asset for Manifests {
    fn id(&self) -> &'static str {
        "manifests"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        &[
            Dependency::Asset("cluster-summary"),
            Dependency::Asset("bootstrap-token"),
        ]
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let d = ctx.description;
        let token = BootstrapTokenAsset::load(ctx)?;
        let expiration = BootstrapTokenAsset::expiration(ctx)?;
        let mut outputs = Vec::new();
        let mut put = |dir: &str, name: &str, text: String| {
            // The token Secret is a secret; everything else may be read by anyone.
            let mode = if text.contains(&token.secret) {
                Mode::Secret
            } else {
                Mode::Public
            };
            outputs.push(Output {
                path: format!("{dir}/{name}"),
                contents: text.into_bytes(),
                mode,
            });
        };
        let token_ref = BootstrapToken {
            id: &token.id,
            secret: &token.secret,
            expiration: &expiration,
        };
        for m in manifests::addons(d, &token_ref) {
            put(CLUSTER_DIR, &m.name, m.yaml);
        }
        if let Some(bootstrap) = d.inventory.with_role(Role::Bootstrap).next() {
            for m in manifests::bootstrap_control_plane(d, bootstrap) {
                put(BOOTSTRAP_DIR, &m.name, m.yaml);
            }
        }
        for master in d.inventory.with_role(Role::Master) {
            for m in manifests::master_control_plane(d, master) {
                put(&master_dir(&master.name), &m.name, m.yaml);
            }
        }
        // One kubelet unit and configuration per mode: they do not vary from machine to machine.
        for role in [Role::Bootstrap, Role::Worker] {
            let mode = KubeletMode::of(role);
            if d.inventory
                .machines
                .iter()
                .any(|m| KubeletMode::of(m.role) == mode)
            {
                for (path, text) in [
                    (
                        kubelet_unit(role),
                        manifests::kubelet_unit(
                            kindling_node::Node::new(d.inventory.provisioning.os),
                            mode,
                        ),
                    ),
                    (kubelet_config(role), manifests::kubelet_config(d, mode)),
                ] {
                    let name = path.rsplit('/').next().unwrap_or(&path).to_string();
                    put(KUBELET_DIR, &name, text);
                }
            }
        }
        Ok(outputs)
    }
}
