//! The client against a real etcd (Debian's etcd-server 3.4) with TLS and client certificates
//! on a loopback port: the gateway paths and JSON, etcd's refusals, TLS refusals, and bounded
//! waits when the cluster has no quorum.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kindling_etcd::{Client, ClientTls, EtcdError};
use kindling_pki::{Ca, KeyAlgorithm, LeafSpec, Usage};
use kindling_testkit::{Daemon, Proto, READY_TIMEOUT, StartError, port, retry};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a member certificate for 127.0.0.1, and a client certificate; and a second CA
    /// etcd does not trust.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        for (prefix, cn) in [("", "test-etcd-ca"), ("other-", "someone-else")] {
            let ca = Ca::generate(cn, KeyAlgorithm::default(), now, day).unwrap();
            write(&format!("{prefix}ca.crt"), &ca.cert_pem);
            let member = LeafSpec {
                common_name: "member".into(),
                organizations: vec![],
                dns_names: vec!["localhost".into()],
                ips: vec![IpAddr::from([127, 0, 0, 1])],
                usage: Usage::ServerAndClient,
            };
            let leaf = ca
                .issue(&member, KeyAlgorithm::default(), now, day)
                .unwrap();
            write(&format!("{prefix}member.crt"), &leaf.cert_pem);
            write(&format!("{prefix}member.key"), &leaf.key_pem);
            let client = LeafSpec::client("kube-apiserver-etcd-client", &[]);
            let leaf = ca
                .issue(&client, KeyAlgorithm::default(), now, day)
                .unwrap();
            write(&format!("{prefix}client.crt"), &leaf.cert_pem);
            write(&format!("{prefix}client.key"), &leaf.key_pem);
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tls(&self, prefix: &str) -> ClientTls {
        ClientTls::from_files(
            &self.path(&format!("{prefix}ca.crt")),
            &self.path(&format!("{prefix}client.crt")),
            &self.path(&format!("{prefix}client.key")),
        )
        .unwrap()
    }
}

fn have_etcd() -> bool {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "etcd is missing (test.sh installs etcd-server)"
        );
        eprintln!("skipping: etcd is not installed");
    }
    found
}

/// A one-member etcd on 127.0.0.1 with TLS from `pki`: (the process, its client and peer
/// ports). Ready when its own process listens on both ports and it answers `/health` over
/// TLS with this test's CA; started again on other ports when it does not.
fn start(pki: &Pki, data: &Path) -> (Daemon, u16, u16) {
    retry(3, || {
        let (client_port, peer_port) = (port(), port());
        let _ = std::fs::remove_dir_all(data);
        let client = format!("https://127.0.0.1:{client_port}");
        let peer = format!("https://127.0.0.1:{peer_port}");
        let p = |name: &str| pki.path(name).display().to_string();
        let mut command = Command::new("etcd");
        command
            .arg("--name=one")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=one={peer}"))
            .arg(format!("--trusted-ca-file={}", p("ca.crt")))
            .arg(format!("--cert-file={}", p("member.crt")))
            .arg(format!("--key-file={}", p("member.key")))
            .arg("--client-cert-auth=true")
            .arg(format!("--peer-trusted-ca-file={}", p("ca.crt")))
            .arg(format!("--peer-cert-file={}", p("member.crt")))
            .arg(format!("--peer-key-file={}", p("member.key")))
            .arg("--peer-client-cert-auth=true");
        let log = data.with_extension("log");
        let mut etcd = Daemon::spawn("etcd", command, &log)?;
        let health = Client::new(std::slice::from_ref(&client), &pki.tls(""))
            .map_err(|e| StartError::new(e.to_string()))?;
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        etcd.wait_listening(
            &[(at(client_port), Proto::Tcp), (at(peer_port), Proto::Tcp)],
            READY_TIMEOUT,
            |_| health.health(&client).is_ok(),
        )?;
        Ok((etcd, client_port, peer_port))
    })
}

