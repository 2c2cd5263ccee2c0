//! The approval rules against forged requests: real PEM CSRs (rcgen) for right and wrong
//! subjects and SANs, judged by one pass against the fake API server.

use std::net::IpAddr;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use serde_json::json;

use super::*;
use crate::fake::FakeApiServer;

const TOKEN_ID: &str = "abcdef";
const CLIENT: &[&str] = &["digital signature", "key encipherment", "client auth"];
const SERVING: &[&str] = &["digital signature", "key encipherment", "server auth"];

/// A PEM CSR with the given subject (CN, then each O) and SANs.
fn pem(cn: &str, orgs: &[&str], dns: &[&str], ips: &[&str]) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    for o in orgs {
        name.push(DnType::OrganizationName, *o);
    }
    params.distinguished_name = name;
    params.subject_alt_names = dns
        .iter()
        .map(|d| SanType::DnsName((*d).try_into().unwrap()))
        .chain(
            ips.iter()
                .map(|ip| SanType::IpAddress(ip.parse::<IpAddr>().unwrap())),
        )
        .collect();
    params
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
        .into_bytes()
}

fn node(name: &str) -> Vec<u8> {
    pem(&format!("system:node:{name}"), &["system:nodes"], &[], &[])
}

fn put_csr(
    fake: &FakeApiServer,
    name: &str,
    signer: &str,
    user: &str,
    usages: &[&str],
    request: Vec<u8>,
) {
    let csr = CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request),
            signer_name: signer.into(),
            username: Some(user.into()),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        status: None,
    };
    fake.put(serde_json::to_value(csr).unwrap());
}

fn bootstrap() -> String {
    format!("system:bootstrap:{TOKEN_ID}")
}

fn policy() -> Policy {
    Policy::new(&crate::demo(), TOKEN_ID)
}

fn conditions(fake: &FakeApiServer, name: &str) -> serde_json::Value {
    fake.get(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        None,
        name,
    )
    .unwrap()["status"]["conditions"]
        .clone()
}

