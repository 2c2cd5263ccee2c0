//! Command-line arguments. Everything clap knows about lives here; each command turns its
//! arguments into a request to a library crate.

pub mod agent;
pub mod approve_csrs;
pub mod certs;
pub mod create;
pub mod demo;
pub mod doctor;
pub mod gather;
pub mod install;
pub mod machines;
pub mod mirror;
pub mod power;
pub mod remove;
pub mod serve;
pub mod status;
pub mod store;
pub mod update;
pub mod wait_for;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  internal error (a file could not be read or written, or a bug)
  2  usage error (unknown command or flag)
  3  the cluster description is invalid (as openshift-install); nothing was written
  4  doctor found errors in the environment (DNS, load balancer, provisioning, certificates)
  5  bootstrap failed (wait-for bootstrap-complete: timed out, or the agent failed)
  6  install failed (wait-for install-complete timed out)
  7  the cluster's API could not be reached (approve-csrs); the message says why";

/// Installs Kubernetes on bare metal: from a cluster description to a running cluster.
#[derive(Debug, Parser)]
#[command(name = "kindling", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    /// How much to log to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Info, env = "KINDLING_LOG_LEVEL")]
    pub log_level: LogLevel,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the cluster description, then the assets from it.
    #[command(subcommand)]
    Create(CreateCommand),
    /// Write the built-in example cluster into a directory and run every `create` step on it.
    Demo(DemoArgs),
    /// Serve network boot (matchbox's HTTP API) and the machine config server (TLS).
    Serve(ServeArgs),
    /// Check DNS, the load balancer, the provisioning server and the certificates against the
    /// description, before anything boots.
    Doctor(DoctorArgs),
    /// Wait until the bootstrap or the whole install is complete, showing each machine's progress.
    WaitFor(WaitForArgs),
    /// Approve the kubelet certificate requests of inventory machines, and nothing else.
    ApproveCsrs(ApproveCsrsArgs),
    /// Write a tarball of events, agent stages, versions and the cluster's state (no secrets).
    Gather(GatherArgs),
    /// Fill <dir>/mirror with every image and node binary the machines need, so that they need
    /// no internet: from image archives and directories of binaries. Resumable; every blob is
    /// checked against its digest before it is kept.
    Mirror(MirrorArgs),
    /// Move a pool's machines to a rendering (its newest, another, or the one before), a few
    /// at a time: cordon, drain, apply, reboot if needed, wait Ready, uncordon. Resumable.
    Update(UpdateArgs),
    /// Take a machine out of the cluster and the description: cordon, drain, its etcd member
    /// (while quorum holds), its Node, inventory.yaml; then render the configs and infra again.
    #[command(subcommand)]
    Remove(RemoveCommand),
    /// Every machine: its role, last stage, the rendering it runs and the one it is meant to be
    /// on, drift, readiness, a rolling update's step, and its first certificate expiry.
    Status(StatusArgs),
    /// The machines' power through their BMCs (Redfish, IPMI): status, on, off, cycle; with
    /// --pxe-once, the next boot is from the network.
    Power(PowerArgs),
    /// The first day in one command: create what is missing, start kindling serve, doctor,
    /// power on the bootstrap machine and the masters from the network, wait for
    /// bootstrap-complete, power on the workers, approve their certificate requests, wait for
    /// install-complete, then take the bootstrap machine out of the load balancer and power it
    /// off. Resumable: run it again after an interruption; exits with wait-for's codes.
    Install(InstallArgs),
    /// List every certificate, key and token kindling made or approved, soonest expiry first;
    /// `certs renew` re-signs leaves under the same CAs.
    Certs(CertsArgs),
    /// The machines: the inventory's and those that reported to `kindling serve --discover`;
    /// accept a discovered machine into the inventory; open install windows again.
    Machines(MachinesArgs),
    /// Publish an asset directory to the shared store (etcd) that several `kindling serve
    /// --store` replicas serve from, or get it back.
    #[command(subcommand)]
    Store(StoreCommand),
    /// The node agent, run by systemd on the bootstrap machine and the masters.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// The asset directory the command works on, if it has one (for its log file). Writing the
    /// description's template is not yet work on an asset directory.
    pub fn dir(&self) -> Option<&std::path::Path> {
        Some(match self {
            Command::Create(CreateCommand::InstallConfig(_)) => return None,
            Command::Create(CreateCommand::Manifests(a) | CreateCommand::IgnitionConfigs(a)) => {
                &a.dir.dir
            }
            Command::Create(CreateCommand::Infra(a)) => &a.dir.dir,
            Command::Demo(a) => &a.dir,
            // A matchbox data directory served alone keeps the log, not the working directory.
            Command::Serve(a) => match &a.data_path {
                Some(data) if !a.dir.dir.join(kindling_config::INVENTORY_FILE).exists() => data,
                _ => &a.dir.dir,
            },
            Command::Doctor(a) => &a.dir.dir,
            Command::WaitFor(a) => &a.cluster.dir.dir,
            Command::ApproveCsrs(a) => &a.cluster.dir.dir,
            Command::Gather(a) => &a.cluster.dir.dir,
            Command::Machines(a) => match &a.command {
                Some(MachinesCommand::Arm { dir, .. }) => &dir.dir,
                Some(MachinesCommand::Accept(accept)) => &accept.dir.dir,
                None => &a.list.dir.dir,
            },
            Command::Store(StoreCommand::Push(a)) => &a.dir.dir,
            Command::Store(StoreCommand::Pull(_) | StoreCommand::Prune(_)) => return None,
            Command::Mirror(a) => &a.dir.dir,
            Command::Update(a) => &a.cluster.dir.dir,
            Command::Status(a) => &a.cluster.dir.dir,
            Command::Power(a) => &a.dir.dir,
            Command::Install(a) => &a.cluster.dir.dir,
            Command::Remove(RemoveCommand::Machine(a)) => &a.cluster.dir.dir,
            Command::Certs(a) => match &a.command {
                Some(CertsCommand::Renew(r)) => &r.assets.dir.dir,
                None => &a.cluster.dir.dir,
            },
            Command::Agent(_) | Command::Completion { .. } => return None,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Write a commented install-config.yaml and inventory.yaml to start from.
    InstallConfig(Box<InstallConfigArgs>),
    /// Validate the description and generate the PKI, kubeconfigs and manifests.
    Manifests(AssetArgs),
    /// Everything `manifests` makes, then the Ignition configs (bootstrap.ign, pointers, pools).
    IgnitionConfigs(AssetArgs),
    /// DNS zones, the HAProxy config, DHCP configs (dnsmasq, dhcpd, Kea) and boot.ipxe in infra/.
    Infra(InfraArgs),
}

/// Options of `mirror`.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// An image archive to take images from: `docker save` output, an OCI image layout
    /// (directory, or tar as `skopeo copy ... oci-archive:F` writes), or `skopeo copy ... oci:DIR`
    /// output. Repeat for several.
    #[arg(long, value_name = "PATH")]
    pub from_archive: Vec<PathBuf>,
    /// The image an archive holds when it names it only by tag (as `skopeo copy ... oci:DIR:TAG`
    /// does), e.g. registry.k8s.io/pause.
    #[arg(long = "as", value_name = "IMAGE", requires = "from_archive")]
    pub name_as: Option<String>,
    /// A directory of node binaries: kubelet, kubectl, crictl (or cri-tools' crictl-*.tar.gz),
    /// the CNI plugins (cni-plugins-*.tgz, or a cni/ directory), each checked against a
    /// <file>.sha256 beside it when there is one (as dl.k8s.io publishes).
    #[arg(long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// Pull every image still missing from a registry, on a host that is online: each image's
    /// own (registry.k8s.io, ghcr.io, ...), or, given HOST[:PORT], one that holds them all under
    /// their full names (another kindling serve, or a mirror laid out so).
    #[arg(long, value_name = "REGISTRY", num_args = 0..=1, default_missing_value = "")]
    pub from_registry: Option<String>,
    /// Download the kubelet, kubectl, crictl and the CNI plugins for the cluster's Kubernetes
    /// version where their projects publish them (dl.k8s.io, GitHub releases), each checked
    /// against the .sha256 published beside it; given BASE, from a web server that mirrors
    /// their paths as BASE/<host>/<path>. Interrupted downloads are resumed.
    #[arg(long, value_name = "BASE", num_args = 0..=1, default_missing_value = "")]
    pub from_release: Option<String>,
    /// A PEM file of CA certificates to trust for --from-registry and --from-release (e.g.
    /// another kindling serve's tls/root-ca.crt).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// USER:PASSWORD for --from-registry (kindling serve takes a machine's name and token).
    #[arg(long, value_name = "USER:PASSWORD", requires = "from_registry")]
    pub registry_creds: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `kindling machines`: a list, or one of its subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MachinesArgs {
    #[command(subcommand)]
    pub command: Option<MachinesCommand>,
    #[command(flatten)]
    pub list: MachinesListArgs,
}

#[derive(Debug, Args)]
pub struct MachinesListArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Only the machines that reported to `kindling serve --discover` and are not in the
    /// inventory yet.
    #[arg(long)]
    pub pending: bool,
    /// Print the machines as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AcceptArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// The discovered machine: its MAC (any form) or its SMBIOS UUID.
    #[arg(value_name = "MAC|UUID")]
    pub machine: String,
    /// Its name in the inventory (the first label of its FQDN).
    #[arg(long)]
    pub name: String,
    /// master, worker or infra.
    #[arg(long, value_parser = parse_role)]
    pub role: kindling_config::Role,
    /// Its address: `auto` (the first free one after the machines' in the machine network) or
    /// an IP address.
    #[arg(long, default_value = "auto", value_name = "auto|IP")]
    pub ip: String,
}

fn parse_role(text: &str) -> Result<kindling_config::Role, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a role: write master, worker or infra"))
}

