//! Every flag in every static pod kindling writes exists in the component at each supported
//! version, and its value parses as that flag's type. The flag lists are data files in
//! `crates/kindling-assets/flags/` (`<component>-<version>.txt`: `--name<TAB>type`), taken
//! from each release's reference documentation and source; `flags/SOURCES.md` says where each
//! came from. A flag a supported version removed is an error in kindling, found here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::static_pods::{bootstrap_control_plane, master_control_plane};
use super::testing::{demo_with, parse};

/// Lists no source could be found for yet (flags/SOURCES.md, "Gaps"): the index of public
/// code and pages held no kube-apiserver or kube-controller-manager reference newer than 1.35,
/// and nothing at 1.37.
const KNOWN_GAPS: &[&str] = &[
    "kube-apiserver-1.36.txt",
    "kube-apiserver-1.37.txt",
    "kube-controller-manager-1.36.txt",
    "kube-controller-manager-1.37.txt",
    "kube-scheduler-1.37.txt",
];

fn flags_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("flags")
}

/// `<component>-<version>.txt`: flag name to type.
fn flag_list(component: &str, version: &str) -> Option<BTreeMap<String, String>> {
    let path = flags_dir().join(format!("{component}-{version}.txt"));
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (name, kind) = l.split_once('\t').unwrap_or((l, "string"));
                (name.trim().to_string(), kind.trim().to_string())
            })
            .collect(),
    )
}

/// Whether `value` parses as a flag of pflag (or Go flag) type `kind`; `Err` for a type this
/// check does not know.
fn parses_as(kind: &str, value: &str) -> Result<bool, String> {
    let duration = |v: &str| {
        // Go's time.ParseDuration: one or more <number><unit>, or a bare 0.
        v == "0"
            || !v.is_empty()
                && v.split_inclusive(|c: char| c.is_ascii_alphabetic())
                    .collect::<String>()
                    == v
                && {
                    let mut rest = v;
                    let mut ok = true;
                    while !rest.is_empty() && ok {
                        let digits = rest
                            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                            .unwrap_or(rest.len());
                        let unit_len = rest[digits..]
                            .find(|c: char| c.is_ascii_digit())
                            .unwrap_or(rest.len() - digits);
                        let unit = &rest[digits..digits + unit_len];
                        ok = digits > 0
                            && rest[..digits].parse::<f64>().is_ok()
                            && ["ns", "us", "µs", "ms", "s", "m", "h"].contains(&unit);
                        rest = &rest[digits + unit_len..];
                    }
                    ok
                }
    };
    Ok(match kind {
        "bool" => matches!(value, "true" | "false"),
        "int" | "int32" | "int64" | "uint" | "uint32" | "uint64" => value.parse::<i64>().is_ok(),
        "float" | "float32" | "float64" => value.parse::<f64>().is_ok(),
        "duration" => duration(value),
        "string" | "strings" | "stringArray" => true,
        "ip" => value.parse::<std::net::IpAddr>().is_ok(),
        "mapStringString" | "mapStringBool" | "colonSeparatedMultimapStringString" => value
            .split(',')
            .all(|pair| pair.split_once('=').is_some_and(|(k, _)| !k.is_empty())),
        "portRange" => value
            .split_once('-')
            .is_some_and(|(a, b)| a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok()),
        // etcd: comma-separated URLs.
        "uniqueURLs" => value.split(',').all(|url| {
            url.split_once("://").is_some_and(|(scheme, rest)| {
                ["http", "https", "unix", "unixs"].contains(&scheme) && !rest.is_empty()
            })
        }),
        // etcd: one of the values the source allows, written in the list as
        // `selectiveString(a|b)`.
        other if other.starts_with("selectiveString(") => other
            .trim_start_matches("selectiveString(")
            .trim_end_matches(')')
            .split('|')
            .any(|allowed| allowed == value),
        other => return Err(format!("no check for flag type {other}")),
    })
}

/// The component a static pod runs and the version its flag list is filed under.
fn component_version(command: &str, kubernetes_minor: u32, etcd_image: &str) -> (String, String) {
    if command == "etcd" {
        let tag = etcd_image.rsplit(':').next().unwrap_or_default();
        let minor: Vec<&str> = tag.split('.').take(2).collect();
        ("etcd".into(), minor.join("."))
    } else {
        (command.to_string(), format!("1.{kubernetes_minor}"))
    }
}

