//! Kubelet certificate signing requests: which ones kindling approves, and the approver itself
//! (one pass, or list+watch until stopped).
//!
//! kindling approves only what an inventory machine's kubelet legitimately asks for, and nothing
//! else, because an approved client certificate *is* that node's identity:
//!
//! - a **client** certificate (signer `kubernetes.io/kube-apiserver-client-kubelet`) for
//!   `CN=system:node:<name>, O=system:nodes`, where `<name>` is an inventory machine, requested
//!   either by this cluster's bootstrap token (`system:bootstrap:<token id>`) while no Node of
//!   that name exists yet ([`Rule::NewNodeClient`]), or by that node itself (`system:node:<name>`,
//!   a renewal: [`Rule::ClientRenewal`]). No subject alternative names.
//! - a **serving** certificate (signer `kubernetes.io/kubelet-serving`) requested by
//!   `system:node:<name>` for an inventory machine, with the same subject, and whose every SAN is
//!   that machine's name, FQDN or inventory IP (DNS and IP SANs only): [`Rule::Serving`].
//!
//! The request's PEM is parsed and its self-signature checked; the subject must hold exactly one
//! CN and the single organization `system:nodes`, and nothing else; `spec.usages` must be those a
//! kubelet asks for. Everything else stays pending, and the reason is logged, one line per CSR.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kindling_config::ClusterDescription;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_X509_COMMON_NAME, OID_X509_ORGANIZATION_NAME};
use x509_parser::prelude::FromDer;

use crate::client::ClusterError;

pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The `reason` of kindling's Approved conditions.
pub const APPROVAL_REASON: &str = "KindlingInventoryMatch";
const NODE_PREFIX: &str = "system:node:";
const BOOTSTRAP_PREFIX: &str = "system:bootstrap:";
const NODES_GROUP: &str = "system:nodes";

/// What a CSR is judged against: the inventory's machines and the cluster's bootstrap token id.
#[derive(Debug, Clone)]
pub struct Policy {
    machines: BTreeMap<String, MachineIdentity>,
    bootstrap_token_id: String,
    /// The bootstrap token's Secret as the asset directory has it: `create` extends its
    /// expiration while the install runs, and the approver carries that to the cluster.
    join_token_secret: Option<serde_json::Value>,
}

impl Policy {
    /// The labels inventory machine `name`'s Node must have; `None` for a name not in it.
    fn labels(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.machines.get(name).map(|m| &m.labels)
    }
}

/// The names and address a machine's certificates may carry, and the labels its Node must
/// have, which the kubelet cannot give itself.
#[derive(Debug, Clone)]
struct MachineIdentity {
    fqdn: String,
    ip: IpAddr,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading the bootstrap token id from {}: {message}", path.display())]
    Token {
        path: std::path::PathBuf,
        message: String,
    },
}

impl Policy {
    /// The policy for a cluster: every inventory machine, and the id (only) of its token.
    pub fn new(description: &ClusterDescription, bootstrap_token_id: &str) -> Policy {
        Policy {
            machines: description
                .inventory
                .machines
                .iter()
                .map(|m| {
                    (
                        m.name.clone(),
                        MachineIdentity {
                            fqdn: description.fqdn(m),
                            ip: m.ip,
                            labels: kindling_assets::manifests::node_labels(description, m),
                        },
                    )
                })
                .collect(),
            bootstrap_token_id: bootstrap_token_id.to_string(),
            join_token_secret: None,
        }
    }

    /// With the bootstrap token's Secret manifest, whose later expiration the approver carries
    /// to the cluster (see [`extend_join_token`]).
    pub fn with_join_token_secret(mut self, secret: serde_json::Value) -> Policy {
        self.join_token_secret = Some(secret);
        self
    }

