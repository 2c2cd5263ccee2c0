//! Changes to the user's inventory.yaml that keep everything else of it as the user wrote it:
//! comments, order, blank lines, quoting. Only the lines of what changes are touched.

use crate::yaml::{self, Node, Value};

/// Why the inventory could not be changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("inventory.yaml:{line}: {message}")]
    Syntax { line: u32, message: String },
    #[error("inventory.yaml has no machine named {0}")]
    NoSuchMachine(String),
    #[error(
        "inventory.yaml writes its machines as a flow list ([...]); write them as a block list (one '- name: ...' per machine) so that kindling can change one without rewriting the others"
    )]
    FlowList,
    #[error(
        "inventory.yaml lists no machines to add one after; write the first machine by hand (see the README's inventory.yaml)"
    )]
    NoMachines,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// The line (0-based) of the `-` that starts the sequence item whose first key is on
/// `first_line` (0-based), at a column left of `col`.
fn dash_line(lines: &[&str], first_line: usize, col: usize) -> Option<usize> {
    (0..=first_line).rev().find(|&i| {
        let line = lines[i];
        indent(line) < col && line.trim_start().starts_with('-')
    })
}

/// inventory.yaml without the machine named `name`: the lines of its list item go, with the
/// comment lines right above it (they describe it); nothing else changes.
pub fn remove_machine(text: &str, name: &str) -> Result<String, EditError> {
    let doc = yaml::parse(text).map_err(|e| EditError::Syntax {
        line: e.pos.line,
        message: e.message,
    })?;
    let machines = doc
        .get("machines")
        .ok_or_else(|| EditError::NoSuchMachine(name.into()))?;
    let Value::Seq(items) = &machines.value else {
        return Err(EditError::NoSuchMachine(name.into()));
    };
    let named = |item: &Node| {
        item.get("name")
            .is_some_and(|n| matches!(&n.value, Value::Scalar { text, .. } if &**text == name))
    };
    let index = items
        .iter()
        .position(named)
        .ok_or_else(|| EditError::NoSuchMachine(name.into()))?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let item = &items[index];
    let start_of = |node: &Node| -> Option<usize> {
        let line = node.pos.line.checked_sub(1)? as usize;
        dash_line(&lines, line, node.pos.col.saturating_sub(1) as usize)
    };
    let start = start_of(item).ok_or(EditError::FlowList)?;
    if lines[start].trim_start().starts_with('[') || machines_is_flow(&lines, machines) {
        return Err(EditError::FlowList);
    }
    let dash_indent = indent(lines[start]);
    // Where what follows the item starts: the next item, or the next key after the list.
    let mut end = match items.get(index + 1) {
        Some(next) => start_of(next).ok_or(EditError::FlowList)?,
        None => next_key_line(&doc, machines).unwrap_or(lines.len()),
    };
    // Comments and blank lines just before what follows belong to it, not to this item.
    while end > start + 1 && blank_or_comment(lines[end - 1]) {
        end -= 1;
    }
    // Comment lines right above the item, at its indentation, describe it.
    let mut from = start;
    while from > 0 {
        let above = lines[from - 1];
        if above.trim_start().starts_with('#') && indent(above) == dash_indent {
            from -= 1;
        } else {
            break;
        }
    }
    let mut out = String::with_capacity(text.len());
    for (i, line) in lines.iter().enumerate() {
        if i < from || i >= end {
            out.push_str(line);
        }
    }
    Ok(out)
}

/// A machine to add to inventory.yaml, as `kindling machines accept` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMachine {
    pub name: String,
    pub role: crate::Role,
    pub mac: crate::MacAddr,
    pub ip: std::net::IpAddr,
    /// With the comment that says why this disk (written after the value).
    pub install_disk: Option<(String, String)>,
}

/// inventory.yaml with `machine` added after the last machine, at the same indentation as
/// the machines already listed; nothing else changes.
pub fn add_machine(text: &str, machine: &NewMachine) -> Result<String, EditError> {
    let doc = yaml::parse(text).map_err(|e| EditError::Syntax {
        line: e.pos.line,
        message: e.message,
    })?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let machines = doc.get("machines").ok_or(EditError::NoMachines)?;
    let Value::Seq(items) = &machines.value else {
        return Err(EditError::NoMachines);
    };
    if machines_is_flow(&lines, machines) {
        return Err(EditError::FlowList);
    }
    let last = items.last().ok_or(EditError::NoMachines)?;
    let key_col = last.pos.col.saturating_sub(1) as usize;
    let first = last.pos.line.saturating_sub(1) as usize;
    let start = dash_line(&lines, first, key_col).ok_or(EditError::FlowList)?;
    let dash_indent = indent(lines[start]);
    // After the last item: before the next top-level key and the comments and blank lines
    // just above it, which belong to that key.
    let mut end = next_key_line(&doc, machines).unwrap_or(lines.len());
    while end > start + 1 && blank_or_comment(lines[end - 1]) {
        end -= 1;
    }
    let (pad, dash) = (" ".repeat(key_col), " ".repeat(dash_indent));
    let gap = " ".repeat(key_col.saturating_sub(dash_indent + 1));
    let mut item = format!(
        "{dash}-{gap}name: {}\n{pad}role: {}\n{pad}mac: \"{}\"\n{pad}ip: {}\n",
        machine.name, machine.role, machine.mac, machine.ip
    );
    if let Some((disk, why)) = &machine.install_disk {
        item.push_str(&format!("{pad}installDisk: {disk}   # {why}\n"));
    }
    let mut out = String::with_capacity(text.len() + item.len() + 1);
    for line in &lines[..end] {
        out.push_str(line);
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&item);
    for line in &lines[end..] {
        out.push_str(line);
    }
    Ok(out)
}

