//! A **fake** Kubernetes API server, for tests. It is not a kube-apiserver: it keeps objects in
//! memory and speaks only the paths and JSON that kindling uses, as a real apiserver answers them:
//!
//! - `/version`, and discovery (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`) for the
//!   resources in [`RESOURCES`], so kube's `discovery::pinned_kind` works;
//! - for every resource there: list (with `?watch=true` streaming `{"type","object"}` lines after
//!   a `resourceVersion`), get, create (POST), replace (PUT, with resourceVersion conflicts),
//!   delete, JSON merge patch, and server-side apply (`application/apply-patch+yaml`, JSON body,
//!   `fieldManager` required);
//! - the `status` and `approval` subresources (PUT): they replace `status` only;
//! - `pods/<name>/eviction` (policy/v1), honouring PodDisruptionBudgets' `disruptionsAllowed`.
//!
//! What it does not do: authentication and authorization, validation beyond names, admission,
//! field ownership (an apply merges the applied fields over the object, as a forced apply by a
//! single manager does), label and field selectors, and garbage collection. Errors are real
//! `Status` objects (NotFound, AlreadyExists, Conflict, BadRequest) with their HTTP codes.
//!
//! Use it in-process ([`FakeApiServer::client`]), or on a loopback port for another process
//! ([`FakeApiServer::start_in_thread`] + [`FakeApiServer::kubeconfig`]).
//!
//! ## Where it still serves, and why not a real control plane
//!
//! Every flow a real 1.20 control plane can serve runs against one in `tests/cli/kube.rs` and
//! `tests/cli/bringup.rs`: the certificates and identities, the bootstrap token's RBAC, a
//! kubelet's join with `approve-csrs` and `serve --approve-csrs`, labels from both and from the
//! bootstrap agent, `gather`, the bootstrap agent's stages to the end and `wait-for
//! bootstrap-complete`. The fake stays for these, each for the reason given:
//!
//! - The unit tests of this crate (`wait`, `csr`, `health`, `bootstrap`, `client`): they run
//!   in-process in milliseconds on any machine, with no binaries; each path they cover also
//!   runs against the real apiserver in the tests above.
//! - `tests/cli/cluster.rs`, `wait-for`'s failure and timing cases (a stage stuck past its
//!   deadline, a deadline extended by progress, an API that never answers), bootstrap-complete
//!   with a bootstrap machine to remove, and `install-complete`'s success: they need the
//!   bootstrap record and the nodes in states set at chosen moments, a bootstrap machine's
//!   completion needs three masters' control planes, and install-complete needs six Ready nodes
//!   and a running CoreDNS, whose image cannot be had here (the bring-up runs install-complete
//!   against the real cluster up to that point).
//! - `tests/cli/cluster.rs`, `approve-csrs` refusing CSRs from identities a test cannot hold
//!   (another node's credentials, another cluster's token, other signers): the real cluster
//!   covers one approval of each kind and the refusal of an unknown machine.
//! - `tests/cli/update.rs`, `kindling update` on six workers (killed at every step, windows, a
//!   stuck and a drifted machine): six kubelets rebooting do not fit a 2-core machine; the node
//!   agent's side runs on a real kubelet in `tests/cli/day2.rs`.
//! - `tests/cli/remove.rs`, `remove machine` killed between its steps and run again (the real
//!   removal, its drain held by a real PodDisruptionBudget, runs in `tests/cli/day2.rs`; a
//!   master's, against real etcd, in `tests/cli/agent.rs`), and `drain`'s unit test: both in
//!   policy/v1, which the 1.20 apiserver does not serve (kindling asks the server's version).
//! - `tests/cli/agent.rs`, the etcd hand-over across three masters and a bootstrap member (real
//!   etcd): the rule also waits for two masters' Ready apiservers, which would take three real
//!   control planes on a 2-core machine; the bring-up runs the same rule for real with one.

// A refused request is answered with its `Status` response as the error value: a test fake
// favours the plainest code over a smaller `Result`.
#![expect(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// A resource the fake serves.
#[derive(Debug, Clone, Copy)]
pub struct Resource {
    /// `v1`, `apps/v1`, …
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Subresources served (`status`, `approval`).
    pub subresources: &'static [&'static str],
}

