//! The manifests the bootstrap agent will apply, checked at `create ignition-configs`: a file a
//! user added to `manifests/cluster/` that is not YAML, or holds something that is not a
//! Kubernetes object, would otherwise fail on the node, in the middle of the bootstrap.

use kindling_config::yaml::{self, Node, Value};

/// Checks one manifest file: YAML documents (separated by `---` lines), each empty or a mapping
/// with `apiVersion`, `kind` and `metadata.name` as strings. The error names `shown` (the
/// file), the line and what is wrong.
pub fn check_manifest(shown: &str, text: &str) -> Result<(), String> {
    for (first_line, document) in documents(text) {
        let node = yaml::parse(document).map_err(|e| {
            format!(
                "{shown}:{}:{}: is not valid YAML: {} — fix the syntax there, or remove the file",
                e.pos.line + first_line - 1,
                e.pos.col,
                e.message
            )
        })?;
        if node.is_null() {
            continue;
        }
        let at = |n: &Node| format!("{shown}:{}:{}", n.pos.line + first_line - 1, n.pos.col);
        if !matches!(node.value, Value::Map(_)) {
            return Err(format!(
                "{}: is not a Kubernetes object: a document is {}, not a mapping with apiVersion, kind and metadata — each document of a manifest is one object",
                at(&node),
                node.kind()
            ));
        }
        let field = |path: &[&str]| {
            let mut n = &node;
            for key in path {
                n = n.get(key)?;
            }
            match &n.value {
                Value::Scalar { text, .. } if !text.is_empty() => Some(()),
                _ => None,
            }
        };
        for path in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
            if field(path).is_none() {
                return Err(format!(
                    "{}: is not a Kubernetes object: it has no {} — every object needs apiVersion, kind and metadata.name",
                    at(&node),
                    path.join(".")
                ));
            }
        }
    }
    Ok(())
}

/// The documents of a YAML stream, each with the line it starts on.
fn documents(text: &str) -> Vec<(u32, &str)> {
    let mut out = Vec::new();
    let (mut start, mut start_line) = (0, 1u32);
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            out.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = i as u32 + 2;
        }
        offset += line.len();
    }
    out.push((start_line, &text[start..]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_pass_and_anything_else_is_named_by_line() {
        let ok = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# only a comment\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: b\n";
        check_manifest("m.yaml", ok).unwrap();
        let e = check_manifest(
            "m.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: [\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("m.yaml:6:") && e.contains("is not valid YAML"),
            "{e}"
        );
        let e = check_manifest("m.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\napiVersion: v1\nmetadata: {name: b}\n").unwrap_err();
        assert!(
            e.starts_with("m.yaml:6:1: is not a Kubernetes object: it has no kind"),
            "{e}"
        );
        let e = check_manifest("m.yaml", "- a\n- b\n").unwrap_err();
        assert!(
            e.starts_with("m.yaml:1:1: is not a Kubernetes object: a document is a list"),
            "{e}"
        );
        let e = check_manifest("notes.txt", "just some notes\n").unwrap_err();
        assert!(e.contains("not a Kubernetes object"), "{e}");
    }
}
