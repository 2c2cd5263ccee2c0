//! `kindling create install-config | manifests | ignition-configs | infra`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use kindling_assets::{AssetError, AssetOutcome, AtomicFiles, Mode, Settings, Storage, Target};
use kindling_config::template::{self, Template, TemplateMachine};
use kindling_config::{
    ClusterDescription, INSTALL_CONFIG_FILE, INVENTORY_FILE, LoadError, Source, Use,
};
use kindling_pki::Lifetimes;

use crate::cli::{AssetArgs, InfraArgs, InstallConfigArgs};
use crate::exit::{Code, Failure};
use crate::report;

/// The machine network of the templates when none is given.
const DEFAULT_MACHINE_NETWORK: &str = "192.168.126.0/24";

/// Loads and validates the description in `dir`, printing every finding.
pub fn load(dir: &Path) -> Result<ClusterDescription, Failure> {
    load_for(dir, Use::Read)
}

/// [`load`], with the rules of `purpose`.
pub fn load_for(dir: &Path, purpose: Use) -> Result<ClusterDescription, Failure> {
    match ClusterDescription::load_for(dir, purpose) {
        Ok(loaded) => {
            report::findings_once(dir, &loaded.findings);
            Ok(loaded.description)
        }
        Err(LoadError::Invalid(findings)) => {
            report::invalid(&findings);
            Err(Failure::invalid_description())
        }
        Err(LoadError::Read { path, source }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(Failure {
                code: Code::InvalidDescription,
                error: Some(anyhow!(
                    "{} does not exist; write it, or run 'kindling create install-config --dir {}' for a template",
                    path.display(),
                    dir.display()
                )),
            })
        }
        // Input that cannot be a description is bad input, as an invalid one is.
        Err(e @ (LoadError::NotAFile { .. } | LoadError::NotUtf8 { .. })) => Err(Failure {
            code: Code::InvalidDescription,
            error: Some(anyhow!(e)),
        }),
        Err(e) => Err(anyhow!(e).into()),
    }
}

/// `create manifests | ignition-configs`: validates the description and brings the assets of
/// `target` up to date.
pub fn assets(args: &AssetArgs, target: Target) -> Result<(), Failure> {
    assets_renewing(args, target, time::Duration::ZERO)
}

/// [`assets`], re-signing every leaf that expires within `renew_before` (`certs renew`).
pub fn assets_renewing(
    args: &AssetArgs,
    target: Target,
    renew_before: time::Duration,
) -> Result<(), Failure> {
    let dir = &args.dir.dir;
    let description = load_for(dir, Use::Install)?;
    let settings = Settings {
        renew_before,
        ..settings(args, target)?
    };
    match kindling_assets::create(dir, &description, target, &settings, &AtomicFiles) {
        Ok(outcomes) => {
            report::outcomes(&outcomes);
            say_stale(dir, &outcomes);
            if target == Target::IgnitionConfigs {
                publish_renderings(dir, &description)?;
                warn_missing_boot_assets(dir, &description);
            }
            Ok(())
        }
        // A bad snippet or manifest is a bad cluster description, with its file and line.
        Err(AssetError::UserFile(problems)) => {
            for line in problems.lines() {
                tracing::error!("{line}");
            }
            Err(Failure::invalid_description())
        }
        Err(e @ AssetError::MirrorIncomplete { .. }) => Err(Failure {
            code: Code::MirrorIncomplete,
            error: Some(anyhow!(e)),
        }),
        // The asset directory lost what cannot be made again silently; nothing was written.
        Err(e @ AssetError::AuthorityMissing { .. }) => Err(Failure {
            code: Code::InvalidDescription,
            error: Some(anyhow!(e)),
        }),
        Err(e) => Err(anyhow!(e)
            .context(format!("creating the assets in {}", dir.display()))
            .into()),
    }
}