const fn resource(
    api_version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    subresources: &'static [&'static str],
) -> Resource {
    Resource {
        api_version,
        kind,
        plural,
        namespaced,
        subresources,
    }
}

/// The resources the fake knows: what kindling reads and what the bootstrap agent applies.
pub const RESOURCES: &[Resource] = &[
    resource("v1", "Namespace", "namespaces", false, &["status"]),
    resource("v1", "Node", "nodes", false, &["status"]),
    resource("v1", "ConfigMap", "configmaps", true, &[]),
    resource("v1", "Secret", "secrets", true, &[]),
    resource("v1", "ServiceAccount", "serviceaccounts", true, &[]),
    resource("v1", "Service", "services", true, &["status"]),
    resource("v1", "Pod", "pods", true, &["status"]),
    resource("v1", "Endpoints", "endpoints", true, &[]),
    resource("apps/v1", "Deployment", "deployments", true, &["status"]),
    resource("apps/v1", "DaemonSet", "daemonsets", true, &["status"]),
    resource(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
    ),
    resource(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
    ),
    resource("rbac.authorization.k8s.io/v1", "Role", "roles", true, &[]),
    resource(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
    ),
    resource(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        false,
        &["status", "approval"],
    ),
    resource("coordination.k8s.io/v1", "Lease", "leases", true, &[]),
    resource(
        "policy/v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["status"],
    ),
];

fn find_resource(
    api_version: &str,
    matches: impl Fn(&Resource) -> bool,
) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.api_version == api_version && matches(r))
}

/// Where an object is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    api_version: &'static str,
    plural: &'static str,
    namespace: Option<String>,
    name: String,
}

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
struct Change {
    resource_version: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

#[derive(Default)]
struct Store {
    objects: BTreeMap<Key, Value>,
    resource_version: u64,
    /// Every change, for watches that start at an older resourceVersion.
    history: Vec<Change>,
    /// Every write request the fake answered: (method, path), for tests that assert what a
    /// client did (and did not do).
    requests: Vec<(String, String)>,
}

struct Inner {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
}

/// The fake API server: cheap to clone, every clone sees the same objects.
#[derive(Clone)]
pub struct FakeApiServer {
    inner: Arc<Inner>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        FakeApiServer::new()
    }
}

impl FakeApiServer {
    /// An empty cluster: no namespaces, no nodes.
    pub fn new() -> FakeApiServer {
        FakeApiServer {
            inner: Arc::new(Inner {
                store: Mutex::new(Store::default()),
                changes: broadcast::channel(4096).0,
            }),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        match self.inner.store.lock() {
            Ok(store) => store,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// A kube client that talks to this fake in-process, without a socket.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.router(), "default")
    }

    /// Serves the fake on `127.0.0.1:<free port>` on the current tokio runtime.
    pub async fn listen(&self) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(addr)
    }

    /// Serves the fake on `127.0.0.1:<free port>` from a thread of its own (with its own
    /// runtime), for tests that are not async: it serves until the process ends.
    pub fn start_in_thread(&self) -> SocketAddr {
        let fake = self.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a tokio runtime for the fake API server");
            runtime.block_on(async move {
                let addr = fake.listen().await.expect("binding a loopback port");
                let _ = tx.send(addr);
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("the fake API server started")
    }

    /// A kubeconfig for a fake served at `http://<addr>` (plain HTTP: no CA, no credentials).
    pub fn kubeconfig(addr: SocketAddr) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\n"
        )
    }

    /// Creates or replaces `object` (it names its apiVersion and kind), as a test's setup.
    /// Panics on an object the fake cannot hold: that is a broken test, not input.
    pub fn put(&self, object: Value) -> Value {
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let resource = find_resource(&api_version, |r| r.kind == kind)
            .unwrap_or_else(|| panic!("the fake API server has no {api_version} {kind}"));
        let key = key_of(resource, &object).expect("the object has metadata.name");
        let mut store = self.store();
        store.write(&self.inner.changes, key, object, |_, new| new)
    }

    /// The object, if it exists.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let resource = find_resource(api_version, |r| r.kind == kind)?;
        self.store()
            .objects
            .get(&Key {
                api_version: resource.api_version,
                plural: resource.plural,
                namespace: namespace.map(String::from),
                name: name.to_string(),
            })
            .cloned()
    }