    /// [`Policy::new`] with the token id read from the asset directory (`auth/bootstrap-token`).
    /// The token's secret is read with it but never kept or shown.
    pub fn load(dir: &Path, description: &ClusterDescription) -> Result<Policy, PolicyError> {
        let path = dir.join(kindling_assets::pki::BOOTSTRAP_TOKEN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::Token {
            path: path.clone(),
            message: format!("{e}; run kindling create manifests"),
        })?;
        let token =
            kindling_pki::BootstrapToken::parse(&text).ok_or_else(|| PolicyError::Token {
                path: path.clone(),
                message: "not <id>.<secret>".into(),
            })?;
        let manifest = dir
            .join(kindling_assets::manifests_asset::CLUSTER_DIR)
            .join(kindling_assets::manifests::BOOTSTRAP_TOKEN_SECRET_FILE);
        let secret = std::fs::read_to_string(&manifest)
            .ok()
            .and_then(|text| crate::client::parse_manifests("token", &text).ok())
            .and_then(|objects| objects.into_iter().next());
        let policy = Policy::new(description, &token.id);
        Ok(match secret {
            Some(secret) => policy.with_join_token_secret(secret),
            None => policy,
        })
    }

    fn bootstrap_user(&self) -> String {
        format!("{BOOTSTRAP_PREFIX}{}", self.bootstrap_token_id)
    }
}

/// The parts of a CSR the rules look at, taken from the API object.
#[derive(Debug, Clone)]
pub struct Csr {
    pub name: String,
    pub signer: String,
    /// Who created it (`spec.username`), as the apiserver recorded it.
    pub requestor: String,
    pub usages: Vec<String>,
    /// `spec.request`: the PEM certificate request (decoded from base64 by k8s-openapi).
    pub request: Vec<u8>,
    /// Approved, Denied or Failed already, if so.
    pub decided: Option<String>,
}

impl Csr {
    pub fn from_api(csr: &CertificateSigningRequest) -> Csr {
        let decided = csr
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|conditions| {
                conditions
                    .iter()
                    .find(|c| {
                        matches!(c.type_.as_str(), "Approved" | "Denied" | "Failed")
                            && c.status == "True"
                    })
                    .map(|c| c.type_.clone())
            });
        Csr {
            name: csr.metadata.name.clone().unwrap_or_default(),
            signer: csr.spec.signer_name.clone(),
            requestor: csr.spec.username.clone().unwrap_or_default(),
            usages: csr.spec.usages.clone().unwrap_or_default(),
            request: csr.spec.request.0.clone(),
            decided,
        }
    }
}

/// Why a CSR was approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A new node's first client certificate, requested with the cluster's bootstrap token.
    NewNodeClient,
    /// A node renewing its own client certificate.
    ClientRenewal,
    /// A node's serving certificate for its own names and address.
    Serving,
}

impl Rule {
    /// The approval condition's message.
    pub fn message(self) -> &'static str {
        match self {
            Rule::NewNodeClient => {
                "kindling: client certificate of a new inventory machine, requested with the cluster's bootstrap token"
            }
            Rule::ClientRenewal => {
                "kindling: an inventory machine's node renews its own client certificate"
            }
            Rule::Serving => {
                "kindling: serving certificate of an inventory machine's node, for its own names and address"
            }
        }
    }
}

/// What to do with a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve(Rule),
    /// Left pending, with the reason.
    Refuse(String),
    /// Approved, denied or failed already: nothing to do.
    AlreadyDecided(String),
}

/// The subject and SANs of a parsed request.
struct Request {
    common_names: Vec<String>,
    organizations: Vec<String>,
    /// Subject attributes other than CN and O.
    other_subject: usize,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    /// SANs of other types (e-mail, URI, …).
    other_sans: usize,
}

