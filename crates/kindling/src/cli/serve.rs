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
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The approver runs beside the server rather than inside it: kindling-server stays free of
    // the Kubernetes client, and both crates stay below the binary.
    let approver = if args.approve_csrs {
        let dir = &args.dir.dir;
        let description = crate::cli::create::load(dir)?;
        let policy =
            kindling_cluster::csr::Policy::load(dir, &description).map_err(anyhow::Error::from)?;
        let kubeconfig = args
            .kubeconfig
            .clone()
            .unwrap_or_else(|| dir.join(kindling_assets::pki::ADMIN_KUBECONFIG));
        Some(runtime.spawn(async move {
            kindling_cluster::csr::approve_until_stopped(
                &kubeconfig,
                policy,
                std::future::pending(),
            )
            .await;
        }))
    } else {
        None
    };
    let served = runtime.block_on(kindling_server::serve(options, shutdown_signal()));
    if let Some(approver) = approver {
        approver.abort();
    }
    served.with_context(|| format!("serving {}", args.dir.dir.display()))?;
    Ok(())
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