#[derive(Debug, Subcommand)]
pub enum MachinesCommand {
    /// Add a discovered machine to inventory.yaml (after the last machine; nothing else of the
    /// file changes), its install disk picked by provisioning.installDisk's rule. Then run
    /// `kindling create ignition-configs`: the machine, waiting in discovery, reboots into its
    /// install.
    Accept(AcceptArgs),
    /// Open the install window of machines again, for a re-install: `kindling serve` gives
    /// each one's secret-bearing config (its pool config, or bootstrap.ign) to the first address
    /// that asks, until the machine reports its install done.
    Arm {
        #[command(flatten)]
        dir: DirArgs,
        /// Machine names, as in inventory.yaml.
        #[arg(required = true, value_name = "MACHINE")]
        machines: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Publish the asset directory as the store's next revision, in one transaction: every
    /// replica switches to it whole. Files kept outside etcd (assets/, mirror/) are listed by
    /// digest and copied to --blobs-to.
    Push(StorePushArgs),
    /// Write a revision (the current one unless --revision) into an empty directory.
    Pull(StorePullArgs),
    /// Delete all but the newest revisions, and the blobs only they used. etcd gives the space
    /// back once it is compacted and defragmented.
    Prune(StorePruneArgs),
}

/// Where the shared store is, and how to reach it.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The etcd cluster, as etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (prefix /kindling unless
    /// given).
    #[arg(long, value_name = "ETCD_URL", env = "KINDLING_STORE")]
    pub store: String,
    #[command(flatten)]
    pub tls: EtcdTlsArgs,
}

