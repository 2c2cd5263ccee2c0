//! `create infra`, end to end: every file it writes is fed to the program that reads it
//! (named-checkzone, named-checkconf -z, haproxy -c, dnsmasq --test, dhcpd -t, kea-dhcp4 -t),
//! and the phase, the serial and companion mode are checked as a user sees them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{dir_with, fixtures, kindling};

/// Finds a checker in PATH or in the sbin directories (not in a non-root user's PATH), or
/// fails saying how to get it: a missing checker must not pass silently.
fn checker(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} is not installed: ./test.sh installs it (Debian package {package})")
        })
}

/// Runs a checker; asserts it exits 0, showing what it said when it does not.
fn check(program: &str, package: &str, args: &[&str]) -> String {
    let output = Command::new(checker(program, package))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let said = format!(
        "{program} {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{said}");
    said
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn demo_dir() -> tempfile::TempDir {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo");
    let dir = dir_with(&[
        ("install-config.yaml", &demo.join("install-config.yaml")),
        ("inventory.yaml", &demo.join("inventory.yaml")),
    ]);
    crate::seed_mirror(dir.path());
    dir
}

fn upi_dir() -> tempfile::TempDir {
    let upi = fixtures().join("valid/openshift-4.5-upi");
    dir_with(&[
        ("install-config.yaml", &upi.join("install-config.yaml")),
        ("inventory.yaml", &upi.join("inventory.yaml")),
    ])
}

/// The zone files under infra/named, as (zone name, path).
fn zones(infra: &Path) -> Vec<(String, PathBuf)> {
    let mut zones: Vec<(String, PathBuf)> = std::fs::read_dir(infra.join("named"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.strip_suffix(".zone")?.to_string();
            Some((name, p))
        })
        .collect();
    zones.sort();
    zones
}

/// named.conf as a name server would have it: the fragment included under an options block
/// whose `directory` holds the zone files.
fn named_conf(infra: &Path) -> PathBuf {
    let named = infra.join("named");
    let conf = infra.join("test-named.conf");
    std::fs::write(
        &conf,
        format!(
            "options {{ directory \"{}\"; }};\ninclude \"{}\";\n",
            named.display(),
            named.join("named.conf").display()
        ),
    )
    .unwrap();
    conf
}

/// Every file of infra/ through its checker.
fn check_everything(infra: &Path) {
    let zones = zones(infra);
    assert!(zones.len() >= 2, "a forward and a reverse zone: {zones:?}");
    for (name, path) in &zones {
        let said = check(
            "named-checkzone",
            "bind9-utils",
            &[name, path.to_str().unwrap()],
        );
        assert!(said.contains("OK"), "{said}");
        assert!(!said.contains("ignoring out-of-zone data"), "{said}");
    }
    let conf = named_conf(infra);
    let said = check(
        "named-checkconf",
        "bind9-utils",
        &["-z", conf.to_str().unwrap()],
    );
    assert_eq!(said.matches("loaded serial").count(), zones.len(), "{said}");
    let file = |name: &str| infra.join(name).to_str().unwrap().to_string();
    let said = check("haproxy", "haproxy", &["-c", "-f", &file("haproxy.cfg")]);
    assert!(!said.contains("WARNING"), "{said}");
    check(
        "dnsmasq",
        "dnsmasq-base",
        &["--test", "-C", &file("dnsmasq.conf")],
    );
    // -lf: a non-root user cannot open the default lease file.
    check(
        "dhcpd",
        "isc-dhcp-server",
        &["-t", "-cf", &file("dhcpd.conf"), "-lf", "/dev/null"],
    );
    check(
        "kea-dhcp4",
        "kea-dhcp4-server",
        &["-t", &file("kea-dhcp4.json")],
    );
    assert!(read(&infra.join("boot.ipxe")).starts_with("#!ipxe\n"));
}

#[test]
fn infra_for_the_demo_passes_every_checker() {
    let dir = demo_dir();
    let d = dir.path().to_str().unwrap();
    let run = kindling(&["create", "infra", "--dir", d]);
    run.expect(0);
    // The demo shares the api and api-int VIP: said, and 22623 limited to the machine network.
    assert!(
        run.stderr()
            .contains("apiIntVIP 192.168.126.10 is also the api"),
        "{}",
        run.stderr()
    );
    let infra = dir.path().join("infra");
    check_everything(&infra);
    let haproxy = read(&infra.join("haproxy.cfg"));
    assert!(
        haproxy.contains("bind 192.168.126.10:22623\n    # apiIntVIP is also")
            && haproxy.contains("tcp-request connection reject unless { src 192.168.126.0/24 }"),
        "{haproxy}"
    );
}

#[test]
fn infra_for_an_unchanged_openshift_install_config_passes_every_checker() {
    let dir = upi_dir();
    let d = dir.path().to_str().unwrap();
    kindling(&["create", "infra", "--dir", d]).expect(0);
    let infra = dir.path().join("infra");
    check_everything(&infra);

    let forward = read(&infra.join("named/ocp45.example.localdomain.zone"));
    for line in [
        "ns1     IN A    172.16.0.102",
        "*.apps  IN A    172.16.0.111",
        "api-int IN A    172.16.0.110",
    ] {
        assert!(forward.contains(line), "no {line:?} in\n{forward}");
    }
    let reverse = read(&infra.join("named/0.16.172.in-addr.arpa.zone"));
    assert!(
        reverse.contains(
            "@ IN SOA ns1.ocp45.example.localdomain. hostmaster.ocp45.example.localdomain."
        ),
        "{reverse}"
    );
    let haproxy = read(&infra.join("haproxy.cfg"));
    let mcs_binds: Vec<&str> = haproxy
        .lines()
        .filter(|l| l.trim_start().starts_with("bind") && l.ends_with(":22623"))
        .collect();
    assert_eq!(mcs_binds, ["    bind 172.16.0.110:22623"], "{haproxy}");
    assert!(
        haproxy.contains("server provisioning 172.16.0.101:22623"),
        "{haproxy}"
    );
    assert!(haproxy.contains("server i1 172.16.0.41:443"), "{haproxy}");
}

#[test]
fn bootstrap_removed_rewrites_only_the_load_balancer_and_drops_the_bootstrap_machine() {
    let dir = upi_dir();
    let d = dir.path().to_str().unwrap();
    let infra = dir.path().join("infra");
    kindling(&["create", "infra", "--dir", d]).expect(0);
    let zone = read(&infra.join("named/ocp45.example.localdomain.zone"));
    assert!(read(&infra.join("haproxy.cfg")).contains("server bs 172.16.0.11:6443"));

    let run = kindling(&[
        "create",
        "infra",
        "--dir",
        d,
        "--phase",
        "bootstrap-removed",
    ]);
    run.expect(0);
    let stdout = run.stdout();
    assert!(stdout.contains("regenerated  infra-haproxy"), "{stdout}");
    assert!(stdout.contains("up to date   infra-dns"), "{stdout}");
    let haproxy = read(&infra.join("haproxy.cfg"));
    assert!(!haproxy.contains("172.16.0.11:"), "{haproxy}");
    check(
        "haproxy",
        "haproxy",
        &["-c", "-f", infra.join("haproxy.cfg").to_str().unwrap()],
    );
    assert_eq!(
        read(&infra.join("named/ocp45.example.localdomain.zone")),
        zone
    );

    // The same phase again changes nothing.
    let run = kindling(&[
        "create",
        "infra",
        "--dir",
        d,
        "--phase",
        "bootstrap-removed",
    ]);
    assert!(
        run.expect(0)
            .stdout()
            .contains("up to date   infra-haproxy")
    );
}

#[test]
fn the_serial_increases_only_when_a_zone_changes() {
    let dir = demo_dir();
    let d = dir.path().to_str().unwrap();
    let infra = dir.path().join("infra");
    let serial = |zone: &str| {
        let text = read(&infra.join("named").join(format!("{zone}.zone")));
        text.lines()
            .find(|l| l.ends_with("; serial"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    kindling(&["create", "infra", "--dir", d]).expect(0);
    let (forward, reverse) = (
        serial("demo.example.localdomain"),
        serial("126.168.192.in-addr.arpa"),
    );
    // A change that touches neither zone's content (the OS) keeps both serials.
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(
        &inventory,
        read(&inventory).replace("os: fcos", "os: rhcos"),
    )
    .unwrap();
    kindling(&["create", "infra", "--dir", d]).expect(0);
    assert_eq!(serial("demo.example.localdomain"), forward);
    assert_eq!(serial("126.168.192.in-addr.arpa"), reverse);
    // A moved machine changes both.
    std::fs::write(
        &inventory,
        read(&inventory).replace("192.168.126.121", "192.168.126.131"),
    )
    .unwrap();
    kindling(&["create", "infra", "--dir", d]).expect(0);
    assert!(serial("demo.example.localdomain") > forward);
    assert!(serial("126.168.192.in-addr.arpa") > reverse);
    check_everything(&infra);
}

#[test]
fn in_companion_mode_the_machine_config_server_is_the_bootstrap_machine_and_the_masters() {
    let dir = upi_dir();
    let d = dir.path().to_str().unwrap();
    let infra = dir.path().join("infra");
    kindling(&["create", "infra", "--dir", d]).expect(0);
    // openshift-install runs in the directory: its state file appears.
    std::fs::write(dir.path().join(".openshift_install_state.json"), "{}").unwrap();
    let run = kindling(&["create", "infra", "--dir", d]);
    assert!(
        run.expect(0)
            .stdout()
            .contains("regenerated  infra-haproxy")
    );
    let haproxy = read(&infra.join("haproxy.cfg"));
    let mcs: Vec<&str> = haproxy
        .lines()
        .filter(|l| l.contains(":22623") && l.contains("server "))
        .map(str::trim)
        .collect();
    assert_eq!(
        mcs,
        [
            "server bs 172.16.0.11:22623",
            "server m1 172.16.0.21:22623",
            "server m2 172.16.0.22:22623",
            "server m3 172.16.0.23:22623"
        ],
        "{haproxy}"
    );
    check(
        "haproxy",
        "haproxy",
        &["-c", "-f", infra.join("haproxy.cfg").to_str().unwrap()],
    );
    kindling(&[
        "create",
        "infra",
        "--dir",
        d,
        "--phase",
        "bootstrap-removed",
    ])
    .expect(0);
    assert!(!read(&infra.join("haproxy.cfg")).contains("172.16.0.11:"));
}

#[test]
fn an_edited_infra_file_is_kept() {
    let dir = demo_dir();
    let d = dir.path().to_str().unwrap();
    kindling(&["create", "infra", "--dir", d]).expect(0);
    let dnsmasq = dir.path().join("infra/dnsmasq.conf");
    let edited = format!("{}interface=eth1\n", read(&dnsmasq));
    std::fs::write(&dnsmasq, &edited).unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(
        &inventory,
        read(&inventory).replace("192.168.126.121", "192.168.126.131"),
    )
    .unwrap();
    // create ignition-configs, which does not touch infra/, says it is out of date now.
    let run = kindling(&["create", "ignition-configs", "--dir", d]);
    run.expect(0);
    assert!(
        run.stderr().contains(
            "infra/ is out of date: what it is made from changed; run kindling create infra"
        ),
        "{}",
        run.stderr()
    );
    let run = kindling(&["create", "infra", "--dir", d]);
    let stderr = run.expect(0).stderr();
    // The edit is kept, but not silently stale: kindling's version goes beside it, and the
    // warning says what changed and how much the two differ.
    assert!(
        stderr.contains(
            "kept your edited infra/dnsmasq.conf, but inventory.yaml changed since; kindling's version is infra/dnsmasq.conf.new (+1 -2 lines against yours)"
        ),
        "{stderr}"
    );
    assert_eq!(read(&dnsmasq), edited);
    let new = read(&dir.path().join("infra/dnsmasq.conf.new"));
    assert!(
        new.contains("192.168.126.131") && !new.contains("interface=eth1"),
        "{new}"
    );
    assert!(read(&dir.path().join("infra/dhcpd.conf")).contains("fixed-address 192.168.126.131;"));
    // Once it is up to date again, nothing is out of date.
    let run = kindling(&["create", "ignition-configs", "--dir", d]);
    assert!(
        !run.expect(0).stderr().contains("out of date"),
        "{}",
        run.stderr()
    );
    // An edit whose inputs did not change since is just kept.
    let run = kindling(&["create", "infra", "--dir", d]);
    assert!(
        run.expect(0)
            .stderr()
            .contains("kept your version of infra/dnsmasq.conf")
    );
}

#[test]
fn a_provisioning_host_given_by_name_is_refused_with_the_fix() {
    let dir = demo_dir();
    let d = dir.path().to_str().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(
        &inventory,
        read(&inventory).replace("http://192.168.126.2:8080", "http://boot.example.com:8080"),
    )
    .unwrap();
    let run = kindling(&["create", "infra", "--dir", d]);
    run.expect(3);
    let stderr = run.stderr();
    assert!(
        stderr.contains("provisioning.serverURL")
            && stderr.contains("'boot.example.com' is not an IPv4 address")
            && stderr.contains("write the URL with the IP"),
        "{stderr}"
    );
    assert!(!dir.path().join("infra").exists(), "something was written");
}

#[test]
fn the_checkers_catch_a_broken_zone() {
    // The checks above mean something only if a bad file fails them: named-checkconf passes a
    // broken zone without -z.
    let dir = demo_dir();
    let d = dir.path().to_str().unwrap();
    kindling(&["create", "infra", "--dir", d]).expect(0);
    let infra = dir.path().join("infra");
    let zone = infra.join("named/demo.example.localdomain.zone");
    std::fs::write(
        &zone,
        read(&zone).replace("192.168.126.110", "192.168.126.300"),
    )
    .unwrap();
    let output = Command::new(checker("named-checkconf", "bind9-utils"))
        .args(["-z", named_conf(&infra).to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("bad dotted quad"));
}

#[test]
fn machine_networks_other_than_a_slash_24_pass_every_checker() {
    // (machine network, where worker2 moves, its reverse zone)
    for (network, worker2, zone) in [
        (
            "192.168.126.0/23",
            "192.168.127.122",
            "127.168.192.in-addr.arpa",
        ),
        ("192.168.0.0/16", "192.168.7.122", "168.192.in-addr.arpa"),
    ] {
        let dir = demo_dir();
        let d = dir.path().to_str().unwrap();
        let edit = |file: &str, from: &str, to: &str| {
            let path = dir.path().join(file);
            std::fs::write(&path, read(&path).replace(from, to)).unwrap();
        };
        edit("install-config.yaml", "192.168.126.0/24", network);
        edit("inventory.yaml", "192.168.126.122", worker2);
        kindling(&["create", "infra", "--dir", d]).expect(0);
        let infra = dir.path().join("infra");
        check_everything(&infra);
        let reverse = read(&infra.join("named").join(format!("{zone}.zone")));
        assert!(
            reverse.contains("IN PTR  worker2.demo.example.localdomain."),
            "{reverse}"
        );
    }
}
