//! `kindling update`: the rolling update of one pool or every pool. The work is kindling-fleet's
//! (`update`); this reads the arguments, keeps the policy they set, and prints.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use kindling_assets::renderings::PoolState;
use kindling_fleet::slots::Home;
use kindling_fleet::update::{self, Finished, UpdateRequest};
use kindling_fleet::window::Window;
use kindling_store::election::Election;

use crate::cli::UpdateArgs;
use crate::cli::create::load;
use crate::exit::{Code, Failure};

/// The pools to update, in order: workers first, the masters last.
fn pools<'d>(
    args: &UpdateArgs,
    description: &'d kindling_config::ClusterDescription,
) -> Result<Vec<(&'static str, Vec<&'d str>)>, Failure> {
    let mut all = kindling_assets::ignition::pool_members(description);
    all.sort_by_key(|(pool, _)| *pool == "master");
    match &args.pool {
        None => Ok(all),
        Some(wanted) => {
            let known: Vec<&str> = all.iter().map(|(p, _)| *p).collect();
            all.retain(|(pool, _)| pool == wanted);
            if all.is_empty() {
                return Err(Failure {
                    code: Code::Usage,
                    error: Some(anyhow!(
                        "--pool {wanted}: the pools are {}",
                        known.join(", ")
                    )),
                });
            }
            Ok(all)
        }
    }
}

pub fn run(args: &UpdateArgs) -> Result<(), Failure> {
    let dir = &args.cluster.dir.dir;
    let description = load(dir)?;
    let pools = pools(args, &description)?;
    let usage = |e: String| Failure {
        code: Code::Usage,
        error: Some(anyhow!(e)),
    };
    for w in &args.window {
        Window::parse(w).map_err(|e| usage(e.to_string()))?;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let home = match &args.store {
        Some(address) => Home::Store(Box::new(crate::cli::store::open(address, &args.etcd_tls)?)),
        None => Home::Dir(dir.clone()),
    };
    if args.pause || args.resume {
        for (pool, _) in &pools {
            if runtime
                .block_on(update::set_paused(&home, pool, args.pause))
                .map_err(anyhow::Error::from)?
            {
                let what = if args.pause { "paused" } else { "resumed" };
                println!("pool {pool}: update {what}");
            }
        }
        if args.pause {
            return Ok(());
        }
    }
    // The policy is kept, for later updates and for FleetLock.
    if args.max_unavailable.is_some() || !args.window.is_empty() || args.any_time {
        for (pool, _) in &pools {
            let policy = home.change(pool, |slots| {
                if let Some(max) = args.max_unavailable {
                    slots.fleet.policy.max_unavailable = Some(max.to_string());
                }
                if !args.window.is_empty() || args.any_time {
                    slots.fleet.policy.windows = args.window.clone();
                }
                slots.save()
            });
            runtime.block_on(policy).map_err(anyhow::Error::from)?;
        }
    }

    let etcd = update::etcd_health(dir, &description);
    runtime.block_on(async {
        // With the store, one kindling update at a time moves the pools, wherever it runs: it
        // holds the update lease, and stops the moment it cannot renew it.
        let mut leadership = match &home {
            Home::Store(store) => {
                let me = format!(
                    "{} (pid {})",
                    kindling_store::hostname(),
                    std::process::id()
                );
                let election = Election::new((**store).clone(), "update", &me);
                Some(
                    election
                        .lead_within(LEASE_WAIT)
                        .await
                        .map_err(anyhow::Error::from)?,
                )
            }
            Home::Dir(_) => None,
        };
        let updated = match &mut leadership {
            Some(leadership) => {
                let held = leadership.held();
                tokio::select! {
                    updated = update_pools(args, &pools, &home, Some(held), &etcd) => updated,
                    () = leadership.lost() => Err(anyhow!(
                        "this kindling update lost its lease in the store (etcd unreachable?); \
                         run it again to go on from where it was"
                    )
                    .into()),
                }
            }
            None => update_pools(args, &pools, &home, None, &etcd).await,
        };
        if let Some(leadership) = leadership {
            leadership.resign().await;
        }
        updated
    })
}

/// How long `kindling update --store` waits for another one's lease: long enough for that of
/// one that died to expire.
const LEASE_WAIT: Duration = Duration::from_secs(10);

/// Runs the update of each pool in turn.
async fn update_pools(
    args: &UpdateArgs,
    pools: &[(&'static str, Vec<&str>)],
    home: &Home,
    held: Option<kindling_etcd::Compare>,
    etcd: &dyn Fn() -> Result<(), String>,
) -> Result<(), Failure> {
    let dir = &args.cluster.dir.dir;
    let kubeconfig = args.cluster.kubeconfig();
    let client = kindling_cluster::connect(&kubeconfig)
        .await
        .context("run kindling create manifests first, or give --kubeconfig")?;
    for (pool, members) in pools {
        let to = if args.rollback {
            let state = PoolState::load(dir, pool).map_err(anyhow::Error::from)?;
            Some(state.previous().map_err(anyhow::Error::from)?.to_string())
        } else {
            args.to.clone()
        };
        let say = |line: &str| println!("{line}");
        let request = UpdateRequest {
            dir: dir.clone(),
            slots: home.clone(),
            shared: held.clone().map(|held| update::Shared {
                held,
                push: kindling_store::PushOptions {
                    blobs_to: None,
                    pinned: &crate::cli::store::PINNED,
                    replace: false,
                },
            }),
            pool: pool.to_string(),
            members: members.iter().map(|m| m.to_string()).collect(),
            masters: *pool == "master",
            to,
            revert_drift: args.revert_drift,
            stall: Duration::from_secs(args.stall),
            poll: Duration::from_secs(args.poll.max(1)),
            stop_outside_window: args.stop_outside_window,
            etcd_healthy: Some(etcd),
            say: &say,
        };
        match update::run(&request, &client)
            .await
            .map_err(anyhow::Error::from)?
        {
            Finished::Done { .. } => {}
            Finished::Waiting { .. } => return Ok(()),
            Finished::Halted(halt) => {
                return Err(Failure {
                    code: Code::UpdateHalted,
                    error: Some(anyhow!("{halt}")),
                });
            }
        }
    }
    Ok(())
}
