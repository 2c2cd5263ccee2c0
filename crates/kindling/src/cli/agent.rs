//! `kindling agent bootstrap` and `kindling agent join-master`: the node agent, run by systemd on
//! the bootstrap machine and on each master. The work is in kindling-agent.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use kindling_agent::bootstrap::Pause;
use kindling_agent::kube::Cluster;
use kindling_agent::report::{MachineIdentity, Reporter};
use kindling_agent::{
    BootstrapAgent, BootstrapRequest, EtcdAccess, JoinOutcome, JoinRequest, Journal, Stage,
};
use kindling_assets::layout;

use crate::exit::Failure;

/// Test hook: sleep (until killed) after this stage's marker is written.
const PAUSE_AFTER: &str = "KINDLING_AGENT_PAUSE_AFTER";
/// Test hook: sleep after this stage's work, before its marker is written.
const PAUSE_BEFORE_MARKER: &str = "KINDLING_AGENT_PAUSE_BEFORE_MARKER";

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// On the bootstrap machine: apply the cluster manifests, wait for the masters, remove the
    /// bootstrap etcd member, mark the bootstrap complete, stop the temporary control plane.
    Bootstrap(BootstrapArgs),
    /// On a master, before its etcd starts: add its etcd member to the cluster and activate its
    /// etcd pod with the membership etcd reports.
    JoinMaster(JoinMasterArgs),
    /// On every machine: check its disk against the rendering it runs and report drift; move to
    /// the rendering its Node is told to be on (restarting or rebooting as needed).
    Node(NodeArgs),
    /// On a machine kindling serve --discover booted: report its hardware once, with the token
    /// of its kernel arguments, wait until `kindling machines accept` has added it to the
    /// inventory, then reboot it into its install.
    Discover(DiscoverArgs),
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Where /proc and /sys are (the hardware and the kernel arguments are read from them).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Seconds between two questions to the server.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub interval: u64,
    /// Report and wait, but do not reboot.
    #[arg(long)]
    pub no_reboot: bool,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The machine's root; every path the agent reads or writes is under it.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// The machine config server (https://api-int.<cluster>.<domain>:22623), asked for
    /// renderings with the kubelet's client certificate.
    #[arg(long, value_name = "URL")]
    pub mcs: String,
    /// `kindling serve`'s boot server, where drift and updates are also sent as events.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Put the rendering back over files and units that drifted from it.
    #[arg(long)]
    pub revert_drift: bool,
    /// The systemctl that restarts units and reboots the machine.
    #[arg(long, default_value = "systemctl", value_name = "PROGRAM")]
    pub systemctl: PathBuf,
    /// Seconds between passes.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub interval: u64,
    /// One pass, then exit.
    #[arg(long)]
    pub once: bool,
}