/// name, signer, requestor, usages, PEM request.
type Case<'a> = (&'a str, &'a str, String, &'a [&'a str], Vec<u8>);

#[tokio::test]
async fn only_what_an_inventory_machine_legitimately_asks_for_is_approved() {
    let fake = FakeApiServer::new();
    fake.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "master0"}}));
    let fqdn = "worker1.demo.example.localdomain";
    let b = bootstrap();
    let cases: Vec<Case> = vec![
        // The legitimate ones.
        (
            "new-worker0",
            CLIENT_SIGNER,
            b.clone(),
            CLIENT,
            node("worker0"),
        ),
        (
            "renew-master0",
            CLIENT_SIGNER,
            "system:node:master0".into(),
            CLIENT,
            node("master0"),
        ),
        (
            "serving-worker1",
            SERVING_SIGNER,
            "system:node:worker1".into(),
            SERVING,
            pem(
                "system:node:worker1",
                &["system:nodes"],
                &["worker1", fqdn],
                &["192.168.126.121"],
            ),
        ),
        // Forgeries.
        (
            "not-in-inventory",
            CLIENT_SIGNER,
            b.clone(),
            CLIENT,
            node("intruder"),
        ),
        (
            "foreign-dns-san",
            SERVING_SIGNER,
            "system:node:worker1".into(),
            SERVING,
            pem(
                "system:node:worker1",
                &["system:nodes"],
                &["worker1", "api.demo.example.localdomain"],
                &[],
            ),
        ),
        (
            "foreign-ip-san",
            SERVING_SIGNER,
            "system:node:worker1".into(),
            SERVING,
            pem(
                "system:node:worker1",
                &["system:nodes"],
                &["worker1"],
                &["192.168.126.10"],
            ),
        ),
        (
            "wrong-signer",
            "kubernetes.io/kube-apiserver-client",
            b.clone(),
            CLIENT,
            node("worker2"),
        ),
        (
            "renames-itself",
            CLIENT_SIGNER,
            "system:node:worker0".into(),
            CLIENT,
            node("worker1"),
        ),
        (
            "serves-another",
            SERVING_SIGNER,
            "system:node:worker0".into(),
            SERVING,
            pem("system:node:worker1", &["system:nodes"], &["worker1"], &[]),
        ),
        (
            "random-user",
            CLIENT_SIGNER,
            "alice".into(),
            CLIENT,
            node("worker2"),
        ),
        (
            "other-cluster-token",
            CLIENT_SIGNER,
            "system:bootstrap:zzzzzz".into(),
            CLIENT,
            node("worker2"),
        ),
        (
            "no-organization",
            CLIENT_SIGNER,
            b.clone(),
            CLIENT,
            pem("system:node:worker2", &[], &[], &[]),
        ),
        (
            "wrong-organization",
            CLIENT_SIGNER,
            b.clone(),
            CLIENT,
            pem("system:node:worker2", &["system:masters"], &[], &[]),
        ),
        ("extra-subject", CLIENT_SIGNER, b.clone(), CLIENT, {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, "system:node:worker2");
            params
                .distinguished_name
                .push(DnType::OrganizationName, "system:nodes");
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, "admins");
            params
                .serialize_request(&key)
                .unwrap()
                .pem()
                .unwrap()
                .into_bytes()
        }),
        (
            "node-exists",
            CLIENT_SIGNER,
            b.clone(),
            CLIENT,
            node("master0"),
        ),
        (
            "serving-from-token",
            SERVING_SIGNER,
            b.clone(),
            SERVING,
            pem("system:node:worker2", &["system:nodes"], &["worker2"], &[]),
        ),
        (
            "client-with-sans",
            CLIENT_SIGNER,
            b.clone(),
            CLIENT,
            pem("system:node:worker2", &["system:nodes"], &["worker2"], &[]),
        ),
        (
            "server-auth-client",
            CLIENT_SIGNER,
            b.clone(),
            &["digital signature", "client auth", "server auth"],
            node("worker2"),
        ),
        (
            "not-a-request",
            CLIENT_SIGNER,
            b.clone(),
            CLIENT,
            b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n".to_vec(),
        ),
    ];
    for (name, signer, user, usages, request) in cases {
        put_csr(&fake, name, signer, &user, usages, request);
    }
    let outcomes = approve_pending(&fake.client(), &policy()).await.unwrap();
    let by_name: BTreeMap<&str, &Decision> = outcomes
        .iter()
        .map(|o| (o.csr.as_str(), &o.decision))
        .collect();
    let refused = |name: &str| match by_name[name] {
        Decision::Refuse(reason) => reason.clone(),
        other => panic!("{name}: expected a refusal, got {other:?}"),
    };
    assert_eq!(
        by_name["new-worker0"],
        &Decision::Approve(Rule::NewNodeClient)
    );
    assert_eq!(
        by_name["renew-master0"],
        &Decision::Approve(Rule::ClientRenewal)
    );
    assert_eq!(
        by_name["serving-worker1"],
        &Decision::Approve(Rule::Serving)
    );
    for (name, reason) in [
        (
            "not-in-inventory",
            "\"intruder\" is not a machine in the inventory",
        ),
        (
            "foreign-dns-san",
            "SAN DNS:api.demo.example.localdomain is not worker1's name or FQDN",
        ),
        (
            "foreign-ip-san",
            "SAN IP:192.168.126.10 is not worker1's address (192.168.126.121)",
        ),
        (
            "wrong-signer",
            "signer \"kubernetes.io/kube-apiserver-client\" is not a kubelet's",
        ),
        (
            "renames-itself",
            "node worker0 asks for a certificate of node worker1",
        ),
        (
            "serves-another",
            "node worker0 asks for a serving certificate of node worker1",
        ),
        (
            "random-user",
            "requested by \"alice\", neither this cluster's bootstrap token nor node worker2 itself",
        ),
        (
            "other-cluster-token",
            "requested with bootstrap token \"zzzzzz\", not this cluster's (\"abcdef\")",
        ),
        (
            "no-organization",
            "the subject's organization is [], not exactly [\"system:nodes\"]",
        ),
        (
            "wrong-organization",
            "the subject's organization is [\"system:masters\"], not exactly [\"system:nodes\"]",
        ),
        (
            "extra-subject",
            "the subject holds attributes other than CN and O",
        ),
        ("node-exists", "a Node named master0 exists already"),
        (
            "serving-from-token",
            "a serving certificate must be requested by the node itself (system:node:worker2)",
        ),
        (
            "client-with-sans",
            "a client certificate request must not carry subject alternative names",
        ),
        ("server-auth-client", "spec.usages asks for \"server auth\""),
        ("not-a-request", "spec.request"),
    ] {
        let got = refused(name);
        assert!(
            got.contains(reason),
            "{name}: reason {got:?} lacks {reason:?}"
        );
        assert!(conditions(&fake, name).is_null(), "{name} was changed");
    }
    for name in ["new-worker0", "renew-master0", "serving-worker1"] {
        let conditions = conditions(&fake, name);
        assert_eq!(conditions[0]["type"], "Approved", "{name}");
        assert_eq!(conditions[0]["status"], "True");
        assert_eq!(conditions[0]["reason"], APPROVAL_REASON);
    }
    let approvals = fake
        .writes()
        .iter()
        .filter(|(m, p)| m == "PUT" && p.ends_with("/approval"))
        .count();
    assert_eq!(approvals, 3, "{:?}", fake.writes());

    // A second pass finds them decided, and writes nothing.
    let again = approve_pending(&fake.client(), &policy()).await.unwrap();
    assert!(again.iter().any(
        |o| o.csr == "new-worker0" && o.decision == Decision::AlreadyDecided("Approved".into())
    ));
    let approvals = fake
        .writes()
        .iter()
        .filter(|(m, p)| m == "PUT" && p.ends_with("/approval"))
        .count();
    assert_eq!(approvals, 3);
}

