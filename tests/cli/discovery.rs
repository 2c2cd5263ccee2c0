//! Discovery with the real consumers: Debian's iPXE in QEMU network-boots a machine whose MAC
//! the inventory does not have, with two SCSI disks (an SSD of 1 GiB and a rotational disk of
//! 3 GiB). `kindling serve --discover` gives it the live system; the real Ignition writes the
//! kindling binary and the discovery unit, which the test initramfs runs in systemd's stead.
//! The agent reads the real kernel's /sys and /proc and reports; `kindling machines` lists it;
//! `machines accept` adds it with the disk the rule picks; after `create ignition-configs`
//! the waiting agent reboots the machine, and its next boot gets its own config.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ignition_configs::demo_on_loopback;
use crate::kindling;
use crate::qemu::{self, Vm};
use crate::serve::Server;

/// `POST path` of the boot server with a JSON body, through curl: (status, body).
fn post(server: &Server, path: &str, body: &serde_json::Value) -> (u16, String) {
    let mut child = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-H",
            "Content-Type: application/json",
        ])
        .args(["--data-binary", "@-"])
        .arg(format!("http://{}{path}", server.http()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn pending(dir: &Path) -> Vec<serde_json::Value> {
    let run = kindling(&[
        "machines",
        "--pending",
        "--json",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    run.expect(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    json["machines"].as_array().unwrap().clone()
}

#[test]
fn an_unknown_machine_reports_its_hardware_is_accepted_and_boots_its_own_config() {
    let kernel = qemu::test_kernel();
    let disks = tempfile::tempdir().unwrap();
    let mut vm = Vm::numbered(7);
    for (i, (gib, serial, product, rotation)) in [
        (1u64, "SSD0001", "KINDLING-SSD", "1"),
        (3, "HDD0002", "KINDLING-HDD", "0"),
    ]
    .into_iter()
    .enumerate()
    {
        let image = disks.path().join(format!("disk{i}.img"));
        std::fs::File::create(&image)
            .unwrap()
            .set_len(gib << 30)
            .unwrap();
        if i == 0 {
            vm.qemu_args
                .extend(["-device".into(), "virtio-scsi-pci,id=scsi0".into()]);
        }
        vm.qemu_args.extend([
            "-drive".into(),
            format!("if=none,id=d{i},file={},format=raw", image.display()),
            "-device".into(),
            format!(
                "scsi-hd,drive=d{i},bus=scsi0.0,serial={serial},product={product},rotation_rate={rotation}"
            ),
        ]);
    }

    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    let host = qemu::HOST;
    let inventory = std::fs::read_to_string(d.join("inventory.yaml"))
        .unwrap()
        .replace(&format!("http://127.0.0.1:{http_port}"), &format!("http://{host}:{http_port}"))
        .replace(&format!("https://127.0.0.1:{mcs_port}"), &format!("https://{host}:{mcs_port}"))
        .replace("  os: fcos\n", &format!(
            "  os: flatcar\n  osImages:\n    kernel: http://{host}:{http_port}/assets/vmlinuz\n    initramfs: http://{host}:{http_port}/assets/initrd.img\n  kernelArgs: [console=ttyS0, quiet, panic=-1, harness.run-unit=kindling-discover.service]\n"
        ))
        // The new machine's disk by rule: the SSD, not the bigger rotational disk.
        .replace("  installDisk: /dev/vda\n", "  installDisk: {minSize: 1Gi, rotational: false}\n")
        .replace("    ip: ", "    installDisk: /dev/vda\n    ip: ");
    std::fs::write(d.join("inventory.yaml"), &inventory).unwrap();
    // The test initramfs has no useradd (busybox), so no SSH keys: they would create the core user.
    let install_config = std::fs::read_to_string(d.join("install-config.yaml")).unwrap();
    let without_keys = install_config.split("sshKey:").next().unwrap().to_string();
    std::fs::write(d.join("install-config.yaml"), without_keys).unwrap();
    let dir_arg = d.to_str().unwrap();
    kindling(&["create", "ignition-configs", "--dir", dir_arg]).expect(0);
    std::fs::create_dir_all(d.join("assets")).unwrap();
    kernel.link_into(&d.join("assets"));
    let server = Server::start_with(d, http_port, mcs_port, &["--discover"]);

    // The first boot: discovery. It ends when the agent, accepted, reboots the machine.
    let first = {
        let vm = vm.clone();
        let url = format!("http://{host}:{http_port}/boot.ipxe");
        std::thread::spawn(move || qemu::pxe_boot(&vm, &url, Duration::from_secs(400)))
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let machine = loop {
        if let Some(m) = pending(d).into_iter().next() {
            break m;
        }
        if first.is_finished() || Instant::now() > deadline {
            let boot = first.join().unwrap();
            panic!(
                "no report arrived:\n{boot:?}\n--- server ---\n{}",
                server.log()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(machine["state"], "pending");
    assert_eq!(machine["mac"], vm.mac);
    let hw = &machine["discovered"]["hardware"];
    assert_eq!(hw["system"]["uuid"], vm.uuid, "{machine:#}");
    assert_eq!(hw["system"]["serial"], vm.serial, "{machine:#}");
    assert_eq!(hw["system"]["vendor"], "QEMU", "{machine:#}");
    let nics = hw["nics"].as_array().unwrap();
    assert_eq!(nics.len(), 1, "{machine:#}");
    assert_eq!(nics[0]["mac"], vm.mac);
    assert_eq!(nics[0]["link"], true);
    let disks: Vec<(String, u64, bool, String, String)> = hw["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["sizeBytes"].as_u64().unwrap(),
                d["rotational"].as_bool().unwrap(),
                d["serial"].as_str().unwrap_or_default().to_string(),
                d["model"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        disks,
        [
            (
                "sda".to_string(),
                1 << 30,
                false,
                "SSD0001".to_string(),
                "KINDLING-SSD".to_string()
            ),
            (
                "sdb".to_string(),
                3 << 30,
                true,
                "HDD0002".to_string(),
                "KINDLING-HDD".to_string()
            ),
        ],
        "{machine:#}"
    );
    assert!(
        hw["memoryBytes"].as_u64().unwrap() > 256 << 20,
        "{machine:#}"
    );
    assert!(hw["cpu"]["count"].as_u64().unwrap() >= 1, "{machine:#}");

    // A report that claims this machine's MAC with a token of another boot is refused, and so
    // is one that lists its NIC as another machine's.
    let (_, script) = server.get("/ipxe?mac=52-54-00-6b-64-99");
    let script = String::from_utf8(script).unwrap();
    let other_token = script
        .split_whitespace()
        .find_map(|a| a.strip_prefix("kindling.discovery.token="))
        .expect("a discovery token")
        .to_string();
    let forged = |mac: &str, nics: &[&str]| {
        serde_json::json!({
            "mac": mac,
            "token": other_token,
            "hardware": {
                "nics": nics.iter().map(|m| serde_json::json!({"name": "eth0", "mac": m, "link": true})).collect::<Vec<_>>(),
                "disks": [], "cpu": {"model": "", "count": 1, "arch": "x86_64"},
                "memoryBytes": 0, "system": {}
            }
        })
    };
    let (status, body) = post(&server, "/api/v1/discovery", &forged(&vm.mac, &[&vm.mac]));
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(&format!("no discovery token is outstanding for {}", vm.mac)),
        "{body}"
    );
    let (status, body) = post(
        &server,
        "/api/v1/discovery",
        &forged("52:54:00:6b:64:99", &["52:54:00:6b:64:99", &vm.mac]),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("a MAC of discovered machine"), "{body}");
    assert_eq!(pending(d).len(), 1, "the forged reports left no machine");

    // Accepted by its SMBIOS UUID: the disk by rule, the next free address.
    let accepted = kindling(&[
        "machines", "accept", &vm.uuid, "--name", "worker9", "--role", "worker", "--ip", "auto",
        "--dir", dir_arg,
    ]);
    accepted.expect(0);
    assert!(
        accepted
            .stdout()
            .contains("worker9 (52:54:00:6b:64:07) added to"),
        "{}",
        accepted.stdout()
    );
    let after = std::fs::read_to_string(d.join("inventory.yaml")).unwrap();
    assert_eq!(
        after,
        format!(
            "{inventory}  - name: worker9\n    role: worker\n    mac: \"{}\"\n    ip: 192.168.126.123\n    installDisk: /dev/sda   # picked by the rule {{minSize: 1Gi, rotational: false}}: /dev/sda 1Gi not rotational \"KINDLING-SSD\" serial SSD0001\n",
            vm.mac
        )
    );
    assert!(pending(d).is_empty());
    // In the whole list, it is an inventory machine now, with what it reported.
    let all = kindling(&["machines", "--dir", dir_arg]);
    all.expect(0);
    let line = all
        .stdout()
        .lines()
        .find(|l| l.contains("worker9"))
        .map(String::from)
        .unwrap_or_else(|| panic!("{}", all.stdout()));
    assert!(
        line.starts_with("inventory  worker9")
            && line.contains("192.168.126.123")
            && line.contains("/dev/sda 1Gi not rotational \"KINDLING-SSD\" serial SSD0001")
            && line.contains(&format!("uuid {}", vm.uuid)),
        "{line}"
    );
    kindling(&["create", "ignition-configs", "--dir", dir_arg]).expect(0);

    let first = first.join().unwrap();
    let console = first.console();
    assert!(
        console.contains(
            "HARNESS: unit kindling-discover.service starts: /usr/local/bin/kindling agent discover"
        ) && console.contains("accepted: rebooting into its install")
            && console.contains("reboot: Restarting system"),
        "{first:?}\n--- server ---\n{}",
        server.log()
    );
    assert_eq!(first.stage_rc("files"), Some(0), "{first:?}");

    // The next boot is its install: its own pointer config, then its pool's over TLS.
    let second = qemu::pxe_boot(
        &vm,
        &format!("http://{host}:{http_port}/boot.ipxe"),
        Duration::from_secs(200),
    );
    assert_eq!(second.stage_rc("files"), Some(0), "{second:?}");
    let landed = second.landed();
    assert!(
        landed.contains_key("/etc/kubernetes/kubelet.env")
            && !landed.contains_key("/etc/systemd/system/kindling-discover.service"),
        "{landed:?}"
    );
    let events = crate::events_when(d, |events| {
        events
            .iter()
            .any(|e| e["machine"] == "worker9" && e["stage"] == "mcs")
    });
    let stages: Vec<String> = events
        .iter()
        .filter(|e| {
            (e["machine"] == "worker9" && e["stage"] != "binaries")
                || ["discovery", "discovered", "denied"].contains(&e["stage"].as_str().unwrap())
        })
        .map(|e| match e["machine"].as_str() {
            Some(m) => format!("{m}:{}", e["stage"].as_str().unwrap()),
            None => e["stage"].as_str().unwrap().to_string(),
        })
        .collect();
    assert_eq!(
        stages,
        [
            "discovery",
            "discovered",
            "discovery",
            "denied",
            "denied",
            // A machine new to the inventory may be given its secrets once: its first install.
            "worker9:armed",
            "worker9:ipxe",
            "worker9:ignition",
            "worker9:bound",
            "worker9:mcs",
        ]
        .map(String::from)
        .to_vec(),
        "{events:?}"
    );
    eprintln!(
        "discovery boot {:.1?}, install boot {:.1?}",
        first.elapsed, second.elapsed
    );
}
