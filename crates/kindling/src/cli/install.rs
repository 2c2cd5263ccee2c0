//! `kindling install`: the first day in one command. Each phase is the command a person would
//! type (run through the same code, so it behaves the same), or power through the machines'
//! BMCs; each one done is recorded (see [`kindling_fleet::install`]), so a run that stopped
//! goes on from the first one not done. It exits with the code of the phase that failed:
//! wait-for's for the waits, doctor's for the checks.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use clap::Parser as _;
use kindling_config::{Machine, Role};
use kindling_fleet::install::{Phase, Progress};
use kindling_power::{Action, Request};

use crate::cli::create::load;
use crate::cli::{Cli, InstallArgs};
use crate::exit::{Code, Failure};

pub fn run(args: &InstallArgs) -> Result<(), Failure> {
    let dir = &args.cluster.dir.dir;
    let mut progress = Progress::load(dir).map_err(anyhow::Error::from)?;
    let total = Phase::ALL.len();
    for (n, phase) in Phase::ALL.into_iter().enumerate() {
        let step = format!("[{}/{total}] {}", n + 1, title(phase));
        // kindling serve may have stopped since (a reboot of this host): it is checked again.
        if let Some(done) = progress.done(phase)
            && phase != Phase::Serve
        {
            println!("{step}: done at {} ({})", done.at, done.note);
            continue;
        }
        println!("{step}: ...");
        let started = Instant::now();
        let note = match phase {
            Phase::Create => create(args)?,
            Phase::Serve => serve(dir, args)?,
            Phase::Doctor => doctor(args)?,
            Phase::PowerControlPlane => power(dir, args, Action::Cycle, true, |m| {
                matches!(m.role, Role::Bootstrap | Role::Master)
            })?,
            Phase::BootstrapComplete => wait(args, "bootstrap-complete")?,
            Phase::PowerWorkers => power(dir, args, Action::Cycle, true, |m| {
                matches!(m.role, Role::Worker | Role::Infra)
            })?,
            Phase::ApproveCsrs => {
                command(&["approve-csrs"], args)?;
                "pending requests of inventory machines approved; kindling serve --approve-csrs approves the rest".into()
            }
            Phase::InstallComplete => wait(args, "install-complete")?,
            Phase::RemoveBootstrap => remove_bootstrap(dir, args)?,
        };
        progress
            .record(dir, phase, &note)
            .map_err(anyhow::Error::from)?;
        println!(
            "{step}: done in {:.0?}: {note}",
            Duration::from_secs(started.elapsed().as_secs())
        );
    }
    println!("the install of {} is complete", dir.display());
    Ok(())
}

fn title(phase: Phase) -> &'static str {
    match phase {
        Phase::Create => "create what is missing",
        Phase::Serve => "kindling serve",
        Phase::Doctor => "doctor",
        Phase::PowerControlPlane => {
            "power on the bootstrap machine and the masters, from the network once"
        }
        Phase::BootstrapComplete => "wait for bootstrap-complete",
        Phase::PowerWorkers => "power on the workers, from the network once",
        Phase::ApproveCsrs => "approve the machines' certificate requests",
        Phase::InstallComplete => "wait for install-complete",
        Phase::RemoveBootstrap => {
            "take the bootstrap machine out of the load balancer and power it off"
        }
    }
}

/// Runs `kindling <words> --dir D` as if typed, through the same code.
fn command(words: &[&str], args: &InstallArgs) -> Result<(), Failure> {
    let dir = args.cluster.dir.dir.display().to_string();
    let mut argv: Vec<String> = std::iter::once("kindling")
        .chain(words.iter().copied())
        .chain(["--dir", &dir])
        .map(String::from)
        .collect();
    if matches!(words[0], "wait-for" | "approve-csrs")
        && let Some(kubeconfig) = &args.cluster.kubeconfig
    {
        argv.extend(["--kubeconfig".into(), kubeconfig.display().to_string()]);
    }
    if words[0] == "wait-for" {
        for (flag, value) in [
            ("--api-timeout", args.api_timeout),
            ("--bootstrap-timeout", args.bootstrap_timeout),
            ("--install-timeout", args.install_timeout),
            ("--poll-interval", args.poll_interval),
        ] {
            argv.extend([flag.into(), format!("{}ms", value.as_millis())]);
        }
    }
    let cli = Cli::try_parse_from(&argv).map_err(|e| anyhow!("{argv:?}: {e}"))?;
    crate::run(cli.command)
}

fn create(args: &InstallArgs) -> Result<String, Failure> {
    command(&["create", "ignition-configs"], args)?;
    command(&["create", "infra"], args)?;
    Ok("manifests, PKI, Ignition configs and infra configs are there".into())
}