/// Options both agents share.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Stage markers (`<stage>.done`).
    #[arg(long, default_value = layout::AGENT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Stage records (`<agent>.jsonl`).
    #[arg(long, default_value = layout::AGENT_LOG_DIR, value_name = "DIR")]
    pub log_dir: PathBuf,
    /// The kubelet's static pods directory.
    #[arg(long, default_value = layout::STATIC_PODS_DIR, value_name = "DIR")]
    pub static_pods_dir: PathBuf,
    /// etcd client URLs to ask, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "https://127.0.0.1:2379",
        value_name = "URL,..."
    )]
    pub etcd_endpoints: Vec<String>,
    /// The etcd CA certificate.
    #[arg(long, default_value = layout::ETCD_CA_CERT, value_name = "FILE")]
    pub etcd_ca: PathBuf,
    /// The etcd client certificate.
    #[arg(long, default_value = layout::APISERVER_ETCD_CLIENT_CERT, value_name = "FILE")]
    pub etcd_cert: PathBuf,
    /// The etcd client key.
    #[arg(long, default_value = layout::APISERVER_ETCD_CLIENT_KEY, value_name = "FILE")]
    pub etcd_key: PathBuf,
    /// `kindling serve`'s boot server, where stage records are sent as events.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// This machine's MAC and token for `kindling serve` (`mac=` and `token=` lines; root only).
    #[arg(long, default_value = layout::AGENT_IDENTITY, value_name = "FILE")]
    pub identity_file: PathBuf,
    /// Seconds between checks.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub poll_interval: u64,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The cluster manifests, applied in file-name order (namespaces and CRDs first).
    #[arg(long, default_value = layout::AGENT_MANIFESTS_DIR, value_name = "DIR")]
    pub manifests: PathBuf,
    /// Admin kubeconfig of the local apiserver.
    #[arg(long, default_value = layout::ADMIN_KUBECONFIG, value_name = "FILE")]
    pub kubeconfig: PathBuf,
    /// The masters' apiservers (api-int), reached with the kubeconfig's credentials once the
    /// bootstrap etcd member is gone and the local apiserver with it. Default: the kubeconfig's.
    #[arg(long, value_name = "URL")]
    pub api_server: Option<String>,
    /// The masters' etcd member names, comma-separated.
    #[arg(long, value_delimiter = ',', required = true, value_name = "NAME,...")]
    pub masters: Vec<String>,
    /// The bootstrap machine's etcd member name. Without it this is the first master of a
    /// cluster with no bootstrap machine: nothing is removed or stopped.
    #[arg(long, value_name = "NAME")]
    pub bootstrap_member: Option<String>,
    /// The labels the masters' Nodes get as they register (JSON: node name to labels).
    #[arg(long, default_value = layout::NODE_LABELS, value_name = "FILE")]
    pub node_labels: PathBuf,
    /// Each stage gives up after this many seconds (systemd starts the agent again).
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub stage_timeout: u64,
}

#[derive(Debug, Args)]
pub struct JoinMasterArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// This master's etcd member pod, activated into the static pods directory.
    #[arg(long, default_value = layout::ETCD_MEMBER_POD, value_name = "FILE")]
    pub member_pod: PathBuf,
    /// Give up after this many seconds (systemd starts the agent again).
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    pub timeout: u64,
}

pub fn run(command: &AgentCommand) -> Result<(), Failure> {
    match command {
        AgentCommand::Bootstrap(args) => bootstrap(args),
        AgentCommand::JoinMaster(args) => join_master(args),
        AgentCommand::Node(args) => node(args),
        AgentCommand::Discover(args) => discover(args),
    }
}

fn discover(args: &DiscoverArgs) -> Result<(), Failure> {
    use kindling_discovery::agent::{Agent, Boot};
    let cmdline_path = args.root.join("proc/cmdline");
    let cmdline = std::fs::read_to_string(&cmdline_path)
        .with_context(|| format!("reading {}", cmdline_path.display()))?;
    let boot = Boot::from_cmdline(&cmdline).map_err(anyhow::Error::from)?;
    let mac = boot.mac;
    let mut agent = Agent::new(boot).map_err(anyhow::Error::from)?;
    agent.pause = std::time::Duration::from_secs(args.interval.max(1));
    let hardware = kindling_discovery::probe::hardware(&args.root);
    println!(
        "reporting {mac}: {} NICs, {} disks ({}), {} CPUs, {} of memory",
        hardware.nics.len(),
        hardware.disks.len(),
        hardware
            .disks
            .iter()
            .map(|d| d.describe())
            .collect::<Vec<_>>()
            .join(", "),
        hardware.cpu.count,
        kindling_config::inventory::size_text(hardware.memory_bytes)
    );
    agent.report(hardware).map_err(anyhow::Error::from)?;
    println!(
        "reported; waiting for `kindling machines accept` and `kindling create ignition-configs`"
    );
    agent.wait_for_install();
    if args.no_reboot {
        println!("accepted: its install is ready (--no-reboot: not rebooting)");
        return Ok(());
    }
    println!("accepted: rebooting into its install");
    kindling_discovery::agent::reboot().context("rebooting")?;
    Ok(())
}

fn etcd(common: &CommonArgs) -> EtcdAccess {
    EtcdAccess {
        endpoints: common.etcd_endpoints.clone(),
        ca: common.etcd_ca.clone(),
        cert: common.etcd_cert.clone(),
        key: common.etcd_key.clone(),
    }
}