/// Whether the machines list is written in flow style: its first item starts on the key's line.
fn machines_is_flow(lines: &[&str], machines: &Node) -> bool {
    let line = machines.pos.line.saturating_sub(1) as usize;
    lines.get(line).is_some_and(|l| {
        l[(machines.pos.col.saturating_sub(1) as usize).min(l.len())..]
            .trim_start()
            .starts_with('[')
    })
}

/// The 0-based line of the top-level key that follows `machines`, if any.
fn next_key_line(doc: &Node, machines: &Node) -> Option<usize> {
    let Value::Map(entries) = &doc.value else {
        return None;
    };
    let at = entries
        .iter()
        .position(|(_, v)| std::ptr::eq(v, machines))?;
    let (key, _) = entries.get(at + 1)?;
    Some(key.pos.line.checked_sub(1)? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVENTORY: &str = "\
apiVersion: kindling/v1alpha1
kind: Inventory
# The machines, by rack.
machines:
  # rack 1
  - name: master0
    role: master
    mac: \"52:54:00:00:00:01\"   # the left NIC
    ip: 10.0.0.10

  # worker1 is in rack 2
  - name: worker1
    role: worker
    mac: \"52:54:00:00:00:02\"
    ip: 10.0.0.11
    labels:
      zone: rack2
  - role: worker
    name: worker2
    mac: \"52:54:00:00:00:03\"
    ip: 10.0.0.12
# after the machines
network:
  gateway: 10.0.0.1
";

    #[test]
    fn a_machine_goes_with_its_comment_and_nothing_else_changes() {
        let out = remove_machine(INVENTORY, "worker1").unwrap();
        assert_eq!(
            out,
            INVENTORY.replace(
                "  # worker1 is in rack 2\n  - name: worker1\n    role: worker\n    mac: \"52:54:00:00:00:02\"\n    ip: 10.0.0.11\n    labels:\n      zone: rack2\n",
                ""
            )
        );
        // The last one, whose name is not its first key; the comment after it stays.
        let out = remove_machine(INVENTORY, "worker2").unwrap();
        assert!(
            out.contains("      zone: rack2\n# after the machines\nnetwork:"),
            "{out}"
        );
        assert!(!out.contains("worker2"));
        // The first one, and its comment; the list's own comment stays.
        let out = remove_machine(INVENTORY, "master0").unwrap();
        assert!(out.starts_with("apiVersion: kindling/v1alpha1\nkind: Inventory\n# The machines, by rack.\nmachines:\n\n  # worker1"), "{out}");
        for name in ["worker1", "worker2"] {
            assert!(out.contains(name));
        }
        // What is left still parses, with the others.
        let doc = yaml::parse(&out).unwrap();
        let Value::Seq(items) = &doc.get("machines").unwrap().value else {
            panic!()
        };
        assert_eq!(items.len(), 2);
    }

    fn worker4(disk: Option<(&str, &str)>) -> NewMachine {
        NewMachine {
            name: "worker4".into(),
            role: crate::Role::Worker,
            mac: "52:54:00:00:00:04".parse().unwrap(),
            ip: "10.0.0.14".parse().unwrap(),
            install_disk: disk.map(|(d, w)| (d.to_string(), w.to_string())),
        }
    }

    #[test]
    fn an_added_machine_goes_after_the_last_and_nothing_else_changes() {
        let out = add_machine(
            INVENTORY,
            &worker4(Some(("/dev/sdb", "the smallest disk of at least 100G"))),
        )
        .unwrap();
        let added = "  - name: worker4\n    role: worker\n    mac: \"52:54:00:00:00:04\"\n    ip: 10.0.0.14\n    installDisk: /dev/sdb   # the smallest disk of at least 100G\n";
        assert_eq!(
            out,
            INVENTORY.replace(
                "# after the machines\n",
                &format!("{added}# after the machines\n")
            )
        );
        let doc = yaml::parse(&out).unwrap();
        let Value::Seq(items) = &doc.get("machines").unwrap().value else {
            panic!()
        };
        assert_eq!(items.len(), 4);
        // The last in the file, without a newline at its end, and indented otherwise.
        let text = "machines:\n- name: a\n  role: master\n  ip: 10.0.0.2";
        let out = add_machine(text, &worker4(None)).unwrap();
        assert_eq!(
            out,
            format!(
                "{text}\n- name: worker4\n  role: worker\n  mac: \"52:54:00:00:00:04\"\n  ip: 10.0.0.14\n"
            )
        );
    }

    #[test]
    fn an_unknown_machine_or_a_flow_list_is_refused_and_nothing_changes() {
        assert_eq!(
            add_machine("machines: [{name: a}]\n", &worker4(None)),
            Err(EditError::FlowList)
        );
        assert_eq!(
            add_machine("machines: []\n", &worker4(None)),
            Err(EditError::FlowList)
        );
        assert_eq!(
            add_machine("kind: Inventory\n", &worker4(None)),
            Err(EditError::NoMachines)
        );
        assert_eq!(
            remove_machine(INVENTORY, "worker9"),
            Err(EditError::NoSuchMachine("worker9".into()))
        );
        let flow = "machines: [{name: a, role: worker}, {name: b, role: worker}]\n";
        assert_eq!(remove_machine(flow, "a"), Err(EditError::FlowList));
    }
}
