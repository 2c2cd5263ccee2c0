//! `kindling remove machine`: kindling-fleet's removal (`remove`), then the configs and infra
//! rendered again from the inventory without the machine.

use std::time::Duration;

use anyhow::Context as _;
use kindling_assets::Target;
use kindling_config::ClusterDescription;
use kindling_fleet::remove::{self, RemoveRequest};

use crate::cli::create::{assets, infra, load};
use crate::cli::{AssetArgs, DirArgs, InfraArgs, Phase, RemoveMachineArgs};
use crate::exit::{Code, Failure};

pub fn machine(args: &RemoveMachineArgs) -> Result<(), Failure> {
    let dir = &args.cluster.dir.dir;
    let description = load(dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let say = |line: &str| println!("{line}");
    let request = RemoveRequest {
        dir: dir.clone(),
        name: args.name.clone(),
        force: args.force,
        stall: Duration::from_secs(args.stall),
        poll: Duration::from_secs(args.poll.max(1)),
        say: &say,
    };
    let kubeconfig = args.cluster.kubeconfig();
    let removed = runtime.block_on(async {
        let client = kindling_cluster::connect(&kubeconfig)
            .await
            .context("run kindling create manifests first, or give --kubeconfig")?;
        remove::run(&request, &description, &client)
            .await
            .map_err(|e| match e {
                remove::RemoveError::Unknown { .. } | remove::RemoveError::Refused(_) => Failure {
                    code: Code::Usage,
                    error: Some(anyhow::anyhow!(e)),
                },
                e => anyhow::Error::from(e).into(),
            })
    })?;

    // Below the declared replicas (--force), the description is not valid until the
    // replacement is added: rendering waits for it.
    if let Err(kindling_config::LoadError::Invalid(findings)) = ClusterDescription::load(dir) {
        remove::finish(dir, &removed.machine).map_err(anyhow::Error::from)?;
        for finding in findings
            .iter()
            .filter(|f| f.severity == kindling_config::Severity::Error)
        {
            println!("{finding}");
        }
        println!(
            "{} removed. inventory.yaml needs its replacement now (README: Replacing a failed \
             master): add it, then run kindling create ignition-configs and kindling create infra \
             --dir {}",
            removed.machine,
            dir.display()
        );
        return Ok(());
    }
    // What depends on the inventory, without the machine.
    assets(&AssetArgs::defaults(dir.clone()), Target::IgnitionConfigs)?;
    let choices = kindling_infra::Choices::remembered(dir).unwrap_or_default();
    infra(&InfraArgs {
        dir: DirArgs { dir: dir.clone() },
        phase: match choices.phase {
            kindling_infra::Phase::Install => Phase::Install,
            kindling_infra::Phase::BootstrapRemoved => Phase::BootstrapRemoved,
        },
        mcs_proxy_protocol: choices.mcs_proxy_protocol,
    })?;
    remove::finish(dir, &removed.machine).map_err(anyhow::Error::from)?;
    println!(
        "{} removed; put the new infra/ files in place (DNS, load balancer, DHCP), and run \
         kindling update --dir {} to move the pools to their new renderings",
        removed.machine,
        dir.display()
    );
    Ok(())
}
