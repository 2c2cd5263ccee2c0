//! `kindling serve`.

use anyhow::Context;
use kindling_server::{McsAuth, ServeOptions};

use crate::cli::{McsAuthArg, ServeArgs};
use crate::exit::Failure;

pub fn run(args: &ServeArgs) -> Result<(), Failure> {
    let options = ServeOptions {
        dir: (args.data_path.is_none()
            || args.dir.dir.join(kindling_config::INVENTORY_FILE).exists())
        .then(|| args.dir.dir.clone()),
        data_path: args.data_path.clone(),
        http: args.http,
        mcs: args.mcs,
        mcs_auth: match args.mcs_auth {
            McsAuthArg::Token => McsAuth::Token,
            McsAuthArg::SourceIp => McsAuth::SourceIp,
            McsAuthArg::None => McsAuth::None,
        },
        proxy_from: args.proxy_from.clone(),
        binary: std::env::current_exe()
            .context("finding the kindling binary to serve at /assets/kindling")?,
        store: match &args.store {
            Some(address) => Some(kindling_server::StoreServing {
                store: crate::cli::store::open(address, &args.etcd_tls)?,
                cache: args
                    .cache_dir
                    .clone()
                    .unwrap_or_else(|| args.dir.dir.join(".kindling/store")),
                sources: kindling_store::BlobSources {
                    dirs: args.blobs_from.clone(),
                },
            }),
            None => None,
        },
        discover: args.discover,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The approver runs beside the server rather than inside it: kindling-server stays free of
    // the Kubernetes client, and both crates stay below the binary.
    let approver = match (&options.store, args.approve_csrs) {
        (_, false) => None,
        (None, true) => {
            let dir = args.dir.dir.clone();
            let (kubeconfig, policy) = approver(&dir, args.kubeconfig.as_deref())?;
            Some(runtime.spawn(async move {
                kindling_cluster::csr::approve_until_stopped(
                    &kubeconfig,
                    policy,
                    std::future::pending(),
                )
                .await;
            }))
        }
        // Several replicas: the one that leads approves, from the revision it serves.
        (Some(serving), true) => {
            let me = kindling_server::replica_name(args.http);
            let election =
                kindling_store::election::Election::new(serving.store.clone(), "csr-approver", &me);
            let cache = kindling_store::Cache::open(&serving.cache).map_err(anyhow::Error::from)?;
            let kubeconfig = args.kubeconfig.clone();
            Some(runtime.spawn(async move {
                loop {
                    let mut leading = election.lead().await;
                    let Some((_, dir)) = cache.newest() else {
                        leading.resign().await;
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    };
                    match approver(&dir, kubeconfig.as_deref()) {
                        Ok((kubeconfig, policy)) => {
                            kindling_cluster::csr::approve_until_stopped(
                                &kubeconfig,
                                policy,
                                leading.lost(),
                            )
                            .await;
                        }
                        Err(e) => {
                            tracing::error!("approving CSRs: {e:#}");
                            leading.lost().await;
                        }
                    }
                }
            }))
        }
    };
    // What is served, as the user gave it: an error names the directory it is about.
    let what = match (&options.dir, &options.data_path) {
        (Some(dir), Some(data)) => format!(
            "{} and the matchbox data directory {}",
            dir.display(),
            data.display()
        ),
        (None, Some(data)) => format!("the matchbox data directory {}", data.display()),
        (Some(dir), None) => dir.display().to_string(),
        (None, None) => args.dir.dir.display().to_string(),
    };
    let served = runtime.block_on(kindling_server::serve(options, shutdown_signal()));
    if let Some(approver) = approver {
        approver.abort();
    }
    served.with_context(|| format!("serving {what}"))?;
    Ok(())
}

/// The admin kubeconfig (`--kubeconfig`, else the asset directory's) and the approval policy
/// of the asset directory `dir`.
fn approver(
    dir: &std::path::Path,
    kubeconfig: Option<&std::path::Path>,
) -> anyhow::Result<(std::path::PathBuf, kindling_cluster::csr::Policy)> {
    let description = crate::cli::create::load(dir).map_err(|f| {
        f.error
            .unwrap_or_else(|| anyhow::anyhow!("{} is not a valid asset directory", dir.display()))
    })?;
    let policy = kindling_cluster::csr::Policy::load(dir, &description)?;
    let kubeconfig = kubeconfig
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| dir.join(kindling_assets::pki::ADMIN_KUBECONFIG));
    Ok((kubeconfig, policy))
}

/// SIGTERM or Ctrl-C: stop taking requests, finish the ones in flight.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = interrupt => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = interrupt.await;
        }
    }
    tracing::info!("shutting down");
}