    /// Every object of a kind, in every namespace.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        self.store()
            .objects
            .iter()
            .filter(|(k, v)| k.api_version == api_version && v["kind"] == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Deletes an object; false when there was none.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        let Some(resource) = find_resource(api_version, |r| r.kind == kind) else {
            return false;
        };
        let key = Key {
            api_version: resource.api_version,
            plural: resource.plural,
            namespace: namespace.map(String::from),
            name: name.to_string(),
        };
        self.store().remove(&self.inner.changes, &key).is_some()
    }

    /// A Node with condition Ready = `ready`, as a kubelet registers it.
    pub fn put_node(&self, name: &str, ready: bool) -> Value {
        self.put(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }, "reason": "KubeletReady"}
            ]},
        }))
    }

    /// A running Pod with condition Ready = `ready` (e.g. a static pod's mirror pod).
    pub fn put_pod(&self, namespace: &str, name: &str, ready: bool) -> Value {
        self.put(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "main", "image": "fake"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ]},
        }))
    }

    /// A Deployment with `available` of its replicas available.
    pub fn put_deployment(&self, namespace: &str, name: &str, available: i32) -> Value {
        self.put(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main", "image": "fake"}]}}},
            "status": {"replicas": 2, "availableReplicas": available, "conditions": [
                {"type": "Available", "status": if available > 0 { "True" } else { "False" }}
            ]},
        }))
    }

    /// The write requests (method and path) answered so far.
    pub fn writes(&self) -> Vec<(String, String)> {
        self.store().requests.clone()
    }
}

impl Store {
    /// Stores `object` under `key` (with `merge(old, new)` deciding the result when one exists),
    /// stamping metadata as the apiserver does, and tells the watchers.
    fn write(
        &mut self,
        changes: &broadcast::Sender<Change>,
        key: Key,
        object: Value,
        merge: impl FnOnce(&Value, Value) -> Value,
    ) -> Value {
        self.resource_version += 1;
        let rv = self.resource_version;
        let old = self.objects.get(&key).cloned();
        let mut object = match &old {
            Some(old) => merge(old, object),
            None => object,
        };
        let meta = &mut object["metadata"];
        if let Some(old) = &old {
            meta["uid"] = old["metadata"]["uid"].clone();
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
        } else {
            meta["uid"] = json!(format!("fake-uid-{rv}"));
            meta["creationTimestamp"] = json!(now_rfc3339());
        }
        meta["resourceVersion"] = json!(rv.to_string());
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.objects.insert(key.clone(), object.clone());
        let change = Change {
            resource_version: rv,
            kind,
            key,
            object: object.clone(),
        };
        self.history.push(change.clone());
        let _ = changes.send(change);
        object
    }

