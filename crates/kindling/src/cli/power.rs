//! `kindling power`: kindling-power's work on the machines the arguments name; this prints a
//! progress line and each machine's outcome.

use std::io::Write as _;

use anyhow::{Context as _, anyhow};
use kindling_power::{Action, Request};

use crate::cli::create::load;
use crate::cli::{PowerAction, PowerArgs};
use crate::exit::{Code, Failure};

pub fn run(args: &PowerArgs) -> Result<(), Failure> {
    let dir = &args.dir.dir;
    let description = load(dir)?;
    let usage = |e: String| Failure {
        code: Code::Usage,
        error: Some(anyhow!(e)),
    };
    let all = &description.inventory.machines;
    let chosen: Vec<kindling_config::Machine> = if args.all {
        all.iter().filter(|m| m.bmc.is_some()).cloned().collect()
    } else if let Some(role) = &args.role {
        all.iter()
            .filter(|m| m.role.to_string() == *role)
            .cloned()
            .collect()
    } else {
        let mut chosen = Vec::new();
        for name in &args.machines {
            let m = all.iter().find(|m| &m.name == name).ok_or_else(|| {
                usage(format!(
                    "{name} is not a machine of {}/inventory.yaml",
                    dir.display()
                ))
            })?;
            chosen.push(m.clone());
        }
        chosen
    };
    if chosen.is_empty() {
        return Err(usage(
            "no machine chosen: name machines, or give --role ROLE or --all".into(),
        ));
    }
    let request = Request {
        action: match args.action {
            PowerAction::Status => Action::Status,
            PowerAction::On => Action::On,
            PowerAction::Off => Action::Off,
            PowerAction::Cycle => Action::Cycle,
        },
        pxe_once: args.pxe_once,
        concurrency: args.concurrency.into(),
        ..Request::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let progress = |done: usize, total: usize| {
        if !args.json {
            eprint!("\rpower: {done} of {total} machines answered");
            if done == total {
                eprintln!();
            }
        }
    };
    let results = runtime.block_on(kindling_power::many(dir, &chosen, &request, &progress));
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for (machine, result) in chosen.iter().zip(&results) {
        if result.is_err() {
            failed += 1;
        }
        if args.json {
            let line = match result {
                Ok(done) => serde_json::json!({
                    "machine": machine.name, "ok": true, "state": done.state.to_string(),
                    "reset": done.reset, "pxeOnce": done.pxe_once,
                }),
                Err(e) => {
                    serde_json::json!({"machine": machine.name, "ok": false, "error": e.to_string()})
                }
            };
            writeln!(out, "{line}").context("writing the result")?;
            continue;
        }
        let said = match result {
            Ok(done) => match done.reset {
                None => format!("{}{}", done.state, pxe(done.pxe_once)),
                Some(reset) => format!("done: {reset} (was {}){}", done.state, pxe(done.pxe_once)),
            },
            Err(e) => format!("FAILED: {e}"),
        };
        writeln!(out, "{:<16} {said}", machine.name).context("writing the result")?;
    }
    if failed > 0 {
        return Err(Failure {
            code: Code::Internal,
            error: Some(anyhow!(
                "{failed} of {} machines did not do what was asked",
                chosen.len()
            )),
        });
    }
    Ok(())
}

fn pxe(once: bool) -> &'static str {
    if once {
        "; boots from the network once"
    } else {
        ""
    }
}
