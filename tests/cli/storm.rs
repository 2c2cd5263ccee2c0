//! A boot storm on highly available provisioning: 2,000 simulated machines boot at once through
//! the HAProxy `kindling create infra` writes, in front of three `kindling serve --store`
//! replicas on a three-member etcd (Debian's etcd-server 3.4), all on loopback. Mid-storm one
//! replica is killed with SIGKILL, then one etcd member; then both come back; and a new
//! revision is pushed. No machine may fail to boot, every machine's chain must come from one
//! revision, every report must be in the journal exactly once, and every replica must accept
//! every machine's token.
//!
//! Each machine walks the chain as the real firmware and Ignition would: `/boot.ipxe`, the
//! `/ipxe` script its chain line names, the pointer config its kernel arguments name, the pool
//! config the pointer names (over TLS, through the load balancer's 22623), then its agent's
//! report. Each step is tried as kindling's boot.ipxe tries its chain:
//! [`kindling_matchbox::BOOT_TRIES`] times, [`kindling_matchbox::BOOT_RETRY_SECONDS`] apart.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kindling_http::{Client, Target, Timeouts};
use kindling_testkit::{EtcdCluster, EtcdTls, Haproxy, port};

use crate::kindling;
use crate::serve::Server;

/// The machines that boot at once (workers), beside the bootstrap machine and three masters.
const MACHINES: usize = 2_000;
/// Machines booting at the same moment.
const CONCURRENCY: usize = 64;
/// The site's addresses: a /20 of loopback, so that the VIPs, the replicas and every machine
/// have addresses of their own on this host.
const NET: &str = "127.0.80";
const SERVER: &str = "127.0.80.2";
const REPLICAS: [&str; 3] = ["127.0.80.3", "127.0.80.4", "127.0.80.5"];
const API_INT: &str = "127.0.80.12";

/// The machine `i` (0: bootstrap, 1-3: masters, then workers): its name, MAC and address.
fn machine(i: usize) -> (String, String, String) {
    let host = 100 + i;
    (
        format!("node{i}"),
        format!("52:54:00:00:{:02x}:{:02x}", i >> 8, i & 255),
        format!("127.0.{}.{}", 80 + (host >> 8), host & 255),
    )
}

/// The cluster description of 2,004 machines, served at `http_port` behind the load balancer.
fn describe(dir: &Path, http_port: u16) {
    let ic = include_str!("../../examples/demo/install-config.yaml")
        .replace("cidr: 192.168.126.0/24", &format!("cidr: {NET}.0/20"))
        .replace("cidr: 10.128.0.0/14", "cidr: 10.128.0.0/12")
        .replace(
            "compute:\n  - name: worker\n    replicas: 3",
            &format!("compute:\n  - name: worker\n    replicas: {MACHINES}"),
        );
    assert!(ic.contains(&format!("replicas: {MACHINES}")));
    std::fs::write(dir.join("install-config.yaml"), ic).unwrap();
    let mut inv = format!(
        "apiVersion: kindling/v1alpha1\nkind: Inventory\n\
         provisioning:\n  serverURL: http://{SERVER}:{http_port}\n  mcsURL: https://{API_INT}:22623\n\
         \x20 replicas: [{}]\n\
         network: {{gateway: {NET}.1, dnsServers: [{NET}.2]}}\n\
         loadBalancer: {{apiVIP: {NET}.10, apiIntVIP: {API_INT}, ingressVIP: {NET}.11}}\nmachines:\n",
        REPLICAS.join(", ")
    );
    for i in 0..MACHINES + 4 {
        let role = match i {
            0 => "bootstrap",
            1..=3 => "master",
            _ => "worker",
        };
        let (name, mac, ip) = machine(i);
        inv.push_str(&format!(
            "  - {{name: {name}, role: {role}, mac: '{mac}', ip: {ip}}}\n"
        ));
    }
    std::fs::write(dir.join("inventory.yaml"), inv).unwrap();
    crate::seed_mirror(dir);
}

/// What one machine's boot saw.
#[derive(Debug, Default)]
struct Walk {
    /// The revision each URL of its chain named (`rev=`).
    revisions: Vec<u64>,
    /// Whether its iPXE script had the second revision's kernel argument.
    marked: bool,
    /// Tries beyond the first, over all steps.
    retries: u32,
}

/// The boot storm's client side.
struct Storm {
    http: Client,
    https: Client,
    retries: AtomicUsize,
}

