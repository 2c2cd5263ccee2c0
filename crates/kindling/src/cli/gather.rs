//! `kindling gather`: the debugging tarball (see kindling-cluster's `gather` for what goes in
//! and what never does).

use anyhow::Context as _;
use kindling_cluster::gather::{GatherRequest, gather};

use crate::cli::GatherArgs;
use crate::exit::Failure;

pub fn run(args: &GatherArgs) -> Result<(), Failure> {
    let dir = &args.cluster.dir.dir;
    let stamp = kindling_assets::file_stamp(time::OffsetDateTime::now_utc());
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| dir.join(format!("gather-{stamp}.tar.gz")));
    let kubeconfig = args.cluster.kubeconfig();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let gathered = runtime
        .block_on(async {
            let client = match kindling_cluster::connect(&kubeconfig).await {
                Ok(client) => Some(client),
                Err(e) => {
                    tracing::warn!("no cluster state: {e}");
                    None
                }
            };
            gather(GatherRequest {
                dir,
                output,
                client,
                version: env!("CARGO_PKG_VERSION"),
                stamp,
            })
            .await
        })
        .map_err(anyhow::Error::from)?;
    for note in &gathered.notes {
        tracing::warn!("not collected: {note}");
    }
    for member in &gathered.members {
        println!("  {member}");
    }
    println!("wrote {}", gathered.path.display());
    Ok(())
}
