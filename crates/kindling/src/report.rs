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

/// Logs each finding at its own level, but a note (info) already said for this asset directory
/// only at debug (so in `.kindling/kindling.log`): a note such as the inferred machine network
/// is news once, not on every command. What was said is kept in `.kindling/notes-said`.
pub fn findings_once(dir: &std::path::Path, all: &[Diagnostic]) {
    use kindling_assets::{AtomicFiles, Mode, Storage};
    let path = dir.join(".kindling/notes-said");
    let said = std::fs::read_to_string(&path).unwrap_or_default();
    let mut new = Vec::new();
    for d in all {
        let text = d.to_string();
        if d.severity == Severity::Info && said.lines().any(|l| l == text) {
            tracing::debug!("{text}");
            continue;
        }
        findings(std::slice::from_ref(d));
        if d.severity == Severity::Info {
            new.push(text);
        }
    }
    if new.is_empty() || !dir.is_dir() {
        return;
    }
    let mut all_said = said;
    for text in new {
        all_said.push_str(&text);
        all_said.push('\n');
    }
    // Not being able to remember only means saying it again.
    if std::fs::create_dir_all(dir.join(".kindling")).is_ok() {
        let _ = AtomicFiles.write(&path, all_said.as_bytes(), Mode::Public);
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
        tracing::debug!("{action} {}", o.asset);
        for path in &o.kept_edits {
            match o.stale_edits.iter().find(|s| &s.path == path) {
                Some(stale) => {
                    let what = match stale.changed_inputs.as_slice() {
                        [] => "what it is made from".to_string(),
                        [one] => one.clone(),
                        [a, b] => format!("{a} and {b}"),
                        [a, b, rest @ ..] => format!("{a}, {b} and {} more", rest.len()),
                    };
                    tracing::warn!(
                        "kept your edited {path}, but {what} changed since; kindling's version is {} (+{} -{} lines against yours): merge it into yours, or delete yours to take it",
                        stale.new_path,
                        stale.added,
                        stale.removed
                    );
                }
                None => tracing::warn!(
                    "kept your version of {path}; delete it to have kindling regenerate it"
                ),
            }
        }
    }
}

/// An error and its causes on one line, `a: b: c`, each said once: many errors already name
/// their cause in their own text (`reading F: No such file`), and anyhow's chain would then say
/// it again.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_said_again() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(kindling_config::LoadError::Read {
            path: "lab/inventory.yaml".into(),
            source: io,
        })
        .context("loading the description");
        assert_eq!(
            error_chain(&e),
            "loading the description: reading lab/inventory.yaml: No such file or directory"
        );
        let plain = anyhow::anyhow!("outer").context("top");
        assert_eq!(error_chain(&plain), "top: outer");
    }
}