    fn remove(&mut self, changes: &broadcast::Sender<Change>, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let change = Change {
            resource_version: self.resource_version,
            kind: "DELETED",
            key: key.clone(),
            object: object.clone(),
        };
        self.history.push(change.clone());
        let _ = changes.send(change);
        Some(object)
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn key_of(resource: &'static Resource, object: &Value) -> Option<Key> {
    let name = object["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())?;
    let namespace = if resource.namespaced {
        Some(
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
        )
    } else {
        None
    };
    Some(Key {
        api_version: resource.api_version,
        plural: resource.plural,
        namespace,
        name: name.to_string(),
    })
}

/// A `Status` failure, as the apiserver sends it.
/// An Eviction, as the API server's eviction subresource takes it: refused with 429 when a
/// PodDisruptionBudget selecting the pod allows no disruption now (its
/// `status.disruptionsAllowed`, which the disruption controller would keep), else the pod is
/// deleted and the budget's allowance goes down by one.
fn evict(fake: &FakeApiServer, target: &Target, name: &str, body: &Bytes) -> Response {
    let eviction = match parse_json(body) {
        Ok(v) => v,
        Err(response) => return response,
    };
    if eviction["kind"] != "Eviction" || eviction["apiVersion"] != "policy/v1" {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "expected a policy/v1 Eviction, got {} {}",
                eviction["apiVersion"], eviction["kind"]
            ),
        );
    }
    let mut store = fake.store();
    let key = target.key(name);
    let Some(pod) = store.objects.get(&key).cloned() else {
        return not_found(&format!("pods \"{name}\""));
    };
    let labels = pod["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let budgets: Vec<(Key, Value)> = store
        .objects
        .iter()
        .filter(|(k, v)| {
            k.plural == "poddisruptionbudgets"
                && k.namespace == target.namespace
                && v["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|m| m.iter().all(|(l, value)| labels.get(l) == Some(value)))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (_, budget) in &budgets {
        if budget["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) < 1 {
            return status(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                format!(
                    "Cannot evict pod as it would violate the pod's disruption budget {}.",
                    budget["metadata"]["name"].as_str().unwrap_or_default()
                ),
            );
        }
    }
    for (budget_key, mut budget) in budgets {
        let allowed = budget["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
        budget["status"]["disruptionsAllowed"] = json!(allowed - 1);
        store.write(&fake.inner.changes, budget_key, budget, |_, new| new);
    }
    store.remove(&fake.inner.changes, &key);
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

fn not_found(what: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{what} not found"),
    )
}

/// What a request path names.
struct Target {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// The one handler: discovery, or a resource path.
async fn handle(State(fake): State<FakeApiServer>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query: BTreeMap<String, String> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect();
    let headers = request.headers().clone();
    let body = match axum::body::to_bytes(request.into_body(), 16 << 20).await {
        Ok(body) => body,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
    };
    if method != Method::GET {
        fake.store()
            .requests
            .push((method.to_string(), path.clone()));
    }
    if let Some(response) = discovery(&method, &path) {
        return response;
    }
    let Some(target) = parse_path(&path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "the server could not find the requested resource ({path}; this is a fake API server)"
            ),
        );
    };
    match (method, &target.name, &target.subresource) {
        (Method::GET, None, _) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(&fake, &target, &query)
        }
        (Method::GET, None, _) => list(&fake, &target),
        (Method::POST, None, _) => create(&fake, &target, &body),
        (Method::GET, Some(name), None) => match fake.store().objects.get(&target.key(name)) {
            Some(object) => axum::Json(object.clone()).into_response(),
            None => not_found(&format!("{} \"{name}\"", target.resource.plural)),
        },
        (Method::PUT, Some(name), None) => replace(&fake, &target, name, &body),
        (Method::PUT, Some(name), Some(sub)) => {
            replace_subresource(&fake, &target, name, sub, &body)
        }
        (Method::POST, Some(name), Some(sub))
            if sub == "eviction" && target.resource.kind == "Pod" =>
        {
            evict(&fake, &target, name, &body)
        }
        (Method::PATCH, Some(name), None) => patch(&fake, &target, name, &headers, &query, &body),
        (Method::DELETE, Some(name), None) => {
            let removed = fake.store().remove(&fake.inner.changes, &target.key(name));
            match removed {
                Some(object) => axum::Json(object).into_response(),
                None => not_found(&format!("{} \"{name}\"", target.resource.plural)),
            }
        }
        (method, _, _) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} {path} is not supported by the fake API server"),
        ),
    }
}

impl Target {
    fn key(&self, name: &str) -> Key {
        Key {
            api_version: self.resource.api_version,
            plural: self.resource.plural,
            namespace: self.namespace.clone(),
            name: name.to_string(),
        }
    }

