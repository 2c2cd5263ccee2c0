//! `create install-config`, `create manifests`, `demo` and `completion`, end to end.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{dir_with, fixtures, kindling, snapshot};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A copy of the OpenShift 4.5 UPI description: its unchanged install-config and an inventory.
fn upi_dir() -> tempfile::TempDir {
    let upi = fixtures().join("valid/openshift-4.5-upi");
    dir_with(&[
        ("install-config.yaml", &upi.join("install-config.yaml")),
        ("inventory.yaml", &upi.join("inventory.yaml")),
    ])
}

/// The UPI example as kindling installs it: the same but for the pod network kindling installs.
fn upi_dir_with_flannel() -> tempfile::TempDir {
    let dir = upi_dir();
    let ic = dir.path().join("install-config.yaml");
    let text = read(&ic);
    assert!(text.contains("networkType: OpenShiftSDN"));
    std::fs::write(
        &ic,
        text.replace("networkType: OpenShiftSDN", "networkType: Flannel"),
    )
    .unwrap();
    crate::seed_mirror(dir.path());
    dir
}

#[test]
fn an_unchanged_openshift_upi_install_config_loads() {
    let dir = upi_dir();
    let d = dir.path().to_str().unwrap();
    // kindling does not install OpenShift's pod network: its own install of this cluster says
    // so, by the line. (create infra and doctor read it unchanged: see infra.rs.)
    let run = kindling(&["create", "manifests", "--dir", d]);
    run.expect(3);
    assert!(
        run.stderr().contains(
            "install-config.yaml:17:16: networking.networkType: kindling does not install OpenShiftSDN: it installs Flannel"
        ),
        "{}",
        run.stderr()
    );
    let dir = upi_dir_with_flannel();
    let d = dir.path().to_str().unwrap();
    let run = kindling(&["create", "manifests", "--dir", d]);
    run.expect(0);
    let stderr = run.stderr();
    // Fields kindling does not use are named once, not rejected.
    assert_eq!(stderr.matches("hyperthreading").count(), 2, "{stderr}");
    assert_eq!(
        stderr.matches("not used by kindling").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("kindling uses 172.16.0.0/24"), "{stderr}");
    // Notes are news once per asset directory; after that they are only in the log.
    let again = kindling(&["create", "manifests", "--dir", d]);
    again.expect(0);
    assert!(
        !again.stderr().contains("kindling uses 172.16.0.0/24"),
        "{}",
        again.stderr()
    );
    assert!(
        !again.stderr().contains("not used by kindling"),
        "{}",
        again.stderr()
    );
    let log = read(&dir.path().join(".kindling/kindling.log"));
    assert_eq!(
        log.matches("kindling uses 172.16.0.0/24").count(),
        2,
        "{log}"
    );

    let cluster: serde_json::Value =
        serde_json::from_str(&read(&dir.path().join("cluster.json"))).unwrap();
    assert_eq!(
        cluster["apiURL"],
        "https://api.ocp45.example.localdomain:6443"
    );
    assert_eq!(cluster["networking"]["networkType"], "Flannel");
    assert_eq!(
        cluster["machines"][1]["fqdn"],
        "m1.ocp45.example.localdomain"
    );
    // Every MAC form in the inventory comes out in one normal form.
    assert_eq!(cluster["machines"][1]["macs"][0], "00:50:56:96:0c:43");
    assert_eq!(cluster["machines"][2]["macs"][0], "00:50:56:96:d2:b0");
    assert_eq!(
        cluster["machines"][6]["taints"][0],
        "infra=reserved:NoSchedule"
    );
    assert!(
        !read(&dir.path().join("cluster.json")).contains("b3BlbnNoaWZ0"),
        "the pull secret leaked into cluster.json"
    );
    let metadata: serde_json::Value =
        serde_json::from_str(&read(&dir.path().join("metadata.json"))).unwrap();
    assert_eq!(metadata["clusterName"], "ocp45");
    assert!(metadata["infraID"].as_str().unwrap().starts_with("ocp45-"));
}

#[test]
fn inputs_survive_every_command() {
    let dir = upi_dir_with_flannel();
    let d = dir.path().to_str().unwrap();
    let inputs = || ["install-config.yaml", "inventory.yaml"].map(|f| read(&dir.path().join(f)));
    let before = inputs();
    kindling(&["create", "manifests", "--dir", d]).expect(0);
    kindling(&["create", "manifests", "--dir", d]).expect(0);
    kindling(&["create", "install-config", "--dir", d]).expect(2);
    std::fs::remove_file(dir.path().join("cluster.json")).unwrap();
    kindling(&["create", "manifests", "--dir", d]).expect(0);
    kindling(&["create", "ignition-configs", "--dir", d]).expect(0);
    kindling(&[
        "create",
        "ignition-configs",
        "--dir",
        d,
        "--key-algorithm",
        "rsa",
    ])
    .expect(0);
    assert_eq!(inputs(), before);
}

