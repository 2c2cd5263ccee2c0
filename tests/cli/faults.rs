//! Disk faults: the asset directory and the event log on a small tmpfs, filled to ENOSPC and
//! remounted read-only, under `create` and `serve`; and `serve` killed with SIGKILL in the
//! middle of its event writes, again and again. Nothing already written is lost or torn.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kindling_testkit::Daemon;

use crate::ignition_configs::demo_into;
use crate::serve::http_get;
use crate::{kindling, snapshot};

/// A tmpfs of `size` mounted on a directory of its own, unmounted when dropped.
struct Tmpfs {
    _parent: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// None (with the reason printed) where no file system can be mounted: not root.
    fn mount(test: &str, size: &str) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "skipped {test}: a tmpfs cannot be mounted here (mount needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs {
            _parent: parent,
            path,
        })
    }

    fn remount(&self, how: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fills the file system: a file grown until the disk is full.
    fn fill(&self) {
        let mut filler = std::fs::File::create(self.path.join("filler")).unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let block = vec![0u8; chunk];
            while filler.write_all(&block).is_ok() {}
        }
        let free = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.path)
            .output()
            .unwrap();
        let free = String::from_utf8_lossy(&free.stdout);
        assert_eq!(free.lines().nth(1).map(str::trim), Some("0"), "{free}");
    }

    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The asset directory's files but the disk's filler and the command log (which every command
/// appends to).
fn files(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = snapshot(dir);
    files.remove(Path::new("filler"));
    files
}

/// `create` on a full disk, then on a read-only one, fails and names the file it could not
/// write; every file of the asset directory is as it was, and no temp file is left. With room
/// again, it goes on.
#[test]
fn create_on_a_full_or_read_only_disk_fails_naming_the_path_and_keeps_every_file() {
    let test = "create_on_a_full_or_read_only_disk_fails_naming_the_path_and_keeps_every_file";
    let Some(disk) = Tmpfs::mount(test, "16m") else {
        return;
    };
    let d = disk.path.join("site");
    std::fs::create_dir(&d).unwrap();
    demo_into(&d, 8080, 22623);
    let dir = d.to_str().unwrap();
    kindling(&["create", "ignition-configs", "--dir", dir]).expect(0);
    // An edit that changes the manifests, the kubelets' configs and the pools' renderings.
    let config = d.join("install-config.yaml");
    let edited = std::fs::read_to_string(&config)
        .unwrap()
        .replace("10.128.0.0/14", "10.132.0.0/14");
    std::fs::write(&config, edited).unwrap();
    let before = files(&d);

    disk.fill();
    let full = kindling(&["create", "ignition-configs", "--dir", dir]);
    assert_ne!(full.code(), 0, "{}", full.stderr());
    assert!(
        full.stderr().contains("No space left on device") && full.stderr().contains(dir),
        "the error names the file and why:\n{}",
        full.stderr()
    );
    assert_eq!(
        files(&d),
        before,
        "the asset directory changed on a full disk"
    );
    disk.free();

    disk.remount("ro");
    let read_only = kindling(&["create", "ignition-configs", "--dir", dir]);
    assert_ne!(read_only.code(), 0, "{}", read_only.stderr());
    assert!(
        read_only.stderr().contains("Read-only file system") && read_only.stderr().contains(dir),
        "{}",
        read_only.stderr()
    );
    assert_eq!(
        files(&d),
        before,
        "the asset directory changed on a read-only disk"
    );
    disk.remount("rw");

    kindling(&["create", "ignition-configs", "--dir", dir]).expect(0);
    let after = files(&d);
    assert!(
        after
            .keys()
            .all(|p| !p.to_string_lossy().contains("kindling-tmp")),
        "{:?}",
        after.keys()
    );
    let flannel = Path::new("manifests/cluster/33-flannel-configmap.yaml");
    assert!(
        String::from_utf8_lossy(&after[flannel]).contains("10.132.0.0/14"),
        "the edit is made once there is room"
    );
}

/// `kindling serve` with its log outside the asset directory.
fn serve(d: &Path, http: SocketAddr, mcs: SocketAddr, log: &Path) -> Daemon {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kindling"));
    command.args(["serve", "--dir"]).arg(d).args([
        "--http",
        &http.to_string(),
        "--mcs",
        &mcs.to_string(),
    ]);
    let mut daemon = Daemon::spawn("kindling serve", command, log)
        .unwrap_or_else(|e| panic!("{e}"))
        .terminate_on_drop();
    daemon
        .wait_ready("/healthz", Duration::from_secs(60), |_| {
            http_get(http, "/healthz").0 == 200
        })
        .unwrap_or_else(|e| panic!("{e}"));
    daemon
}

/// A machine's report to `POST /api/v1/events`: the status.
fn report(http: SocketAddr, mac: &str, token: &str, id: &str) -> u16 {
    let body = serde_json::json!({
        "mac": mac, "token": token, "stage": "fault-test", "result": id, "id": id,
    })
    .to_string();
    let Ok(mut stream) = TcpStream::connect_timeout(&http, Duration::from_secs(5)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    let request = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        http.ip(),
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The token a machine's pointer config carries.
fn machine_token(http: SocketAddr, mac: &str) -> String {
    let (status, body) = http_get(http, &format!("/ignition?mac={mac}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let pointer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    pointer["ignition"]["config"]["merge"][0]["httpHeaders"][1]["value"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The events of the log, in order, and its lines that are not one (torn).
fn read_log(d: &Path) -> (Vec<serde_json::Value>, Vec<String>) {
    let log = std::fs::read_to_string(d.join(".kindling/events.jsonl")).unwrap();
    let (mut events, mut torn) = (Vec::new(), Vec::new());
    for line in log.split_inclusive('\n') {
        match serde_json::from_str(line) {
            Ok(event) if line.ends_with('\n') => events.push(event),
            _ => torn.push(line.to_string()),
        }
    }
    (events, torn)
}

/// The ids of the events `GET /api/v1/events?since=0` streams (read for a moment).
fn streamed_ids(d: &Path, http: SocketAddr) -> Vec<u64> {
    let token = crate::serve::admin_token(d).unwrap();
    let out = Command::new("curl")
        .args(["-sN", "--max-time", "3", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://{http}/api/v1/events?since=0"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|id| id.parse().unwrap())
        .collect()
}

const WORKER0: &str = "52-54-00-7e-01-20";

/// `serve` on a full disk, then a read-only one: boot and Ignition are still served; event
/// writes fail, with one log line (not one per event) and /healthz degraded with the reason; a
/// report is not acknowledged. With room again, the events held in memory are written, the log
/// has no torn line, and reports are taken again.
#[test]
fn serve_on_a_full_or_read_only_disk_serves_boot_and_its_event_log_recovers_whole() {
    let test = "serve_on_a_full_or_read_only_disk_serves_boot_and_its_event_log_recovers_whole";
    let Some(disk) = Tmpfs::mount(test, "32m") else {
        return;
    };
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let mcs: SocketAddr = format!("127.0.0.1:{mcs_port}").parse().unwrap();
    let d = disk.path.join("site");
    std::fs::create_dir(&d).unwrap();
    demo_into(&d, http_port, mcs_port);
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    let logs = tempfile::tempdir().unwrap();
    let mut server = serve(&d, http, mcs, &logs.path().join("full.log"));
    let token = machine_token(http, WORKER0);
    assert_eq!(report(http, WORKER0, &token, "before"), 204);

    for (fault, error) in [
        ("full", "No space left on device"),
        ("read-only", "Read-only file system"),
    ] {
        let log_path = logs.path().join(format!("{fault}.log"));
        match fault {
            "full" => disk.fill(),
            _ => {
                // A file system with files open for writing cannot be remounted read-only: as
                // one the kernel made read-only would be, it is found so by a server (re)started
                // on it.
                drop(server);
                disk.remount("ro");
                server = serve(&d, http, mcs, &log_path);
            }
        }
        // Boot goes on, for many more events than the last page of the log has room for.
        for _ in 0..200 {
            assert_eq!(http_get(http, &format!("/ipxe?mac={WORKER0}")).0, 200);
            assert_eq!(http_get(http, &format!("/ignition?mac={WORKER0}")).0, 200);
        }
        let health = String::from_utf8(http_get(http, "/healthz").1).unwrap();
        assert!(
            health.starts_with("degraded: ")
                && health.contains("event log")
                && health.contains(error),
            "{fault}: {health}"
        );
        // Not acknowledged: the agent sends it again.
        assert_eq!(
            report(http, WORKER0, &token, &format!("{fault}-refused")),
            503
        );
        std::thread::sleep(Duration::from_secs(2));
        let log = std::fs::read_to_string(&log_path).unwrap();
        let said = log.matches("cannot be written").count();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains(" GET /")).collect();
        assert_eq!(
            said, 1,
            "{fault}: logged once, not per event or retry:\n{lines:#?}"
        );

        match fault {
            "full" => disk.free(),
            _ => disk.remount("rw"),
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(http, "/healthz").1 != b"ok\n" {
            assert!(
                Instant::now() < deadline,
                "{fault}: still degraded\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = server.log_when(|log| log.contains("is written again"));
        assert!(log.contains("is written again ("), "{log}");
        assert_eq!(
            report(http, WORKER0, &token, &format!("{fault}-after")),
            204
        );
    }

    // The log replays whole: the events of the faults (held, then written), the refused reports
    // not (their agents send them again), ids growing, and no torn line.
    let (events, torn) = read_log(&d);
    assert!(torn.is_empty(), "{torn:?}");
    let reports: Vec<&str> = events
        .iter()
        .filter(|e| e["stage"] == "fault-test")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(reports, ["before", "full-after", "read-only-after"]);
    let ipxe = events
        .iter()
        .filter(|e| e["stage"] == "ipxe" && e["machine"] == "worker0")
        .count();
    assert_eq!(ipxe, 400, "every boot request's event, none lost");
    let ids = streamed_ids(&d, http);
    assert_eq!(ids.len(), events.len());
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

/// `serve` killed with SIGKILL in the middle of its event writes, 100 times, while machines
/// boot and report: afterwards the log replays with no torn line, ids grow, and every report
/// that was acknowledged is in it.
#[test]
fn serve_killed_100_times_under_load_loses_no_acknowledged_report() {
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let mcs: SocketAddr = format!("127.0.0.1:{mcs_port}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo_into(d, http_port, mcs_port);
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    let log = d.join("serve.log");
    let mut acknowledged = BTreeSet::new();
    let mut token = None;
    for round in 0..100 {
        let mut server = serve(d, http, mcs, &log);
        let token = token
            .get_or_insert_with(|| machine_token(http, WORKER0))
            .clone();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let acked = std::thread::scope(|scope| {
            // Boot requests, each an event.
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    http_get(http, &format!("/ipxe?mac={WORKER0}"));
                }
            });
            let reports = scope.spawn(|| {
                let mut acked = Vec::new();
                for n in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("r{round}-{n}");
                    if report(http, WORKER0, &token, &id) == 204 {
                        acked.push(id);
                    }
                }
                acked
            });
            // Killed at a different moment each round.
            std::thread::sleep(Duration::from_millis(50 + (round * 37 % 200) as u64));
            let _ = server.child().kill();
            let _ = server.child().wait();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            reports.join().unwrap()
        });
        acknowledged.extend(acked);
    }
    assert!(
        acknowledged.len() > 100,
        "{} reports acknowledged",
        acknowledged.len()
    );

    // A restart replays the log: it serves, the stream's ids grow, and every acknowledged
    // report is there.
    // A kill in the middle of a write of many pages may tear its last line: the restart skips
    // it and starts the next on a line of its own.
    let server = serve(d, http, mcs, &log);
    let (events, torn) = read_log(d);
    eprintln!(
        "{} events, {} torn line(s) after 100 kills",
        events.len(),
        torn.len()
    );
    assert!(torn.len() <= 100, "{torn:?}");
    let kept: BTreeSet<String> = events
        .iter()
        .filter(|e| e["stage"] == "fault-test")
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = acknowledged.difference(&kept).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in the log: {missing:?}"
    );
    let ids = streamed_ids(d, http);
    assert_eq!(ids.len(), events.len(), "{}", server.log());
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}