/// The TLS identity kindling presents to etcd.
#[derive(Debug, Args)]
pub struct EtcdTlsArgs {
    /// The CA that signed the etcd members' certificates. Without it, etcd is spoken to over
    /// plain HTTP, and secrets cross the network in the clear.
    #[arg(long, value_name = "FILE", requires_all = ["etcd_cert", "etcd_key"])]
    pub etcd_ca: Option<PathBuf>,
    /// kindling's client certificate for etcd.
    #[arg(long, value_name = "FILE", requires = "etcd_ca")]
    pub etcd_cert: Option<PathBuf>,
    /// Its key.
    #[arg(long, value_name = "FILE", requires = "etcd_ca")]
    pub etcd_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StorePushArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// A directory the replicas share (--blobs-from), to copy the files kept outside etcd into,
    /// by digest.
    #[arg(long, value_name = "DIR")]
    pub blobs_to: Option<PathBuf>,
    /// Push this directory's machine token key and admin token even though they differ from the
    /// store's: every token handed out so far stops working (machines mid-install must boot
    /// again, and the dashboard's sessions end).
    #[arg(long)]
    pub rotate_token_key: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StorePullArgs {
    /// The directory to write the asset directory into; it must not hold one already.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The revision to pull (default: the current one).
    #[arg(long, value_name = "N")]
    pub revision: Option<u64>,
    /// A directory holding the files kept outside etcd, by digest (as push --blobs-to wrote).
    #[arg(long, value_name = "DIR")]
    pub blobs_from: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StorePruneArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// How many revisions to keep, the current one among them. Each replica keeps its own
    /// copies of the three newest it has served, whatever the store keeps.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Options of `create infra`.
#[derive(Debug, Args)]
pub struct InfraArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Where the install is: `install` puts the bootstrap machine in the load balancer;
    /// `bootstrap-removed` (once `wait-for bootstrap-complete` allows it) takes it out.
    #[arg(long, value_enum, default_value_t = Phase::Install)]
    pub phase: Phase,
    /// Have HAProxy send a PROXY protocol v2 header on each machine config server connection,
    /// for `kindling serve --mcs-auth=source-ip --proxy-from <the load balancer's address>`.
    #[arg(long)]
    pub mcs_proxy_protocol: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    Install,
    BootstrapRemoved,
}

impl From<Phase> for kindling_infra::Phase {
    fn from(phase: Phase) -> kindling_infra::Phase {
        match phase {
            Phase::Install => kindling_infra::Phase::Install,
            Phase::BootstrapRemoved => kindling_infra::Phase::BootstrapRemoved,
        }
    }
}

/// Options of the commands that generate assets.
#[derive(Debug, Args)]
pub struct AssetArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Key type for keys generated from now on (existing keys are kept).
    #[arg(long, value_parser = ["ecdsa", "rsa"], default_value = "ecdsa")]
    pub key_algorithm: String,
    /// Lifetime of certificate authorities, in days.
    #[arg(long, default_value_t = 3650, value_name = "DAYS")]
    pub ca_days: u32,
    /// Lifetime of leaf certificates, in days.
    #[arg(long, default_value_t = 365, value_name = "DAYS")]
    pub leaf_days: u32,
    /// Certificates that expire within this many hours are re-signed under the same CA;
    /// bootstrap-only certificates live twice as long.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    pub bootstrap_window_hours: u32,
    /// Make a certificate authority whose key or certificate is missing again, and re-sign
    /// everything under it. Every machine's pointer config changes: machines installed with
    /// the old CA must be re-installed. Without it, a missing CA is an error.
    #[arg(long)]
    pub rotate_ca: bool,
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// The asset directory: it holds install-config.yaml and inventory.yaml, and receives the assets.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Address of the boot server: /boot.ipxe, /ipxe, /ignition, /assets, /metrics, the API.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub http: std::net::SocketAddr,
    /// Address of the machine config server (TLS): /config/<pool>.
    #[arg(long, default_value = "0.0.0.0:22623", value_name = "ADDR")]
    pub mcs: std::net::SocketAddr,
    /// How the machine config server tells machines apart: by each machine's token; by the
    /// client's address (source-ip: the inventory IP, read from the PROXY protocol header of
    /// the load balancers given with --proxy-from); or not at all (none: every machine of a
    /// pool gets the pool's config, for pointer files copied elsewhere).
    #[arg(long, value_enum, default_value_t = McsAuthArg::Token)]
    pub mcs_auth: McsAuthArg,
    /// A load balancer (e.g. HAProxy with send-proxy-v2) that puts a PROXY protocol v1 or v2
    /// header in front of its machine config server connections. Repeat for several. Its
    /// header is then required; nobody else's is read.
    #[arg(long, value_name = "IP")]
    pub proxy_from: Vec<std::net::IpAddr>,
    /// Also serve an unchanged matchbox data directory (profiles/, groups/, ignition/,
    /// generic/, assets/), for machines the inventory does not name.
    #[arg(long, value_name = "MATCHBOX_DIR")]
    pub data_path: Option<PathBuf>,
    /// Also approve the kubelet CSRs of inventory machines as they come (as `kindling
    /// approve-csrs --watch`), with the admin kubeconfig; until the API is up it retries quietly.
    #[arg(long)]
    pub approve_csrs: bool,
    /// The kubeconfig --approve-csrs uses (default: <dir>/auth/kubeconfig).
    #[arg(long, value_name = "FILE", requires = "approve_csrs")]
    pub kubeconfig: Option<PathBuf>,
    /// Serve the revisions `kindling store push` publishes to this etcd cluster
    /// (etcd://HOST:PORT[,HOST:PORT...][/PREFIX]) instead of the asset directory, as one of
    /// several replicas; --dir is then only where this replica keeps its copy.
    #[arg(long, value_name = "ETCD_URL", conflicts_with = "data_path")]
    pub store: Option<String>,
    /// Give machines that neither the inventory nor a matchbox group knows a discovery boot:
    /// the OS's live system reports their hardware, and they wait for `kindling machines
    /// accept`. Off by default: unknown machines get nothing.
    #[arg(long)]
    pub discover: bool,
    #[command(flatten)]
    pub etcd_tls: EtcdTlsArgs,
    /// Where this replica keeps its copy of the store (default: <dir>/.kindling/store).
    #[arg(long, value_name = "DIR", requires = "store")]
    pub cache_dir: Option<PathBuf>,
    /// A directory the replicas share, holding the files kept outside etcd by digest (as
    /// `kindling store push --blobs-to` writes them). Repeat for several.
    #[arg(long, value_name = "DIR", requires = "store")]
    pub blobs_from: Vec<PathBuf>,
}