#[test]
fn a_second_create_manifests_reports_everything_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    kindling(&["demo", "--dir", d]).expect(0);
    let after_demo = snapshot(dir.path());
    let run = kindling(&["create", "manifests", "--dir", d]);
    run.expect(0);
    let stdout = run.stdout();
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    let (next, assets) = lines.split_last().unwrap();
    assert!(
        assets.len() > 3 && assets.iter().all(|l| l.starts_with("up to date")),
        "{stdout}"
    );
    assert!(next.starts_with("Next: "), "{stdout}");
    assert!(snapshot(dir.path()) == after_demo, "files changed");
}

#[test]
fn demo_writes_the_example_and_creates_its_assets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("kindling-demo");
    let run = kindling(&["demo", "--dir", d.to_str().unwrap()]);
    run.expect(0);
    for file in [
        "install-config.yaml",
        "inventory.yaml",
        "cluster.json",
        "metadata.json",
        ".kindling/state.json",
        ".kindling/cluster-id",
    ] {
        assert!(d.join(file).exists(), "{file} missing");
    }
    let cluster: serde_json::Value = serde_json::from_str(&read(&d.join("cluster.json"))).unwrap();
    let roles: Vec<&str> = cluster["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "bootstrap",
            "master",
            "master",
            "master",
            "worker",
            "worker",
            "worker"
        ]
    );

    // Its Ignition configs wait for the mirror, which nothing here can fill; the demo says so
    // and what to run, and writes no config that would pin a missing kubelet.
    assert!(
        run.stdout()
            .contains("Next: the machines pull 9 images and 6 node binaries")
            && run
                .stdout()
                .contains(&format!("kindling mirror --dir {}", d.display())),
        "{}",
        run.stdout()
    );
    assert!(!d.join("bootstrap.ign").exists());
    // With a mirror, the demo goes on to them.
    crate::seed_mirror(&d);
    let run = kindling(&["demo", "--dir", d.to_str().unwrap()]);
    run.expect(0);
    assert!(d.join("bootstrap.ign").exists() && d.join("ignition/worker.ign").exists());
    assert!(
        run.stdout().contains("Next: kindling serve --dir"),
        "{}",
        run.stdout()
    );

    // A changed example input is the user's: demo keeps it.
    let edited = read(&d.join("inventory.yaml")).replace("192.168.126.122", "192.168.126.123");
    std::fs::write(d.join("inventory.yaml"), &edited).unwrap();
    let run = kindling(&["demo", "--dir", d.to_str().unwrap()]);
    run.expect(0);
    assert_eq!(read(&d.join("inventory.yaml")), edited);
    assert!(run.stdout().contains("regenerated"), "{}", run.stdout());
}

#[test]
fn create_install_config_writes_a_valid_commented_template_from_flags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let key = dir.path().join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk6PsczSizUBeFcIkUGOKJubO32bSq2lECdGqJD6ym/ me@host\n").unwrap();
    let secret = dir.path().join("pull-secret.json");
    std::fs::write(&secret, r#"{"auths":{"quay.io":{"auth":"dTpw"}}}"#).unwrap();
    kindling(&[
        "create",
        "install-config",
        "--dir",
        d,
        "--cluster-name",
        "lab",
        "--base-domain",
        "example.net",
        "--machine-network",
        "10.20.0.0/24",
        "--ssh-key-file",
        key.to_str().unwrap(),
        "--pull-secret-file",
        secret.to_str().unwrap(),
        "--api-vip",
        "10.20.0.5",
        "--ingress-vip",
        "10.20.0.6",
        "--machine",
        "m0,master,52:54:00:aa:00:01,10.20.0.11",
        "--machine",
        "w0,worker,52:54:00:aa:00:02,10.20.0.21",
    ])
    .expect(0);
    let ic = read(&dir.path().join("install-config.yaml"));
    let inv = read(&dir.path().join("inventory.yaml"));
    assert!(
        ic.contains("# ") && inv.contains("# "),
        "templates are commented"
    );
    assert!(ic.contains("replicas: 1"), "{ic}");
    assert!(ic.contains("me@host"));
    assert!(inv.contains("10.20.0.5") && inv.contains("52:54:00:aa:00:02"));
    assert!(!inv.contains("EXAMPLE machines"));
    // It holds the pull secret, so only the owner may read it.
    assert_eq!(mode(&dir.path().join("install-config.yaml")), 0o600);
    assert_eq!(mode(&dir.path().join("inventory.yaml")), 0o644);

    let run = kindling(&["create", "manifests", "--dir", d]);
    run.expect(0);
    assert!(
        run.stderr().contains("no redundancy"),
        "one master gets a warning: {}",
        run.stderr()
    );
}

