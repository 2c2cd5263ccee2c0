//! `kindling doctor`: turns the flags into a doctor request and prints the report.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, anyhow};
use kindling_infra::doctor::{self, Area, Finding, Report, Request, Severity};

use crate::cli::DoctorArgs;
use crate::cli::create::load;
use crate::exit::{Code, Failure};

pub fn run(args: &DoctorArgs) -> Result<(), Failure> {
    let dir = &args.dir.dir;
    let description = load(dir)?;
    let resolvers = if args.resolvers.is_empty() {
        Request::default_resolvers(&description)
    } else {
        args.resolvers
            .iter()
            .map(|r| parse_resolver(r))
            .collect::<Result<_, _>>()
            .map_err(|e| Failure {
                code: Code::Usage,
                error: Some(e),
            })?
    };
    let areas = args
        .areas
        .iter()
        .filter_map(|a| Area::SELECTABLE.into_iter().find(|x| x.as_str() == a))
        .collect();
    let request = Request {
        dir: dir.clone(),
        description,
        resolvers,
        areas,
        now: time::OffsetDateTime::now_utc(),
        bootstrap_window: time::Duration::hours(args.bootstrap_window_hours.into()),
        timeouts: doctor::Timeouts::default(),
        store: match &args.store {
            Some(address) => Some(crate::cli::store::open(address, &args.etcd_tls)?),
            None => None,
        },
    };
    let report = doctor::run(&request);
    // Kept for the dashboard; a directory that cannot be written only loses that.
    if let Err(e) = doctor::record(dir, &report, "kindling doctor") {
        tracing::warn!(
            "keeping the report in {}: {e}",
            dir.join(doctor::LATEST).display()
        );
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &report).context("writing the report")?;
        writeln!(stdout).context("writing the report")?;
    } else {
        print_human(&mut stdout, &request, &report).context("writing the report")?;
    }
    if report.has_errors() {
        return Err(Failure {
            code: Code::DoctorFoundErrors,
            error: None,
        });
    }
    Ok(())
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`; port 53 when none is given.
fn parse_resolver(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            anyhow!(
                "--resolver {text}: expected IP or IP:PORT, e.g. 192.168.126.2 or 127.0.0.1:5353"
            )
        })
}

fn marker(s: Severity) -> &'static str {
    match s {
        Severity::Error => "ERROR",
        Severity::Warning => "WARNING",
        Severity::Info => "info",
        Severity::Ok => "ok",
    }
}

fn print_human(out: &mut impl Write, request: &Request, report: &Report) -> std::io::Result<()> {
    let resolvers: Vec<String> = request.resolvers.iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "kindling doctor: {} (DNS server {})",
        request.dir.display(),
        if resolvers.is_empty() {
            "none".to_string()
        } else {
            resolvers.join(", ")
        }
    )?;
    let mut area = None;
    // A reason is given once for a run of findings that share it (e.g. one per machine).
    let mut last_why = "";
    for f in &report.findings {
        if area != Some(f.area) {
            area = Some(f.area);
            last_why = "";
            writeln!(out, "\n{}", f.area.title())?;
        }
        print_finding(out, f, f.why == last_why)?;
        last_why = &f.why;
    }
    let (errors, warnings) = (
        report.count(Severity::Error),
        report.count(Severity::Warning),
    );
    writeln!(
        out,
        "\n{errors} error(s), {warnings} warning(s), {} note(s), {} ok{}",
        report.count(Severity::Info),
        report.count(Severity::Ok),
        if errors > 0 {
            "; fix the errors before booting machines"
        } else {
            ""
        }
    )
}

fn print_finding(out: &mut impl Write, f: &Finding, why_given: bool) -> std::io::Result<()> {
    writeln!(
        out,
        "  {:<8}{}: {}  [{}]",
        marker(f.severity),
        f.subject,
        f.what,
        f.check
    )?;
    if !f.why.is_empty() && f.severity != Severity::Ok && !why_given {
        writeln!(out, "          why: {}", f.why)?;
    }
    if !f.fix.is_empty() {
        writeln!(out, "          fix: {}", f.fix)?;
    }
    Ok(())
}