/// Keeps each pool's config as a rendering and says where each pool stands.
fn publish_renderings(dir: &Path, description: &ClusterDescription) -> Result<(), Failure> {
    let pools = kindling_assets::ignition::pool_members(description);
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the time")?;
    let published = kindling_assets::renderings::publish(dir, &AtomicFiles, &pools, &now)
        .with_context(|| format!("keeping the pools' renderings in {}", dir.display()))?;
    for p in published {
        let made = if p.new { "new" } else { "unchanged" };
        match (&p.moved_from, p.behind) {
            (Some(from), 0) => println!("pool {}: {} ({made}), was {from}", p.pool, p.rendering),
            (_, behind) if behind > 0 => println!(
                "pool {}: {} ({made}); {behind} machine(s) stay on what they run until kindling update --pool {} --dir {}",
                p.pool,
                p.rendering,
                p.pool,
                dir.display()
            ),
            _ => println!("pool {}: {} ({made})", p.pool, p.rendering),
        }
    }
    Ok(())
}

/// `create manifests | ignition-configs` as a command of its own: [`assets`], then what is
/// stale elsewhere and what to do next.
pub fn assets_command(args: &AssetArgs, target: Target) -> Result<(), Failure> {
    assets(args, target)?;
    let dir = args.dir.dir.display();
    match target {
        Target::Manifests => println!(
            "Next: add or edit manifests in {dir}/manifests if you need to, then kindling create ignition-configs --dir {dir}"
        ),
        Target::IgnitionConfigs => println!(
            "Next: kindling create infra --dir {dir} (DNS, load balancer, DHCP), kindling doctor --dir {dir}, then kindling serve --dir {dir}"
        ),
    }
    Ok(())
}

/// `create infra` as a command of its own: [`infra`], then what to do next.
pub fn infra_command(args: &InfraArgs) -> Result<(), Failure> {
    infra(args)?;
    let dir = args.dir.dir.display();
    println!(
        "Next: put each file where {dir}/infra/README.md says, then kindling doctor --dir {dir}"
    );
    Ok(())
}

/// Says which outputs made by other commands are stale now (what they were made from changed),
/// with the command that brings each up to date.
fn say_stale(dir: &Path, done: &[AssetOutcome]) {
    let ran: Vec<&str> = done.iter().map(|o| o.asset).collect();
    let Ok(stale) = kindling_assets::stale_assets(dir, &ran) else {
        return;
    };
    let mut commands: Vec<(&str, &str)> = stale
        .iter()
        .map(|(asset, _)| {
            if asset.starts_with("infra-") {
                ("infra/ is", "create infra")
            } else {
                ("the Ignition configs are", "create ignition-configs")
            }
        })
        .collect();
    commands.sort_unstable();
    commands.dedup();
    for (what, command) in commands {
        tracing::warn!(
            "{what} out of date: what it is made from changed; run kindling {command} --dir {}",
            dir.display()
        );
    }
}

/// `create infra`: validates the description and brings `infra/` up to date for the phase.
pub fn infra(args: &InfraArgs) -> Result<(), Failure> {
    let dir = &args.dir.dir;
    let description = load_for(dir, Use::Machines)?;
    let settings = Settings {
        now: crate::clock::now(),
        key_algorithm: Default::default(),
        lifetimes: Lifetimes::default(),
        agent_sha512: None,
        rotate_ca: false,
        renew_before: time::Duration::ZERO,
    };
    let choices = kindling_infra::Choices {
        phase: args.phase.into(),
        mcs_proxy_protocol: args.mcs_proxy_protocol,
    };
    match kindling_infra::create(dir, &description, choices, &settings, &AtomicFiles) {
        Ok(outcomes) => {
            report::outcomes(&outcomes);
            choices.remember(dir).with_context(|| {
                format!(
                    "writing {}",
                    dir.join(kindling_infra::CHOICES_FILE).display()
                )
            })?;
            for note in kindling_infra::notes(dir, &description) {
                match note.warning {
                    true => tracing::warn!("{}", note.text),
                    false => tracing::info!("{}", note.text),
                }
            }
            println!(
                "The infrastructure configs are in {}; {} says which goes where.",
                dir.join(kindling_infra::INFRA_DIR).display(),
                dir.join(kindling_infra::readme::README).display()
            );
            Ok(())
        }
        // Valid, but not something infrastructure can be written for: the user's to fix.
        Err(kindling_infra::CreateError::Unsuitable(problems)) => {
            for problem in &problems {
                tracing::error!("{problem}");
            }
            tracing::error!("{} problem(s); nothing was written", problems.len());
            Err(Failure::invalid_description())
        }
        Err(e) => Err(anyhow!(e)
            .context(format!(
                "creating the infrastructure configs in {}",
                dir.display()
            ))
            .into()),
    }
}

