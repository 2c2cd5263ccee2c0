//! A real etcd cluster (Debian's etcd-server 3.4) of one or more members on loopback, with TLS
//! and client certificates: members can be killed with SIGKILL and started again on their own
//! data and ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Daemon, Proto, READY_TIMEOUT, StartError, port, retry};

/// The PEM files the members use: a CA, and a certificate for 127.0.0.1 that serves both as
/// server and peer certificate (and as the client certificate `etcdctl` checks health with).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl EtcdTls {
    /// Makes, in `dir`, a CA (`ca.crt`), a member certificate for 127.0.0.1 and localhost that
    /// is also a client certificate (`member.crt`, `member.key`), and a client certificate
    /// (`client.crt`, `client.key`).
    pub fn generate(dir: &Path) -> EtcdTls {
        use kindling_pki::{Ca, KeyAlgorithm, LeafSpec, Usage};
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).expect("writing the test etcd's PKI")
        };
        let ca =
            Ca::generate("test-etcd-ca", KeyAlgorithm::default(), now, day).expect("a test CA");
        write("ca.crt", &ca.cert_pem);
        let member = LeafSpec {
            common_name: "member".into(),
            organizations: vec![],
            dns_names: vec!["localhost".into()],
            ips: vec![std::net::IpAddr::from([127, 0, 0, 1])],
            usage: Usage::ServerAndClient,
        };
        let leaf = ca
            .issue(&member, KeyAlgorithm::default(), now, day)
            .expect("a member certificate");
        write("member.crt", &leaf.cert_pem);
        write("member.key", &leaf.key_pem);
        let client = LeafSpec::client("kindling-serve", &[]);
        let leaf = ca
            .issue(&client, KeyAlgorithm::default(), now, day)
            .expect("a client certificate");
        write("client.crt", &leaf.cert_pem);
        write("client.key", &leaf.key_pem);
        EtcdTls {
            ca: dir.join("ca.crt"),
            cert: dir.join("member.crt"),
            key: dir.join("member.key"),
        }
    }
}

/// The cluster's members; each is stopped when it is dropped.
pub struct EtcdCluster {
    dir: PathBuf,
    tls: EtcdTls,
    members: Vec<Member>,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    process: Option<Daemon>,
    /// How many times it was started: each life has its own log.
    lives: usize,
}

impl EtcdCluster {
    /// Starts `size` members under `dir` (data and logs), and waits until each is healthy.
    /// Started again on other ports when a start fails.
    pub fn start(dir: &Path, size: usize, tls: &EtcdTls) -> EtcdCluster {
        retry(3, || {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).map_err(|e| StartError::new(e.to_string()))?;
            let mut cluster = EtcdCluster {
                dir: dir.to_path_buf(),
                tls: tls.clone(),
                members: (0..size)
                    .map(|i| Member {
                        name: format!("etcd{i}"),
                        client_port: port(),
                        peer_port: port(),
                        process: None,
                        lives: 0,
                    })
                    .collect(),
            };
            for i in 0..size {
                cluster.spawn(i)?;
            }
            for i in 0..size {
                cluster.wait_member(i)?;
            }
            cluster.wait_healthy((0..size).collect())?;
            Ok(cluster)
        })
    }

    /// Every member's client URL, `https://127.0.0.1:<port>`.
    pub fn client_urls(&self) -> Vec<String> {
        (0..self.members.len())
            .map(|i| self.client_url(i))
            .collect()
    }

    pub fn client_url(&self, member: usize) -> String {
        format!("https://127.0.0.1:{}", self.members[member].client_port)
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.members[i].process.take() {
            let _ = process.child().kill();
            let _ = process.child().wait();
        }
    }

    /// Starts member `i` again, on its data and ports, and waits until it listens. (Healthy
    /// needs a quorum, which the caller may be taking away on purpose.)
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let started = self.spawn(i).and_then(|()| self.wait_member(i));
        if let Err(e) = started {
            panic!("restarting {}: {e}", self.members[i].name);
        }
    }

    /// Waits until every running member says it is healthy (it has a leader).
    pub fn wait_healthy_now(&mut self) {
        let running = (0..self.members.len())
            .filter(|i| self.members[*i].process.is_some())
            .collect();
        if let Err(e) = self.wait_healthy(running) {
            panic!("{e}");
        }
    }

    /// The log of member `i`'s current (or last) life.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    fn log_path(&self, i: usize) -> PathBuf {
        let member = &self.members[i];
        self.dir
            .join(format!("{}.{}.log", member.name, member.lives))
    }

    fn spawn(&mut self, i: usize) -> Result<(), StartError> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=https://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let member = &self.members[i];
        let client = format!("https://127.0.0.1:{}", member.client_port);
        let peer = format!("https://127.0.0.1:{}", member.peer_port);
        let (ca, cert, key) = (
            self.tls.ca.display(),
            self.tls.cert.display(),
            self.tls.key.display(),
        );
        let mut command = Command::new("etcd");
        command
            .arg(format!("--name={}", member.name))
            .arg(format!(
                "--data-dir={}",
                self.dir.join(&member.name).display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=kindling-test")
            .arg(format!("--trusted-ca-file={ca}"))
            .arg(format!("--cert-file={cert}"))
            .arg(format!("--key-file={key}"))
            .arg("--client-cert-auth=true")
            .arg(format!("--peer-trusted-ca-file={ca}"))
            .arg(format!("--peer-cert-file={cert}"))
            .arg(format!("--peer-key-file={key}"))
            .arg("--peer-client-cert-auth=true")
            // Faster elections than the defaults (100 ms, 1 s) would be flaky on a loaded
            // 2-core machine; these are the defaults.
            .arg("--heartbeat-interval=100")
            .arg("--election-timeout=1000");
        self.members[i].lives += 1;
        let log = self.log_path(i);
        let daemon = Daemon::spawn(&self.members[i].name, command, &log)?.terminate_on_drop();
        self.members[i].process = Some(daemon);
        Ok(())
    }

    fn wait_member(&mut self, i: usize) -> Result<(), StartError> {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let (client, peer) = (self.members[i].client_port, self.members[i].peer_port);
        let process = self.members[i]
            .process
            .as_mut()
            .ok_or_else(|| StartError::new("not running".into()))?;
        process.wait_listening(
            &[(at(client), Proto::Tcp), (at(peer), Proto::Tcp)],
            READY_TIMEOUT,
            |_| true,
        )
    }

    fn wait_healthy(&mut self, members: Vec<usize>) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for i in members {
            loop {
                if self.etcdctl_health(i) {
                    break;
                }
                if Instant::now() > deadline {
                    let process = self.members[i].process.as_ref();
                    return Err(match process {
                        Some(p) => p.failure("healthy", "etcdctl endpoint health failed"),
                        None => StartError::new(format!("{} is not running", i)),
                    });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    fn etcdctl_health(&self, i: usize) -> bool {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client_url(i)))
            .arg(format!("--cacert={}", self.tls.ca.display()))
            .arg(format!("--cert={}", self.tls.cert.display()))
            .arg(format!("--key={}", self.tls.key.display()))
            .args(["--command-timeout=2s", "endpoint", "health"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}
