//! `kindling certs` and `kindling certs renew`. The inventory is kindling-fleet's (`certs`);
//! renewing is `create ignition-configs` with a renewal horizon.

use anyhow::Context as _;
use kindling_assets::Target;
use kindling_fleet::certs::{self, Credential, Kind};

use crate::cli::create::{assets_renewing, load};
use crate::cli::{CertsArgs, CertsCommand, RenewArgs};
use crate::exit::Failure;

pub fn run(args: &CertsArgs) -> Result<(), Failure> {
    match &args.command {
        Some(CertsCommand::Renew(renew)) => self::renew(renew),
        None => list(args),
    }
}

/// The credentials of the asset directory.
fn local(
    dir: &std::path::Path,
    d: &kindling_config::ClusterDescription,
) -> Result<Vec<Credential>, Failure> {
    Ok(certs::of_description(dir, d).map_err(anyhow::Error::from)?)
}

/// Every credential: the asset directory's, and the kubelets' from the cluster when its API
/// answers (said when it does not).
fn list(args: &CertsArgs) -> Result<(), Failure> {
    let dir = &args.cluster.dir.dir;
    let description = load(dir)?;
    let mut all = local(dir, &description)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let kubeconfig = args.cluster.kubeconfig();
    let kubelets = runtime.block_on(async {
        let client = kindling_cluster::connect(&kubeconfig).await?;
        let listed =
            tokio::time::timeout(std::time::Duration::from_secs(10), certs::kubelets(&client));
        match listed.await {
            Ok(result) => result.map_err(anyhow::Error::from),
            Err(_) => Err(anyhow::anyhow!("no answer within 10s")),
        }
    });
    match kubelets {
        Ok(found) => all.extend(found),
        Err(e) => tracing::warn!(
            "the kubelets' certificates are not listed: the cluster's API did not answer ({e:#})"
        ),
    }
    let now = crate::clock::now();
    all.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.source.cmp(&b.source)));
    if args.json {
        let json = serde_json::to_string_pretty(&all).context("writing JSON")?;
        println!("{json}");
        return Ok(());
    }
    println!(
        "{:<20}  {:>6}  {:<15}  {:<42}  SUBJECT",
        "NOT AFTER (UTC)", "LEFT", "KIND", "WHERE"
    );
    let mut soon = 0;
    for c in &all {
        let left = c.days_left(now);
        let mark = if c.bootstrap_only {
            "  (bootstrap only)"
        } else if c.not_after <= now {
            soon += 1;
            "  EXPIRED"
        } else if left < args.warn_days {
            soon += 1;
            "  RENEW"
        } else {
            ""
        };
        println!(
            "{:<20}  {:>5}d  {:<15}  {:<42}  {}{mark}",
            date(c),
            left,
            c.kind.as_str(),
            c.source,
            subject(c)
        );
    }
    if soon > 0 {
        println!(
            "{soon} expire(s) within {} days: kindling certs renew --dir {} re-signs the leaves \
             (kubelets renew their own certificates)",
            args.warn_days,
            dir.display()
        );
    }
    Ok(())
}

fn date(c: &Credential) -> String {
    let t = c.not_after.to_offset(time::UtcOffset::UTC);
    format!(
        "{}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

fn subject(c: &Credential) -> String {
    if c.names.is_empty() {
        c.subject.clone()
    } else {
        format!("{} [{}]", c.subject, c.names.join(", "))
    }
}

fn renew(args: &RenewArgs) -> Result<(), Failure> {
    let dir = &args.assets.dir.dir;
    let description = load(dir)?;
    let horizon = if args.all {
        // Past the end of the longest-lived leaf: every one is re-signed.
        time::Duration::days(i64::from(args.assets.leaf_days) * 2 + 1)
    } else {
        time::Duration::days(args.within.into())
    };
    let now = crate::clock::now();
    let before = local(dir, &description)?;
    let due: Vec<&Credential> = before
        .iter()
        .filter(|c| {
            matches!(c.kind, Kind::Leaf | Kind::Kubeconfig)
                && !c.bootstrap_only
                && c.not_after < now + horizon
        })
        .collect();
    if args.dry_run {
        for c in &due {
            println!(
                "would re-sign {} ({} days left)",
                c.source,
                c.days_left(now)
            );
        }
        println!(
            "{} certificate(s) would be re-signed under their CAs",
            due.len()
        );
        return Ok(());
    }
    assets_renewing(&args.assets, Target::IgnitionConfigs, horizon)?;
    println!(
        "{} certificate(s) re-signed under their CAs; the pools' new renderings carry them: \
         kindling update --dir {} delivers them, a machine at a time",
        due.len(),
        dir.display()
    );
    Ok(())
}
