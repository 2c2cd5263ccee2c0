//! `kindling status`: kindling-fleet's (`status`) view of every machine, as a table or JSON.

use anyhow::Context as _;
use kindling_fleet::status::{self, MachineStatus};

use crate::cli::StatusArgs;
use crate::cli::create::load;
use crate::exit::Failure;

pub fn run(args: &StatusArgs) -> Result<(), Failure> {
    let dir = &args.cluster.dir.dir;
    let description = load(dir)?;
    let mut machines = status::local(dir, &description).map_err(anyhow::Error::from)?;
    status::add_last_events(dir, &mut machines);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let kubeconfig = args.cluster.kubeconfig();
    let cluster = runtime.block_on(async {
        let client = kindling_cluster::connect(&kubeconfig).await?;
        let asked = status::from_cluster(&client, &mut machines);
        match tokio::time::timeout(std::time::Duration::from_secs(10), asked).await {
            Ok(result) => result.map_err(anyhow::Error::from),
            Err(_) => Err(anyhow::anyhow!("no answer within 10s")),
        }
    });
    if let Err(e) = &cluster {
        tracing::warn!("the cluster's API did not answer, so Nodes are not shown ({e:#})");
    }
    if args.json {
        let json = serde_json::to_string_pretty(&machines).context("writing JSON")?;
        println!("{json}");
        return Ok(());
    }
    let now = crate::clock::now();
    println!(
        "{:<12} {:<9} {:<22} {:<44} {:<10} {:<10} {:>6}",
        "MACHINE", "ROLE", "STAGE", "RENDERING", "DRIFT", "READY", "CERTS"
    );
    for m in &machines {
        println!(
            "{:<12} {:<9} {:<22} {:<44} {:<10} {:<10} {:>6}",
            m.name,
            m.role,
            stage(m, now),
            rendering(m),
            drift(m),
            ready(m),
            m.certificates_expire
                .map(|t| format!("{}d", (t - now).whole_days()))
                .unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}

fn stage(m: &MachineStatus, now: time::OffsetDateTime) -> String {
    let Some(stage) = &m.stage else {
        return "-".into();
    };
    let age = m
        .stage_time
        .as_deref()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| {
            let minutes = (now - t).whole_minutes().max(0);
            match minutes {
                0 => "now".to_string(),
                m if m < 120 => format!("{m}m ago"),
                m => format!("{}h ago", m / 60),
            }
        })
        .unwrap_or_default();
    format!("{stage} {age}")
}

/// `current`, `current -> desired` while it moves, or what it is meant to get.
fn rendering(m: &MachineStatus) -> String {
    let short = |name: &str| name.trim_start_matches("rendered-").to_string();
    let text = match (&m.current, &m.desired) {
        (Some(c), Some(d)) if c != d => format!("{} -> {}", short(c), short(d)),
        (Some(c), _) => short(c),
        (None, Some(d)) => format!("(to install {})", short(d)),
        (None, None) => "-".into(),
    };
    match &m.update {
        Some(step) => format!("{text} [{step}]"),
        None => text,
    }
}

fn drift(m: &MachineStatus) -> String {
    match (&m.drift, &m.agent) {
        (Some(paths), _) => format!("{} path(s)", paths.lines().skip(1).count().max(1)),
        (None, Some(_)) => "none".into(),
        (None, None) => "-".into(),
    }
}

fn ready(m: &MachineStatus) -> String {
    let text = match m.ready {
        Some(true) => "Ready",
        Some(false) => "NotReady",
        None => "-",
    };
    if m.cordoned {
        format!("{text},cordoned")
    } else {
        text.to_string()
    }
}