#[test]
fn a_second_organization_is_refused() {
    // rcgen keeps one value per attribute type, so this subject is built by hand.
    let request = Request {
        common_names: vec!["system:node:worker0".into()],
        organizations: vec!["system:nodes".into(), "system:masters".into()],
        other_subject: 0,
        dns: vec![],
        ips: vec![],
        other_sans: 0,
    };
    assert_eq!(
        node_subject(&request).unwrap_err(),
        "the subject's organization is [\"system:nodes\", \"system:masters\"], not exactly [\"system:nodes\"]"
    );
}

#[test]
fn a_request_whose_signature_does_not_verify_is_refused() {
    let good = String::from_utf8(node("worker0")).unwrap();
    let body: String = good.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let forged = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    );
    let csr = Csr {
        name: "forged".into(),
        signer: CLIENT_SIGNER.into(),
        requestor: bootstrap(),
        usages: CLIENT.iter().map(|u| u.to_string()).collect(),
        request: forged.into_bytes(),
        decided: None,
    };
    assert_eq!(
        decide(&csr, &policy(), |_| false),
        Decision::Refuse("the request's signature does not verify with its own key".into())
    );
}

#[tokio::test]
async fn the_watcher_approves_a_csr_that_arrives_later_and_stops_when_told() {
    let fake = FakeApiServer::new();
    let client = fake.client();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        watch(&client, &policy(), async {
            let _ = stop_rx.await;
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    put_csr(
        &fake,
        "late-worker2",
        CLIENT_SIGNER,
        &bootstrap(),
        CLIENT,
        node("worker2"),
    );
    put_csr(
        &fake,
        "late-intruder",
        CLIENT_SIGNER,
        &bootstrap(),
        CLIENT,
        node("intruder"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while conditions(&fake, "late-worker2").is_null() {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher did not approve late-worker2"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(conditions(&fake, "late-intruder").is_null());
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

proptest::proptest! {
    /// `spec.request` comes from whoever created the CSR: any bytes, PEM-wrapped or not, are
    /// judged without panicking, and never approved.
    #[test]
    fn any_request_bytes_are_refused_without_panicking(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        wrap in proptest::bool::ANY,
    ) {
        use base64::Engine as _;
        let request = if wrap {
            format!(
                "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            )
            .into_bytes()
        } else {
            bytes
        };
        let csr = Csr {
            name: "fuzz".into(),
            signer: CLIENT_SIGNER.into(),
            requestor: bootstrap(),
            usages: CLIENT.iter().map(|u| u.to_string()).collect(),
            request,
            decided: None,
        };
        let decision = decide(&csr, &policy(), |_| false);
        proptest::prop_assert!(matches!(decision, Decision::Refuse(_)), "{:?}", decision);
    }
}

/// `create` extends the bootstrap token's expiration in the assets while the install runs; the
/// approver carries it to the cluster's Secret, and never brings back a Secret that is gone.
#[tokio::test]
async fn the_approver_carries_a_later_token_expiration_to_the_cluster_and_never_resurrects_it() {
    let fake = FakeApiServer::new();
    let secret = |expiration: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("bootstrap-token-{TOKEN_ID}"), "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {"token-id": TOKEN_ID, "expiration": expiration},
        })
    };
    let stored = |fake: &FakeApiServer| {
        fake.get(
            "v1",
            "Secret",
            Some("kube-system"),
            &format!("bootstrap-token-{TOKEN_ID}"),
        )
    };
    fake.put(secret("2026-12-08T10:00:00Z"));
    let client = fake.client();

    // The assets say later: extended.
    let later = policy().with_join_token_secret(secret("2026-12-08T23:00:00Z"));
    super::approve_pending(&client, &later).await.unwrap();
    assert_eq!(
        stored(&fake).unwrap()["stringData"]["expiration"],
        "2026-12-08T23:00:00Z"
    );
    // The assets say earlier (an old directory): the cluster's later one stays.
    let earlier = policy().with_join_token_secret(secret("2026-12-08T01:00:00Z"));
    super::approve_pending(&client, &earlier).await.unwrap();
    assert_eq!(
        stored(&fake).unwrap()["stringData"]["expiration"],
        "2026-12-08T23:00:00Z"
    );
    // Deleted (install-complete): left deleted.
    fake.delete(
        "v1",
        "Secret",
        Some("kube-system"),
        &format!("bootstrap-token-{TOKEN_ID}"),
    );
    super::approve_pending(&client, &later).await.unwrap();
    assert!(
        stored(&fake).is_none(),
        "the approver brought the join token back"
    );
}

/// A Node cannot give itself its role (NodeRestriction): the approver does, with the
/// inventory's labels, leaving labels it did not set alone; nodes that are no inventory machine,
/// and nodes already labelled, are not touched.
#[tokio::test]
async fn the_approver_gives_registered_nodes_their_role_and_inventory_labels() {
    let fake = FakeApiServer::new();
    let client = fake.client();
    fake.put_node("master0", true);
    fake.put_node("worker2", true);
    fake.put_node("stranger", true);
    approve_pending(&client, &policy()).await.unwrap();
    let labels =
        |name: &str| fake.get("v1", "Node", None, name).unwrap()["metadata"]["labels"].clone();
    assert_eq!(
        labels("master0"),
        json!({"kubernetes.io/hostname": "master0", "node-role.kubernetes.io/control-plane": ""})
    );
    assert_eq!(
        labels("worker2"),
        json!({
            "kubernetes.io/hostname": "worker2",
            "node-role.kubernetes.io/worker": "",
            "topology.kubernetes.io/zone": "rack2",
        })
    );
    assert_eq!(
        labels("stranger"),
        json!({"kubernetes.io/hostname": "stranger"})
    );

    // In watch mode, a node that registers later is labelled when its kubelet asks for its
    // serving certificate.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watching = fake.client();
    let watcher = tokio::spawn(async move {
        watch(&watching, &policy(), async {
            let _ = stop_rx.await;
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    fake.put_node("worker0", true);
    put_csr(
        &fake,
        "serving-worker0",
        SERVING_SIGNER,
        "system:node:worker0",
        SERVING,
        pem(
            "system:node:worker0",
            &["system:nodes"],
            &["worker0", "worker0.demo.example.localdomain"],
            &["192.168.126.120"],
        ),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while labels("worker0")["node-role.kubernetes.io/worker"].is_null() {
        assert!(
            std::time::Instant::now() < deadline,
            "worker0 was not labelled: {}",
            labels("worker0")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(());
    watcher.await.unwrap().unwrap();
}