#[test]
fn create_install_config_without_flags_or_terminal_writes_the_example_layout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let run = kindling(&["create", "install-config", "--dir", d]);
    run.expect(0);
    assert!(run.stdout().contains("are examples"), "{}", run.stdout());
    assert!(read(&dir.path().join("inventory.yaml")).contains("EXAMPLE machines"));
    // The example MACs are refused by every create until replaced, each by its line.
    for create in ["manifests", "ignition-configs", "infra"] {
        let run = kindling(&["create", create, "--dir", d]);
        run.expect(3);
        assert_eq!(
            run.stderr()
                .matches("is an example MAC from the template")
                .count(),
            6,
            "{}",
            run.stderr()
        );
    }
    replace_example_macs(dir.path());
    kindling(&["create", "manifests", "--dir", d]).expect(0);
}

/// Gives the template's example machines MACs of real-looking NICs.
fn replace_example_macs(dir: &std::path::Path) {
    let path = dir.join("inventory.yaml");
    let text = read(&path);
    assert!(text.contains("02:00:00:00:00:"), "{text}");
    std::fs::write(&path, text.replace("02:00:00:00:00:", "52:54:00:9a:00:")).unwrap();
}

#[test]
fn create_install_config_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("inventory.yaml"), "mine\n").unwrap();
    let run = kindling(&["create", "install-config", "--dir", d]);
    run.expect(2);
    assert!(run.stderr().contains("--force"), "{}", run.stderr());
    assert_eq!(read(&dir.path().join("inventory.yaml")), "mine\n");
    assert!(
        !dir.path().join("install-config.yaml").exists(),
        "nothing is written when one file exists"
    );

    kindling(&["create", "install-config", "--dir", d, "--force"]).expect(0);
    assert!(read(&dir.path().join("inventory.yaml")).contains("kind: Inventory"));
}

#[test]
fn create_install_config_checks_flag_values_like_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let run = kindling(&[
        "create",
        "install-config",
        "--dir",
        d,
        "--cluster-name",
        "Bad_Name",
    ]);
    run.expect(3);
    assert!(
        run.stderr()
            .contains("metadata.name: cluster name 'Bad_Name' is not a DNS-1123 label"),
        "{}",
        run.stderr()
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing is written"
    );

    kindling(&[
        "create",
        "install-config",
        "--dir",
        d,
        "--machine",
        "m0,master",
    ])
    .expect(2);
    kindling(&[
        "create",
        "install-config",
        "--dir",
        d,
        "--api-vip",
        "not-an-ip",
    ])
    .expect(2);
}

#[test]
fn a_missing_description_is_exit_3_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let run = kindling(&["create", "manifests", "--dir", dir.path().to_str().unwrap()]);
    run.expect(3);
    assert!(
        run.stderr().contains("create install-config"),
        "{}",
        run.stderr()
    );
}

#[test]
fn usage_errors_are_exit_2_and_help_lists_the_exit_codes() {
    kindling(&["create", "manifests", "--no-such-flag"]).expect(2);
    kindling(&["frobnicate"]).expect(2);
    let help = kindling(&["--help"]);
    help.expect(0);
    for line in [
        "3  the cluster description is invalid",
        "5  bootstrap failed",
        "6  install failed",
    ] {
        assert!(help.stdout().contains(line), "{}", help.stdout());
    }
}

#[test]
fn completion_scripts_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef kindling"),
        ("fish", "complete -c kindling"),
    ] {
        let run = kindling(&["completion", shell]);
        run.expect(0);
        assert!(run.stdout().contains(marker), "{shell}: {}", run.stdout());
        assert!(
            run.stdout().contains("manifests"),
            "{shell} completes subcommands"
        );
    }
}