fn settings(args: &AssetArgs, target: Target) -> Result<Settings, Failure> {
    // Only Ignition configs pin the agent binary, and hashing it takes a moment.
    let agent_sha512 = match target {
        Target::Manifests => None,
        Target::IgnitionConfigs => {
            let exe = std::env::current_exe().context("finding the kindling binary")?;
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|dir| dir.join("kindling/binary-sha512"));
            let hash = kindling_assets::binary_sha512(&exe, cache.as_deref(), |size| {
                tracing::info!(
                    "hashing {} ({} MB) for the agent download; once per build of kindling{}",
                    exe.display(),
                    size / 1_000_000,
                    if size > 50_000_000 {
                        " (a debug build: serve a release build, cargo install --path crates/kindling)"
                    } else {
                        ""
                    }
                )
            })
            .with_context(|| {
                format!(
                    "reading {} to hash it for the agent download",
                    exe.display()
                )
            })?;
            Some(hash)
        }
    };
    Ok(Settings {
        now: crate::clock::now(),
        key_algorithm: args.key_algorithm.parse().map_err(|e: String| anyhow!(e))?,
        lifetimes: Lifetimes {
            root: time::Duration::days(args.ca_days.into()),
            leaf: time::Duration::days(args.leaf_days.into()),
            bootstrap_window: time::Duration::hours(args.bootstrap_window_hours.into()),
        },
        agent_sha512,
        rotate_ca: args.rotate_ca,
        renew_before: time::Duration::ZERO,
    })
}

/// `create install-config`: writes a commented, valid template of both input files.
pub fn install_config(args: &InstallConfigArgs) -> Result<(), Failure> {
    let dir = &args.dir.dir;
    let targets = [dir.join(INSTALL_CONFIG_FILE), dir.join(INVENTORY_FILE)];
    if !args.force
        && let Some(existing) = targets.iter().find(|p| p.exists())
    {
        return Err(Failure {
            code: Code::Usage,
            error: Some(anyhow!(
                "{} exists; kindling does not overwrite it without --force",
                existing.display()
            )),
        });
    }

    let mut prompt = Prompt::new();
    let template = fill_template(args, &mut prompt)?;
    let (ic, inv) = (template.install_config(), template.inventory());
    let names = targets
        .iter()
        .map(|p| format!("{} (generated)", p.display()))
        .collect::<Vec<_>>();
    if let Err(LoadError::Invalid(findings)) = ClusterDescription::parse(
        Source {
            name: &names[0],
            text: &ic,
        },
        Source {
            name: &names[1],
            text: &inv,
        },
    ) {
        report::invalid(&findings);
        return Err(Failure::invalid_description());
    }

    let ic_mode = if template.pull_secret.is_some() {
        Mode::Secret
    } else {
        Mode::Public
    };
    for (path, text, mode) in [
        (&targets[0], &ic, ic_mode),
        (&targets[1], &inv, Mode::Public),
    ] {
        AtomicFiles
            .write(path, text.as_bytes(), mode)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if template.example_machines {
        println!(
            "The machines in inventory.yaml are examples: put in each machine's real MAC and IP."
        );
    }
    println!("Next: kindling create manifests --dir {}", dir.display());
    Ok(())
}

fn fill_template(args: &InstallConfigArgs, prompt: &mut Prompt) -> Result<Template, Failure> {
    let cluster_name = match &args.cluster_name {
        Some(v) => v.clone(),
        None => prompt.ask("Cluster name", template::EXAMPLE_CLUSTER_NAME)?,
    };
    let base_domain = match &args.base_domain {
        Some(v) => v.clone(),
        None => prompt.ask("Base domain", template::EXAMPLE_BASE_DOMAIN)?,
    };
    let network: ipnet::IpNet = match &args.machine_network {
        Some(net) => net.parse().map_err(|_| {
            usage(format!(
                "--machine-network '{net}' is not a CIDR such as {DEFAULT_MACHINE_NETWORK}"
            ))
        })?,
        None => prompt.ask_parsed("Machine network (CIDR)", DEFAULT_MACHINE_NETWORK)?,
    };
    let mut t = Template::example(network.trunc());
    t.cluster_name = cluster_name;
    t.base_domain = base_domain;
    let ssh_key_file = match &args.ssh_key_file {
        Some(path) => Some(path.clone()),
        None if prompt.interactive => {
            let default = default_ssh_key()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            Some(prompt.ask("SSH public key file (empty for none)", &default)?)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        }
        None => None,
    };
    if let Some(path) = ssh_key_file {
        t.ssh_key = Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading the SSH key {}", path.display()))?,
        );
    }
    if let Some(path) = &args.pull_secret_file {
        t.pull_secret = Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the pull secret {}", path.display()))?,
        );
    }
    if let Some(v) = &args.server_url {
        t.server_url = v.clone();
    }
    if let Some(v) = args.api_vip {
        t.api_vip = v;
        t.api_int_vip = v;
    }
    if let Some(v) = args.api_int_vip {
        t.api_int_vip = v;
    }
    if let Some(v) = args.ingress_vip {
        t.ingress_vip = v;
    }
    if let Some(v) = args.gateway {
        t.gateway = v;
    }
    if !args.dns_servers.is_empty() {
        t.dns_servers = args.dns_servers.clone();
    }
    if let Some(v) = &args.os {
        t.os = v.clone();
    }
    if let Some(v) = &args.install_disk {
        t.install_disk = v.clone();
    }
    if !args.machines.is_empty() {
        t.machines = args
            .machines
            .iter()
            .map(|m| parse_machine(m))
            .collect::<Result<_, _>>()?;
        t.example_machines = false;
    }
    Ok(t)
}

