//! The Ignition configs: `bootstrap.ign`, the pointer configs machines boot with, the pool
//! configs the machine config server serves, and the per-machine additions.
//!
//! Every file that goes into a config is read from the asset directory, so a user's edit of a
//! manifest or certificate is what lands on the machine.

use kindling_config::{ClusterDescription, Machine, Role};
use kindling_ignition::{Config, PointerConfig};

use crate::engine::{Asset, AssetError, Context, Dependency, Output};
use crate::layout;
use crate::manifests_asset::{self, MANIFESTS_DIR};
use crate::payload;
use crate::pki::{self, ETCD_CA, FRONT_PROXY_CA, ROOT_CA};
use crate::storage::Mode;

pub const BOOTSTRAP_IGN: &str = "bootstrap.ign";
pub const SNIPPETS_DIR: &str = "snippets";

/// The pools a machine can belong to, by role. Infra machines are workers with their own pool.
pub fn pool_of(role: Role) -> Option<&'static str> {
    match role {
        Role::Bootstrap => None,
        Role::Master => Some("master"),
        Role::Worker => Some("worker"),
        Role::Infra => Some("infra"),
    }
}

/// The pools the inventory needs, in a fixed order, with the role of their machines.
fn pools(d: &ClusterDescription) -> Vec<(&'static str, Role)> {
    let mut pools = vec![("master", Role::Master), ("worker", Role::Worker)];
    if d.inventory.with_role(Role::Infra).next().is_some() {
        pools.push(("infra", Role::Infra));
    }
    pools
}

/// The pools the inventory needs, each with its machines' names.
pub fn pool_members(d: &ClusterDescription) -> Vec<(&'static str, Vec<&str>)> {
    pools(d)
        .into_iter()
        .map(|(pool, role)| {
            let members = d.inventory.with_role(role).map(|m| m.name.as_str());
            (pool, members.collect())
        })
        .collect()
}

/// `ignition/<pool>.ign`.
pub fn pool_path(pool: &str) -> String {
    format!("ignition/{pool}.ign")
}

/// `ignition/machines/<name>.ign`: what the machine config server adds for one machine.
pub fn machine_path(name: &str) -> String {
    format!("ignition/machines/{name}.ign")
}

fn error(asset: &'static str, message: String) -> AssetError {
    AssetError::Generate { asset, message }
}

fn render(asset: &'static str, ctx: &Context<'_>, config: &Config) -> Result<Vec<u8>, AssetError> {
    config
        .render(ctx.description.inventory.provisioning.ignition_version)
        .map_err(|e| error(asset, e.to_string()))
}

/// Copies files of the asset directory into a config.
struct Files<'a, 'c> {
    ctx: &'a Context<'c>,
    config: &'a mut Config,
}

impl Files<'_, '_> {
    fn copy(&mut self, from: &str, to: &str, mode: u32) -> Result<(), AssetError> {
        let bytes = self.ctx.read(from)?;
        self.config.add_file(to, &bytes, mode);
        Ok(())
    }

    /// A certificate and its key, `<base>.crt/.key`, to `cert` (0644) and `key` (0600).
    fn pair(&mut self, base: &str, cert: &str, key: &str) -> Result<(), AssetError> {
        self.copy(&format!("{base}.crt"), cert, 0o644)?;
        self.copy(&format!("{base}.key"), key, 0o600)
    }

    /// Every file of an asset-directory folder into a machine folder, with one mode.
    fn folder(&mut self, from: &str, to: &str, mode: u32) -> Result<(), AssetError> {
        for path in self.ctx.list(from)? {
            let name = path.rsplit('/').next().unwrap_or(&path);
            self.copy(&path, &format!("{to}/{name}"), mode)?;
        }
        Ok(())
    }
}

