//! `kindling machines arm`: opens a machine's install window again, for a re-install.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cli::MachinesCommand;
use crate::cli::create::load;
use crate::exit::{Code, Failure};

pub fn run(command: &MachinesCommand) -> Result<(), Failure> {
    let MachinesCommand::Arm { dir, machines } = command;
    let dir = &dir.dir;
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