/// Options shared by the commands that talk to the cluster.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// The kubeconfig to connect with (default: <dir>/auth/kubeconfig, the admin kubeconfig).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

impl ClusterArgs {
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig
            .clone()
            .unwrap_or_else(|| self.dir.dir.join(kindling_assets::pki::ADMIN_KUBECONFIG))
    }
}

/// `wait-for bootstrap-complete | install-complete`.
#[derive(Debug, Args)]
pub struct WaitForArgs {
    /// What to wait for.
    #[arg(value_enum)]
    pub goal: WaitGoal,
    /// The machine, for `node`.
    #[arg(required_if_eq("goal", "node"), value_name = "MACHINE")]
    pub machine: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// kindling serve, for each machine's last stage (default: provisioning.serverURL).
    #[arg(long, value_name = "URL")]
    pub server_url: Option<String>,
    /// How long the API may take to answer (e.g. 20m, 90s, 1h30m).
    #[arg(long, default_value = "20m", value_parser = duration, value_name = "DURATION")]
    pub api_timeout: std::time::Duration,
    /// How long bootstrap may take once the API answers; stretched while it makes progress.
    #[arg(long, default_value = "60m", value_parser = duration, value_name = "DURATION")]
    pub bootstrap_timeout: std::time::Duration,
    /// How long the install may take once the API answers; stretched while it makes progress.
    #[arg(long, default_value = "60m", value_parser = duration, value_name = "DURATION")]
    pub install_timeout: std::time::Duration,
    /// A phase making progress may stretch to this many times its timeout.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub timeout_cap: u32,
    /// How often to look.
    #[arg(long, default_value = "5s", value_parser = duration, value_name = "DURATION")]
    pub poll_interval: std::time::Duration,
    /// Print events as JSON, one object per line, for automation.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitGoal {
    BootstrapComplete,
    InstallComplete,
    /// One machine, added after the install: its Node registered, Ready, with its labels.
    Node,
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    kindling_cluster::wait::parse_duration(text)
}

