//! `kindling power` against the sushy-tools Redfish emulator (PyPI `sushy-tools`, its fake
//! driver, HTTP Basic credentials) on loopback: power and the one-time network boot are read back
//! from the emulator's own state, and a wrong password is said in words, never shown.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kindling_testkit::{Daemon, Proto, READY_TIMEOUT, port};

use crate::ignition_configs::demo_on_loopback;
use crate::kindling;

const SYSTEMS: [(&str, &str); 3] = [
    ("worker0", "00000000-0000-0000-0000-000000000020"),
    ("worker1", "00000000-0000-0000-0000-000000000021"),
    ("worker2", "00000000-0000-0000-0000-000000000022"),
];

/// The emulator on `port`, its state and configuration under `dir`, one fake system per
/// [`SYSTEMS`], off; its one user is `admin` with `password`.
fn emulator(dir: &Path, port: u16, password: &str) -> Daemon {
    emulator_of(dir, port, password, &SYSTEMS)
}

/// [`emulator`] with the fake systems `systems` (name, UUID).
pub(crate) fn emulator_of(
    dir: &Path,
    port: u16,
    password: &str,
    systems: &[(&str, &str)],
) -> Daemon {
    let htpasswd = dir.join("htpasswd");
    let hashed = Command::new("python3")
        .args([
            "-c",
            "import bcrypt, sys; print('admin:' + bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())",
            password,
        ])
        .output()
        .expect("python3 runs");
    assert!(
        hashed.status.success(),
        "{}",
        String::from_utf8_lossy(&hashed.stderr)
    );
    std::fs::write(&htpasswd, &hashed.stdout).unwrap();
    let systems: Vec<String> = systems
        .iter()
        .map(|(name, uuid)| {
            format!("{{'uuid': '{uuid}', 'name': '{name}', 'power_state': 'Off', 'nics': []}}")
        })
        .collect();
    let config = dir.join("emulator.conf");
    std::fs::write(
        &config,
        format!(
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\n\
             SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_STATE_DIR = '{}'\n\
             SUSHY_EMULATOR_AUTH_FILE = '{}'\nSUSHY_EMULATOR_FAKE_SYSTEMS = [{}]\n",
            dir.join("state").display(),
            htpasswd.display(),
            systems.join(", ")
        ),
    )
    .unwrap();
    let mut command = Command::new("sushy-emulator");
    command.arg("--config").arg(&config);
    let mut daemon = Daemon::spawn("sushy-emulator", command, &dir.join("emulator.log"))
        .unwrap_or_else(|e| panic!("{e}"))
        .terminate_on_drop();
    let addr = ([127, 0, 0, 1], port).into();
    daemon
        .wait_listening(&[(addr, Proto::Tcp)], READY_TIMEOUT, |_| true)
        .unwrap_or_else(|e| panic!("{e}"));
    daemon
}

/// The demo's lines that end each worker's MACs in inventory.yaml, which a `bmc:` follows.
const MAC_LINES: [&str; 3] = [
    "    mac: \"52:54:00:7e:01:20\"\n",
    "    mac: \"52:54:00:7e:01:21\"\n",
    "    macs: [\"52:54:00:7e:01:22\", \"52:54:00:7e:02:22\"]\n",
];

/// Gives the demo's `worker<i>` in the asset directory `dir` a BMC at `address`, its user and
/// password in `bmc/worker<i>.yaml` (0600).
fn give_bmc(dir: &Path, i: usize, address: &str, user: &str, password: &str) {
    let name = format!("worker{i}");
    std::fs::create_dir_all(dir.join("bmc")).unwrap();
    write_credentials(dir, &name, user, password);
    let inventory = dir.join("inventory.yaml");
    let text = std::fs::read_to_string(&inventory).unwrap();
    let after = MAC_LINES[i];
    assert!(text.contains(after), "{after}");
    let with =
        format!("{after}    bmc: {{address: \"{address}\", credentials: bmc/{name}.yaml}}\n");
    std::fs::write(&inventory, text.replacen(after, &with, 1)).unwrap();
}

