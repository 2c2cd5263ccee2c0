//! Everything the server answers from, loaded into memory once from the asset directory: the
//! machines by MAC and name, their boot profiles, the pool and per-machine Ignition configs and
//! bootstrap.ign. Requests are hash lookups; nothing is read from disk per request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kindling_assets::companion::{ConfigMaker, config_maker};
use kindling_assets::ignition::{BOOTSTRAP_IGN, machine_path, pool_of, pool_path};
use kindling_assets::layout;
use kindling_assets::renderings::{self, PoolState};
use kindling_config::inventory::Os;
use kindling_config::{ClusterDescription, LoadError, MacAddr, Machine, Role};
use kindling_ignition::Config;

use crate::part::{self, Identity, Shapes};
use crate::token::TokenKey;

/// `D/mirror`, which `kindling mirror` fills.
pub const MIRROR_DIR: &str = "mirror";

/// Why the catalog could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the cluster description in {dir} is invalid:\n{findings}")]
    Invalid { dir: PathBuf, findings: String },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable Ignition config: {message}")]
    BadConfig { path: PathBuf, message: String },
    #[error("the mirror cannot be read: {0}")]
    Mirror(#[from] kindling_mirror::MirrorError),
    #[error(transparent)]
    Rendering(#[from] kindling_assets::renderings::RenderingError),
    #[error(
        "{path} is missing, but ignition/pools/{pool}.json says machines are meant to run it; restore it from a backup, or move them with kindling update --pool {pool}"
    )]
    MissingRendering { path: PathBuf, pool: String },
}

/// A pool's renderings that machines are meant to be on: its target, and those that machines
/// not moved yet by a rolling update still run.
#[derive(Debug)]
struct Pool {
    state: PoolState,
    renderings: HashMap<String, Arc<Config>>,
}

impl Pool {
    /// The pool's state and the renderings it points at. A pool whose configs were made before
    /// renderings were kept has only `ignition/<pool>.ign`: that is its target.
    fn load(dir: &Path, pool: &str) -> Result<Option<Pool>, CatalogError> {
        let mut state = PoolState::load(dir, pool)?;
        let mut renderings = HashMap::new();
        if state.target.is_none() {
            let path = dir.join(pool_path(pool));
            let Some(bytes) = read(&path)? else {
                return Ok(None);
            };
            let name = renderings::name_of(pool, &bytes);
            renderings.insert(name.clone(), Arc::new(parse(&path, &bytes)?));
            state.target = Some(name);
            return Ok(Some(Pool { state, renderings }));
        }
        let wanted = state.target.iter().chain(state.machines.values());
        for name in wanted {
            if renderings.contains_key(name) {
                continue;
            }
            let path = dir.join(renderings::rendering_path(name));
            let config = config(&path)?.ok_or_else(|| CatalogError::MissingRendering {
                path: path.clone(),
                pool: pool.to_string(),
            })?;
            renderings.insert(name.clone(), config);
        }
        Ok(Some(Pool { state, renderings }))
    }

    /// The rendering `machine` is meant to be on, and its config.
    fn desired(&self, machine: Option<&str>) -> Option<(&str, &Arc<Config>)> {
        let name = match machine {
            Some(machine) => self.state.desired(machine)?,
            None => self.state.target.as_deref()?,
        };
        Some((name, self.renderings.get(name)?))
    }
}

/// One machine of the inventory and what the server knows about it.
#[derive(Debug)]
pub struct Entry {
    pub machine: Machine,
    /// The machine config pool it gets its config from (none for the bootstrap machine).
    pub pool: Option<&'static str>,
    /// The shape of `ignition/machines/<name>.ign`, shared with the machine's pool mates and
    /// parsed per request: kept parsed, every part would cost several times its ~0.7 KB of JSON.
    part: Option<Arc<[u8]>>,
}

/// The query parameter that pins a request to a store revision (see [`Catalog::revision`]).
pub const REVISION_PARAM: &str = "rev";