#[test]
fn log_level_error_hides_notes_and_warnings() {
    let dir = upi_dir_with_flannel();
    let run = kindling(&[
        "create",
        "manifests",
        "--dir",
        dir.path().to_str().unwrap(),
        "--log-level",
        "error",
    ]);
    run.expect(0);
    assert_eq!(run.stderr(), "");
}

/// sshd reads the keys; ssh-keygen is its parser. What it accepts kindling accepts, and a broken
/// key is refused by both.
#[test]
fn ssh_keys_are_judged_as_ssh_keygen_judges_them() {
    let dir = tempfile::tempdir().unwrap();
    let ssh_keygen_accepts = |file: &Path| {
        std::process::Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(file)
            .output()
            .expect("ssh-keygen runs")
            .status
            .success()
    };
    let template_with_key = |key: &Path| {
        let out = dir.path().join(format!(
            "out-{}",
            key.file_name().unwrap().to_string_lossy()
        ));
        kindling(&[
            "create",
            "install-config",
            "--dir",
            out.to_str().unwrap(),
            "--ssh-key-file",
            key.to_str().unwrap(),
        ])
    };
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let key = dir.path().join(format!("id_{kind}"));
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", "test@kindling", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen runs");
        assert!(status.success());
        let public = key.with_extension("pub");
        assert!(ssh_keygen_accepts(&public));
        template_with_key(&public).expect(0);
    }

    let good = read(&dir.path().join("id_ed25519.pub"));
    let (kind, rest) = good.split_once(' ').unwrap();
    let blob = rest.split(' ').next().unwrap();
    for (name, text) in [
        (
            "truncated.pub",
            format!("{kind} {} test\n", &blob[..blob.len() - 8]),
        ),
        ("wrong-type.pub", format!("ssh-rsa {blob} test\n")),
        ("private.pub", read(&dir.path().join("id_ed25519"))),
    ] {
        let bad = dir.path().join(name);
        let text_line = |p: &Path, n: usize| read(p).lines().nth(n).unwrap().to_string();
        std::fs::write(&bad, text).unwrap();
        assert!(
            !ssh_keygen_accepts(&bad) || name == "private.pub",
            "{name}: ssh-keygen accepts it"
        );
        let run = template_with_key(&bad);
        run.expect(3);
        assert!(
            run.stderr().contains("sshKey: "),
            "{name}: {}",
            run.stderr()
        );
        if name == "private.pub" {
            assert!(
                run.stderr().contains("holds a private key"),
                "{}",
                run.stderr()
            );
            let body = text_line(&dir.path().join("id_ed25519"), 1);
            assert!(
                !run.stderr().contains(&body[..16]),
                "the private key was echoed: {}",
                run.stderr()
            );
        }
    }
}

/// On a terminal, missing values are asked for, and a bad answer is asked again.
#[test]
fn create_install_config_asks_on_a_terminal() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("asked");
    let command = format!(
        "{} create install-config --dir {}",
        env!("CARGO_BIN_EXE_kindling"),
        out.display()
    );
    // `script` runs kindling on a pseudo-terminal and passes our answers through it.
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"lab\nexample.org\nnot-a-cidr\n10.9.8.0/24\n\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    // The terminal echoes our typed answers wherever they fall between the prompts.
    assert!(
        shown.contains("Cluster name") && shown.contains("[mycluster]:"),
        "{shown}"
    );
    assert!(
        shown.contains("'not-a-cidr' is not valid here; try again"),
        "{shown}"
    );

    let ic = read(&out.join("install-config.yaml"));
    assert!(
        ic.contains("name: \"lab\"") && ic.contains("baseDomain: \"example.org\""),
        "{ic}"
    );
    assert!(ic.contains("cidr: 10.9.8.0/24"), "{ic}");
    assert!(read(&out.join("inventory.yaml")).contains("serverURL: \"http://10.9.8.2:8080\""));
    replace_example_macs(&out);
    kindling(&["create", "manifests", "--dir", out.to_str().unwrap()]).expect(0);
}

