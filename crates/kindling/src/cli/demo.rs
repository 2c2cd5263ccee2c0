//! `kindling demo`: the built-in example cluster, end to end as far as kindling goes today.

use std::path::Path;

use anyhow::Context;
use kindling_assets::{AtomicFiles, Mode, Storage};
use kindling_config::{INSTALL_CONFIG_FILE, INVENTORY_FILE};

use crate::cli::{AssetArgs, DemoArgs, DirArgs, InfraArgs, Phase};
use crate::exit::Failure;
use kindling_assets::Target;

/// A bootstrap machine, 3 masters and 3 workers on one /24, with VIPs.
const INSTALL_CONFIG: &str = include_str!("../../../../examples/demo/install-config.yaml");
const INVENTORY: &str = include_str!("../../../../examples/demo/inventory.yaml");

pub fn run(args: &DemoArgs) -> Result<(), Failure> {
    let dir = &args.dir;
    for (name, text) in [
        (INSTALL_CONFIG_FILE, INSTALL_CONFIG),
        (INVENTORY_FILE, INVENTORY),
    ] {
        write_input(dir, name, text)?;
    }
    println!("kindling create manifests --dir {}", dir.display());
    let args = AssetArgs::defaults(dir.clone());
    super::create::assets(&args, Target::Manifests)?;
    println!("kindling create infra --dir {}", dir.display());
    super::create::infra(&InfraArgs {
        dir: DirArgs { dir: dir.clone() },
        phase: Phase::Install,
        mcs_proxy_protocol: false,
    })?;
    println!(
        "The demo cluster's manifests, PKI and infrastructure configs are in {}.",
        dir.display()
    );
    // Ignition configs pin every binary and image the machines pull from the provisioning
    // host, so they wait for the mirror; nothing here can fetch the kubelet.
    let description = super::create::load(dir)?;
    let (files, images) =
        kindling_assets::payload::missing(dir, &description).map_err(|e| anyhow::anyhow!(e))?;
    if files.is_empty() && images.is_empty() {
        println!("kindling create ignition-configs --dir {}", dir.display());
        super::create::assets(&args, Target::IgnitionConfigs)?;
        println!(
            "Next: kindling serve --dir {}   (network boot and the machine config server)",
            dir.display()
        );
    } else {
        println!(
            "Next: the machines pull {} images and {} node binaries (the kubelet, crictl, CNI plugins) from kindling serve, not the internet. Put them in {d}/mirror with kindling mirror --dir {d} --from-registry --from-release (on a host that is online) or --from-dir DIR --from-archive ARCHIVE (from files you brought), then run kindling create ignition-configs --dir {d} and kindling serve --dir {d}",
            images.len(),
            files.len(),
            d = dir.display(),
        );
    }
    Ok(())
}

/// Writes an example input, but never over a file the user has changed.
fn write_input(dir: &Path, name: &str, text: &str) -> Result<(), Failure> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == text => {}
        Ok(_) => tracing::warn!("{} differs from the example; kept as it is", path.display()),
        Err(_) => {
            AtomicFiles
                .write(&path, text.as_bytes(), Mode::Public)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