/// The cluster manifests the bootstrap agent applies, yours included, each checked first: one
/// that is not YAML or not a Kubernetes object is an error here, with its file and line, rather
/// than a failure on the node during the bootstrap.
fn agent_manifests(files: &mut Files<'_, '_>) -> Result<(), AssetError> {
    for path in files.ctx.list(manifests_asset::CLUSTER_DIR)? {
        let text = match files.ctx.read_text(&path) {
            Err(AssetError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::InvalidData =>
            {
                return Err(AssetError::UserFile(format!(
                    "{path}: is not UTF-8 text, so not a manifest — remove it from {}",
                    manifests_asset::CLUSTER_DIR
                )));
            }
            read => read?,
        };
        crate::manifests::check_manifest(&path, &text).map_err(AssetError::UserFile)?;
    }
    files.folder(
        manifests_asset::CLUSTER_DIR,
        layout::AGENT_MANIFESTS_DIR,
        0o600,
    )?;
    // The labels the masters' kubelets may not give themselves, which the agent applies.
    let d = files.ctx.description;
    let labels: std::collections::BTreeMap<&str, _> = d
        .inventory
        .with_role(Role::Master)
        .map(|m| (m.name.as_str(), crate::manifests::node_labels(d, m)))
        .collect();
    let json = serde_json::to_string_pretty(&labels).expect("labels serialize");
    files
        .config
        .add_file(layout::NODE_LABELS, json.as_bytes(), 0o644);
    Ok(())
}

/// What every machine gets: the root CA, the site's additional trust bundle and the core
/// user's SSH keys.
fn common(files: &mut Files<'_, '_>) -> Result<(), AssetError> {
    files.copy(&ROOT_CA.cert(), layout::CA_CERT, 0o644)?;
    let keys: Vec<String> = files
        .ctx
        .description
        .install_config
        .ssh_key
        .iter()
        .flat_map(|k| k.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if !keys.is_empty() {
        files.config.add_ssh_keys("core", &keys);
    }
    // The CAs of the site's own registry mirrors, which the runtime's settings name.
    if let Some(bundle) = &files.ctx.description.install_config.additional_trust_bundle {
        files.config.add_file(
            kindling_node::ADDITIONAL_TRUST_BUNDLE,
            bundle.as_bytes(),
            0o644,
        );
    }
    let report = installed_report_unit(files.ctx.description);
    files
        .config
        .add_unit(layout::INSTALLED_REPORT_UNIT, &report, true);
    Ok(())
}

/// The unit that tells `kindling serve`, once, that the machine booted from its disk: the
/// server then closes the machine's install window. curl, which every supported OS has, with
/// the identity file the server adds to the machine's config; retried until the server
/// answers.
pub fn installed_report_unit(d: &ClusterDescription) -> String {
    format!(
        "[Unit]\n\
         Description=Report to kindling serve that this machine is installed (closes its install window)\n\
         ConditionPathExists={identity}\n\
         ConditionPathExists=!{marker}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         EnvironmentFile={identity}\n\
         ExecStart=/usr/bin/curl -fsS --max-time 10 -H \"Content-Type: application/json\" --data-raw \"{{\\\"mac\\\":\\\"${{mac}}\\\",\\\"token\\\":\\\"${{token}}\\\",\\\"stage\\\":\\\"installed\\\",\\\"result\\\":\\\"done\\\"}}\" {server}/api/v1/events\n\
         ExecStartPost=/usr/bin/mkdir -p {marker_dir}\n\
         ExecStartPost=/usr/bin/touch {marker}\n\
         Restart=on-failure\n\
         RestartSec=15\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        identity = layout::AGENT_IDENTITY,
        marker = layout::INSTALLED_MARKER,
        marker_dir = layout::INSTALLED_MARKER
            .rsplit_once('/')
            .map_or("/var/lib", |(dir, _)| dir),
        server = d.inventory.provisioning.server_url.trim_end_matches('/'),
    )
}

/// The control plane's keys and kubeconfigs, shared by the bootstrap machine and the masters.
fn control_plane_pki(files: &mut Files<'_, '_>) -> Result<(), AssetError> {
    files.pair(
        pki::CSR_SIGNER_CA.base,
        layout::CSR_SIGNER_CERT,
        layout::CSR_SIGNER_KEY,
    )?;
    files.copy(pki::CLIENT_CA_BUNDLE, layout::CLIENT_CA_BUNDLE, 0o644)?;
    files.pair(
        "tls/apiserver-kubelet-client",
        layout::APISERVER_KUBELET_CLIENT_CERT,
        layout::APISERVER_KUBELET_CLIENT_KEY,
    )?;
    files.pair(
        "tls/apiserver-etcd-client",
        layout::APISERVER_ETCD_CLIENT_CERT,
        layout::APISERVER_ETCD_CLIENT_KEY,
    )?;
    files.copy(&FRONT_PROXY_CA.cert(), layout::FRONT_PROXY_CA_CERT, 0o644)?;
    files.pair(
        "tls/front-proxy-client",
        layout::FRONT_PROXY_CLIENT_CERT,
        layout::FRONT_PROXY_CLIENT_KEY,
    )?;
    files.copy("tls/sa.key", layout::SA_KEY, 0o600)?;
    files.copy("tls/sa.pub", layout::SA_PUB, 0o644)?;
    files.copy(&ETCD_CA.cert(), layout::ETCD_CA_CERT, 0o644)?;
    files.copy(
        pki::CONTROLLER_MANAGER_KUBECONFIG,
        layout::CONTROLLER_MANAGER_KUBECONFIG,
        0o600,
    )?;
    files.copy(
        pki::SCHEDULER_KUBECONFIG,
        layout::SCHEDULER_KUBECONFIG,
        0o600,
    )
}

/// The kubelet's configuration and unit for machines of `role`; the same for every machine of a
/// pool, so it is in the pool's config rather than in each machine's part.
fn kubelet(files: &mut Files<'_, '_>, role: Role) -> Result<(), AssetError> {
    files.copy(
        &manifests_asset::kubelet_config(role),
        layout::KUBELET_CONFIG,
        0o644,
    )?;
    let unit = files.ctx.read_text(&manifests_asset::kubelet_unit(role))?;
    files.config.add_unit(layout::KUBELET_UNIT, &unit, true);
    Ok(())
}

/// The OS's container runtime, configured (cgroup driver, the sandbox image pinned with the
/// cluster's images, registries from `hosts.toml`, which the server adds per machine) and
/// started; on an OS without a kubelet, the kubelet, crictl and the CNI plugins from the mirror,
/// each checked by its sha512.
fn node_runtime(files: &mut Files<'_, '_>, payload: &payload::Resolved) {
    let d = files.ctx.description;
    let node = payload.node;
    let pause = crate::manifests::Images::for_version(&d.inventory.kubernetes.version).pause;
    for (path, text) in node.runtime_files(&pause) {
        files.config.add_file(path, text.as_bytes(), 0o644);
    }
    for (unit, name, text) in node.runtime_dropins() {
        files.config.add_dropin(unit, name, text);
    }
    let (enable, mask) = node.units();
    for unit in enable {
        files.config.enable_unit(unit);
    }
    for unit in mask {
        files.config.mask_unit(unit);
    }
    for (path, url, record) in &payload.binaries {
        files
            .config
            .add_remote_file(path, url, &record.sha512, 0o755);
    }
}

/// A machine's own part: hostname, kubelet arguments, and for a master its etcd member and
/// static pods. Only what differs between machines of a pool belongs here: the server keeps
/// every machine's part in memory.
fn machine_part(files: &mut Files<'_, '_>, m: &Machine) -> Result<(), AssetError> {
    files.config.set_hostname(&files.ctx.description.fqdn(m));
    for disk in &m.wipe_disks {
        files.config.wipe_disk(disk);
    }
    let env = crate::manifests::kubelet_env(files.ctx.description, m);
    files
        .config
        .add_file(layout::KUBELET_ENV, env.as_bytes(), 0o644);
    let etcd = |kind| format!("tls/etcd/{}-{kind}", m.name);
    if matches!(m.role, Role::Master | Role::Bootstrap) {
        files.pair(
            &pki::apiserver_base(&m.name),
            layout::APISERVER_CERT,
            layout::APISERVER_KEY,
        )?;
    }
    match m.role {
        Role::Master => {
            files.pair(
                &etcd("server"),
                layout::ETCD_SERVER_CERT,
                layout::ETCD_SERVER_KEY,
            )?;
            files.pair(&etcd("peer"), layout::ETCD_PEER_CERT, layout::ETCD_PEER_KEY)?;
            let pods = manifests_asset::master_dir(&m.name);
            for path in files.ctx.list(&pods)? {
                let to = if path.ends_with("/etcd-member.yaml") {
                    layout::ETCD_MEMBER_POD.to_string()
                } else {
                    format!(
                        "{}/{}",
                        layout::STATIC_PODS_DIR,
                        path.rsplit('/').next().unwrap_or(&path)
                    )
                };
                files.copy(&path, &to, 0o600)?;
            }
            if first_master_bootstraps(files.ctx.description, m) {
                // No bootstrap machine: this master runs the bootstrap stages itself.
                agent_manifests(files)?;
                files.copy(
                    pki::BOOTSTRAP_ADMIN_KUBECONFIG,
                    layout::ADMIN_KUBECONFIG,
                    0o600,
                )?;
                let unit = bootstrap_agent_unit(files.ctx.description, None);
                files
                    .config
                    .add_unit(layout::BOOTSTRAP_AGENT_UNIT, &unit, true);
            }
        }
        Role::Bootstrap => {
            files.pair(
                &etcd("server"),
                layout::ETCD_SERVER_CERT,
                layout::ETCD_SERVER_KEY,
            )?;
            files.pair(&etcd("peer"), layout::ETCD_PEER_CERT, layout::ETCD_PEER_KEY)?;
            files.folder(
                manifests_asset::BOOTSTRAP_DIR,
                layout::STATIC_PODS_DIR,
                0o600,
            )?;
        }
        Role::Worker | Role::Infra => {}
    }
    Ok(())
}

/// The user's Butane snippets, `snippets/<role or machine>/*.bu`, listed once per asset.
struct Snippets(Vec<String>);

impl Snippets {
    fn list(ctx: &Context<'_>) -> Result<Snippets, AssetError> {
        Ok(Snippets(ctx.list(SNIPPETS_DIR)?))
    }

    /// Merges `snippets/<name>/*.bu` into `config`, in file-name order.
    fn merge_into(
        &self,
        ctx: &Context<'_>,
        config: &mut Config,
        name: &str,
    ) -> Result<(), AssetError> {
        let prefix = format!("{SNIPPETS_DIR}/{name}/");
        for path in self
            .0
            .iter()
            .filter(|p| p.starts_with(&prefix) && p.ends_with(".bu"))
        {
            let text = ctx.read_text(path)?;
            let shown = ctx.dir.join(path).display().to_string();
            let snippet = kindling_ignition::parse_snippet(&shown, &text)
                .map_err(|e| AssetError::UserFile(e.to_string()))?;
            config.merge(snippet);
        }
        Ok(())
    }
}

/// The kindling binary, downloaded from the provisioning server and checked by its sha512.
fn agent_binary(ctx: &Context<'_>, config: &mut Config) -> Result<(), AssetError> {
    let server = &ctx.description.inventory.provisioning.server_url;
    let url = format!("{}/assets/kindling", server.trim_end_matches('/'));
    let sha512 = ctx.settings.agent_sha512.as_deref().ok_or_else(|| {
        error(
            "ignition",
            "the kindling binary's sha512 was not given".into(),
        )
    })?;
    config.add_remote_file(layout::KINDLING_BIN, &url, sha512, 0o755);
    Ok(())
}

/// etcd client URLs of these machines.
fn etcd_client_urls<'m>(machines: impl Iterator<Item = &'m Machine>) -> Vec<String> {
    machines
        .map(|m| {
            format!(
                "https://{}",
                std::net::SocketAddr::new(m.ip, crate::manifests::ETCD_CLIENT_PORT)
            )
        })
        .collect()
}

/// The masters' etcd member names, comma-separated.
fn master_names(d: &ClusterDescription) -> String {
    d.inventory
        .with_role(Role::Master)
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether `m` is the master that runs the bootstrap stages: the first master, when the
/// inventory has no bootstrap machine.
pub fn first_master_bootstraps(d: &ClusterDescription, m: &Machine) -> bool {
    d.inventory.with_role(Role::Bootstrap).next().is_none()
        && d.inventory
            .with_role(Role::Master)
            .next()
            .is_some_and(|first| first.name == m.name)
}

/// The bootstrap agent's unit: after the kubelet, which starts the temporary control plane.
/// It finds etcd at its own member (127.0.0.1) and, once that is removed, at the masters'; and
/// the API at its own apiserver (admin.conf) and then, with the same credentials, at api-int.
///
/// With `bootstrap` None, the unit of the first master of a cluster without a bootstrap
/// machine: no member to remove, and it runs after join-master, which founds etcd there.
pub fn bootstrap_agent_unit(d: &ClusterDescription, bootstrap: Option<&Machine>) -> String {
    let mut endpoints = vec![format!(
        "https://127.0.0.1:{}",
        crate::manifests::ETCD_CLIENT_PORT
    )];
    endpoints.extend(etcd_client_urls(d.inventory.with_role(Role::Master)));
    let api_int = format!(
        "https://{}:{}",
        d.api_int_host(),
        crate::manifests::API_PORT
    );
    format!(
        "[Unit]
Description=kindling bootstrap agent: applies the cluster manifests and hands the control plane over to the masters
Wants=network-online.target
After=network-online.target {kubelet}{after_join}

[Service]
Type=simple
ExecStart={bin} agent bootstrap --manifests {manifests} --kubeconfig {kubeconfig} --api-server {api_int} --masters {masters}{member} --etcd-endpoints {endpoints} --server {server}
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
",
        kubelet = layout::KUBELET_UNIT,
        bin = layout::KINDLING_BIN,
        manifests = layout::AGENT_MANIFESTS_DIR,
        kubeconfig = layout::ADMIN_KUBECONFIG,
        api_int = api_int,
        masters = master_names(d),
        member = bootstrap
            .map(|b| format!(" --bootstrap-member {}", b.name))
            .unwrap_or_default(),
        after_join = if bootstrap.is_none() {
            format!(" {}", layout::JOIN_MASTER_UNIT)
        } else {
            String::new()
        },
        endpoints = endpoints.join(","),
        server = d.inventory.provisioning.server_url.trim_end_matches('/'),
    )
}

/// The join-master unit of the master pool: before the kubelet, so that the kubelet starts the
/// etcd pod only once join-master has added the member and activated the pod. A oneshot that
/// waits as long as it takes (the bootstrap member may come up later), run again on failure; on
/// a machine that has joined it ends at once (its marker).
/// The node agent's unit on every machine of a pool: it keeps the machine on its rendering
/// (drift reported, updates applied) for the cluster's life. It waits for the kubelet, whose
/// client certificate is its identity.
pub fn node_agent_unit(d: &ClusterDescription) -> String {
    format!(
        "[Unit]
Description=kindling node agent: this machine's rendering, its drift, and its updates
Wants=network-online.target
After=network-online.target {kubelet}

[Service]
ExecStart={bin} agent node --mcs {mcs} --server {server}
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
",
        kubelet = layout::KUBELET_UNIT,
        bin = layout::KINDLING_BIN,
        mcs = d.mcs_url().trim_end_matches('/'),
        server = d.inventory.provisioning.server_url.trim_end_matches('/'),
    )
}

pub fn join_master_unit(d: &ClusterDescription) -> String {
    let endpoints = etcd_client_urls(
        d.inventory
            .with_role(Role::Bootstrap)
            .chain(d.inventory.with_role(Role::Master)),
    );
    format!(
        "[Unit]
Description=kindling join-master: adds this master's etcd member to the cluster and activates its etcd pod
Wants=network-online.target
After=network-online.target
Before={kubelet}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={bin} agent join-master --etcd-endpoints {endpoints} --server {server}
Restart=on-failure
RestartSec=10
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
",
        kubelet = layout::KUBELET_UNIT,
        bin = layout::KINDLING_BIN,
        endpoints = endpoints.join(","),
        server = d.inventory.provisioning.server_url.trim_end_matches('/'),
    )
}

const IGNITION_DEPS: &[Dependency] = &[
    Dependency::Asset("cluster-summary"),
    Dependency::Asset("root-ca"),
    Dependency::Asset("csr-signer-ca"),
    Dependency::Asset("etcd-ca"),
    Dependency::Asset("front-proxy-ca"),
    Dependency::Asset("service-account-key"),
    Dependency::Asset("apiserver-cert"),
    Dependency::Asset("apiserver-bootstrap-cert"),
    Dependency::Asset("apiserver-kubelet-client-cert"),
    Dependency::Asset("apiserver-etcd-client-cert"),
    Dependency::Asset("front-proxy-client-cert"),
    Dependency::Asset("etcd-master-certs"),
    Dependency::Asset("etcd-bootstrap-certs"),
    Dependency::Asset("kubeconfigs"),
    Dependency::Asset("manifests"),
    // Manifests the user adds, not only the ones kindling wrote.
    Dependency::InputDir(MANIFESTS_DIR),
    Dependency::InputDir(SNIPPETS_DIR),
    // The node binaries are pinned by their digests in the mirror.
    crate::payload::MIRROR_DEPS[0],
    crate::payload::MIRROR_DEPS[1],
];

/// `bootstrap.ign`: everything the bootstrap machine needs, secrets included (mode 0600).
pub struct BootstrapIgnition;

impl Asset for BootstrapIgnition {
    fn id(&self) -> &'static str {
        "bootstrap-ignition"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        IGNITION_DEPS
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let Some(bootstrap) = ctx.description.inventory.with_role(Role::Bootstrap).next() else {
            return Ok(Vec::new());
        };
        let mut config = Config::new();
        let mut files = Files {
            ctx,
            config: &mut config,
        };
        common(&mut files)?;
        control_plane_pki(&mut files)?;
        files.copy(
            pki::BOOTSTRAP_ADMIN_KUBECONFIG,
            layout::ADMIN_KUBECONFIG,
            0o600,
        )?;
        kubelet(&mut files, Role::Bootstrap)?;
        node_runtime(&mut files, &payload::resolve(ctx)?);
        machine_part(&mut files, bootstrap)?;
        agent_manifests(&mut files)?;
        agent_binary(ctx, &mut config)?;
        config.add_unit(
            layout::BOOTSTRAP_AGENT_UNIT,
            &bootstrap_agent_unit(ctx.description, Some(bootstrap)),
            true,
        );
        let snippets = Snippets::list(ctx)?;
        snippets.merge_into(ctx, &mut config, "bootstrap")?;
        snippets.merge_into(ctx, &mut config, &bootstrap.name)?;
        Ok(vec![Output {
            path: BOOTSTRAP_IGN.into(),
            contents: render(self.id(), ctx, &config)?,
            mode: Mode::Secret,
        }])
    }
}

/// A config the machine config server serves: what `build` puts in, then the user's snippets
/// for `snippets_for` (a pool or a machine). 0600 when it carries a key or a credential (an
/// owner-only file); otherwise 0640, readable by a server in the group.
fn served_config(
    asset: &'static str,
    ctx: &Context<'_>,
    snippets: &Snippets,
    snippets_for: &str,
    path: String,
    build: impl FnOnce(&mut Files<'_, '_>) -> Result<(), AssetError>,
) -> Result<Output, AssetError> {
    let mut config = Config::new();
    build(&mut Files {
        ctx,
        config: &mut config,
    })?;
    snippets.merge_into(ctx, &mut config, snippets_for)?;
    let mode = if config.holds_owner_only_files() {
        Mode::Secret
    } else {
        Mode::ServerReadable
    };
    Ok(Output {
        path,
        contents: render(asset, ctx, &config)?,
        mode,
    })
}

/// Zincati's configuration drop-in (Fedora CoreOS's OS updater).
pub const ZINCATI_CONFIG: &str = "/etc/zincati/config.d/55-kindling-fleetlock.toml";

/// On Fedora CoreOS, Zincati asks `kindling serve` (FleetLock, in the machine's pool as its
/// group) before it reboots into an OS update, so that OS reboots take the same slots, and
/// keep to the same maintenance windows, as kindling's rolling updates. Other OSes update
/// otherwise (Flatcar's update engine, RHCOS through the machine-config-operator).
pub fn zincati_config(d: &ClusterDescription, pool: &str) -> Option<String> {
    if d.inventory.provisioning.os != kindling_config::inventory::Os::Fcos {
        return None;
    }
    let server = d.inventory.provisioning.server_url.trim_end_matches('/');
    Some(format!(
        "# Reboots into OS updates wait for a slot of the {pool} pool from kindling serve.\n\
         # Generated by kindling.\n\
         [identity]\n\
         group = \"{pool}\"\n\
         \n\
         [updates]\n\
         strategy = \"fleet_lock\"\n\
         \n\
         [updates.fleet_lock]\n\
         base_url = \"{server}/\"\n"
    ))
}

/// `ignition/<pool>.ign`: the full configs the machine config server serves.
pub struct PoolIgnition;

impl Asset for PoolIgnition {
    fn id(&self) -> &'static str {
        "pool-ignition"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        IGNITION_DEPS
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let mut outputs = Vec::new();
        let snippets = Snippets::list(ctx)?;
        let payload = payload::resolve(ctx)?;
        for (pool, role) in pools(ctx.description) {
            let output =
                served_config(self.id(), ctx, &snippets, pool, pool_path(pool), |files| {
                    common(files)?;
                    // The bootstrap machine's kubelet runs standalone; nodes join with the token.
                    files.copy(
                        pki::KUBELET_BOOTSTRAP_KUBECONFIG,
                        layout::KUBELET_BOOTSTRAP_KUBECONFIG,
                        0o600,
                    )?;
                    kubelet(files, role)?;
                    node_runtime(files, &payload);
                    if let Some(zincati) = zincati_config(ctx.description, pool) {
                        files
                            .config
                            .add_file(ZINCATI_CONFIG, zincati.as_bytes(), 0o644);
                    }
                    agent_binary(ctx, files.config)?;
                    files.config.add_unit(
                        layout::NODE_AGENT_UNIT,
                        &node_agent_unit(ctx.description),
                        true,
                    );
                    if pool == "master" {
                        control_plane_pki(files)?;
                        files.config.add_unit(
                            layout::JOIN_MASTER_UNIT,
                            &join_master_unit(ctx.description),
                            true,
                        );
                    }
                    Ok(())
                })?;
            outputs.push(output);
        }
        Ok(outputs)
    }
}