fn parse_request(pem: &[u8]) -> Result<Request, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|_| "spec.request is not a PEM certificate request".to_string())?;
    if !pem.label.ends_with("CERTIFICATE REQUEST") {
        return Err(format!(
            "spec.request is a PEM {:?}, not a CERTIFICATE REQUEST",
            pem.label
        ));
    }
    let (_, csr) = X509CertificationRequest::from_der(&pem.contents)
        .map_err(|e| format!("spec.request does not parse as a certificate request: {e}"))?;
    csr.verify_signature()
        .map_err(|_| "the request's signature does not verify with its own key".to_string())?;
    let info = &csr.certification_request_info;
    let mut request = Request {
        common_names: Vec::new(),
        organizations: Vec::new(),
        other_subject: 0,
        dns: Vec::new(),
        ips: Vec::new(),
        other_sans: 0,
    };
    for attr in info.subject.iter_attributes() {
        let value = attr.as_str().map(String::from);
        match (attr.attr_type(), value) {
            (oid, Ok(v)) if *oid == OID_X509_COMMON_NAME => request.common_names.push(v),
            (oid, Ok(v)) if *oid == OID_X509_ORGANIZATION_NAME => request.organizations.push(v),
            _ => request.other_subject += 1,
        }
    }
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(dns) => request.dns.push(dns.to_string()),
                    GeneralName::IPAddress(bytes) => match ip_from(bytes) {
                        Some(ip) => request.ips.push(ip),
                        None => request.other_sans += 1,
                    },
                    _ => request.other_sans += 1,
                }
            }
        }
    }
    Ok(request)
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The node name in `CN=system:node:<name>, O=system:nodes`, and nothing else in the subject.
fn node_subject(request: &Request) -> Result<&str, String> {
    let [cn] = request.common_names.as_slice() else {
        return Err(format!(
            "the subject has {} common names; a kubelet's has one",
            request.common_names.len()
        ));
    };
    let Some(name) = cn.strip_prefix(NODE_PREFIX) else {
        return Err(format!("the subject CN {cn:?} is not system:node:<name>"));
    };
    if request.organizations != [NODES_GROUP] {
        return Err(format!(
            "the subject's organization is {:?}, not exactly [\"system:nodes\"]",
            request.organizations
        ));
    }
    if request.other_subject > 0 {
        return Err("the subject holds attributes other than CN and O".into());
    }
    Ok(name)
}

/// The node a certificate request's subject names (`CN=system:node:<name>, O=system:nodes`),
/// if it parses as one.
pub fn subject_node(request: &[u8]) -> Option<String> {
    let request = parse_request(request).ok()?;
    node_subject(&request).ok().map(String::from)
}

fn check_usages(usages: &[String], required: &str) -> Result<(), String> {
    let allowed = ["digital signature", "key encipherment", required];
    if !usages.iter().any(|u| u == required) {
        return Err(format!("spec.usages {usages:?} lacks {required:?}"));
    }
    if let Some(extra) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Err(format!(
            "spec.usages asks for {extra:?}, which a kubelet does not need"
        ));
    }
    Ok(())
}

/// Judges one CSR. `node_exists` says whether a Node of that name is registered.
pub fn decide(csr: &Csr, policy: &Policy, node_exists: impl Fn(&str) -> bool) -> Decision {
    if let Some(decided) = &csr.decided {
        return Decision::AlreadyDecided(decided.clone());
    }
    match judge(csr, policy, node_exists) {
        Ok(rule) => Decision::Approve(rule),
        Err(reason) => Decision::Refuse(reason),
    }
}

