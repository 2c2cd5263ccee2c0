//! Printing findings and asset outcomes.

use kindling_assets::{Action, AssetOutcome};
use kindling_config::{Diagnostic, Severity};

/// Logs each finding at its own level.
pub fn findings(findings: &[Diagnostic]) {
    for d in findings {
        match d.severity {
            Severity::Error => tracing::error!("{d}"),
            Severity::Warning => tracing::warn!("{d}"),
            Severity::Info => tracing::info!("{d}"),
        }
    }
}

/// Logs the findings of an invalid description and the line that says nothing was written.
pub fn invalid(all: &[Diagnostic]) {
    findings(all);
    let errors = all.iter().filter(|d| d.severity == Severity::Error).count();
    tracing::error!("the cluster description has {errors} error(s); nothing was written");
}

/// Prints what a `create` run did, one line per asset, and warns about kept edits.
pub fn outcomes(outcomes: &[AssetOutcome]) {
    for o in outcomes {
        let action = match o.action {
            Action::Generated => "generated",
            Action::Regenerated => "regenerated",
            Action::Renewed => "renewed",
            Action::UpToDate => "up to date",
        };
        println!("  {action:<12} {}", o.asset);
        for path in &o.kept_edits {
            tracing::warn!("kept your version of {path}; delete it to have kindling regenerate it");
        }
    }
}