/// Writes `bmc/<name>.yaml` in `dir`, mode 0600.
pub(crate) fn write_credentials(dir: &Path, name: &str, user: &str, password: &str) {
    let path = dir.join(format!("bmc/{name}.yaml"));
    std::fs::write(&path, format!("username: {user}\npassword: {password}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A system as the emulator has it (GET with curl, not kindling's client).
pub(crate) fn system(port: u16, uuid: &str, password: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-fsS", "-u", &format!("admin:{password}")])
        .arg(format!("http://127.0.0.1:{port}/redfish/v1/Systems/{uuid}"))
        .output()
        .expect("curl runs");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// Waits (the fake driver applies a power change 1 to 11 s later) until `uuid` is `state`.
pub(crate) fn until_power(port: u16, uuid: &str, password: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let now = system(port, uuid, password);
        if now["PowerState"] == state {
            return;
        }
        assert!(Instant::now() < deadline, "{uuid} is not {state}: {now:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Power status, on with a one-time network boot, off and cycle through Redfish, read back from
/// the emulator; a BMC that refuses the password fails alone, in words, with no password shown.
#[test]
fn power_over_redfish_is_what_the_bmc_then_says() {
    let test = "power_over_redfish_is_what_the_bmc_then_says";
    if !kindling_testkit::have("sushy-emulator") {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: sushy-emulator is missing (test.sh installs sushy-tools into .venv)"
        );
        eprintln!("SKIPPED {test}: sushy-emulator is not installed; ./test.sh puts it in .venv");
        return;
    }
    let password = "Redfish-pw-7rZq";
    let scratch = tempfile::tempdir().unwrap();
    let bmc_port = port();
    let _emulator = emulator(scratch.path(), bmc_port, password);

    let assets = demo_on_loopback(port(), port());
    let dir = assets.path();
    for (i, (_, uuid)) in SYSTEMS.iter().enumerate() {
        // worker2's file has the wrong password.
        let given = if i == 2 { "not-the-password" } else { password };
        let address = format!("redfish+http://127.0.0.1:{bmc_port}/redfish/v1/Systems/{uuid}");
        give_bmc(dir, i, &address, "admin", given);
    }
    let d = dir.to_str().unwrap();
    let (w0, w1) = (SYSTEMS[0].1, SYSTEMS[1].1);

    let run = kindling(&["power", "status", "worker0", "worker1", "--dir", d]);
    run.expect(0);
    assert!(
        run.stdout().contains("worker0          off")
            && run.stdout().contains("worker1          off"),
        "{}",
        run.stdout()
    );

    let run = kindling(&["power", "on", "--pxe-once", "worker0", "--dir", d]);
    run.expect(0);
    assert!(
        run.stdout()
            .contains("done: On (was off); boots from the network once"),
        "{}",
        run.stdout()
    );
    until_power(bmc_port, w0, password, "On");
    assert_eq!(
        system(bmc_port, w0, password)["Boot"]["BootSourceOverrideTarget"],
        "Pxe"
    );
    // Only the machine asked for: worker1 keeps its own boot order.
    assert_ne!(
        system(bmc_port, w1, password)["Boot"]["BootSourceOverrideTarget"],
        "Pxe"
    );

    let run = kindling(&["power", "off", "worker0", "--dir", d]);
    run.expect(0);
    assert!(
        run.stdout().contains("done: ForceOff (was on)"),
        "{}",
        run.stdout()
    );
    until_power(bmc_port, w0, password, "Off");

    // A cycle of a machine that is off powers it on (the emulator offers no PowerCycle).
    let run = kindling(&["power", "cycle", "worker1", "--dir", d]);
    run.expect(0);
    until_power(bmc_port, w1, password, "On");

    // --all: worker2's BMC refuses its password; the others answer; the exit code says so.
    let run = kindling(&["power", "status", "--all", "--dir", d]);
    assert_ne!(run.code(), 0);
    let said = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        said.contains("worker2          FAILED:")
            && said.contains(
                "HTTP 401: the BMC refused the user and password of its credentials file"
            )
            && said.contains("1 of 3 machines did not do what was asked"),
        "{said}"
    );
    assert!(said.contains("worker1          on"), "{said}");
    assert!(
        !said.contains(password) && !said.contains("not-the-password"),
        "{said}"
    );

    // The same as JSON, a line per machine, for scripts.
    let run = kindling(&["power", "status", "--all", "--json", "--dir", d]);
    assert_ne!(run.code(), 0);
    let lines: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let by_name = |name: &str| lines.iter().find(|l| l["machine"] == name).unwrap().clone();
    assert_eq!(lines.len(), 3, "{}", run.stdout());
    assert_eq!(by_name("worker1")["state"], "on");
    assert_eq!(by_name("worker2")["ok"], false);
    assert!(
        by_name("worker2")["error"]
            .as_str()
            .unwrap()
            .contains("refused the user and password")
    );
    assert!(!run.stdout().contains(password), "{}", run.stdout());
}

/// ipmitool, against the simulated BMC at `port`: its output.
fn ipmitool(port: u16, password: &str, args: &[&str]) -> String {
    let out = Command::new("ipmitool")
        .args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "u", "-P", password])
        .args(args)
        .output()
        .expect("ipmitool runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Power over IPMI (RMCP+, cipher suite 3) against pyghmi's BMC, each step read back by ipmitool
/// on its own session: status, on with a one-time network boot, cycle, off; a wrong password is
/// said in words and never shown.
#[test]
fn power_over_ipmi_is_what_ipmitool_then_reads() {
    let test = "power_over_ipmi_is_what_ipmitool_then_reads";
    // Debian's Python, which python3-pyghmi is installed for (not the tests' venv).
    let have_pyghmi = Command::new("/usr/bin/python3")
        .args(["-c", "import pyghmi.ipmi.bmc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !kindling_testkit::have("ipmitool") || !have_pyghmi {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: ipmitool or python3-pyghmi is missing (test.sh installs them)"
        );
        eprintln!(
            "SKIPPED {test}: ipmitool or python3-pyghmi is not installed; ./test.sh installs them"
        );
        return;
    }
    let password = "ipmi-Pw-3k";
    let scratch = tempfile::tempdir().unwrap();
    let bmc_port = port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ipmi/simbmc.py");
    let mut command = Command::new("/usr/bin/python3");
    command
        .arg(&script)
        .args([&bmc_port.to_string(), "1", password]);
    let mut simulator = Daemon::spawn("pyghmi BMC", command, &scratch.path().join("bmc.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    simulator
        .wait_listening(
            &[(([127, 0, 0, 1], bmc_port).into(), Proto::Udp)],
            READY_TIMEOUT,
            |_| true,
        )
        .unwrap_or_else(|e| panic!("{e}"));

    let assets = demo_on_loopback(port(), port());
    let dir = assets.path();
    give_bmc(
        dir,
        0,
        &format!("ipmi://127.0.0.1:{bmc_port}"),
        "u",
        password,
    );
    let d = dir.to_str().unwrap();

    let run = kindling(&["power", "status", "worker0", "--dir", d]);
    run.expect(0);
    assert!(
        run.stdout().contains("worker0          off"),
        "{}",
        run.stdout()
    );

    let run = kindling(&["power", "on", "--pxe-once", "worker0", "--dir", d]);
    run.expect(0);
    assert!(
        run.stdout()
            .contains("done: power on (was off); boots from the network once"),
        "{}",
        run.stdout()
    );
    assert!(
        ipmitool(bmc_port, password, &["chassis", "power", "status"])
            .contains("Chassis Power is on")
    );
    let boot = ipmitool(bmc_port, password, &["chassis", "bootparam", "get", "5"]);
    assert!(
        boot.contains("Options apply to only next boot") && boot.contains("Force PXE"),
        "{boot}"
    );

    let run = kindling(&["power", "cycle", "worker0", "--dir", d]);
    run.expect(0);
    assert!(
        run.stdout().contains("done: power cycle (was on)"),
        "{}",
        run.stdout()
    );
    let run = kindling(&["power", "off", "worker0", "--dir", d]);
    run.expect(0);
    assert!(
        ipmitool(bmc_port, password, &["chassis", "power", "status"])
            .contains("Chassis Power is off")
    );

    write_credentials(dir, "worker0", "u", "not-the-password");
    let run = kindling(&["power", "status", "worker0", "--dir", d]);
    assert_ne!(run.code(), 0);
    let said = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        said.contains(
            "authenticating: the BMC refused the user and password of its credentials file"
        ),
        "{said}"
    );
    assert!(
        !said.contains(password) && !said.contains("not-the-password"),
        "{said}"
    );
}
