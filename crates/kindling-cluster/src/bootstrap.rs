//! The bootstrap record: ConfigMap `kube-system/bootstrap`, the contract between
//! `kindling agent bootstrap` (which writes it) and `kindling wait-for bootstrap-complete` (which
//! reads it).
//!
//! Its `data` keys, all strings:
//!
//! | key | written by the agent | read by wait-for |
//! |---|---|---|
//! | `status` | `progressing` while stages run, `complete` once the bootstrap etcd member is removed, `failed` when a stage gave up | `complete` ends the wait (with the next key); `failed` ends it with exit 5 |
//! | `stage` | the stage running or last run (e.g. `apply-manifests`, `wait-masters`, `remove-bootstrap-member`) | named in progress lines and in a timeout's message |
//! | `message` | a human sentence: what the stage waits for, or why it failed | shown as is |
//! | `etcdMembers` | the etcd member names at the last check, comma-separated (`bs,master0,master1`) | shown; its change counts as progress |
//! | `bootstrapMemberRemoved` | `"true"` once the bootstrap machine's etcd member is gone | `complete` counts only with this `"true"` |
//! | `updated` | RFC 3339 time of the write | shown |
//!
//! The agent writes the whole record with server-side apply (field manager
//! [`FIELD_MANAGER`]) through [`write`]; any change to it counts as progress for wait-for's
//! deadline. Unknown keys are ignored, so the agent may add more.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::client::ClusterError;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "bootstrap";
pub const STATUS: &str = "status";
pub const STAGE: &str = "stage";
pub const MESSAGE: &str = "message";
pub const ETCD_MEMBERS: &str = "etcdMembers";
pub const BOOTSTRAP_MEMBER_REMOVED: &str = "bootstrapMemberRemoved";
pub const UPDATED: &str = "updated";
/// The field manager of the agent's writes.
pub const FIELD_MANAGER: &str = "kindling-agent";

/// Where the bootstrap stands, as the agent says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BootstrapStatus {
    #[default]
    Progressing,
    Complete,
    Failed,
    /// A value this kindling does not know (a newer agent?), kept as written.
    Other(String),
}

impl BootstrapStatus {
    pub fn as_str(&self) -> &str {
        match self {
            BootstrapStatus::Progressing => "progressing",
            BootstrapStatus::Complete => "complete",
            BootstrapStatus::Failed => "failed",
            BootstrapStatus::Other(s) => s,
        }
    }

    fn parse(s: &str) -> BootstrapStatus {
        match s {
            "progressing" => BootstrapStatus::Progressing,
            "complete" => BootstrapStatus::Complete,
            "failed" => BootstrapStatus::Failed,
            other => BootstrapStatus::Other(other.to_string()),
        }
    }
}

/// The contents of ConfigMap `kube-system/bootstrap` (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootstrapRecord {
    pub status: BootstrapStatus,
    pub stage: String,
    pub message: String,
    pub etcd_members: Vec<String>,
    pub bootstrap_member_removed: bool,
    /// RFC 3339; [`write`] fills it in when empty.
    pub updated: String,
}

impl BootstrapRecord {
    /// Reads the record from a ConfigMap's data; missing keys are empty.
    pub fn from_data(data: &BTreeMap<String, String>) -> BootstrapRecord {
        let get = |key: &str| {
            data.get(key)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        BootstrapRecord {
            status: BootstrapStatus::parse(&get(STATUS)),
            stage: get(STAGE),
            message: get(MESSAGE),
            etcd_members: get(ETCD_MEMBERS)
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(String::from)
                .collect(),
            bootstrap_member_removed: get(BOOTSTRAP_MEMBER_REMOVED) == "true",
            updated: get(UPDATED),
        }
    }

    /// The ConfigMap data for this record.
    pub fn to_data(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (STATUS.to_string(), self.status.as_str().to_string()),
            (STAGE.to_string(), self.stage.clone()),
            (MESSAGE.to_string(), self.message.clone()),
            (ETCD_MEMBERS.to_string(), self.etcd_members.join(",")),
            (
                BOOTSTRAP_MEMBER_REMOVED.to_string(),
                self.bootstrap_member_removed.to_string(),
            ),
            (UPDATED.to_string(), self.updated.clone()),
        ])
    }

    /// Bootstrap is over: the agent says `complete` and the bootstrap etcd member is gone.
    pub fn is_complete(&self) -> bool {
        self.status == BootstrapStatus::Complete && self.bootstrap_member_removed
    }
}

/// Reads the record; `None` while the agent has not written it.
pub async fn read(client: &kube::Client) -> Result<Option<BootstrapRecord>, ClusterError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let found = api
        .get_opt(NAME)
        .await
        .map_err(|e| ClusterError::api(format!("reading ConfigMap {NAMESPACE}/{NAME}"), e))?;
    Ok(found.map(|cm| BootstrapRecord::from_data(&cm.data.unwrap_or_default())))
}

/// Writes the whole record with server-side apply (creating the ConfigMap if needed).
pub async fn write(
    client: &kube::Client,
    record: &BootstrapRecord,
    field_manager: &str,
) -> Result<(), ClusterError> {
    let mut record = record.clone();
    if record.updated.is_empty() {
        record.updated = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
    }
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "data": record.to_data(),
    });
    api.patch(
        NAME,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(|e| ClusterError::api(format!("writing ConfigMap {NAMESPACE}/{NAME}"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeApiServer;

    #[tokio::test]
    async fn the_record_round_trips_through_the_configmap() {
        let fake = FakeApiServer::new();
        let client = fake.client();
        assert_eq!(read(&client).await.unwrap(), None);
        let record = BootstrapRecord {
            status: BootstrapStatus::Complete,
            stage: "remove-bootstrap-member".into(),
            message: "the masters' control plane is healthy".into(),
            etcd_members: vec!["master0".into(), "master1".into(), "master2".into()],
            bootstrap_member_removed: true,
            updated: String::new(),
        };
        write(&client, &record, FIELD_MANAGER).await.unwrap();
        let back = read(&client).await.unwrap().unwrap();
        assert!(back.is_complete());
        assert_eq!(back.etcd_members, record.etcd_members);
        assert!(!back.updated.is_empty());
        let stored = fake
            .get("v1", "ConfigMap", Some("kube-system"), "bootstrap")
            .unwrap();
        assert_eq!(stored["data"]["bootstrapMemberRemoved"], "true");
        assert_eq!(stored["data"]["etcdMembers"], "master0,master1,master2");
    }

    #[test]
    fn complete_without_the_member_removed_is_not_complete() {
        let data = BTreeMap::from([("status".to_string(), "complete".to_string())]);
        assert!(!BootstrapRecord::from_data(&data).is_complete());
    }
}