fn journal(agent: &'static str, common: &CommonArgs) -> anyhow::Result<Journal> {
    let reporter = match &common.server {
        None => None,
        Some(url) => match MachineIdentity::read(&common.identity_file)? {
            None => {
                tracing::info!(
                    "no machine identity at {}: stage records stay local",
                    common.identity_file.display()
                );
                None
            }
            Some(identity) => {
                let reporter = Reporter::new(url, identity);
                if reporter.is_none() {
                    tracing::warn!("--server {url} is not http://host:port; records stay local");
                }
                reporter
            }
        },
    };
    if let Some(r) = &reporter {
        r.send_event("agent-version", env!("CARGO_PKG_VERSION"), "");
    }
    Ok(Journal::new(agent, &common.log_dir, reporter)?)
}

fn pause() -> anyhow::Result<Option<Pause>> {
    let stage = |var: &str| -> anyhow::Result<Option<Stage>> {
        match std::env::var(var) {
            Ok(name) => Stage::parse(&name)
                .map(Some)
                .with_context(|| format!("{var}={name} names no stage")),
            Err(_) => Ok(None),
        }
    };
    Ok(match (stage(PAUSE_AFTER)?, stage(PAUSE_BEFORE_MARKER)?) {
        (Some(s), _) => Some(Pause::After(s)),
        (None, Some(s)) => Some(Pause::Before(s)),
        (None, None) => None,
    })
}

fn bootstrap(args: &BootstrapArgs) -> Result<(), Failure> {
    let journal = journal("bootstrap", &args.common)?;
    let request = BootstrapRequest {
        state_dir: args.common.state_dir.clone(),
        manifests_dir: args.manifests.clone(),
        static_pods_dir: args.common.static_pods_dir.clone(),
        etcd: etcd(&args.common),
        masters: args.masters.clone(),
        bootstrap_member: args.bootstrap_member.clone(),
        node_labels: kindling_agent::bootstrap::read_node_labels(&args.node_labels)
            .context("reading the masters' labels")?,
        stage_timeout: Duration::from_secs(args.stage_timeout),
        poll: Duration::from_secs(args.common.poll_interval.max(1)),
        pause: pause()?,
    };
    let local = Cluster::connect(&args.kubeconfig, None).context("connecting to the local API")?;
    let cluster = Cluster::connect(&args.kubeconfig, args.api_server.as_deref())
        .context("connecting to the masters' API")?;
    let agent = BootstrapAgent {
        request: &request,
        local: &local,
        cluster: &cluster,
        journal: &journal,
    };
    agent
        .run()
        .with_context(|| format!("bootstrap (records in {})", journal.path().display()))?;
    println!("bootstrap complete: the masters run the control plane");
    Ok(())
}

fn join_master(args: &JoinMasterArgs) -> Result<(), Failure> {
    let journal = journal("join-master", &args.common)?;
    let request = JoinRequest {
        member_pod: args.member_pod.clone(),
        static_pods_dir: args.common.static_pods_dir.clone(),
        state_dir: args.common.state_dir.clone(),
        etcd: etcd(&args.common),
        timeout: Duration::from_secs(args.timeout),
        poll: Duration::from_secs(args.common.poll_interval.max(1)),
    };
    let outcome = kindling_agent::join_master(&request, &journal)
        .with_context(|| format!("join-master (records in {})", journal.path().display()))?;
    match outcome {
        JoinOutcome::AlreadyActive => println!("already joined: the etcd pod is in place"),
        JoinOutcome::Added { initial_cluster } => {
            println!("added this etcd member; initial cluster {initial_cluster}")
        }
        JoinOutcome::AlreadyMember { initial_cluster } => {
            println!("already an etcd member; initial cluster {initial_cluster}")
        }
        JoinOutcome::Founded { initial_cluster } => {
            println!("first member of a new etcd cluster: {initial_cluster}")
        }
    }
    Ok(())
}

fn node(args: &NodeArgs) -> Result<(), Failure> {
    let request = kindling_agent::node::NodeRequest {
        root: args.root.clone(),
        mcs: args.mcs.clone(),
        server: args.server.clone(),
        revert_drift: args.revert_drift,
        systemctl: args.systemctl.clone(),
        interval: Duration::from_secs(args.interval.max(1)),
        once: args.once,
    };
    kindling_agent::node::run(&request).context("node agent")?;
    Ok(())
}
