//! `kindling wait-for bootstrap-complete | install-complete`: turns the flags into a wait and
//! shows its reports: spinners on a terminal, plain lines otherwise, JSON lines with `--json`.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kindling_cluster::progress::ServerProgress;
use kindling_cluster::wait::{Goal, Observer, Phase, Report, Timing, Wait, human};
use kindling_config::Role;

use crate::cli::create::load;
use crate::cli::{WaitForArgs, WaitGoal};
use crate::exit::{Code, Failure};

pub fn run(args: &WaitForArgs) -> Result<(), Failure> {
    let dir = &args.cluster.dir.dir;
    let description = load(dir)?;
    let goal = match args.goal {
        WaitGoal::BootstrapComplete => Goal::BootstrapComplete,
        WaitGoal::InstallComplete => Goal::InstallComplete,
        WaitGoal::Node => Goal::Node,
    };
    let kubeconfig = args.cluster.kubeconfig();
    let api_url = kindling_cluster::client::kubeconfig_server(&kubeconfig)
        .unwrap_or_else(|| description.api_url());
    let server_url = args
        .server_url
        .clone()
        .unwrap_or_else(|| description.inventory.provisioning.server_url.clone());
    let timing = Timing {
        poll: args.poll_interval,
        api: args.api_timeout,
        bootstrap: args.bootstrap_timeout,
        install: args.install_timeout,
        cap_factor: args.timeout_cap,
    };
    // The join token whose Secret install-complete deletes; none without the asset.
    let join_token_id =
        std::fs::read_to_string(dir.join(kindling_assets::pki::BOOTSTRAP_TOKEN_FILE))
            .ok()
            .and_then(|text| kindling_pki::BootstrapToken::parse(&text))
            .map(|token| token.id);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut observer: Box<dyn Observer> = if args.json {
        Box::new(JsonLines)
    } else if std::io::stdout().is_terminal() {
        Box::new(Spinners::new())
    } else {
        Box::new(PlainLines)
    };
    if !args.json {
        println!(
            "kindling wait-for {}: {} (API {api_url}, kindling serve {server_url})",
            goal_name(goal),
            dir.display(),
        );
    }
    let result = runtime.block_on(async {
        let client = kindling_cluster::connect(&kubeconfig)
            .await
            .context("run kindling create manifests first, or give --kubeconfig")?;
        let wait = Wait {
            client,
            description: &description,
            api_url,
            server: Some(
                ServerProgress::new(&server_url)
                    .with_admin_token_file(dir.join(kindling_server::ui::auth::TOKEN_FILE)),
            ),
            timing,
            join_token_id,
            node: args.machine.clone(),
        };
        Ok::<_, anyhow::Error>(wait.run(goal, observer.as_mut()).await)
    })?;
    drop(observer);
    match result {
        Ok(()) => {
            finished(args, goal, &description);
            Ok(())
        }
        Err(e) => {
            let (code, what) = match goal {
                Goal::BootstrapComplete => (Code::BootstrapFailed, "bootstrap failed"),
                Goal::InstallComplete | Goal::Node => (Code::InstallFailed, "install failed"),
            };
            Err(Failure {
                code,
                error: Some(anyhow!("{what}: {e}")),
            })
        }
    }
}

fn goal_name(goal: Goal) -> &'static str {
    match goal {
        Goal::BootstrapComplete => "bootstrap-complete",
        Goal::InstallComplete => "install-complete",
        Goal::Node => "node",
    }
}

/// The closing lines: what the user may do now.
fn finished(args: &WaitForArgs, goal: Goal, description: &kindling_config::ClusterDescription) {
    let dir = args.cluster.dir.dir.display();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"event": "complete", "goal": goal_name(goal)})
        );
        return;
    }
    match goal {
        Goal::BootstrapComplete => {
            match description.inventory.with_role(Role::Bootstrap).next() {
                Some(bootstrap) => {
                    println!(
                        "safe to remove the bootstrap machine ({}): its etcd member is gone and the control plane runs on the masters",
                        bootstrap.name
                    );
                    println!(
                        "next: kindling create infra --dir {dir} --phase bootstrap-removed   (takes it out of the load balancer)"
                    );
                }
                None => println!(
                    "bootstrap complete (no bootstrap machine in the inventory: nothing to remove)"
                ),
            }
            println!("then: kindling wait-for install-complete --dir {dir}");
        }
        Goal::InstallComplete => println!("install complete"),
        Goal::Node => println!(
            "{} joined: Ready, with its labels",
            args.machine.as_deref().unwrap_or_default()
        ),
    }
}