/// `ignition/machines/<name>.ign`: each machine's own part, which the machine config server
/// merges into its pool's config.
pub struct MachineIgnition;

impl Asset for MachineIgnition {
    fn id(&self) -> &'static str {
        "machine-ignition"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        IGNITION_DEPS
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let mut outputs = Vec::new();
        let snippets = Snippets::list(ctx)?;
        for m in ctx
            .description
            .inventory
            .machines
            .iter()
            .filter(|m| m.role != Role::Bootstrap)
        {
            let path = machine_path(&m.name);
            let part = |files: &mut Files<'_, '_>| machine_part(files, m);
            outputs.push(served_config(
                self.id(),
                ctx,
                &snippets,
                &m.name,
                path,
                part,
            )?);
        }
        Ok(outputs)
    }
}

/// `master.ign`, `worker.ign` (and `infra.ign`): what machines boot with. Each merges its pool's
/// config from the machine config server and trusts the root CA. No secrets.
pub struct PointerIgnition;

impl Asset for PointerIgnition {
    fn id(&self) -> &'static str {
        "pointer-ignition"
    }

    fn depends_on(&self) -> &'static [Dependency] {
        &[
            Dependency::Asset("cluster-summary"),
            Dependency::Asset("root-ca"),
        ]
    }

    fn generate(&self, ctx: &Context<'_>) -> Result<Vec<Output>, AssetError> {
        let ca = ctx.read_text(&ROOT_CA.cert())?;
        let mcs = ctx.description.mcs_url();
        let mut outputs = Vec::new();
        for (pool, _) in pools(ctx.description) {
            let pointer = PointerConfig {
                source: format!("{}/config/{pool}", mcs.trim_end_matches('/')),
                root_ca_pem: ca.clone(),
                http_headers: Vec::new(),
            };
            let contents = pointer
                .render(ctx.description.inventory.provisioning.ignition_version)
                .map_err(|e| error(self.id(), e.to_string()))?;
            outputs.push(Output {
                path: format!("{pool}.ign"),
                contents,
                mode: Mode::Public,
            });
        }
        Ok(outputs)
    }
}