/// Input that cannot be a description at all is bad input (exit 3), named by file, and each
/// error is said once.
#[test]
fn input_that_is_not_utf8_a_directory_or_a_symlink_loop_is_exit_3_said_once() {
    let dir = upi_dir_with_flannel();
    let d = dir.path();
    let inventory = d.join("inventory.yaml");
    let good = std::fs::read(&inventory).unwrap();
    let said_once = |stderr: &str| {
        for line in stderr.lines() {
            let parts: Vec<&str> = line.split(": ").collect();
            for w in parts.windows(2) {
                assert_ne!(w[0], w[1], "said twice: {line}");
            }
        }
    };

    // Latin-1 bytes on line 3.
    let mut latin1 = b"apiVersion: kindling/v1alpha1\nkind: Inventory\n# caf\xe9\n".to_vec();
    latin1.extend_from_slice(&good);
    std::fs::write(&inventory, &latin1).unwrap();
    let run = kindling(&["create", "manifests", "--dir", d.to_str().unwrap()]);
    run.expect(3);
    assert!(
        run.stderr()
            .contains("inventory.yaml: not UTF-8 text: byte 51 (line 3)"),
        "{}",
        run.stderr()
    );
    said_once(&run.stderr());

    std::fs::remove_file(&inventory).unwrap();
    std::fs::create_dir(&inventory).unwrap();
    let run = kindling(&["create", "manifests", "--dir", d.to_str().unwrap()]);
    run.expect(3);
    assert!(
        run.stderr()
            .contains("inventory.yaml: is a directory, not a file"),
        "{}",
        run.stderr()
    );
    said_once(&run.stderr());

    std::fs::remove_dir(&inventory).unwrap();
    std::os::unix::fs::symlink("inventory.yaml", &inventory).unwrap();
    let run = kindling(&["create", "manifests", "--dir", d.to_str().unwrap()]);
    run.expect(3);
    assert!(
        run.stderr().contains("inventory.yaml: is a symlink loop"),
        "{}",
        run.stderr()
    );
    said_once(&run.stderr());

    // A missing file is said once too (its I/O error is part of the message already).
    std::fs::remove_file(&inventory).unwrap();
    let run = kindling(&[
        "serve",
        "--dir",
        d.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
    ]);
    said_once(&run.stderr());
    assert_eq!(
        run.stderr().matches("No such file or directory").count(),
        1,
        "{}",
        run.stderr()
    );
}

/// A manifest of yours that the bootstrap agent could not apply is refused at create, by file
/// and line, not found on the node in the middle of the bootstrap.
#[test]
fn a_custom_manifest_that_is_not_a_kubernetes_object_is_refused_at_create() {
    let dir = upi_dir_with_flannel();
    let d = dir.path();
    kindling(&["create", "manifests", "--dir", d.to_str().unwrap()]).expect(0);
    let mine = d.join("manifests/cluster/99-mine.yaml");
    std::fs::write(&mine, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mine\n---\napiVersion: v1\nmetadata:\n  name: no-kind\n").unwrap();
    let run = kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]);
    run.expect(3);
    assert!(
        run.stderr().contains(
            "manifests/cluster/99-mine.yaml:6:1: is not a Kubernetes object: it has no kind"
        ),
        "{}",
        run.stderr()
    );
    assert!(!d.join("bootstrap.ign").exists());
    std::fs::write(
        &mine,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [\n",
    )
    .unwrap();
    let run = kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]);
    run.expect(3);
    assert!(
        run.stderr()
            .contains("99-mine.yaml:3:18: is not valid YAML"),
        "{}",
        run.stderr()
    );
    std::fs::write(
        &mine,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mine\n",
    )
    .unwrap();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
}

/// Every command on an asset directory appends its debug log to .kindling/kindling.log, without
/// the directory's secrets; a failure points at it.
#[test]
fn every_command_keeps_a_redacted_debug_log_and_a_failure_points_at_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = upi_dir_with_flannel();
    let d = dir.path().to_str().unwrap();
    kindling(&["create", "ignition-configs", "--dir", d]).expect(0);
    let log_path = dir.path().join(".kindling/kindling.log");
    let log = read(&log_path);
    assert!(
        log.contains("DEBUG kindling: kindling 0.1.0 create ignition-configs --dir"),
        "{log}"
    );
    assert!(log.contains("generated pool-ignition"), "{log}");
    let mode = std::fs::metadata(&log_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = read(&dir.path().join("auth/bootstrap-token"));
    let secret = token.trim().split('.').nth(1).unwrap();
    assert!(!log.contains(secret), "the log holds the bootstrap token");

    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, format!("{}bogus: 1\n", read(&inventory))).unwrap();
    let run = kindling(&["create", "manifests", "--dir", d]);
    run.expect(3);
    assert!(
        run.stderr()
            .ends_with(&format!("The full log is in {}.\n", log_path.display())),
        "{}",
        run.stderr()
    );
    let log = read(&log_path);
    assert!(log.contains("unknown field 'bogus'"), "{log}");
    assert!(
        log.contains("create ignition-configs") && log.contains("create manifests"),
        "appended"
    );
}