    /// Whether a stored object belongs to this (collection) target.
    fn holds(&self, key: &Key) -> bool {
        key.api_version == self.resource.api_version
            && key.plural == self.resource.plural
            && (self.namespace.is_none() || key.namespace == self.namespace)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/api/v1/...` or `/apis/<group>/<version>/...` → the resource, namespace, name, subresource.
fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..] => (Some(ns.to_string()), {
            let mut v = vec![*plural];
            v.extend_from_slice(rest);
            v
        }),
        rest => (None, rest.to_vec()),
    };
    let plural = rest.first()?;
    let resource = find_resource(&api_version, |r| r.plural == *plural)?;
    if namespace.is_some() && !resource.namespaced {
        return None;
    }
    let subresource = rest.get(2).map(|s| s.to_string());
    if let Some(sub) = &subresource
        && !resource.subresources.contains(&sub.as_str())
        && !(resource.kind == "Pod" && sub == "eviction")
    {
        return None;
    }
    if rest.len() > 3 {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource,
    })
}

fn discovery(method: &Method, path: &str) -> Option<Response> {
    if method != Method::GET {
        return None;
    }
    let path = path.trim_end_matches('/');
    let body = match path {
        "/version" => json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
            "platform": "linux/amd64",
        }),
        "/api" => json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
        }),
        "/apis" => {
            let mut groups: Vec<&str> = RESOURCES
                .iter()
                .map(|r| r.api_version)
                .filter(|v| v.contains('/'))
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|gv| {
                    let (group, version) = gv.split_once('/').unwrap_or((gv, ""));
                    let v = json!({"groupVersion": gv, "version": version});
                    json!({"name": group, "versions": [v.clone()], "preferredVersion": v})
                })
                .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        _ => {
            let api_version = path
                .strip_prefix("/api/")
                .filter(|v| *v == "v1")
                .or_else(|| {
                    path.strip_prefix("/apis/")
                        .filter(|gv| gv.matches('/').count() == 1)
                })?;
            let mut resources = Vec::new();
            for r in RESOURCES.iter().filter(|r| r.api_version == api_version) {
                resources.push(json!({
                    "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                }));
                for sub in r.subresources {
                    resources.push(json!({
                        "name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": ["get", "patch", "update"],
                    }));
                }
                if r.kind == "Pod" {
                    resources.push(json!({
                        "name": "pods/eviction", "singularName": "", "namespaced": true,
                        "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"],
                    }));
                }
            }
            if resources.is_empty() {
                return None;
            }
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api_version, "resources": resources})
        }
    };
    Some(axum::Json(body).into_response())
}

fn list(fake: &FakeApiServer, target: &Target) -> Response {
    let store = fake.store();
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|(k, _)| target.holds(k))
        .map(|(_, v)| v.clone())
        .collect();
    axum::Json(json!({
        "apiVersion": target.resource.api_version,
        "kind": format!("{}List", target.resource.kind),
        "metadata": {"resourceVersion": store.resource_version.to_string()},
        "items": items,
    }))
    .into_response()
}

/// `?watch=true`: the changes after `resourceVersion` (or, without one or with "0", every
/// object as ADDED), then every new change, one JSON object per line, until `timeoutSeconds`.
fn watch(fake: &FakeApiServer, target: &Target, query: &BTreeMap<String, String>) -> Response {
    let since = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse::<u64>().ok())
        .unwrap_or(0);
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let (backlog, receiver) = {
        let store = fake.store();
        let backlog: VecDeque<Change> = if since == 0 {
            store
                .objects
                .iter()
                .filter(|(k, _)| target.holds(k))
                .map(|(k, v)| Change {
                    resource_version: store.resource_version,
                    kind: "ADDED",
                    key: k.clone(),
                    object: v.clone(),
                })
                .collect()
        } else {
            store
                .history
                .iter()
                .filter(|c| c.resource_version > since && target.holds(&c.key))
                .cloned()
                .collect()
        };
        // Subscribed under the store's lock: no change falls between backlog and stream.
        (backlog, fake.inner.changes.subscribe())
    };
    let filter = Target {
        resource: target.resource,
        namespace: target.namespace.clone(),
        name: None,
        subresource: None,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let stream = futures_util::stream::unfold(
        (backlog, receiver, filter),
        move |(mut backlog, mut receiver, filter)| async move {
            loop {
                if let Some(change) = backlog.pop_front() {
                    let mut line =
                        serde_json::to_vec(&json!({"type": change.kind, "object": change.object}))
                            .unwrap_or_default();
                    line.push(b'\n');
                    return Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from(line)),
                        (backlog, receiver, filter),
                    ));
                }
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Ok(change)) if filter.holds(&change.key) => backlog.push_back(change),
                    Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                    Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return None,
                }
            }
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| {
            status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })
}

fn parse_json(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the body is not a JSON object (the fake API server reads JSON only)",
            )
        })
}

/// Checks the body's apiVersion/kind/name/namespace against the path, filling what it omits.
fn fit(target: &Target, mut object: Value, name: Option<&str>) -> Result<(Key, Value), Response> {
    let r = target.resource;
    for (field, want) in [("apiVersion", r.api_version), ("kind", r.kind)] {
        match object[field].as_str() {
            None => object[field] = json!(want),
            Some(got) if got == want => {}
            Some(got) => {
                return Err(status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("{field} {got} does not match the path ({want})"),
                ));
            }
        }
    }
    if let Some(name) = name {
        match object["metadata"]["name"].as_str() {
            None => object["metadata"]["name"] = json!(name),
            Some(got) if got == name => {}
            Some(got) => {
                return Err(status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("the name in the body ({got}) does not match the path ({name})"),
                ));
            }
        }
    }
    if let Some(ns) = &target.namespace {
        match object["metadata"]["namespace"].as_str() {
            None => object["metadata"]["namespace"] = json!(ns),
            Some(got) if got == ns => {}
            Some(got) => {
                return Err(status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("the namespace in the body ({got}) does not match the path ({ns})"),
                ));
            }
        }
    }
    let key = key_of(r, &object).ok_or_else(|| {
        status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value",
        )
    })?;
    Ok((key, object))
}

fn create(fake: &FakeApiServer, target: &Target, body: &Bytes) -> Response {
    let (key, object) = match parse_json(body).and_then(|o| fit(target, o, None)) {
        Ok(fitted) => fitted,
        Err(response) => return response,
    };
    let mut store = fake.store();
    if store.objects.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{}\" already exists", target.resource.plural, key.name),
        );
    }
    let stored = store.write(&fake.inner.changes, key, object, |_, new| new);
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

/// The resourceVersion precondition of an update: none given, or the stored one.
fn check_version(old: &Value, new: &Value, plural: &str, name: &str) -> Result<(), Response> {
    match new["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
            Err(status(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn replace(fake: &FakeApiServer, target: &Target, name: &str, body: &Bytes) -> Response {
    let (key, object) = match parse_json(body).and_then(|o| fit(target, o, Some(name))) {
        Ok(fitted) => fitted,
        Err(response) => return response,
    };
    let mut store = fake.store();
    let Some(old) = store.objects.get(&key) else {
        return not_found(&format!("{} \"{name}\"", target.resource.plural));
    };
    if let Err(conflict) = check_version(old, &object, target.resource.plural, name) {
        return conflict;
    }
    let stored = store.write(&fake.inner.changes, key, object, |old, mut new| {
        // An update of the main resource does not change status, as in the apiserver.
        if target.resource.subresources.contains(&"status") {
            new["status"] = old["status"].clone();
        }
        new
    });
    axum::Json(stored).into_response()
}

/// `PUT .../status` and `PUT .../approval`: only `status` changes (for approval, only
/// `status.conditions`).
fn replace_subresource(
    fake: &FakeApiServer,
    target: &Target,
    name: &str,
    sub: &str,
    body: &Bytes,
) -> Response {
    let (key, object) = match parse_json(body).and_then(|o| fit(target, o, Some(name))) {
        Ok(fitted) => fitted,
        Err(response) => return response,
    };
    let mut store = fake.store();
    let Some(old) = store.objects.get(&key) else {
        return not_found(&format!("{} \"{name}\"", target.resource.plural));
    };
    if let Err(conflict) = check_version(old, &object, target.resource.plural, name) {
        return conflict;
    }
    let approval = sub == "approval";
    let stored = store.write(&fake.inner.changes, key, object, |old, new| {
        let mut result = old.clone();
        if approval {
            result["status"]["conditions"] = new["status"]["conditions"].clone();
        } else {
            result["status"] = new["status"].clone();
        }
        result
    });
    axum::Json(stored).into_response()
}

fn patch(
    fake: &FakeApiServer,
    target: &Target,
    name: &str,
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let apply = content_type.starts_with("application/apply-patch+yaml");
    let merge = content_type.starts_with("application/merge-patch+json")
        || content_type.starts_with("application/strategic-merge-patch+json");
    if !apply && !merge {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the fake API server takes apply and merge patches, not {content_type:?}"),
        );
    }
    if apply && query.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        );
    }
    let patch = match parse_json(body) {
        Ok(patch) => patch,
        Err(response) => return response,
    };
    let key = target.key(name);
    let mut store = fake.store();
    let exists = store.objects.contains_key(&key);
    if !exists && !apply {
        return not_found(&format!("{} \"{name}\"", target.resource.plural));
    }
    let patch = if apply {
        match fit(target, patch, Some(name)) {
            Ok((_, fitted)) => fitted,
            Err(response) => return response,
        }
    } else {
        patch
    };
    let stored = store.write(&fake.inner.changes, key, patch.clone(), |old, patch| {
        let mut result = old.clone();
        merge_patch(&mut result, &patch);
        result
    });
    axum::Json(stored).into_response()
}

/// RFC 7386 JSON merge patch (also how the fake applies: the applied fields win).
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in fields {
                if v.is_null() {
                    if let Some(map) = target.as_object_mut() {
                        map.remove(k);
                    }
                } else {
                    merge_patch(&mut target[k.as_str()], v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PatchParams, PostParams, WatchEvent, WatchParams};

    #[tokio::test]
    async fn configmaps_round_trip_through_kube() {
        let fake = FakeApiServer::new();
        let client = fake.client();
        assert_eq!(
            client.apiserver_version().await.unwrap().git_version,
            "v1.33.0-fake"
        );
        let api: Api<ConfigMap> = Api::namespaced(client, "kube-system");
        let err = api.get("bootstrap").await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 404),
            "{err}"
        );
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "bootstrap"}, "data": {"status": "progressing"}
        }))
        .unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
        let conflict = api.create(&PostParams::default(), &cm).await.unwrap_err();
        assert!(matches!(&conflict, kube::Error::Api(s) if s.reason == "AlreadyExists"));
        let applied = api
            .patch(
                "bootstrap",
                &PatchParams::apply("test"),
                &kube::api::Patch::Apply(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "bootstrap", "namespace": "kube-system"},
                    "data": {"status": "complete"}
                })),
            )
            .await
            .unwrap();
        assert_eq!(applied.data.unwrap()["status"], "complete");
        assert_eq!(
            fake.get("v1", "ConfigMap", Some("kube-system"), "bootstrap")
                .unwrap()["data"]["status"],
            "complete"
        );
    }

    #[tokio::test]
    async fn a_watch_streams_changes_after_the_listed_version() {
        use futures_util::StreamExt as _;
        let fake = FakeApiServer::new();
        let api: Api<CertificateSigningRequest> = Api::all(fake.client());
        let csr = |name: &str| {
            json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                   "metadata": {"name": name},
                   "spec": {"request": "", "signerName": "kubernetes.io/kube-apiserver-client-kubelet", "usages": []}})
        };
        fake.put(csr("before"));
        let listed = api.list(&Default::default()).await.unwrap();
        let rv = listed.metadata.resource_version.unwrap();
        let mut stream = api
            .watch(&WatchParams::default().timeout(5), &rv)
            .await
            .unwrap()
            .boxed();
        fake.put(csr("after"));
        match stream.next().await.unwrap().unwrap() {
            WatchEvent::Added(c) => assert_eq!(c.metadata.name.as_deref(), Some("after")),
            other => panic!("expected the new CSR, got {other:?}"),
        }
    }
}