/// The Ignition assets, after the manifests.
pub fn assets() -> Vec<&'static dyn Asset> {
    vec![
        &BootstrapIgnition,
        &PoolIgnition,
        &MachineIgnition,
        &PointerIgnition,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::testing::demo;

    fn exec_start(unit: &str) -> Vec<&str> {
        unit.lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap()
            .split_whitespace()
            .collect()
    }

    fn flag<'u>(args: &[&'u str], name: &str) -> Option<&'u str> {
        args.iter()
            .position(|a| *a == name)
            .and_then(|i| args.get(i + 1).copied())
    }

    #[test]
    fn zincati_asks_kindling_serve_before_rebooting_on_fedora_coreos_only() {
        let mut d = demo();
        let config = zincati_config(&d, "worker").unwrap();
        assert!(config.contains("group = \"worker\"\n"), "{config}");
        assert!(config.contains("strategy = \"fleet_lock\"\n"), "{config}");
        // Zincati joins "v1/pre-reboot" to the base URL: it must end with a slash.
        assert!(
            config.contains("base_url = \"http://192.168.126.2:8080/\"\n"),
            "{config}"
        );
        d.inventory.provisioning.os = kindling_config::inventory::Os::Flatcar;
        assert_eq!(zincati_config(&d, "worker"), None);
    }

    #[test]
    fn the_bootstrap_agent_knows_the_masters_and_where_etcd_is() {
        let d = demo();
        let bootstrap = d.inventory.with_role(Role::Bootstrap).next().unwrap();
        let unit = bootstrap_agent_unit(&d, Some(bootstrap));
        let args = exec_start(&unit);
        assert_eq!(&args[..3], [layout::KINDLING_BIN, "agent", "bootstrap"]);
        assert_eq!(flag(&args, "--masters"), Some("master0,master1,master2"));
        assert_eq!(flag(&args, "--bootstrap-member"), Some("bootstrap"));
        assert_eq!(
            flag(&args, "--etcd-endpoints"),
            Some(
                "https://127.0.0.1:2379,https://192.168.126.110:2379,\
                 https://192.168.126.111:2379,https://192.168.126.112:2379"
            )
        );
        assert_eq!(flag(&args, "--server"), Some("http://192.168.126.2:8080"));
        assert_eq!(
            flag(&args, "--api-server"),
            Some("https://api-int.demo.example.localdomain:6443")
        );
        assert!(unit.contains("After=network-online.target kubelet.service"));
    }

    #[test]
    fn without_a_bootstrap_machine_the_first_masters_agent_removes_nothing() {
        let mut d = demo();
        d.inventory.machines.retain(|m| m.role != Role::Bootstrap);
        let masters: Vec<&Machine> = d.inventory.with_role(Role::Master).collect();
        assert!(first_master_bootstraps(&d, masters[0]));
        assert!(!first_master_bootstraps(&d, masters[1]));
        let unit = bootstrap_agent_unit(&d, None);
        let args = exec_start(&unit);
        assert_eq!(flag(&args, "--bootstrap-member"), None);
        assert_eq!(flag(&args, "--masters"), Some("master0,master1,master2"));
        assert!(
            unit.contains(
                "After=network-online.target kubelet.service kindling-join-master.service"
            ),
            "{unit}"
        );
        assert!(!first_master_bootstraps(&demo(), masters[0]));
    }

    #[test]
    fn join_master_runs_before_the_kubelet_and_asks_every_member() {
        let d = demo();
        let unit = join_master_unit(&d);
        let args = exec_start(&unit);
        assert_eq!(&args[..3], [layout::KINDLING_BIN, "agent", "join-master"]);
        assert_eq!(
            flag(&args, "--etcd-endpoints"),
            Some(
                "https://192.168.126.100:2379,https://192.168.126.110:2379,\
                 https://192.168.126.111:2379,https://192.168.126.112:2379"
            )
        );
        for line in [
            "Before=kubelet.service",
            "Type=oneshot",
            "RemainAfterExit=yes",
            "Restart=on-failure",
            "TimeoutStartSec=infinity",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} in\n{unit}");
        }
    }
}
