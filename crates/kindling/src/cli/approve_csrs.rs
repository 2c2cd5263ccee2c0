//! `kindling approve-csrs`: one pass over the pending CSRs, or a watch until interrupted. The
//! rules and the per-CSR log lines are kindling-cluster's (`csr`).

use anyhow::Context as _;
use kindling_cluster::csr::{self, Decision, Policy};

use crate::cli::ApproveCsrsArgs;
use crate::cli::create::load;
use crate::exit::{Code, Failure};

pub fn run(args: &ApproveCsrsArgs) -> Result<(), Failure> {
    let dir = &args.cluster.dir.dir;
    let description = load(dir)?;
    let policy = Policy::load(dir, &description).map_err(anyhow::Error::from)?;
    let kubeconfig = args.cluster.kubeconfig();
    let server = kindling_cluster::client::kubeconfig_server(&kubeconfig)
        .unwrap_or_else(|| description.api_url());
    // The API out of reach is said in the user's terms, with its own exit code.
    let api_failure = |e: kindling_cluster::ClusterError| match e.unreachable(&server) {
        Some(hint) => Failure {
            code: Code::ApiUnreachable,
            error: Some(anyhow::anyhow!("{hint}")),
        },
        None => anyhow::Error::from(e).into(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = kindling_cluster::connect(&kubeconfig)
            .await
            .context("run kindling create manifests first, or give --kubeconfig")
            .map_err(Failure::from)?;
        if args.watch {
            tracing::info!("watching CertificateSigningRequests; Ctrl-C stops");
            csr::watch(&client, &policy, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(api_failure)?;
            return Ok(());
        }
        let outcomes = csr::approve_pending(&client, &policy)
            .await
            .map_err(api_failure)?;
        let count = |f: fn(&Decision) -> bool| outcomes.iter().filter(|o| f(&o.decision)).count();
        println!(
            "{} approved, {} left pending, {} already decided",
            count(|d| matches!(d, Decision::Approve(_))),
            count(|d| matches!(d, Decision::Refuse(_))),
            count(|d| matches!(d, Decision::AlreadyDecided(_))),
        );
        Ok::<_, Failure>(())
    })?;
    Ok(())
}