#[test]
fn every_static_pod_flag_exists_at_each_supported_version_and_parses_as_its_type() {
    let mut problems = Vec::new();
    let mut missing_lists = Vec::new();
    let mut checked = 0;
    for minor in kindling_config::inventory::KUBERNETES_MINORS {
        let d = demo_with(|inv| format!("{inv}kubernetes:\n  version: 1.{minor}.0\n"));
        assert_eq!(d.inventory.kubernetes.version, format!("1.{minor}.0"));
        let bootstrap = d
            .inventory
            .machines
            .iter()
            .find(|m| m.name == "bootstrap")
            .unwrap();
        let master = d
            .inventory
            .machines
            .iter()
            .find(|m| m.name == "master0")
            .unwrap();
        let pods = bootstrap_control_plane(&d, bootstrap)
            .into_iter()
            .chain(master_control_plane(&d, master));
        for pod in pods {
            let json = parse(&pod.yaml);
            let container = &json["spec"]["containers"][0];
            let command: Vec<&str> = container["command"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let image = container["image"].as_str().unwrap();
            let (component, version) = component_version(command[0], minor, image);
            let Some(known) = flag_list(&component, &version) else {
                missing_lists.push(format!("{component}-{version}.txt"));
                continue;
            };
            for arg in &command[1..] {
                let (name, value) = arg.split_once('=').unwrap_or((arg, "true"));
                checked += 1;
                match known.get(name) {
                    None => problems.push(format!(
                        "{} ({component} {version}): {name} does not exist in {component} {version}",
                        pod.name
                    )),
                    Some(kind) => match parses_as(kind, value) {
                        Ok(true) => {}
                        Ok(false) => problems.push(format!(
                            "{} ({component} {version}): {name}={value} is not a {kind}",
                            pod.name
                        )),
                        Err(e) => problems.push(format!("{}: {name}: {e}", pod.name)),
                    },
                }
            }
        }
    }
    missing_lists.sort();
    missing_lists.dedup();
    // Versions whose source could not be found (flags/SOURCES.md says where it was looked for)
    // are said by name, never passed silently.
    for list in &missing_lists {
        eprintln!(
            "NOT CHECKED: {list} is not in {}: no source for it was found (flags/SOURCES.md)",
            flags_dir().display()
        );
    }
    assert!(
        missing_lists.len() <= KNOWN_GAPS.len()
            && missing_lists
                .iter()
                .all(|l| KNOWN_GAPS.contains(&l.as_str())),
        "flag lists missing beyond the known gaps: {missing_lists:?}; add them from the \
         component's reference documentation or source, with their source in SOURCES.md"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 500, "only {checked} flags checked");
}

#[test]
fn the_type_check_tells_good_values_from_bad() {
    assert_eq!(parses_as("duration", "5s"), Ok(true));
    assert_eq!(parses_as("duration", "1m30s"), Ok(true));
    assert_eq!(parses_as("duration", "5"), Ok(false));
    assert_eq!(parses_as("bool", "true"), Ok(true));
    assert_eq!(parses_as("bool", "yes"), Ok(false));
    assert_eq!(parses_as("int", "10000"), Ok(true));
    assert_eq!(parses_as("int", "10k"), Ok(false));
    assert_eq!(parses_as("ip", "192.168.126.110"), Ok(true));
    assert_eq!(parses_as("mapStringString", "a=b,c=d"), Ok(true));
    assert_eq!(parses_as("mapStringString", "a"), Ok(false));
    assert_eq!(
        parses_as("uniqueURLs", "https://127.0.0.1:2379,https://10.0.0.1:2379"),
        Ok(true)
    );
    assert_eq!(parses_as("uniqueURLs", "127.0.0.1:2379"), Ok(false));
    assert_eq!(
        parses_as("selectiveString(new|existing)", "existing"),
        Ok(true)
    );
    assert_eq!(parses_as("selectiveString(new|existing)", "old"), Ok(false));
    assert!(parses_as("widget", "x").is_err());
}
