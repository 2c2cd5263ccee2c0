//! matchbox's own example data directory, as `tests/fixtures/matchbox-examples` models it
//! (`current/`: the Fedora CoreOS and Flatcar examples of today; `legacy/`: the Container Linux
//! ones), run through the loader and the selection as matchbox serves it: the shared
//! `profiles/` and `ignition/`, with one example's `groups/<example>/` as `groups/`. What is
//! served is served as matchbox serves it; what is not is refused at load, naming the file and
//! why. The README's "matchbox compatibility" lists the same.

use std::path::{Path, PathBuf};

use kindling_matchbox::{DataDir, Labels, TemplateKind, ipxe_script, render, template_vars};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/matchbox-examples")
}

/// A data directory of `set`'s profiles and ignition templates, and the groups of `example`.
fn data_path(set: &str, example: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    };
    let root = examples().join(set);
    copy(&root.join("profiles"), &dir.path().join("profiles"));
    copy(&root.join("ignition"), &dir.path().join("ignition"));
    copy(
        &root.join("groups").join(example),
        &dir.path().join("groups"),
    );
    dir
}

/// What a machine asking with `query` is served: its iPXE script, and its config rendered
/// (a raw Ignition config as it is, a Butane template filled in).
fn served(data: &DataDir, query: &str) -> (String, String, TemplateKind) {
    let labels = Labels::from_query(query);
    let selected = data
        .select(&labels)
        .unwrap_or_else(|e| panic!("{query}: {}", e.reason));
    let script = ipxe_script(selected.profile.boot.as_ref().unwrap());
    let template = data.ignition_for(selected.profile).unwrap();
    let config = render(template, &template_vars(selected.group, &labels)).unwrap();
    (script, config, template.kind())
}

const QUERY: &str = "uuid=6b696e64-6c69-4e67-8000-000000000001&mac=52-54-00-a1-9c-ae";

#[test]
fn every_current_example_is_served_as_matchbox_serves_it() {
    for (example, profile, ignition) in [
        ("fedora-coreos", "fedora-coreos", "fedora-coreos.ign"),
        (
            "fedora-coreos-install",
            "fedora-coreos-install",
            "fedora-coreos.ign",
        ),
        ("flatcar", "flatcar", "flatcar.ign"),
        ("flatcar-install", "flatcar-install", "flatcar-install.ign"),
    ] {
        let dir = data_path("current", example);
        let data = DataDir::load(dir.path()).unwrap_or_else(|e| panic!("{example}: {e}"));
        let (script, config, kind) = served(&data, QUERY);
        let selected = data.select(&Labels::from_query(QUERY)).unwrap();
        assert_eq!(selected.profile.id, profile, "{example}");
        assert_eq!(kind, TemplateKind::Ignition, "{example}");
        // The iPXE variables in the arguments are left for iPXE, as matchbox leaves them.
        assert!(
            script.starts_with("#!ipxe\nkernel /assets/"),
            "{example}: {script}"
        );
        assert!(
            script.contains("${uuid}&mac=${mac:hexhyp}") || script.contains("$${uuid}"),
            "{example}: {script}"
        );
        // A raw Ignition config is served byte for byte.
        let file = examples().join("current/ignition").join(ignition);
        assert_eq!(config, std::fs::read_to_string(file).unwrap(), "{example}");
    }

    // flatcar-install's second stage: the installed machine asks with os=installed, and its
    // group (one selector) wins over the install group (none).
    let dir = data_path("current", "flatcar-install");
    let data = DataDir::load(dir.path()).unwrap();
    let installed = data
        .select(&Labels::from_query(&format!("{QUERY}&os=installed")))
        .unwrap();
    assert_eq!(
        (installed.group.id.as_str(), installed.profile.id.as_str()),
        ("stage-1", "flatcar")
    );
}

#[test]
fn the_examples_butane_templates_are_read_as_butane() {
    let dir = data_path("current", "fedora-coreos");
    let data = DataDir::load(dir.path()).unwrap();
    for (id, variant) in [
        ("fedora-coreos.yaml", "variant: fcos"),
        ("flatcar.yaml", "variant: flatcar"),
    ] {
        let template = data.ignition(id).unwrap();
        assert_eq!(template.kind(), TemplateKind::Butane, "{id}");
        let group = data.groups().first().unwrap();
        let text = render(template, &template_vars(group, &Labels::new())).unwrap();
        assert!(text.starts_with(variant), "{id}: {text}");
    }
}

#[test]
fn the_legacy_container_linux_examples_are_refused_at_load_saying_why() {
    for (example, refusals) in [
        // A Container Linux Config template: matchbox v0.9 no longer renders them either.
        (
            "simple",
            &[
                "ignition/ssh.yaml: a Container Linux Config",
                "ignition/ssh.yaml cannot be served (its own error says why)",
            ][..],
        ),
        (
            "etcd-aws",
            &["ignition/etcd-aws.yaml", "Container Linux Config"],
        ),
        // The pre-v0.5 `boot.cmdline` object, which matchbox dropped for `args`.
        ("grub", &["profiles/grub.json", "cmdline"]),
    ] {
        let dir = data_path("legacy", example);
        let error = DataDir::load(dir.path()).unwrap_err().to_string();
        for said in refusals {
            assert!(error.contains(said), "{example}: {said:?} not in:\n{error}");
        }
    }
}