/// The line for a report; `None` for those shown otherwise.
fn line(report: &Report) -> Option<String> {
    Some(match report {
        Report::PhaseStarted {
            phase,
            timeout_secs,
            cap_secs,
            waiting_for,
        } => format!(
            "{}: waiting up to {} (up to {} while it makes progress) for {waiting_for}",
            phase.as_str(),
            human(Duration::from_secs(*timeout_secs)),
            human(Duration::from_secs(*cap_secs)),
        ),
        Report::Status { phase, message } => format!("{}: {message}", phase.as_str()),
        Report::Machine {
            name,
            role,
            stage,
            time,
        } => match stage {
            Some(stage) => format!(
                "machine {name} ({role}): {stage}{}",
                time.as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default()
            ),
            None => format!("machine {name} ({role}): no contact with kindling serve yet"),
        },
        Report::ServerUnreachable { url, error } => format!(
            "kindling serve does not answer at {url} ({error}); going on without machine stages"
        ),
        Report::Extended {
            phase,
            deadline_secs,
            cap_secs,
            because,
        } => format!(
            "{}: still making progress ({because}): deadline extended to {} after the phase started (cap {})",
            phase.as_str(),
            human(Duration::from_secs(*deadline_secs)),
            human(Duration::from_secs(*cap_secs)),
        ),
        Report::PhaseDone {
            phase,
            elapsed_secs,
            message,
        } => format!(
            "{}: {message} (after {})",
            phase.as_str(),
            human(Duration::from_secs(*elapsed_secs))
        ),
        // The failure is printed once, as the command's error.
        Report::Failed { .. } => return None,
    })
}

struct PlainLines;

impl Observer for PlainLines {
    fn report(&mut self, report: &Report) {
        if let Some(line) = line(report) {
            println!("{line}");
        }
    }
}

struct JsonLines;

impl Observer for JsonLines {
    fn report(&mut self, report: &Report) {
        let mut stdout = std::io::stdout().lock();
        if serde_json::to_writer(&mut stdout, report).is_ok() {
            let _ = writeln!(stdout);
        }
    }
}

/// A spinner per phase and a line per machine, redrawn in place.
struct Spinners {
    multi: MultiProgress,
    phase: Option<(Phase, ProgressBar)>,
    machines: std::collections::BTreeMap<String, ProgressBar>,
}

impl Spinners {
    fn new() -> Spinners {
        Spinners {
            multi: MultiProgress::new(),
            phase: None,
            machines: Default::default(),
        }
    }

    fn print(&self, line: &str) {
        if self.multi.println(line).is_err() {
            println!("{line}");
        }
    }
}

impl Observer for Spinners {
    fn report(&mut self, report: &Report) {
        match report {
            Report::PhaseStarted { phase, .. } => {
                let bar = self.multi.insert(0, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix}: {wide_msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(phase.as_str());
                if let Some(text) = line(report) {
                    self.print(&text);
                }
                self.phase = Some((*phase, bar));
            }
            Report::Status { message, .. } => {
                if let Some((_, bar)) = &self.phase {
                    bar.set_message(message.clone());
                }
            }
            Report::Machine { name, .. } => {
                let text = line(report).unwrap_or_default();
                let bar = self.machines.entry(name.clone()).or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {wide_msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar
                });
                bar.set_message(text);
            }
            Report::PhaseDone { .. } => {
                if let Some((_, bar)) = self.phase.take() {
                    bar.finish_and_clear();
                }
                if let Some(text) = line(report) {
                    self.print(&format!("✓ {text}"));
                }
            }
            Report::Failed { .. } => {
                if let Some((_, bar)) = self.phase.take() {
                    bar.abandon();
                }
            }
            other => {
                if let Some(text) = line(other) {
                    self.print(&text);
                }
            }
        }
    }

    fn tick(&mut self) {
        if let Some((_, bar)) = &self.phase {
            bar.tick();
        }
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        for bar in self.machines.values() {
            bar.finish();
        }
    }
}
