use std::time::Duration;

use serde_json::json;

use super::*;
use crate::fake::FakeApiServer;

#[derive(Default)]
struct Recorder(Vec<Report>);

impl Observer for Recorder {
    fn report(&mut self, report: &Report) {
        self.0.push(report.clone());
    }
}

fn fast(phase_timeout: Duration) -> Timing {
    Timing {
        poll: Duration::from_millis(20),
        api: Duration::from_secs(2),
        bootstrap: phase_timeout,
        install: phase_timeout,
        cap_factor: 2,
    }
}

fn record(status: &str, stage: &str, removed: bool) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "bootstrap", "namespace": "kube-system"},
           "data": {"status": status, "stage": stage, "bootstrapMemberRemoved": removed.to_string(),
                    "etcdMembers": "master0,master1,master2"}})
}

#[test]
fn a_deadline_stretches_only_while_progress_is_recent_and_never_past_its_cap() {
    let start = Instant::now();
    let s = Duration::from_secs;
    let mut d = Deadline::new(start, s(100), 2);
    assert_eq!(d.check(start + s(50), true), Verdict::Running);
    // No progress within the last 25 s at the deadline: expired.
    assert_eq!(d.clone().check(start + s(100), false), Verdict::Expired);
    assert_eq!(d.check(start + s(90), true), Verdict::Running);
    assert_eq!(d.check(start + s(100), false), Verdict::Extended(s(125)));
    assert_eq!(d.check(start + s(120), true), Verdict::Running);
    assert_eq!(d.check(start + s(125), false), Verdict::Extended(s(150)));
    assert_eq!(d.check(start + s(140), true), Verdict::Running);
    // Past the deadline with fresh progress, but the extension stops at the cap.
    assert_eq!(d.check(start + s(190), true), Verdict::Extended(s(200)));
    assert_eq!(d.check(start + s(195), true), Verdict::Running);
    // The cap (2 × 100 s) holds even with progress.
    assert_eq!(d.check(start + s(200), true), Verdict::Expired);
}

#[test]
fn durations_read_and_print_like_openshift_install_flags() {
    assert_eq!(parse_duration("20m").unwrap(), Duration::from_secs(1200));
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert!(
        parse_duration("5 minutes")
            .unwrap_err()
            .contains("unknown unit")
    );
    assert!(parse_duration("").is_err());
    assert_eq!(human(Duration::from_secs(3900)), "1h5m");
    assert_eq!(human(Duration::from_millis(300)), "300ms");
}

#[tokio::test]
async fn bootstrap_completes_when_the_record_says_so_and_times_out_naming_the_stage_otherwise() {
    let fake = FakeApiServer::new();
    let description = crate::demo();
    let wait = Wait {
        client: fake.client(),
        description: &description,
        api_url: "fake".into(),
        server: None,
        timing: fast(Duration::from_millis(300)),
        join_token_id: None,
        node: None,
    };
    fake.put(record("progressing", "wait-masters", false));
    let mut seen = Recorder::default();
    let err = wait
        .run(Goal::BootstrapComplete, &mut seen)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            WaitError::TimedOut {
                phase: Phase::Bootstrap,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("agent stage \"wait-masters\""),
        "{err}"
    );

    let flipper = fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        flipper.put(record("complete", "remove-bootstrap-member", true));
    });
    let mut seen = Recorder::default();
    wait.run(Goal::BootstrapComplete, &mut seen).await.unwrap();
    assert!(
        seen.0.iter().any(
            |r| matches!(r, Report::PhaseDone { phase: Phase::Bootstrap, message, .. }
        if message.contains("master0, master1, master2"))
        ),
        "{:?}",
        seen.0
    );

    fake.put(record("failed", "apply-manifests", false));
    let err = wait
        .run(Goal::BootstrapComplete, &mut Recorder::default())
        .await
        .unwrap_err();
    assert!(matches!(err, WaitError::Failed { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("failed at stage \"apply-manifests\""),
        "{err}"
    );
}

#[tokio::test]
async fn install_completes_only_with_every_node_pod_coredns_and_csr_in_place() {
    let fake = FakeApiServer::new();
    let description = crate::demo();
    let wait = Wait {
        client: fake.client(),
        description: &description,
        api_url: "fake".into(),
        server: None,
        timing: fast(Duration::from_millis(200)),
        join_token_id: Some("012345".into()),
        node: None,
    };
    for m in description
        .inventory
        .machines
        .iter()
        .filter(|m| m.role != Role::Bootstrap)
    {
        if m.name != "worker2" {
            fake.put_node(&m.name, true);
        }
    }
    for master in ["master0", "master1", "master2"] {
        for component in CONTROL_PLANE {
            fake.put_pod("kube-system", &format!("{component}-{master}"), true);
        }
    }
    fake.put_deployment("kube-system", "coredns", 2);
    let err = wait
        .run(Goal::InstallComplete, &mut Recorder::default())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        WaitError::TimedOut {
            phase: Phase::Install,
            ..
        }
    ));
    assert!(
        err.to_string()
            .contains("5/6 nodes Ready; worker2 is not a Node yet"),
        "{err}"
    );

    fake.put_node("worker2", true);
    fake.put_pod("kube-system", "etcd-master1", false);
    let err = wait
        .run(Goal::InstallComplete, &mut Recorder::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("control plane pods not Ready: etcd-master1"),
        "{err}"
    );

    // The join token's Secret is deleted once the install is complete, not before.
    let token = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "bootstrap-token-012345", "namespace": "kube-system" },
        "type": "bootstrap.kubernetes.io/token",
    });
    fake.put(token);
    let secret = || {
        fake.get(
            "v1",
            "Secret",
            Some("kube-system"),
            "bootstrap-token-012345",
        )
    };
    assert!(secret().is_some());
    fake.put_pod("kube-system", "etcd-master1", true);
    wait.run(Goal::InstallComplete, &mut Recorder::default())
        .await
        .unwrap();
    assert!(secret().is_none(), "the join token outlived the install");
    // Gone already is fine.
    wait.run(Goal::InstallComplete, &mut Recorder::default())
        .await
        .unwrap();
}