fn judge(csr: &Csr, policy: &Policy, node_exists: impl Fn(&str) -> bool) -> Result<Rule, String> {
    let client = match csr.signer.as_str() {
        CLIENT_SIGNER => true,
        SERVING_SIGNER => false,
        other => {
            return Err(format!(
                "signer {other:?} is not a kubelet's ({CLIENT_SIGNER} or {SERVING_SIGNER})"
            ));
        }
    };
    let request = parse_request(&csr.request)?;
    let name = node_subject(&request)?;
    let Some(machine) = policy.machines.get(name) else {
        return Err(format!("{name:?} is not a machine in the inventory"));
    };
    let requestor = csr.requestor.as_str();
    let requesting_node = requestor.strip_prefix(NODE_PREFIX);
    if client {
        check_usages(&csr.usages, "client auth")?;
        if !request.dns.is_empty() || !request.ips.is_empty() || request.other_sans > 0 {
            return Err(
                "a client certificate request must not carry subject alternative names".into(),
            );
        }
        if requesting_node == Some(name) {
            return Ok(Rule::ClientRenewal);
        }
        if requestor == policy.bootstrap_user() {
            if node_exists(name) {
                return Err(format!(
                    "a Node named {name} exists already; only that node may renew its client certificate, not the bootstrap token"
                ));
            }
            return Ok(Rule::NewNodeClient);
        }
        if let Some(other) = requesting_node {
            return Err(format!(
                "node {other} asks for a certificate of node {name}"
            ));
        }
        if let Some(id) = requestor.strip_prefix(BOOTSTRAP_PREFIX) {
            return Err(format!(
                "requested with bootstrap token {id:?}, not this cluster's ({:?})",
                policy.bootstrap_token_id
            ));
        }
        return Err(format!(
            "requested by {requestor:?}, neither this cluster's bootstrap token nor node {name} itself"
        ));
    }
    check_usages(&csr.usages, "server auth")?;
    match requesting_node {
        Some(node) if node == name => {}
        Some(other) => {
            return Err(format!(
                "node {other} asks for a serving certificate of node {name}"
            ));
        }
        None => {
            return Err(format!(
                "a serving certificate must be requested by the node itself (system:node:{name}), not {requestor:?}"
            ));
        }
    }
    if request.other_sans > 0 {
        return Err("the request carries SANs other than DNS names and IP addresses".into());
    }
    if request.dns.is_empty() && request.ips.is_empty() {
        return Err("a serving certificate request must name the machine in its SANs".into());
    }
    for dns in &request.dns {
        let dns = dns.to_ascii_lowercase();
        if dns != name && dns != machine.fqdn {
            return Err(format!(
                "SAN DNS:{dns} is not {name}'s name or FQDN ({})",
                machine.fqdn
            ));
        }
    }
    for ip in &request.ips {
        if *ip != machine.ip {
            return Err(format!(
                "SAN IP:{ip} is not {name}'s address ({})",
                machine.ip
            ));
        }
    }
    Ok(Rule::Serving)
}

/// What happened to one CSR in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub csr: String,
    pub requestor: String,
    pub decision: Decision,
}

impl Outcome {
    /// Logs one line: approved with the rule, or left pending with the reason.
    fn log(&self) {
        match &self.decision {
            Decision::Approve(rule) => tracing::info!(
                "approved CSR {} (requested by {}): {}",
                self.csr,
                self.requestor,
                rule.message()
            ),
            Decision::Refuse(reason) => tracing::warn!(
                "left CSR {} pending (requested by {}): {reason}",
                self.csr,
                self.requestor
            ),
            Decision::AlreadyDecided(_) => {}
        }
    }
}

/// Approves a CSR: appends an Approved condition and updates the `/approval` subresource (with
/// the resourceVersion read, so a CSR changed meanwhile is not approved blindly).
async fn approve(
    api: &Api<CertificateSigningRequest>,
    mut csr: CertificateSigningRequest,
    rule: Rule,
) -> Result<(), ClusterError> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some(APPROVAL_REASON.into()),
            message: Some(rule.message().into()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
    api.replace_subresource("approval", &name, &PostParams::default(), &csr)
        .await
        .map_err(|e| ClusterError::api(format!("approving CSR {name}"), e))?;
    Ok(())
}

/// Refusals already logged, by CSR name, with the resourceVersion they were logged at: a watch
/// that lists again does not repeat them until the CSR changes.
type Logged = BTreeMap<String, String>;

