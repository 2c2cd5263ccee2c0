//! The corpus of invalid descriptions in `tests/fixtures/invalid/`.
//!
//! Each case directory holds the file(s) that differ from `base/` and `expected.txt`: one line per
//! error, `file:line:col: field.path: ` and the start of the message. The test checks that
//! `create manifests` exits with 3, reports exactly those errors, and writes nothing.

use std::path::Path;

use crate::{dir_with, fixtures, kindling, snapshot};

const FILES: [&str; 2] = ["install-config.yaml", "inventory.yaml"];

fn case_dir(case: &Path) -> tempfile::TempDir {
    let base = fixtures().join("invalid/base");
    let sources: Vec<(&str, std::path::PathBuf)> = FILES
        .iter()
        .map(|f| {
            let own = case.join(f);
            (*f, if own.exists() { own } else { base.join(f) })
        })
        .collect();
    let refs: Vec<(&str, &Path)> = sources.iter().map(|(f, p)| (*f, p.as_path())).collect();
    dir_with(&refs)
}

#[test]
fn the_base_of_the_corpus_is_valid() {
    let dir = case_dir(&fixtures().join("invalid/base"));
    kindling(&["create", "manifests", "--dir", dir.path().to_str().unwrap()]).expect(0);
}

#[test]
fn every_invalid_description_is_reported_in_full_and_writes_nothing() {
    let mut cases: Vec<_> = std::fs::read_dir(fixtures().join("invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.txt").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 30,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut multi = 0;
    let mut failures = Vec::new();

    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy();
        let expected: Vec<String> = std::fs::read_to_string(case.join("expected.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        multi += usize::from(expected.len() > 1);

        let dir = case_dir(case);
        let before = snapshot(dir.path());
        let shown_dir = dir.path().display().to_string();
        let run = kindling(&["create", "manifests", "--dir", &shown_dir]);
        run.expect(3);
        let stderr = run.stderr();

        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains(&format!("{shown_dir}/")))
            .collect();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|want| {
                !errors
                    .iter()
                    .any(|l| l.contains(&format!("{shown_dir}/{want}")))
            })
            .collect();
        if !missing.is_empty() || errors.len() != expected.len() {
            failures.push(format!(
                "{name}: expected\n  {}\ngot\n  {}",
                expected.join("\n  "),
                errors.join("\n  ")
            ));
        }
        assert!(stderr.contains("nothing was written"), "{name}: {stderr}");
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{name}: files were written or changed"
        );
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        multi >= 2,
        "the corpus needs cases with more than one error"
    );
}