/// `install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Where the `kindling serve` the install starts listens for boot requests (default: every
    /// address, at provisioning.serverURL's port). Not used when one already answers there.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// Where that `kindling serve`'s machine config server listens.
    #[arg(long, default_value = "0.0.0.0:22623", value_name = "ADDR")]
    pub mcs: std::net::SocketAddr,
    /// Go on when doctor finds errors (they are printed first).
    #[arg(long)]
    pub ignore_doctor_errors: bool,
    /// How many BMCs are asked at the same time.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// As wait-for's.
    #[arg(long, default_value = "20m", value_parser = duration, value_name = "DURATION")]
    pub api_timeout: std::time::Duration,
    /// As wait-for's.
    #[arg(long, default_value = "60m", value_parser = duration, value_name = "DURATION")]
    pub bootstrap_timeout: std::time::Duration,
    /// As wait-for's.
    #[arg(long, default_value = "60m", value_parser = duration, value_name = "DURATION")]
    pub install_timeout: std::time::Duration,
    /// As wait-for's.
    #[arg(long, default_value = "5s", value_parser = duration, value_name = "DURATION")]
    pub poll_interval: std::time::Duration,
}

/// `approve-csrs`.
#[derive(Debug, Args)]
pub struct ApproveCsrsArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Keep watching for new requests until interrupted (default: one pass).
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Subcommand)]
pub enum RemoveCommand {
    /// One machine, by name. Resumable: run it again after an interruption.
    Machine(RemoveMachineArgs),
}