/// Judges `csr` and approves it if a rule allows; the outcome is logged (a refusal once per
/// version of the CSR).
async fn handle(
    csrs: &Api<CertificateSigningRequest>,
    nodes: &Api<Node>,
    policy: &Policy,
    csr: CertificateSigningRequest,
    known_nodes: Option<&BTreeSet<String>>,
    logged: &mut Logged,
) -> Result<Outcome, ClusterError> {
    let view = Csr::from_api(&csr);
    let version = csr.metadata.resource_version.clone().unwrap_or_default();
    let subject_node = subject_node(&view.request);
    let exists = match (known_nodes, &subject_node) {
        (Some(known), Some(name)) => known.contains(name),
        (None, Some(name)) => nodes
            .get_opt(name)
            .await
            .map_err(|e| ClusterError::api(format!("reading Node {name}"), e))?
            .is_some(),
        (_, None) => false,
    };
    let decision = decide(&view, policy, |_| exists);
    if let Decision::Approve(rule) = decision {
        approve(csrs, csr, rule).await?;
    }
    let outcome = Outcome {
        csr: view.name,
        requestor: view.requestor,
        decision,
    };
    let repeat = matches!(outcome.decision, Decision::Refuse(_))
        && logged.get(&outcome.csr) == Some(&version);
    if !repeat {
        outcome.log();
    }
    if matches!(outcome.decision, Decision::Refuse(_)) {
        logged.insert(outcome.csr.clone(), version);
    }
    Ok(outcome)
}

/// One pass: judges every pending CSR, approves those a rule allows, logs the rest with their
/// reason. Returns every CSR's outcome (already decided ones included).
pub async fn approve_pending(
    client: &kube::Client,
    policy: &Policy,
) -> Result<Vec<Outcome>, ClusterError> {
    Ok(pass(client, policy, &mut Logged::new()).await?.0)
}

/// [`approve_pending`], also returning the list's resourceVersion (where a watch starts).
async fn pass(
    client: &kube::Client,
    policy: &Policy,
    logged: &mut Logged,
) -> Result<(Vec<Outcome>, String), ClusterError> {
    if let Err(e) = extend_join_token(client, policy).await {
        tracing::warn!("the bootstrap token's expiration could not be extended: {e}");
    }
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let node_list = nodes
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| ClusterError::api("listing Nodes", e))?
        .items;
    crate::labels::apply(&nodes, |name| policy.labels(name), &node_list).await?;
    let node_names: BTreeSet<String> = node_list
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let list = csrs
        .list(&ListParams::default())
        .await
        .map_err(|e| ClusterError::api("listing CertificateSigningRequests", e))?;
    let version = list.metadata.resource_version.clone().unwrap_or_default();
    let mut outcomes = Vec::new();
    for csr in list.items {
        outcomes.push(handle(&csrs, &nodes, policy, csr, Some(&node_names), logged).await?);
    }
    Ok((outcomes, version))
}

fn rfc3339(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()
}

/// The expiration of a bootstrap token Secret as the API has it (`data`, or `stringData` as
/// written).
fn token_expiration(secret: &k8s_openapi::api::core::v1::Secret) -> Option<time::OffsetDateTime> {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get("expiration"))
        .and_then(|b| String::from_utf8(b.0.clone()).ok());
    let from_string_data = || secret.string_data.as_ref()?.get("expiration").cloned();
    rfc3339(&from_data.or_else(from_string_data)?)
}