#[test]
fn membership_health_and_refusals_against_real_etcd() {
    if !have_etcd() {
        return;
    }
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let (_etcd, client_port, peer_port) = start(&pki, &data.path().join("one"));
    let url = format!("https://127.0.0.1:{client_port}");
    // A dead endpoint first: the client goes on to the next.
    let dead = format!("https://127.0.0.1:{}", port());
    let client = Client::new(&[dead, url.clone()], &pki.tls("")).unwrap();
    let members = client.member_list().unwrap();
    assert_eq!(members.members.len(), 1);
    let one = members.by_name("one").unwrap();
    assert!(one.started() && client.is_healthy(one));
    assert_eq!(one.client_urls, std::slice::from_ref(&url));
    let status = client.status(&url).unwrap();
    assert!(status.version.starts_with("3."), "{status:?}");
    assert_eq!((status.member, status.leader), (one.id, Some(one.id)));

    let peer = format!("https://127.0.0.2:{}", port());
    let (added, after) = client.member_add(std::slice::from_ref(&peer)).unwrap();
    assert!(!added.started());
    assert_eq!(after.members.len(), 2);
    assert_eq!(
        after.initial_cluster("two", &peer),
        format!("one=https://127.0.0.1:{peer_port},two={peer}")
    );
    // Strict reconfiguration: no second add while the first added member has not started.
    let third = format!("https://127.0.0.3:{}", port());
    match client.member_add(&[third]) {
        Err(EtcdError::AllFailed(message)) => {
            assert!(message.contains("not enough started members"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    // Without quorum (one of two members never starts), a removal is not committed; the
    // client gives up within its timeouts instead of waiting for ever.
    let impatient = client
        .clone()
        .with_timeouts(Duration::from_secs(1), Duration::from_secs(2));
    let started = Instant::now();
    assert!(impatient.member_remove(added.id).is_err());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // TLS: a client that does not trust etcd's CA, and one etcd does not trust.
    let strangers = Client::new(std::slice::from_ref(&url), &pki.tls("other-")).unwrap();
    match strangers.member_list() {
        Err(EtcdError::Tls { endpoint, .. }) => assert_eq!(endpoint, url),
        other => panic!("{other:?}"),
    }
    let untrusted = ClientTls::from_files(
        &pki.path("ca.crt"),
        &pki.path("other-client.crt"),
        &pki.path("other-client.key"),
    )
    .unwrap();
    assert!(
        Client::new(std::slice::from_ref(&url), &untrusted)
            .unwrap()
            .member_list()
            .is_err()
    );
}

#[test]
fn unreadable_files_are_named() {
    let missing = Path::new("/nonexistent/ca.crt");
    let error = ClientTls::from_files(missing, missing, missing)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("/nonexistent/ca.crt"), "{error}");
}

/// Keys, transactions, leases and watches on a real three-member cluster, through the member
/// that answers: a watch resumed on another member after its own is killed misses nothing, and
/// without a quorum a write fails within the client's timeouts.
#[test]
fn keys_leases_and_watches_against_a_real_three_member_cluster() {
    use kindling_etcd::{Change, Compare, Op, Range, Txn};
    use kindling_testkit::{EtcdCluster, EtcdTls};
    if !have_etcd() {
        return;
    }
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let tls = EtcdTls {
        ca: pki.path("ca.crt"),
        cert: pki.path("member.crt"),
        key: pki.path("member.key"),
    };
    let mut cluster = EtcdCluster::start(&data.path().join("cluster"), 3, &tls);
    let client = Client::new(&cluster.client_urls(), &pki.tls("")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let first = client.put(b"/t/a", b"1", 0).await.unwrap();
        client.put(b"/t/b", b"2", 0).await.unwrap();
        client.put(b"/u", b"elsewhere", 0).await.unwrap();
        let a = client.get(b"/t/a").await.unwrap().unwrap();
        assert_eq!((a.value.as_slice(), a.create_revision), (&b"1"[..], first));
        assert!(client.get(b"/t/none").await.unwrap().is_none());
        let all = client.range(&Range::prefix("/t/")).await.unwrap();
        let keys: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_slice()).collect();
        assert_eq!(keys, [&b"/t/a"[..], b"/t/b"]);
        let one = client
            .range(&Range {
                limit: 1,
                keys_only: true,
                ..Range::prefix("/t/")
            })
            .await
            .unwrap();
        assert!(one.more && one.kvs.len() == 1 && one.kvs[0].value.is_empty());

        // Create-if-absent: the second is refused, and its failure branch reads the winner.
        let create = |value: &str| Txn {
            compare: vec![Compare::Created(b"/t/once".to_vec(), 0)],
            success: vec![Op::put("/t/once", value)],
            failure: vec![Op::Get(Range::key("/t/once"))],
        };
        let won = client.txn(&create("first")).await.unwrap();
        assert!(won.succeeded && won.ranges.is_empty());
        let lost = client.txn(&create("second")).await.unwrap();
        assert!(!lost.succeeded);
        assert_eq!(lost.ranges[0].kvs[0].value, b"first");
        assert_eq!(lost.ranges[0].kvs[0].mod_revision, won.revision);

        // A key on a lease lives as long as the lease.
        let lease = client.lease_grant(30).await.unwrap();
        assert_eq!(lease.ttl, 30);
        client.put(b"/t/leased", b"x", lease.id).await.unwrap();
        assert_eq!(
            client.get(b"/t/leased").await.unwrap().unwrap().lease,
            lease.id
        );
        assert!(client.lease_keep_alive(lease.id).await.unwrap().is_some());
        client.lease_revoke(lease.id).await.unwrap();
        assert!(client.get(b"/t/leased").await.unwrap().is_none());
        assert_eq!(client.lease_keep_alive(lease.id).await.unwrap(), None);

        // A watch from a past revision gives what happened since, then what happens next.
        let mut watch = client.watch(&Range::prefix("/t/"), first).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 5 {
            seen.extend(watch.next().await.unwrap().changes);
        }
        assert!(matches!(&seen[0], Change::Put(kv) if kv.key == b"/t/a"));
        assert!(
            matches!(&seen[4], Change::Delete(key, _) if key == b"/t/leased"),
            "{seen:?}"
        );
        client.delete(b"/t/b", None).await.unwrap();
        let deleted = watch.next().await.unwrap();
        let last = match &deleted.changes[..] {
            [Change::Delete(key, revision)] if key == b"/t/b" => *revision,
            other => panic!("{other:?}"),
        };
        drop(watch);

        // The member the client asks first dies: the watch made again from the revision
        // after the last one seen, on another member, misses nothing.
        let preferred = 0;
        cluster.kill(preferred);
        client.put(b"/t/c", b"3", 0).await.unwrap();
        let mut watch = client.watch(&Range::prefix("/t/"), last + 1).await.unwrap();
        let next = watch.next().await.unwrap();
        assert!(
            matches!(&next.changes[..], [Change::Put(kv)] if kv.key == b"/t/c"),
            "{next:?}"
        );
        drop(watch);

        // Two of three down: no quorum, and a write fails within the client's timeouts.
        let other = (0..3).find(|i| *i != preferred).unwrap();
        cluster.kill(other);
        let impatient = client
            .clone()
            .with_timeouts(Duration::from_secs(1), Duration::from_secs(2));
        let started = Instant::now();
        assert!(impatient.put(b"/t/d", b"4", 0).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
        // Back to a quorum: writes go through again.
        cluster.restart(other);
        cluster.wait_healthy_now();
        client.put(b"/t/d", b"4", 0).await.unwrap();
    });
}
