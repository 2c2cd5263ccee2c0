//! The infrastructure around a cluster, written from its description: what a UPI runbook has
//! people write by hand, made so that its known mistakes cannot be written.
//!
//! `kindling create infra` writes `infra/`:
//! - `named/`: the forward zone of the cluster domain, reverse zones of the machine network cut
//!   on octet boundaries, and a `named.conf` fragment ([`dns`]);
//! - `haproxy.cfg`: the API, machine config server and ingress load balancer ([`haproxy`]);
//! - `dnsmasq.conf`, `dhcpd.conf`, `kea-dhcp4.json`: DHCP with PXE chain-loading into iPXE
//!   and a fixed address for every MAC, in three dialects ([`dhcp`]);
//! - `boot.ipxe`: the first iPXE script, for sites that serve it from elsewhere ([`ipxe`]);
//! - `README.md`: which file goes on which host, and the ports to open ([`readme`]).
//!
//! [`doctor`] checks the running environment (DNS, load balancer, provisioning server,
//! certificates) against the description.
//!
//! Every renderer is a pure function of the description (and the [`Phase`], and the previous
//! zone serial). [`asset`] makes them assets of kindling's asset engine, so user edits are kept
//! and writes are atomic; [`create`] runs them.

pub mod asset;
pub mod dhcp;
pub mod dns;
pub mod doctor;
pub mod haproxy;
pub mod ipxe;
pub mod readme;
pub mod site;

use std::path::Path;

use kindling_assets::{AssetError, AssetOutcome, Engine, INPUTS, Settings, Storage};
use kindling_config::ClusterDescription;

pub use kindling_assets::companion::ConfigMaker;
pub use site::{InfraError, check};

/// Where `create infra` writes, relative to the asset directory.
pub const INFRA_DIR: &str = "infra";

/// Where the cluster is in its install, as far as the load balancer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The bootstrap machine serves the API (and, in OpenShift companion mode, the machine
    /// config server) next to the masters.
    #[default]
    Install,
    /// `kindling wait-for bootstrap-complete` said the bootstrap machine may go: it is out of
    /// every backend.
    BootstrapRemoved,
}

impl Phase {
    /// The name on the command line and in generated files.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Install => "install",
            Phase::BootstrapRemoved => "bootstrap-removed",
        }
    }
}

/// What `create infra` was asked last, so that what renders infra/ again (`remove machine`)
/// asks the same.
pub const CHOICES_FILE: &str = ".kindling/infra-choices.json";

/// What `create infra` is asked for besides the description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Choices {
    pub phase: Phase,
    /// The load balancer puts a PROXY protocol v2 header in front of each machine config server
    /// connection, so that `kindling serve --mcs-auth=source-ip --proxy-from <LB>` knows the
    /// machine by its address.
    pub mcs_proxy_protocol: bool,
}

impl Choices {
    /// The choices `create infra` last made in `dir`, if it ran.
    pub fn remembered(dir: &std::path::Path) -> Option<Choices> {
        let bytes = std::fs::read(dir.join(CHOICES_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps these choices for [`Choices::remembered`].
    pub fn remember(self, dir: &std::path::Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(&self).expect("choices serialize");
        kindling_assets::AtomicFiles.write(
            &dir.join(CHOICES_FILE),
            &json,
            kindling_assets::Mode::Public,
        )
    }
}

/// Something the user should know about the configs written, though nothing is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Whether it is worth a warning rather than information.
    pub warning: bool,
    pub text: String,
}

/// What the user should know about the configs written for `d` in `dir`.
pub fn notes(dir: &Path, d: &ClusterDescription) -> Vec<Note> {
    let lb = &d.inventory.load_balancer;
    let mut notes = Vec::new();
    if lb.api_int_vip == lb.api_vip || lb.api_int_vip == lb.ingress_vip {
        // openshift-install's machine config server gives any client the pool configs, so the
        // address matters more there than in front of kindling's, which asks for each
        // machine's token.
        let (warning, who) = match kindling_assets::companion::config_maker(dir) {
            ConfigMaker::OpenShiftInstall => (
                true,
                "openshift-install's machine config server answers anyone who reaches it",
            ),
            ConfigMaker::Kindling => (
                false,
                "kindling's machine config server asks for each machine's token, but",
            ),
        };
        notes.push(Note {
            warning,
            text: format!(
                "inventory.yaml loadBalancer.apiIntVIP {} is also the api or ingress VIP, so haproxy.cfg binds the machine config server (22623) there and lets only the machine network connect; {who} an api-int address of its own (loadBalancer.apiIntVIP) keeps 22623 off an address outside clients use",
                lb.api_int_vip
            ),
        });
    }
    notes
}

/// Why `create infra` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The description is valid, but the infrastructure cannot be written from it; every
    /// problem is listed, each with its fix.
    #[error("the description cannot be made into infrastructure configs ({} problem(s))", .0.len())]
    Unsuitable(Vec<InfraError>),
    #[error(transparent)]
    Asset(#[from] AssetError),
}

/// Brings `infra/` up to date in `dir` for `choices`.
pub fn create(
    dir: &Path,
    description: &ClusterDescription,
    choices: Choices,
    settings: &Settings,
    storage: &dyn Storage,
) -> Result<Vec<AssetOutcome>, CreateError> {
    check(description).map_err(CreateError::Unsuitable)?;
    let assets = asset::assets(choices);
    let refs: Vec<&dyn kindling_assets::Asset> = assets.iter().map(|a| a.as_ref()).collect();
    Ok(Engine::new(dir, storage, INPUTS).run(description, &refs, settings)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use kindling_config::{ClusterDescription, Source};

    fn parse(ic: &str, inv: &str) -> ClusterDescription {
        ClusterDescription::parse(
            Source {
                name: "install-config.yaml",
                text: ic,
            },
            Source {
                name: "inventory.yaml",
                text: inv,
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
        .description
    }

    pub const DEMO_INV: &str = include_str!("../../../examples/demo/inventory.yaml");
    pub const DEMO_IC: &str = include_str!("../../../examples/demo/install-config.yaml");

    /// `examples/demo`: bootstrap, 3 masters, 3 workers on 192.168.126.0/24; api = api-int VIP.
    pub fn demo() -> ClusterDescription {
        parse(DEMO_IC, DEMO_INV)
    }

    /// The demo with its text edited, e.g. another machine network.
    pub fn demo_with(
        ic: impl Fn(&str) -> String,
        inv: impl Fn(&str) -> String,
    ) -> ClusterDescription {
        parse(&ic(DEMO_IC), &inv(DEMO_INV))
    }

    /// The OCP 4.5 UPI runbook: unchanged install-config, infra machine, api VIP = ingress VIP.
    pub fn upi() -> ClusterDescription {
        parse(
            include_str!("../../../tests/fixtures/valid/openshift-4.5-upi/install-config.yaml"),
            include_str!("../../../tests/fixtures/valid/openshift-4.5-upi/inventory.yaml"),
        )
    }
}
