//! What `kindling status` and `kindling certs` say, kept current for the machine list and the
//! dashboard: each machine's rendering (current and desired), drift, readiness and first
//! certificate expiry, and every credential with its expiry. It is read in the background every
//! [`EVERY`] while someone looks (see [`WATCHED`]): the asset directory's certificates, and the
//! cluster's Nodes and kubelet certificates when its API answers; so no request waits on the
//! API, and nothing is read for nobody.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kindling_fleet::certs::{self, Credential};
use kindling_fleet::status::{self, MachineStatus};
use time::OffsetDateTime;

use crate::AppState;

/// How often the view is read again.
pub const EVERY: Duration = Duration::from_secs(30);

/// How long one read of the cluster's API may take.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// One reading.
#[derive(Debug, Clone)]
pub struct FleetView {
    /// By machine name.
    pub machines: HashMap<String, MachineStatus>,
    /// Soonest expiry first.
    pub certificates: Vec<Credential>,
    pub read_at: OffsetDateTime,
    /// Why the cluster's API was not read, when it was not (the rest is the asset directory's).
    pub api_trouble: Option<String>,
}

/// How long after the last read of the machine list (or the certificates) the view is still kept
/// current: nobody looking, nothing is read.
pub const WATCHED: Duration = Duration::from_secs(120);

/// Reads the view every [`EVERY`] while someone looks (see [`AppState::fleet_view`]), for as
/// long as the server runs.
pub async fn follow(state: Arc<AppState>) {
    loop {
        if state.fleet_watched(WATCHED) {
            match read(&state).await {
                Ok(view) => state.set_fleet_view(view),
                Err(e) => tracing::warn!("reading the machines' status for the dashboard: {e}"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = state.fleet_wanted.notified() => {}
        }
    }
}

/// One reading now.
pub async fn read(state: &AppState) -> Result<FleetView, String> {
    let catalog = state.catalog().map_err(|f| f.reason)?;
    let local = {
        let catalog = catalog.clone();
        tokio::task::spawn_blocking(move || {
            // The catalog holds the description with its machines moved out: put back.
            let mut description = catalog.description.clone();
            description.inventory.machines =
                catalog.machines.iter().map(|e| e.machine.clone()).collect();
            let credentials =
                certs::of_description(&catalog.dir, &description).map_err(|e| e.to_string())?;
            let machines = status::with_credentials(&catalog.dir, &description, &credentials);
            Ok::<_, String>((machines, credentials))
        })
    }
    .await
    .map_err(|e| e.to_string())?;
    let (mut machines, mut credentials) = local?;

    let kubeconfig = catalog.dir.join("auth/kubeconfig");
    let api_trouble = if kubeconfig.exists() {
        let asked = async {
            let client = kindling_cluster::connect(&kubeconfig)
                .await
                .map_err(|e| e.to_string())?;
            status::from_cluster(&client, &mut machines)
                .await
                .map_err(|e| e.to_string())?;
            certs::kubelets(&client).await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(API_TIMEOUT, asked).await {
            Ok(Ok(kubelets)) => {
                credentials.extend(kubelets);
                None
            }
            Ok(Err(e)) => Some(e),
            Err(_) => Some(format!(
                "the cluster's API did not answer within {}s",
                API_TIMEOUT.as_secs()
            )),
        }
    } else {
        Some("no auth/kubeconfig in the asset directory yet".into())
    };
    credentials.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.source.cmp(&b.source)));
    Ok(FleetView {
        machines: machines.into_iter().map(|m| (m.name.clone(), m)).collect(),
        certificates: credentials,
        read_at: OffsetDateTime::now_utc(),
        api_trouble,
    })
}

/// The join of machine `name` as the cluster records it (see [`kindling_cluster::timeline`]), as
/// events of its timeline; or why the API was not read.
pub async fn join_steps(catalog: &crate::Catalog, name: &str) -> Result<Vec<crate::Event>, String> {
    let kubeconfig = catalog.dir.join("auth/kubeconfig");
    if !kubeconfig.exists() {
        return Err("no auth/kubeconfig in the asset directory yet".into());
    }
    let asked = async {
        let client = kindling_cluster::connect(&kubeconfig)
            .await
            .map_err(|e| e.to_string())?;
        kindling_cluster::timeline::of_node(&client, name)
            .await
            .map_err(|e| e.to_string())
    };
    let steps = tokio::time::timeout(API_TIMEOUT / 2, asked)
        .await
        .map_err(|_| {
            format!(
                "the cluster's API did not answer within {}s",
                (API_TIMEOUT / 2).as_secs()
            )
        })??;
    Ok(steps
        .into_iter()
        .map(|step| crate::Event {
            time: step.time,
            machine: Some(name.to_string()),
            stage: step.stage.to_string(),
            status: None,
            detail: step.detail,
        })
        .collect())
}