fn parse_machine(spec: &str) -> Result<TemplateMachine, Failure> {
    match spec.split(',').map(str::trim).collect::<Vec<_>>()[..] {
        [name, role, mac, ip] => Ok(TemplateMachine {
            name: name.into(),
            role: role.into(),
            mac: mac.into(),
            ip: ip.into(),
        }),
        _ => Err(usage(format!(
            "--machine '{spec}' is not NAME,ROLE,MAC,IP (e.g. master0,master,52:54:00:00:00:10,192.168.126.110)"
        ))),
    }
}

fn usage(message: String) -> Failure {
    Failure {
        code: Code::Usage,
        error: Some(anyhow!(message)),
    }
}

fn default_ssh_key() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
        .iter()
        .map(|name| home.join(".ssh").join(name))
        .find(|p| p.exists())
}

/// Questions for values not given by flags, asked only when a person is at a terminal.
struct Prompt {
    interactive: bool,
}

impl Prompt {
    fn new() -> Prompt {
        Prompt {
            interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        }
    }

    /// The answer, or `default` when not interactive or when the answer is empty.
    fn ask(&mut self, question: &str, default: &str) -> Result<String, Failure> {
        if !self.interactive {
            return Ok(default.to_string());
        }
        let mut stderr = std::io::stderr();
        let _ = write!(stderr, "{question} [{default}]: ");
        let _ = stderr.flush();
        let mut answer = String::new();
        let read = std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("reading the answer from the terminal")?;
        if read == 0 {
            return Err(usage("no answer: the terminal closed its input".into()));
        }
        let answer = answer.trim();
        Ok(if answer.is_empty() { default } else { answer }.to_string())
    }

    /// Like `ask`, asking again until the answer parses.
    fn ask_parsed<T: std::str::FromStr>(
        &mut self,
        question: &str,
        default: &str,
    ) -> Result<T, Failure> {
        loop {
            let answer = self.ask(question, default)?;
            match answer.parse() {
                Ok(value) => return Ok(value),
                Err(_) if self.interactive => eprintln!("'{answer}' is not valid here; try again"),
                Err(_) => return Err(usage(format!("'{answer}' is not valid for {question}"))),
            }
        }
    }
}

/// The OS images the machines' boot scripts name that are not in `<dir>/assets/`: the machines
/// would stop at boot with 404.
fn warn_missing_boot_assets(dir: &Path, description: &kindling_config::ClusterDescription) {
    for missing in kindling_server::profile::missing_boot_assets(dir, description) {
        tracing::warn!(
            "{}: the machines' boot script names it, but it is not there, so they would stop at boot with 404; put it there (README: \"OS images\"){}",
            missing.display(),
            if description.inventory.provisioning.os == kindling_config::inventory::Os::Fcos {
                ", or run kindling mirror --from-release, which fetches Fedora CoreOS's from its stream"
            } else {
                ""
            }
        );
    }
}