/// Carries a later expiration of the bootstrap token from the asset directory (which `create`
/// extends while the install runs) to the cluster's Secret. A Secret that is gone is left gone:
/// `wait-for install-complete` deletes it on purpose.
pub async fn extend_join_token(client: &kube::Client, policy: &Policy) -> Result<(), ClusterError> {
    let Some(wanted) = &policy.join_token_secret else {
        return Ok(());
    };
    let (Some(name), Some(until)) = (
        wanted["metadata"]["name"].as_str(),
        wanted["stringData"]["expiration"]
            .as_str()
            .and_then(rfc3339),
    ) else {
        return Ok(());
    };
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "kube-system");
    let current = match secrets.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Ok(()),
        Err(e) => {
            return Err(ClusterError::api(
                format!("reading Secret kube-system/{name}"),
                e,
            ));
        }
    };
    if token_expiration(&current).is_some_and(|now| now >= until) {
        return Ok(());
    }
    crate::client::apply(client, wanted, "kindling-approve-csrs").await?;
    tracing::info!("extended the bootstrap token (Secret kube-system/{name}) to {until}");
    Ok(())
}

/// List, then watch from the list's resourceVersion: every CSR that appears or changes is
/// judged as it comes, until `stop` completes. A broken or expired watch is resumed with a new
/// list. A refusal is logged once per version of the CSR.
pub async fn watch(
    client: &kube::Client,
    policy: &Policy,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ClusterError> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let mut logged = Logged::new();
    tokio::pin!(stop);
    loop {
        let (outcomes, version) = tokio::select! {
            passed = pass(client, policy, &mut logged) => passed?,
            () = &mut stop => return Ok(()),
        };
        let pending = outcomes
            .iter()
            .filter(|o| matches!(o.decision, Decision::Refuse(_)))
            .count();
        tracing::debug!("{} CSRs, {pending} left pending; watching", outcomes.len());
        let stream = csrs
            .watch(&WatchParams::default().timeout(290), &version)
            .await
            .map_err(|e| ClusterError::api("watching CertificateSigningRequests", e))?;
        let mut stream = stream.boxed();
        loop {
            let event = tokio::select! {
                event = stream.next() => event,
                () = &mut stop => return Ok(()),
            };
            match event {
                Some(Ok(WatchEvent::Added(csr) | WatchEvent::Modified(csr))) => {
                    if Csr::from_api(&csr).decided.is_none() {
                        handle(&csrs, &nodes, policy, csr, None, &mut logged).await?;
                        // A kubelet asks for its serving certificate once its Node exists.
                        let registered = nodes
                            .list_metadata(&ListParams::default())
                            .await
                            .map_err(|e| ClusterError::api("listing Nodes", e))?;
                        crate::labels::apply(&nodes, |name| policy.labels(name), &registered.items)
                            .await?;
                    }
                }
                Some(Ok(WatchEvent::Deleted(csr))) => {
                    logged.remove(&csr.metadata.name.unwrap_or_default());
                }
                Some(Ok(_)) => {}
                // Expired resourceVersion, a timeout or a dropped connection: list again.
                Some(Err(e)) => {
                    tracing::debug!("CSR watch ended: {e}");
                    break;
                }
                None => break,
            }
        }
    }
}

/// `kindling serve --approve-csrs`: connects with `kubeconfig` and runs [`watch`] until `stop`,
/// retrying quietly (debug logs only) with backoff up to a minute while the API is not up yet or
/// the connection breaks.
pub async fn approve_until_stopped(
    kubeconfig: &Path,
    policy: Policy,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut backoff = Duration::from_secs(1);
    let mut announced = false;
    loop {
        let attempt = async {
            let client = crate::client::connect(kubeconfig).await?;
            crate::client::server_version(&client).await?;
            Ok::<_, ClusterError>(client)
        };
        let client = tokio::select! {
            client = attempt => client,
            () = &mut stop => return,
        };
        match client {
            Ok(client) => {
                if !announced {
                    tracing::info!("approving kubelet CSRs of inventory machines as they come");
                    announced = true;
                }
                backoff = Duration::from_secs(1);
                match watch(&client, &policy, &mut stop).await {
                    Ok(()) => return,
                    Err(e) => tracing::debug!("CSR approver: {e}; starting again"),
                }
            }
            Err(e) => tracing::debug!("CSR approver: the API is not up yet: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut stop => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests;
