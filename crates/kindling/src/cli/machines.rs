//! `kindling machines`: the inventory's machines and the discovered ones; `machines accept`
//! adds a discovered machine to inventory.yaml; `machines arm` opens a machine's install window
//! again, for a re-install.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kindling_config::inventory::size_text;
use kindling_discovery::accept::{self, Acceptance, Address};
use kindling_discovery::pending::Discovered;

use crate::cli::create::load;
use crate::cli::{AcceptArgs, MachinesArgs, MachinesCommand, MachinesListArgs};
use crate::exit::{Code, Failure};

pub fn run(args: &MachinesArgs) -> Result<(), Failure> {
    match &args.command {
        None => list(&args.list),
        Some(MachinesCommand::Accept(accept)) => accept_machine(accept),
        Some(MachinesCommand::Arm { dir, machines }) => arm(&dir.dir, machines),
    }
}

/// One line of the list, and of `--json`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    /// `inventory`, or `pending` for a discovered machine not in it.
    state: &'static str,
    name: Option<&'a str>,
    role: Option<kindling_config::Role>,
    mac: String,
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discovered: Option<&'a Discovered>,
}

fn list(args: &MachinesListArgs) -> Result<(), Failure> {
    let dir = &args.dir.dir;
    let description = load(dir)?;
    let reports = kindling_discovery::pending::list(dir).map_err(anyhow::Error::from)?;
    let inventory = &description.inventory;
    let mut rows: Vec<Row> = Vec::new();
    if !args.pending {
        for m in &inventory.machines {
            let mac = m.macs[0];
            rows.push(Row {
                state: "inventory",
                name: Some(&m.name),
                role: Some(m.role),
                mac: mac.to_string(),
                ip: Some(m.ip.to_string()),
                discovered: reports.iter().find(|d| m.macs.contains(&d.mac)),
            });
        }
    }
    for d in &reports {
        if inventory.machines.iter().any(|m| m.macs.contains(&d.mac)) {
            continue;
        }
        rows.push(Row {
            state: "pending",
            name: None,
            role: None,
            mac: d.mac.to_string(),
            ip: None,
            discovered: Some(d),
        });
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "machines": rows }))
                .context("writing JSON")?
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no machine has reported to kindling serve --discover in {}",
            dir.display()
        );
        return Ok(());
    }
    println!(
        "{:<10} {:<12} {:<8} {:<18} {:<16} HARDWARE",
        "STATE", "NAME", "ROLE", "MAC", "IP"
    );
    for row in &rows {
        println!(
            "{:<10} {:<12} {:<8} {:<18} {:<16} {}",
            row.state,
            row.name.unwrap_or("-"),
            row.role.map_or("-".to_string(), |r| r.to_string()),
            row.mac,
            row.ip.as_deref().unwrap_or("-"),
            row.discovered.map_or(String::new(), summary)
        );
    }
    Ok(())
}

/// A discovered machine's hardware on one line.
fn summary(d: &Discovered) -> String {
    let hw = &d.hardware;
    let system = [&hw.system.vendor, &hw.system.product, &hw.system.serial]
        .into_iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let disks: Vec<String> = hw.disks.iter().map(|d| d.describe()).collect();
    format!(
        "{}{} CPUs, {} memory; disks: {}; uuid {}{}; reported {} from {}",
        if system.is_empty() {
            String::new()
        } else {
            format!("{system}; ")
        },
        hw.cpu.count,
        size_text(hw.memory_bytes),
        if disks.is_empty() {
            "none".to_string()
        } else {
            disks.join(", ")
        },
        hw.system.uuid.as_deref().unwrap_or("-"),
        hw.bmc
            .as_deref()
            .map_or(String::new(), |bmc| format!("; BMC {bmc}")),
        d.reported_at,
        d.address
    )
}

fn accept_machine(args: &AcceptArgs) -> Result<(), Failure> {
    let dir = &args.dir.dir;
    let ip = match args.ip.as_str() {
        "auto" => Address::Auto,
        text => Address::Given(text.parse().map_err(|_| Failure {
            code: Code::Usage,
            error: Some(anyhow::anyhow!(
                "--ip {text} is neither auto nor an IP address"
            )),
        })?),
    };
    let acceptance = Acceptance {
        name: args.name.clone(),
        role: args.role,
        ip,
    };
    let accepted = accept::accept(dir, &args.machine, &acceptance).map_err(|e| Failure {
        code: match e {
            accept::AcceptError::Refused(_) | accept::AcceptError::Pending(_) => Code::Usage,
            _ => Code::Internal,
        },
        error: Some(anyhow::Error::from(e)),
    })?;
    println!(
        "{} ({}) added to {}: role {}, ip {}, install disk {}",
        accepted.name,
        accepted.mac,
        dir.join(kindling_config::INVENTORY_FILE).display(),
        args.role,
        accepted.ip,
        match &accepted.install_disk {
            Some((disk, why)) => format!("{disk} ({why})"),
            None => "the inventory's default".to_string(),
        }
    );
    for warning in &accepted.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "the file as it was: {}
next: kindling create ignition-configs --dir {}; the machine, waiting in discovery, then reboots into its install",
        accepted.backup.display(),
        dir.display()
    );
    Ok(())
}

fn arm(dir: &Path, machines: &[String]) -> Result<(), Failure> {
    let description = load(dir)?;
    let unknown: Vec<&str> = machines
        .iter()
        .map(String::as_str)
        .filter(|m| !description.inventory.machines.iter().any(|x| x.name == *m))
        .collect();
    if !unknown.is_empty() {
        return Err(Failure {
            code: Code::Usage,
            error: Some(anyhow::anyhow!(
                "no machine named {} in {}; the machines are: {}",
                unknown.join(", "),
                dir.join("inventory.yaml").display(),
                description
                    .inventory
                    .machines
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        });
    }
    let mut requests = Vec::new();
    for machine in machines {
        let path = kindling_server::window::request_arm(dir, machine).with_context(|| {
            format!("writing the arm request for {machine} in {}", dir.display())
        })?;
        requests.push((machine, path));
    }
    // kindling serve takes requests every 2 seconds.
    let deadline = Instant::now() + Duration::from_secs(6);
    while requests.iter().any(|(_, p)| p.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    for (machine, path) in &requests {
        if path.exists() {
            println!(
                "{machine}: requested; kindling serve is not running on {} (or did not answer), and arms it when it starts",
                dir.display()
            );
        } else {
            println!(
                "{machine}: armed; kindling serve gives its configs to the first address that asks, for one install"
            );
        }
    }
    Ok(())
}