impl Storm {
    /// GET `url` (absolute); the body of a 200, tried as boot.ipxe tries.
    async fn get(&self, url: &str, walk: &mut Walk) -> Result<String, String> {
        let (tls, rest) = match url.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            _ => return Err(format!("not an http(s) URL: {url}")),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let target = Target::from_authority(authority, if tls { 443 } else { 80 })
            .ok_or_else(|| format!("no host in {url}"))?;
        let client = if tls { &self.https } else { &self.http };
        let body = self
            .tried(walk, || async {
                match client.get_async(&target, path).await {
                    Ok(r) if r.status == 200 => Ok(r.body),
                    Ok(r) => Err(format!(
                        "HTTP {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    )),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `once` until it succeeds, [`kindling_matchbox::BOOT_TRIES`] times at most,
    /// [`kindling_matchbox::BOOT_RETRY_SECONDS`] apart: as boot.ipxe tries its chain.
    async fn tried<T, F: Future<Output = Result<T, String>>>(
        &self,
        walk: &mut Walk,
        mut once: impl FnMut() -> F,
    ) -> Result<T, String> {
        let mut last = String::new();
        for attempt in 0..kindling_matchbox::BOOT_TRIES {
            if attempt > 0 {
                walk.retries += 1;
                self.retries.fetch_add(1, Ordering::Relaxed);
                let pause = kindling_matchbox::BOOT_RETRY_SECONDS.into();
                tokio::time::sleep(Duration::from_secs(pause)).await;
            }
            match once().await {
                Ok(done) => return Ok(done),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// One machine's boot, and its agent's report.
    async fn boot(&self, vip: &str, i: usize) -> Result<Walk, String> {
        let (name, mac, _) = machine(i);
        let hyphens = mac.replace(':', "-");
        let mut walk = Walk::default();
        let boot = self.get(&format!("{vip}/boot.ipxe"), &mut walk).await?;
        let chain = boot
            .lines()
            .find_map(|l| l.strip_prefix("chain "))
            .and_then(|l| l.split_whitespace().next())
            .ok_or_else(|| format!("no chain line in {boot}"))?
            .replace("${mac:hexhyp}", &hyphens)
            .replace("${uuid}", "")
            .replace("${hostname}", "")
            .replace("${serial}", "")
            .replace("${buildarch:uristring}", "x86_64");
        walk.revisions.push(rev(&chain)?);
        let script = self.get(&chain, &mut walk).await?;
        walk.marked = script.contains("kindling.storm=revision2");
        let ignition = script
            .split_whitespace()
            .find_map(|a| a.strip_prefix("coreos.inst.ignition_url="))
            .ok_or_else(|| format!("{name}: no Ignition URL in {script}"))?
            .to_string();
        walk.revisions.push(rev(&ignition)?);
        let token = value(&ignition, "token").ok_or("no token")?.to_string();
        let pointer = self.get(&ignition, &mut walk).await?;
        let pointer: serde_json::Value =
            serde_json::from_str(&pointer).map_err(|e| format!("{name}: pointer: {e}"))?;
        let source = pointer["ignition"]["config"]["merge"][0]["source"]
            .as_str()
            .ok_or_else(|| format!("{name}: no merge source in {pointer}"))?;
        walk.revisions.push(rev(source)?);
        let config = self
            .get(&format!("{source}&mac={hyphens}&token={token}"), &mut walk)
            .await?;
        if !config.contains(&format!("{name}.demo.example.localdomain")) {
            return Err(format!("{name}: the config is not its own"));
        }
        let report = serde_json::json!({
            "mac": mac, "token": token, "stage": "storm: booted", "result": "done",
            "id": format!("boot-{name}"),
        });
        self.report(vip, &report, &mut walk).await?;
        Ok(walk)
    }

    async fn report(
        &self,
        vip: &str,
        report: &serde_json::Value,
        walk: &mut Walk,
    ) -> Result<(), String> {
        let authority = vip.trim_start_matches("http://");
        let target = Target::from_authority(authority, 80).ok_or("no VIP")?;
        let body = report.to_string().into_bytes();
        self.tried(walk, || async {
            match self
                .http
                .post_json_async(&target, "/api/v1/events", body.clone())
                .await
            {
                Ok(r) if r.status == 204 => Ok(()),
                Ok(r) => Err(format!("report: HTTP {}", r.status)),
                Err(e) => Err(format!("report: {e}")),
            }
        })
        .await
    }
}

fn value<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
}

fn rev(url: &str) -> Result<u64, String> {
    value(url, "rev")
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| format!("no revision in {url}"))
}

#[test]
fn a_boot_storm_through_haproxy_survives_a_dead_replica_and_a_dead_etcd_member() {
    const TEST: &str =
        "a_boot_storm_through_haproxy_survives_a_dead_replica_and_a_dead_etcd_member";
    for program in ["etcd", "haproxy"] {
        if !kindling_testkit::have(program) {
            assert!(std::env::var_os("CI").is_none(), "{program} is missing");
            eprintln!("SKIPPED {TEST}: {program} is not installed");
            return;
        }
    }
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let pki = s.join("etcd-pki");
    std::fs::create_dir_all(&pki).unwrap();
    let tls = EtcdTls::generate(&pki);
    let mut etcd = EtcdCluster::start(&s.join("etcd"), 3, &tls);
    let hosts: Vec<String> = etcd
        .client_urls()
        .iter()
        .map(|u| u.trim_start_matches("https://").to_string())
        .collect();
    let p = |name: &str| pki.join(name).display().to_string();
    let store_args = [
        "--store".to_string(),
        format!("etcd://{}", hosts.join(",")),
        "--etcd-ca".into(),
        p("ca.crt"),
        "--etcd-cert".into(),
        p("client.crt"),
        "--etcd-key".into(),
        p("client.key"),
    ];

    // The site: its description, configs and load balancer, pushed as revision 1.
    let assets = s.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    let http_port = port();
    describe(&assets, http_port);
    let a = assets.to_str().unwrap();
    kindling(&["create", "ignition-configs", "--dir", a]).expect(0);
    kindling(&["create", "infra", "--dir", a]).expect(0);
    // Revision 2, made now and pushed mid-storm: the machines get another kernel argument.
    let assets2 = s.join("assets2");
    let copied = std::process::Command::new("cp")
        .args(["-a", a, assets2.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    let inventory = assets2.join("inventory.yaml");
    let text = std::fs::read_to_string(&inventory).unwrap();
    let edited = text.replace(
        "  replicas: [",
        "  kernelArgs: [kindling.storm=revision2]\n  replicas: [",
    );
    assert_ne!(text, edited);
    std::fs::write(&inventory, edited).unwrap();
    let a2 = assets2.to_str().unwrap();
    kindling(&["create", "ignition-configs", "--dir", a2]).expect(0);
    let push = |dir: &str| {
        let shared = s.join("shared");
        let mut args = vec![
            "store",
            "push",
            "--dir",
            dir,
            "--blobs-to",
            shared.to_str().unwrap(),
        ];
        args.extend(store_args.iter().map(String::as_str));
        let run = kindling(&args);
        run.expect(0);
        run.stdout()
    };
    let started = Instant::now();
    let first = push(a);
    let pushed_in = started.elapsed();
    assert!(first.starts_with("revision 1:"), "{first}");

    let generated = std::fs::read_to_string(assets.join("infra/haproxy.cfg")).unwrap();
    let stats_port = port();
    let config = s.join("haproxy.cfg");
    // Without the ingress front ends: their 4,000 health checks of workers that do not exist
    // would only load the machine. What the machines meet (boot and 22623) is as generated.
    let ingress = generated
        .find("\n# Ingress (*.apps)")
        .expect("the ingress sections close the file");
    assert!(
        generated
            .find("frontend provisioning")
            .is_some_and(|at| at < ingress)
    );
    let config_text = Haproxy::with_stats_port(&generated[..ingress], stats_port);
    std::fs::write(&config, config_text).unwrap();

    // Made by the first push; every replica serves it.
    let admin = crate::serve::admin_token(&assets);
    assert!(admin.is_some(), "store push made the admin token");
    let replica = |i: usize| {
        let dir = s.join(format!("replica{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let addr = |port| format!("{}:{port}", REPLICAS[i]).parse().unwrap();
        let mut extra: Vec<&str> = store_args.iter().map(String::as_str).collect();
        let shared = s.join("shared");
        let shared = shared.to_str().unwrap().to_string();
        extra.extend(["--blobs-from", &shared]);
        let mut server = Server::start_at(&dir, addr(http_port), addr(22623), &extra);
        server.admin = admin.clone();
        server
    };
    let mut replicas: Vec<Server> = (0..3).map(replica).collect();
    let haproxy = Haproxy::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let up = || {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{stats_port}/;csv")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("provisioning,replica") && l.contains(",UP,"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while up() < 3 {
        assert!(
            Instant::now() < deadline,
            "the replicas never came UP:\n{}",
            haproxy.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The storm, with the kills and the push on the side as it goes.
    let ca = std::fs::read(assets.join("tls/root-ca.crt")).unwrap();
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        exchange: Duration::from_secs(30),
    };
    let storm = Arc::new(Storm {
        http: Client::plain(timeouts),
        https: Client::new(
            kindling_http::Tls::Roots {
                ca_pem: ca,
                client_identity: None,
            },
            timeouts,
        )
        .unwrap(),
        retries: AtomicUsize::new(0),
    });
    let done = Arc::new(AtomicUsize::new(0));
    let vip = format!("http://{SERVER}:{http_port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let wave = |machines: std::ops::Range<usize>| {
        let (storm, done, vip) = (storm.clone(), done.clone(), vip.clone());
        runtime.spawn(async move {
            let mut running = tokio::task::JoinSet::new();
            let mut walks = BTreeMap::new();
            let mut machines = machines.peekable();
            while machines.peek().is_some() || !running.is_empty() {
                while running.len() < CONCURRENCY
                    && let Some(i) = machines.next()
                {
                    let (storm, vip) = (storm.clone(), vip.clone());
                    running.spawn(async move { (i, storm.boot(&vip, i).await) });
                }
                if let Some(Ok((i, walk))) = running.join_next().await {
                    walks.insert(i, walk);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            walks
        })
    };
    let wait_for = |count: usize| {
        while done.load(Ordering::Relaxed) < count {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // The first half boots through a replica's death, a push, an etcd member's death, and
    // both coming back.
    let half = MACHINES / 2;
    let first_wave = wave(4..4 + half);
    wait_for(half / 5);
    replicas[0].kill();
    wait_for(half * 2 / 5);
    let second = push(a2);
    let pushed = Instant::now();
    assert!(second.starts_with("revision 2:"), "{second}");
    // The live replicas take it up while the storm goes on.
    let watchers: Vec<_> = replicas[1..]
        .iter()
        .map(|server| {
            let http = server.http();
            std::thread::spawn(move || {
                while pushed.elapsed() < Duration::from_secs(60) {
                    let (_, boot) = crate::serve::http_get(http, "/boot.ipxe");
                    if String::from_utf8_lossy(&boot).contains("&rev=2") {
                        return Some(pushed.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                None
            })
        })
        .collect();
    wait_for(half * 3 / 5);
    etcd.kill(0);
    wait_for(half * 4 / 5);
    replicas[0] = replica(0);
    etcd.restart(0);
    let mut walks = runtime.block_on(first_wave).unwrap();
    let switched: Vec<Duration> = watchers
        .into_iter()
        .map(|w| {
            w.join()
                .unwrap()
                .expect("a replica never took revision 2 up")
        })
        .collect();
    // The replica that came back serves revision 2 too.
    let (_, boot) = crate::serve::http_get(replicas[0].http(), "/boot.ipxe");
    assert!(String::from_utf8_lossy(&boot).contains("&rev=2"));
    // The second half boots on revision 2.
    walks.extend(runtime.block_on(wave(4 + half..4 + MACHINES)).unwrap());
    let storm_time = started.elapsed();
    eprintln!(
        "{MACHINES} machines in {storm_time:?} (revision 1 pushed in {pushed_in:?}; every replica served revision 2 {switched:?} after its push, in a debug build mid-storm); {} tries again",
        storm.retries.load(Ordering::Relaxed)
    );

    // No machine failed, and each machine's chain came from one revision, with that revision's
    // script.
    let failed: Vec<String> = walks
        .iter()
        .filter_map(|(i, w)| w.as_ref().err().map(|e| format!("node{i}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {MACHINES} machines failed to boot, e.g. {:?}\n{}",
        failed.len(),
        &failed[..failed.len().min(5)],
        haproxy.log()
    );
    let mut on = BTreeMap::new();
    for (i, walk) in &walks {
        let walk = walk.as_ref().unwrap();
        let first = walk.revisions[0];
        assert!(
            walk.revisions.iter().all(|r| *r == first),
            "node{i} mixed revisions: {:?}",
            walk.revisions
        );
        assert_eq!(
            walk.marked,
            first == 2,
            "node{i}'s script is not revision {first}'s"
        );
        *on.entry(first).or_insert(0) += 1;
    }
    let late = walks
        .range(4 + half..)
        .filter(|(_, w)| w.as_ref().is_ok_and(|w| w.revisions[0] != 2))
        .count();
    assert_eq!(
        late, 0,
        "machines that began after every replica took revision 2 up"
    );

    // Every report is in the journal exactly once, as every replica shows it.
    let reports = |server: &Server| -> BTreeMap<String, usize> {
        let out = std::process::Command::new("curl")
            .args(["-sN", "--max-time", "5", "-H", "Last-Event-ID: 0"])
            .args(["-H", &server.bearer()])
            .arg(format!("{}/api/v1/events", server_url(server)))
            .output()
            .unwrap();
        let mut counts = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let event: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
            if event["stage"] == "storm: booted" {
                *counts
                    .entry(event["machine"].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
        }
        counts
    };
    for server in &replicas {
        let mut counts = reports(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        while counts.len() < MACHINES && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            counts = reports(server);
        }
        assert_eq!(
            counts.len(),
            MACHINES,
            "machines with a report on a replica"
        );
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
        assert!(twice.is_empty(), "reports not recorded once: {twice:?}");
    }

    // Every replica accepts every machine's token (one key, in the store).
    let https = &storm.https;
    runtime.block_on(async {
        for i in (4..MACHINES + 4).step_by(97) {
            let (_, mac, _) = machine(i);
            let hyphens = mac.replace(':', "-");
            let mut walk = Walk::default();
            let script = storm
                .get(&format!("{vip}/ipxe?mac={hyphens}"), &mut walk)
                .await
                .unwrap();
            let token = value(
                script
                    .split_whitespace()
                    .find_map(|a| a.strip_prefix("coreos.inst.ignition_url="))
                    .unwrap(),
                "token",
            )
            .unwrap()
            .to_string();
            for address in REPLICAS {
                // Asked as the load balancer's address, which the certificate names.
                let addr = format!("{address}:22623").parse().unwrap();
                let target = Target::at(addr, API_INT);
                let answer = https
                    .get_async(
                        &target,
                        &format!("/config/worker?mac={hyphens}&token={token}"),
                    )
                    .await;
                let status = answer.map(|r| r.status).unwrap_or(0);
                assert_eq!(status, 200, "node{i}'s token on {address}");
            }
        }
    });
    eprintln!("machines by the revision they booted on: {on:?}");

    // doctor sees three healthy replicas on revision 2, and the store's three members; then
    // one replica dies, and doctor names it.
    let doctor = || {
        let mut args = vec!["doctor", "--dir", a, "--area", "provisioning", "--json"];
        args.extend(store_args.iter().map(String::as_str));
        let run = kindling(&args);
        let report: serde_json::Value = serde_json::from_str(&run.stdout())
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout(), run.stderr()));
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                let check = f["check"].as_str().unwrap();
                check.starts_with("provisioning.replica") || check.starts_with("provisioning.store")
            })
            .map(|f| {
                format!(
                    "{} {} {}: {}",
                    f["severity"], f["check"], f["subject"], f["what"]
                )
            })
            .collect::<Vec<String>>()
    };
    let found = doctor();
    let healthy = |check: &str| {
        found
            .iter()
            .filter(|f| f.contains(check) && f.starts_with("\"ok\""))
            .count()
    };
    assert_eq!(healthy("\"provisioning.replica\""), 3, "{found:#?}");
    assert_eq!(healthy("\"provisioning.store-member\""), 3, "{found:#?}");
    assert!(
        found
            .iter()
            .any(|f| f.contains("\"provisioning.store\"") && f.contains("revision 2:")),
        "{found:#?}"
    );
    assert!(
        !found.iter().any(|f| f.contains("replica-revision")),
        "{found:#?}"
    );
    // FleetLock on two replicas counts one set of reboot slots, the store's: the worker pool's
    // one slot (its default max-unavailable), taken through one replica, is held on the other,
    // and given back through the other, it can be taken through the first again.
    let fleetlock = |replica: usize, machine: usize, step: &str| {
        let (name, _, ip) = crate::storm::machine(machine);
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--interface",
                &ip,
            ])
            .args(["-H", "fleet-lock-protocol: true", "--data"])
            .arg(format!(
                r#"{{"client_params":{{"id":"{name}","group":"worker"}}}}"#
            ))
            .arg(format!(
                "http://{}:{http_port}/v1/{step}",
                REPLICAS[replica]
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(fleetlock(0, 4, "pre-reboot"), "200");
    assert_eq!(fleetlock(1, 5, "pre-reboot"), "409", "the slot is held");
    assert_eq!(fleetlock(1, 4, "steady-state"), "200");
    assert_eq!(fleetlock(0, 5, "pre-reboot"), "200");

    replicas[2].kill();
    let found = doctor();
    assert!(
        found.iter().any(|f| f.starts_with("\"error\"")
            && f.contains(&format!("{}:{http_port}", REPLICAS[2]))
            && f.contains("no answer")),
        "{found:#?}"
    );
}

fn server_url(server: &Server) -> String {
    format!("http://{}", server.http())
}