/// `remove machine`.
#[derive(Debug, Args)]
pub struct RemoveMachineArgs {
    /// The machine's name in inventory.yaml.
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Go below the replicas install-config.yaml declares for its role.
    #[arg(long)]
    pub force: bool,
    /// A drain with no progress for this many seconds stops (run the command again to go on).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub stall: u64,
    /// Seconds between checks while draining.
    #[arg(long, default_value_t = 2, value_name = "SECONDS")]
    pub poll: u64,
}

/// `power`.
#[derive(Debug, Args)]
pub struct PowerArgs {
    /// What to do.
    #[arg(value_enum)]
    pub action: PowerAction,
    /// The machines, by name (or use --role, or --all).
    #[arg(value_name = "MACHINE")]
    pub machines: Vec<String>,
    /// Every machine of this role.
    #[arg(long, value_name = "ROLE", conflicts_with = "all")]
    pub role: Option<String>,
    /// Every machine that has a bmc.
    #[arg(long)]
    pub all: bool,
    /// Boot from the network once, at the next power on or reset.
    #[arg(long)]
    pub pxe_once: bool,
    /// How many BMCs are asked at the same time.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// JSON, one object per machine.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dir: DirArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PowerAction {
    Status,
    On,
    Off,
    Cycle,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// JSON, one object per machine.
    #[arg(long)]
    pub json: bool,
}

/// `certs`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub command: Option<CertsCommand>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// JSON, one object per credential.
    #[arg(long)]
    pub json: bool,
    /// Mark what expires within this many days.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub warn_days: i64,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Re-sign the leaf certificates that expire soon (or all of them) under the same CAs, and
    /// make the pools' new renderings that carry them; kindling update delivers them.
    Renew(RenewArgs),
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    #[command(flatten)]
    pub assets: AssetArgs,
    /// Say what would be re-signed, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-sign the leaves that expire within this many days.
    #[arg(
        long,
        default_value_t = 30,
        value_name = "DAYS",
        conflicts_with = "all"
    )]
    pub within: u32,
    /// Re-sign every leaf.
    #[arg(long)]
    pub all: bool,
}

/// `update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Take the reboot slots from the store the `kindling serve --store` replicas share
    /// (etcd://...), so that Zincati's reboots through FleetLock and this update count
    /// together.
    #[arg(long, value_name = "ETCD_URL")]
    pub store: Option<String>,
    #[command(flatten)]
    pub etcd_tls: EtcdTlsArgs,
    /// The pool to update (default: every pool, the masters last).
    #[arg(long, value_name = "POOL")]
    pub pool: Option<String>,
    /// The rendering to move to (default: the pool's newest, from create ignition-configs).
    #[arg(long, value_name = "RENDERING", conflicts_with = "rollback")]
    pub to: Option<String>,
    /// Move back to the rendering before the pool's current one.
    #[arg(long)]
    pub rollback: bool,
    /// How many of the pool's machines may be out at once: a number, or a percentage of the
    /// pool (kept for later updates, and for Zincati's reboots through FleetLock).
    #[arg(long, value_name = "N|N%")]
    pub max_unavailable: Option<kindling_fleet::policy::MaxUnavailable>,
    /// When machines may start to go out, e.g. "Sat,Sun 02:00-06:00 Europe/Paris"; repeat for
    /// several (kept for later updates and for FleetLock). A machine that started finishes.
    #[arg(long, value_name = "WINDOW")]
    pub window: Vec<String>,
    /// Forget the pool's windows: machines may go out at any time.
    #[arg(long, conflicts_with = "window")]
    pub any_time: bool,
    /// Have each machine's agent put its rendering back over files that drifted, first.
    #[arg(long)]
    pub revert_drift: bool,
    /// Start no more machines (those that started finish); the update's progress is kept.
    #[arg(long, conflicts_with = "resume")]
    pub pause: bool,
    /// Go on with a paused update.
    #[arg(long)]
    pub resume: bool,
    /// A machine with no progress for this many seconds halts the update.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    pub stall: u64,
    /// Seconds between checks.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub poll: u64,
    /// Stop, rather than wait, when no machine may start before the next window.
    #[arg(long)]
    pub stop_outside_window: bool,
}