/// What is served, built from the asset directory.
pub struct Catalog {
    pub dir: PathBuf,
    /// The store revision this is (`serve --store`), which the URLs of the boot chain carry
    /// (`rev=`), so that a machine's every request is answered from the same revision; None
    /// for an asset directory served as it is.
    pub revision: Option<u64>,
    /// The description, except that its `inventory.machines` is empty: they are moved into
    /// `machines`, so that each machine is held once (100,000 machines cost ~20 MB each time).
    pub description: ClusterDescription,
    /// The inventory's machines, in inventory order.
    pub machines: Vec<Entry>,
    by_mac: HashMap<MacAddr, u32>,
    /// Indexes into `machines`, sorted by name: a binary search finds a name without a second
    /// copy of every name.
    by_name: Vec<u32>,
    /// Indexes into `machines`, sorted by address, for `serve --mcs-auth=source-ip`.
    by_ip: Vec<u32>,
    /// The pools of the inventory's machines, ready or not.
    known_pools: Vec<&'static str>,
    /// Each pool's renderings in use; absent until `create ignition-configs` has run.
    pools: HashMap<&'static str, Pool>,
    /// Configs served as they are, by role: bootstrap.ign always; in OpenShift companion mode
    /// ([`config_maker`]) also openshift-install's master.ign and worker.ign.
    as_is: HashMap<Role, Arc<Vec<u8>>>,
    /// The configs are kindling's (not openshift-install's): its agents run on the bootstrap
    /// machine and the masters, and get their machine's identity file.
    pub kindling_configs: bool,
    pub root_ca_pem: String,
    pub tokens: TokenKey,
    /// The credential of the UI and the read APIs (see [`crate::ui::auth`]).
    pub admin: crate::ui::auth::AdminToken,
    /// `D/mirror`: the images the registry serves and the node binaries under `/assets/mirror/`.
    pub mirror: Arc<kindling_mirror::Mirror>,
    /// The machines' boot scripts, made once per install disk.
    pub scripts: crate::profile::Scripts,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("dir", &self.dir)
            .field("machines", &self.machines.len())
            .field("pools", &self.pools.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, CatalogError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CatalogError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// What a machine's part is shaped by; `ip` is a buffer for the address as text.
fn identity<'a>(m: &'a Machine, fqdn: &'a str, ip: &'a mut String) -> Identity<'a> {
    use std::fmt::Write as _;
    ip.clear();
    let _ = write!(ip, "{}", m.ip);
    Identity {
        name: &m.name,
        fqdn,
        ip,
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Config, CatalogError> {
    Config::from_json(bytes).map_err(|e| CatalogError::BadConfig {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn config(path: &Path) -> Result<Option<Arc<Config>>, CatalogError> {
    let Some(bytes) = read(path)? else {
        return Ok(None);
    };
    parse(path, &bytes).map(|c| Some(Arc::new(c)))
}

impl Catalog {
    /// Loads the asset directory `dir`.
    pub fn load(dir: &Path) -> Result<Catalog, CatalogError> {
        let mut description = match ClusterDescription::load(dir) {
            Ok(loaded) => loaded.description,
            Err(LoadError::Invalid(findings)) => {
                let findings = findings
                    .iter()
                    .filter(|f| f.severity == kindling_config::Severity::Error)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(CatalogError::Invalid {
                    dir: dir.to_path_buf(),
                    findings,
                });
            }
            Err(LoadError::Read { path, source }) => {
                return Err(CatalogError::Read { path, source });
            }
            Err(e @ (LoadError::NotAFile { .. } | LoadError::NotUtf8 { .. })) => {
                return Err(CatalogError::Invalid {
                    dir: dir.to_path_buf(),
                    findings: e.to_string(),
                });
            }
        };
        let tokens = TokenKey::load_or_create(dir).map_err(|source| CatalogError::Read {
            path: dir.join(crate::token::KEY_FILE),
            source,
        })?;
        let admin = crate::ui::auth::AdminToken::load_or_create(dir).map_err(|source| {
            CatalogError::Read {
                path: dir.join(crate::ui::auth::TOKEN_FILE),
                source,
            }
        })?;
        let root_ca_pem = read(&dir.join("tls/root-ca.crt"))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();

        let inventory = std::mem::take(&mut description.inventory.machines);
        let mut machines = Vec::with_capacity(inventory.len());
        let mut by_mac = HashMap::with_capacity(inventory.iter().map(|m| m.macs.len()).sum());
        let mut known_pools = Vec::new();
        let mut shapes = Shapes::default();
        let mut ip = String::new();
        let mut pools = HashMap::new();
        for m in inventory {
            let index = u32::try_from(machines.len()).expect("fewer than 2^32 machines");
            for mac in &m.macs {
                by_mac.insert(*mac, index);
            }
            let pool = pool_of(m.role);
            if let Some(pool) = pool
                && !known_pools.contains(&pool)
            {
                known_pools.push(pool);
            }
            if let Some(pool) = pool
                && !pools.contains_key(pool)
                && let Some(loaded) = Pool::load(dir, pool)?
            {
                pools.insert(pool, loaded);
            }
            let part_path = dir.join(machine_path(&m.name));
            let fqdn = description.fqdn(&m);
            let part = match read(&part_path)? {
                Some(bytes) => {
                    parse(&part_path, &bytes)?;
                    Some(shapes.intern(&bytes, &identity(&m, &fqdn, &mut ip)))
                }
                None => None,
            };
            machines.push(Entry {
                machine: m,
                pool,
                part,
            });
        }
        let mut by_name: Vec<u32> = (0..machines.len() as u32).collect();
        by_name.sort_unstable_by(|a, b| {
            machines[*a as usize]
                .machine
                .name
                .cmp(&machines[*b as usize].machine.name)
        });
        let mut by_ip: Vec<u32> = (0..machines.len() as u32).collect();
        by_ip.sort_unstable_by_key(|i| machines[*i as usize].machine.ip);
        let mut as_is = HashMap::new();
        if let Some(bytes) = read(&dir.join(BOOTSTRAP_IGN))? {
            as_is.insert(Role::Bootstrap, Arc::new(bytes));
        }
        let kindling_configs = config_maker(dir) == ConfigMaker::Kindling;
        if !kindling_configs {
            for (role, file) in [(Role::Master, "master.ign"), (Role::Worker, "worker.ign")] {
                if let Some(bytes) = read(&dir.join(file))? {
                    as_is.insert(role, Arc::new(bytes));
                }
            }
        }
        let mirror = Arc::new(kindling_mirror::Mirror::open(&dir.join(MIRROR_DIR))?);
        Ok(Catalog {
            scripts: Default::default(),
            dir: dir.to_path_buf(),
            revision: None,
            description,
            machines,
            by_mac,
            by_name,
            by_ip,
            known_pools,
            pools,
            as_is,
            kindling_configs,
            root_ca_pem,
            tokens,
            admin,
            mirror,
        })
    }

    pub fn by_mac(&self, mac: MacAddr) -> Option<&Entry> {
        self.index_of_mac(mac).map(|i| &self.machines[i])
    }

    /// The position in `machines` of the machine with `mac`.
    pub fn index_of_mac(&self, mac: MacAddr) -> Option<usize> {
        self.by_mac.get(&mac).map(|i| *i as usize)
    }

    pub fn by_name(&self, name: &str) -> Option<&Entry> {
        let entry = |i: &u32| &self.machines[*i as usize];
        self.by_name
            .binary_search_by(|i| entry(i).machine.name.as_str().cmp(name))
            .ok()
            .map(|found| entry(&self.by_name[found]))
    }

    /// The machine with this address (inventory validation makes addresses unique).
    pub fn by_ip(&self, ip: std::net::IpAddr) -> Option<&Entry> {
        let entry = |i: &u32| &self.machines[*i as usize];
        self.by_ip
            .binary_search_by(|i| entry(i).machine.ip.cmp(&ip))
            .ok()
            .map(|found| entry(&self.by_ip[found]))
    }

    /// The token a machine must present.
    pub fn token(&self, entry: &Entry) -> String {
        self.tokens
            .token(&entry.machine.name, entry.machine.macs[0])
    }

    /// Adds the machine's identity file (`mac=`, `token=`; root only), so that its agent can
    /// report its stages as events, and its first boot can report the install done (which
    /// closes its install window). Every machine of kindling's own configs gets it.
    pub fn add_agent_identity(&self, entry: &Entry, config: &mut Config) {
        if !self.kindling_configs {
            return;
        }
        let identity = format!(
            "mac={}\ntoken={}\n",
            entry.machine.macs[0],
            self.token(entry)
        );
        config.add_file(layout::AGENT_IDENTITY, identity.as_bytes(), 0o600);
    }

    /// Adds the file that names the rendering a machine runs, for its node agent. kindling's own
    /// configs only: openshift-install's are served as they are.
    pub fn add_rendering_name(&self, rendering: &str, config: &mut Config) {
        if self.kindling_configs {
            config.add_file(
                layout::RENDERING,
                format!("{rendering}\n").as_bytes(),
                0o644,
            );
        }
    }

    /// Adds the container runtime's registry settings that send every image to this server's
    /// registry (on the machine config server's listener, trusted through the cluster's root
    /// CA), or to the site's own mirror for the registries install-config.yaml's image sources
    /// name: `hosts.toml` per upstream for containerd, a registries.conf drop-in for CRI-O. With
    /// `credentials`, the machine's name and token go in as Basic credentials, so the files are
    /// the machine's own. Nothing is added when the mirror holds no image.
    pub fn add_registry_access(
        &self,
        entry: Option<&Entry>,
        credentials: bool,
        config: &mut Config,
    ) {
        let upstreams = self.mirror.registries();
        let site = kindling_assets::payload::site_mirrors(&self.description);
        if !self.kindling_configs || (upstreams.is_empty() && site.is_empty()) {
            return;
        }
        let url = self.mcs_url();
        let token = entry
            .filter(|_| credentials)
            .map(|e| (e.machine.name.as_str(), self.token(e)));
        let access = kindling_node::mirror::RegistryAccess {
            url: url.trim_end_matches('/'),
            ca_path: layout::CA_CERT,
            credentials: token.as_ref().map(|(name, token)| (*name, token.as_str())),
        };
        let runtime = kindling_node::Node::new(self.os()).runtime();
        for entry in kindling_node::mirror::entries(runtime, &access, &upstreams, &site) {
            match entry {
                kindling_node::mirror::Entry::File {
                    path,
                    contents,
                    mode,
                } => {
                    config.add_file(&path, contents.as_bytes(), mode);
                }
                kindling_node::mirror::Entry::Link { path, target } => {
                    config.add_link(&path, &target)
                }
            }
        }
    }

    /// The boot images the machines will fetch from this server's `/assets/` that are not in
    /// `<dir>/assets/`: they would get 404 at boot.
    pub fn missing_boot_assets(&self) -> Vec<std::path::PathBuf> {
        crate::profile::missing_boot_assets(&self.dir, &self.description)
    }

    /// Whether `token` is the machine's, for any of its MACs.
    pub fn verify(&self, entry: &Entry, token: &str) -> bool {
        self.tokens
            .verify(&entry.machine.name, entry.machine.macs[0], token)
    }

    /// Whether the MCS serves this pool (kindling mode, after `create ignition-configs`).
    pub fn pool_ready(&self, pool: &str) -> bool {
        self.pools.contains_key(pool)
    }

    /// The pools the inventory has, ready or not.
    pub fn knows_pool(&self, pool: &str) -> bool {
        self.known_pools.contains(&pool)
    }

    /// A pool's target rendering alone, for servers that cannot tell machines apart: its name
    /// and config.
    pub fn pool_config(&self, pool: &str) -> Option<(String, Config)> {
        let (name, config) = self.pools.get(pool)?.desired(None)?;
        Some((name.to_string(), config.as_ref().clone()))
    }

    /// The rendering a machine is meant to be on, by name.
    pub fn desired_rendering(&self, entry: &Entry) -> Option<&str> {
        let pool = self.pools.get(entry.pool?)?;
        pool.desired(Some(&entry.machine.name))
            .map(|(name, _)| name)
    }

    /// `<machine>.<cluster domain>`; made when asked, rather than kept for every machine
    /// (100,000 machines: ~5 MB).
    pub fn fqdn(&self, entry: &Entry) -> String {
        self.description.fqdn(&entry.machine)
    }

    /// A machine's full config from the MCS: the rendering of its pool it is meant to be on
    /// (its name, and the config), with the machine's own part merged in.
    pub fn machine_config(&self, entry: &Entry) -> Option<(String, Config)> {
        let pool = self.pools.get(entry.pool?)?;
        let (name, rendering) = pool.desired(Some(&entry.machine.name))?;
        Some((name.to_string(), self.with_part(entry, rendering)))
    }

    /// [`Catalog::machine_config`] for another of the pool's renderings, by name: what a node
    /// agent asks for to check its disk against, or to move to. Renderings no machine is meant
    /// to be on are read from disk when asked (the node agents' rare requests, not the boot
    /// path). `Ok(None)` when the pool has no such rendering.
    pub fn machine_config_at(
        &self,
        entry: &Entry,
        rendering: &str,
    ) -> Result<Option<Config>, CatalogError> {
        let Some(pool) = entry.pool.and_then(|p| self.pools.get(p)) else {
            return Ok(None);
        };
        if let Some(config) = pool.renderings.get(rendering) {
            return Ok(Some(self.with_part(entry, config)));
        }
        if pool.state.check(rendering).is_err() {
            return Ok(None);
        }
        let path = self.dir.join(renderings::rendering_path(rendering));
        let Some(config) = config(&path)? else {
            return Ok(None);
        };
        Ok(Some(self.with_part(entry, &config)))
    }

    /// A rendering with the machine's own part merged in.
    fn with_part(&self, entry: &Entry, rendering: &Config) -> Config {
        let mut config = rendering.clone();
        let fqdn = self.fqdn(entry);
        // Checked when the catalog was loaded, so it parses.
        let mut ip = String::new();
        let part = entry.part.as_deref().map(|shape| {
            let who = identity(&entry.machine, &fqdn, &mut ip);
            Config::from_json(&part::expand(shape, &who))
        });
        let part = part.transpose();
        if let Ok(Some(part)) = part {
            config.merge(part);
        } else {
            if let Err(e) = part {
                tracing::error!(machine = %entry.machine.name, "its Ignition part no longer parses: {e}");
            }
            config.set_hostname(&fqdn);
        }
        config
    }

    /// A config served as it is for this machine's role, if there is one.
    pub fn as_is(&self, role: Role) -> Option<Arc<Vec<u8>>> {
        self.as_is.get(&role).cloned()
    }

    /// Where the machine config server is, from the machines' point of view.
    pub fn mcs_url(&self) -> String {
        self.description.mcs_url()
    }

    /// `url` with this catalog's revision added to its query (`rev=N`), if it has one.
    pub fn pinned(&self, url: String) -> String {
        match self.revision {
            Some(n) => {
                let joint = if url.contains('?') { '&' } else { '?' };
                format!("{url}{joint}{REVISION_PARAM}={n}")
            }
            None => url,
        }
    }

    pub fn server_url(&self) -> &str {
        self.description
            .inventory
            .provisioning
            .server_url
            .trim_end_matches('/')
    }

    /// What downloading `/assets/<path>` means in a boot: the kernel, the initrd, a node binary
    /// (from the mirror, or kindling itself for the node agent), or some other asset. Firmware
    /// names no machine when it downloads, so this is the only clue.
    pub fn asset_stage(&self, path: &str) -> &'static str {
        if path.starts_with("mirror/") || path == "kindling" {
            return "binaries";
        }
        let profile = crate::profile::BootProfile::for_machine(&crate::profile::ProfileInputs {
            os: self.os(),
            images: &self.description.inventory.provisioning.os_images,
            server_url: self.server_url(),
            install_disk: "",
            ignition_url: "",
            extra_args: &[],
        });
        let served = format!("{}/assets/{path}", self.server_url());
        if profile.kernel == served {
            "kernel"
        } else if profile.initrds.contains(&served) {
            "initrd"
        } else {
            "asset"
        }
    }

    pub fn os(&self) -> Os {
        self.description.inventory.provisioning.os
    }
}
