//! The files of `infra/` as assets of kindling's asset engine: regenerated when
//! install-config.yaml or inventory.yaml change, kept when the user edited them, written
//! atomically.
//!
//! The load balancer also depends on the `--phase` and on who makes the Ignition configs
//! ([`ConfigMaker`]), which are no files: they are its [`Asset::parameters`], which the engine
//! records with the input digest, so that switching the phase rewrites `haproxy.cfg`.

use kindling_assets::companion::config_maker;
use kindling_assets::{Asset, AssetError, Context, Dependency, Mode, Output};
use kindling_config::{INSTALL_CONFIG_FILE, INVENTORY_FILE};

use crate::site::InfraError;
use crate::{Choices, ConfigMaker, dhcp, dns, haproxy, ipxe, readme};

const INPUTS: &[Dependency] = &[
    Dependency::Input(INSTALL_CONFIG_FILE),
    Dependency::Input(INVENTORY_FILE),
];

/// The infra assets for `choices`, in the order the engine runs them.
pub fn assets(choices: Choices) -> Vec<Box<dyn Asset>> {
    vec![
        Box::new(Zones),
        Box::new(LoadBalancer { choices }),
        Box::new(Dhcp),
        Box::new(BootScript),
        Box::new(Readme),
    ]
}

fn public(path: impl Into<String>, text: String) -> Output {
    Output {
        path: path.into(),
        contents: text.into_bytes(),
        mode: Mode::Public,
    }
}

fn failed(asset: &'static str) -> impl Fn(InfraError) -> AssetError {
    move |e| AssetError::Generate {
        asset,
        message: e.to_string(),
    }
}

fn maker_name(maker: ConfigMaker) -> &'static str {
    match maker {
        ConfigMaker::Kindling => "kindling",
        ConfigMaker::OpenShiftInstall => "openshift-install",
    }
}

/// `infra/named/`: the zone files and the `named.conf` fragment.
pub struct Zones;

impl Asset for Zones {
    fn id(&self) -> &'static str {
        "infra-dns"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        INPUTS
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let d = ctx.description;
        let zones = dns::zones(d);
        let servers = dns::name_servers(d);
        let domain = d.cluster_domain();
        let today = ctx.settings.now.date();
        let mut outputs = Vec::new();
        for zone in &zones {
            let path = zone.path();
            // The serial continues from the file on disk; a missing or unreadable one starts anew.
            let previous = std::fs::read_to_string(ctx.dir.join(&path)).ok();
            let render = |serial| dns::render_zone(zone, &servers, &domain, serial);
            let serial = dns::next_serial(previous.as_deref(), today, render);
            outputs.push(public(path, render(serial)));
        }
        outputs.push(public(dns::NAMED_CONF, dns::named_conf(d, &zones)));
        Ok(outputs)
    }
}

/// `infra/haproxy.cfg` for a phase.
pub struct LoadBalancer {
    pub choices: Choices,
}

impl Asset for LoadBalancer {
    fn id(&self) -> &'static str {
        "infra-haproxy"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        INPUTS
    }

    fn parameters(&self, ctx: &Context<'_>) -> Result<String, AssetError> {
        let mut parameters = format!(
            "phase={} configs={}",
            self.choices.phase.as_str(),
            maker_name(config_maker(ctx.dir))
        );
        if self.choices.mcs_proxy_protocol {
            parameters.push_str(" mcs-proxy-protocol");
        }
        Ok(parameters)
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let maker = config_maker(ctx.dir);
        let plan =
            haproxy::plan(ctx.description, self.choices, maker).map_err(failed(self.id()))?;
        let text = haproxy::render(ctx.description, &plan, self.choices.phase, maker);
        Ok(vec![public(haproxy::HAPROXY_CFG, text)])
    }
}

/// `infra/dnsmasq.conf`, `infra/dhcpd.conf`, `infra/kea-dhcp4.json`.
pub struct Dhcp;

impl Asset for Dhcp {
    fn id(&self) -> &'static str {
        "infra-dhcp"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        INPUTS
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let plan = dhcp::plan(ctx.description).map_err(failed(self.id()))?;
        Ok(vec![
            public(dhcp::DNSMASQ_CONF, dhcp::dnsmasq(&plan)),
            public(dhcp::DHCPD_CONF, dhcp::dhcpd(&plan)),
            public(dhcp::KEA_DHCP4, dhcp::kea(&plan)),
        ])
    }
}

/// `infra/boot.ipxe`.
pub struct BootScript;

impl Asset for BootScript {
    fn id(&self) -> &'static str {
        "infra-ipxe"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        INPUTS
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let script = ipxe::boot_script(ctx.description).map_err(failed(self.id()))?;
        Ok(vec![public(ipxe::BOOT_IPXE, script)])
    }
}

/// `infra/README.md`.
pub struct Readme;

impl Asset for Readme {
    fn id(&self) -> &'static str {
        "infra-readme"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        INPUTS
    }

    fn parameters(&self, ctx: &Context<'_>) -> Result<String, AssetError> {
        Ok(format!("configs={}", maker_name(config_maker(ctx.dir))))
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let maker = config_maker(ctx.dir);
        let text = readme::render(ctx.description, maker).map_err(failed(self.id()))?;
        Ok(vec![public(readme::README, text)])
    }
}