/// `gather`.
#[derive(Debug, Args)]
pub struct GatherArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Where to write the tarball (default: <dir>/gather-<time>.tar.gz).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `serve --mcs-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum McsAuthArg {
    Token,
    SourceIp,
    None,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// DNS server to ask, as IP or IP:PORT (repeat for several). Default: the inventory's
    /// network.dnsServers on port 53, which is what the machines will ask.
    #[arg(long = "resolver", value_name = "IP:PORT")]
    pub resolvers: Vec<String>,
    /// Check only these areas (repeat, or separate with commas). Default: all.
    #[arg(long = "area", value_name = "AREA", value_delimiter = ',',
          value_parser = ["dns", "load-balancer", "provisioning", "certificates"])]
    pub areas: Vec<String>,
    /// Print the findings as JSON on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Bootstrap certificates must be valid at least this many hours from now.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    pub bootstrap_window_hours: u32,
    /// Also check the store the replicas serve from (etcd://...): its members, and that it
    /// has the revision the replicas serve.
    #[arg(long, value_name = "ETCD_URL")]
    pub store: Option<String>,
    #[command(flatten)]
    pub etcd_tls: EtcdTlsArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the example.
    #[arg(long, default_value = "kindling-demo", value_name = "DIR")]
    pub dir: PathBuf,
}

/// Values for the templates. On a terminal, kindling asks for the ones not given; otherwise it
/// uses the defaults shown, which the files mark as examples to replace.
#[derive(Debug, Args)]
pub struct InstallConfigArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Overwrite install-config.yaml and inventory.yaml if they exist.
    #[arg(long)]
    pub force: bool,
    /// Cluster name (metadata.name); machines are named <machine>.<cluster>.<base domain>.
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// DNS domain the cluster lives under (baseDomain).
    #[arg(long)]
    pub base_domain: Option<String>,
    /// The machines' network, as a CIDR (networking.machineNetwork).
    #[arg(long, value_name = "CIDR")]
    pub machine_network: Option<String>,
    /// OpenSSH public key file for the core user (sshKey).
    #[arg(long, value_name = "FILE")]
    pub ssh_key_file: Option<PathBuf>,
    /// Pull secret JSON file (pullSecret).
    #[arg(long, value_name = "FILE")]
    pub pull_secret_file: Option<PathBuf>,
    /// Where machines fetch boot files and Ignition (provisioning.serverURL).
    #[arg(long, value_name = "URL")]
    pub server_url: Option<String>,
    /// Virtual IP of api.<cluster>.<base domain>.
    #[arg(long, value_name = "IP")]
    pub api_vip: Option<std::net::IpAddr>,
    /// Virtual IP of api-int.<cluster>.<base domain> (default: the API VIP).
    #[arg(long, value_name = "IP")]
    pub api_int_vip: Option<std::net::IpAddr>,
    /// Virtual IP of *.apps.<cluster>.<base domain>.
    #[arg(long, value_name = "IP")]
    pub ingress_vip: Option<std::net::IpAddr>,
    /// Default gateway of the machine network.
    #[arg(long, value_name = "IP")]
    pub gateway: Option<std::net::IpAddr>,
    /// DNS server for the machines (repeat for several).
    #[arg(long = "dns-server", value_name = "IP")]
    pub dns_servers: Vec<std::net::IpAddr>,
    /// Operating system the machines install.
    #[arg(long, value_parser = ["fcos", "rhcos", "flatcar"])]
    pub os: Option<String>,
    /// Disk to install to on every machine.
    #[arg(long, value_name = "PATH")]
    pub install_disk: Option<String>,
    /// A machine as NAME,ROLE,MAC,IP (repeat for each). Without any, the template lists a
    /// bootstrap machine, 3 masters and 2 workers with example MACs to replace.
    #[arg(long = "machine", value_name = "NAME,ROLE,MAC,IP")]
    pub machines: Vec<String>,
}

impl AssetArgs {
    /// The defaults, as if no flag were given.
    pub fn defaults(dir: PathBuf) -> AssetArgs {
        AssetArgs {
            dir: DirArgs { dir },
            key_algorithm: "ecdsa".into(),
            ca_days: 3650,
            leaf_days: 365,
            bootstrap_window_hours: 24,
            rotate_ca: false,
        }
    }
}