/// `kindling serve` for the directory: the one that answers at serverURL, or one started here,
/// on its own (it outlives the install: the machine config server is needed on day 2 too), with
/// --approve-csrs, its output in `.kindling/serve.log`.
fn serve(dir: &Path, args: &InstallArgs) -> Result<String, Failure> {
    let description = load(dir)?;
    let server_url = description.inventory.provisioning.server_url.clone();
    if healthy(&server_url) {
        return Ok(format!("already answering at {server_url}"));
    }
    let port = url_port(&server_url).ok_or_else(|| {
        anyhow!("provisioning.serverURL {server_url} has no port kindling serve could listen on")
    })?;
    let http = args
        .http
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], port)));
    let log_path = dir.join(".kindling/serve.log");
    std::fs::create_dir_all(dir.join(".kindling"))
        .with_context(|| format!("making {}", dir.join(".kindling").display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let exe = std::env::current_exe().context("finding the kindling binary")?;
    let mut serve = Process::new(exe);
    serve
        .args(["serve", "--approve-csrs", "--dir"])
        .arg(dir)
        .args(["--http", &http.to_string(), "--mcs", &args.mcs.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("sharing the serve log")?)
        .stderr(log);
    if let Some(kubeconfig) = &args.cluster.kubeconfig {
        serve.arg("--kubeconfig").arg(kubeconfig);
    }
    // Its own process group: it lives on when the install ends or is interrupted.
    std::os::unix::process::CommandExt::process_group(&mut serve, 0);
    let mut child = serve.spawn().context("starting kindling serve")?;
    let pid_path = dir.join(".kindling/serve.pid");
    std::fs::write(&pid_path, format!("{}\n", child.id()))
        .with_context(|| format!("writing {}", pid_path.display()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthy(&server_url) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(anyhow!(
                "kindling serve stopped ({status}); its log is {}",
                log_path.display()
            )
            .into());
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "kindling serve did not answer at {server_url} within 60 s; its log is {}",
                log_path.display()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(format!(
        "started (pid {}, listening on {http} and {}), log in {}",
        child.id(),
        args.mcs,
        log_path.display()
    ))
}

/// Whether `kindling serve` answers `/healthz` at `server_url`.
fn healthy(server_url: &str) -> bool {
    let server = kindling_cluster::progress::ServerProgress::new(server_url);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .is_ok_and(|runtime| runtime.block_on(server.answers()))
}

fn url_port(url: &str) -> Option<u16> {
    let authority = url.split_once("://")?.1.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((_, port)) if !port.ends_with(']') => port.parse().ok(),
        _ => Some(80),
    }
}

fn doctor(args: &InstallArgs) -> Result<String, Failure> {
    match command(&["doctor"], args) {
        Ok(()) => Ok("no errors".into()),
        Err(failure) if failure.code == Code::DoctorFoundErrors && args.ignore_doctor_errors => {
            Ok("errors found, and gone on past (--ignore-doctor-errors)".into())
        }
        Err(failure) if failure.code == Code::DoctorFoundErrors => Err(Failure {
            code: Code::DoctorFoundErrors,
            error: Some(anyhow!(
                "doctor found errors (above): fix them and run kindling install again, or give --ignore-doctor-errors"
            )),
        }),
        Err(failure) => Err(failure),
    }
}

/// `action` on the machines `which` picks that have a BMC; the others are named, for a person
/// to power on.
fn power(
    dir: &Path,
    args: &InstallArgs,
    action: Action,
    pxe_once: bool,
    which: impl Fn(&Machine) -> bool,
) -> Result<String, Failure> {
    let description = load(dir)?;
    let (with_bmc, by_hand): (Vec<Machine>, Vec<Machine>) = description
        .inventory
        .machines
        .iter()
        .filter(|m| which(m))
        .cloned()
        .partition(|m| m.bmc.is_some());
    let mut note = Vec::new();
    if !with_bmc.is_empty() {
        let request = Request {
            action,
            pxe_once,
            concurrency: args.concurrency.into(),
            ..Request::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let results = runtime.block_on(kindling_power::many(dir, &with_bmc, &request, &|_, _| {}));
        let mut failed = Vec::new();
        for (machine, result) in with_bmc.iter().zip(&results) {
            match result {
                Ok(done) => println!(
                    "  {:<16} {}",
                    machine.name,
                    match done.reset {
                        Some(reset) => format!("{reset} (was {})", done.state),
                        None => done.state.to_string(),
                    }
                ),
                Err(e) => {
                    println!("  {:<16} FAILED: {e}", machine.name);
                    failed.push(machine.name.as_str());
                }
            }
        }
        if !failed.is_empty() {
            return Err(anyhow!(
                "the BMCs of {} did not do it (above); fix them and run kindling install again",
                failed.join(", ")
            )
            .into());
        }
        note.push(format!(
            "{} through their BMCs",
            with_bmc
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !by_hand.is_empty() {
        let names: Vec<&str> = by_hand.iter().map(|m| m.name.as_str()).collect();
        println!(
            "  no BMC in inventory.yaml for {}: do it by hand{}",
            names.join(", "),
            if pxe_once {
                ", booting from the network"
            } else {
                ""
            }
        );
        note.push(format!("{} by hand (no BMC)", names.join(", ")));
    }
    Ok(if note.is_empty() {
        "no such machine".into()
    } else {
        note.join("; ")
    })
}

fn wait(args: &InstallArgs, goal: &str) -> Result<String, Failure> {
    command(&["wait-for", goal], args)?;
    Ok(goal.to_string())
}

fn remove_bootstrap(dir: &Path, args: &InstallArgs) -> Result<String, Failure> {
    command(&["create", "infra", "--phase", "bootstrap-removed"], args)?;
    let powered = power(dir, args, Action::Off, false, |m| m.role == Role::Bootstrap)?;
    Ok(format!(
        "the load balancer's configs without it (reload HAProxy with infra/haproxy.cfg); powered off: {powered}"
    ))
}
