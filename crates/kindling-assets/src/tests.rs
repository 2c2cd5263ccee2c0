//! The asset engine's behaviour as the user sees it in the asset directory.

use std::cell::Cell;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kindling_config::{ClusterDescription, INSTALL_CONFIG_FILE, INVENTORY_FILE};

use crate::cluster::{CLUSTER_ID, CLUSTER_JSON, METADATA_JSON};
use crate::state::{STATE_FILE, State};
use crate::storage::{self, AtomicFiles, Mode, Storage};
use crate::{Action, AssetOutcome, Settings, Target, create};

const INSTALL_CONFIG: &str = include_str!("../../../examples/demo/install-config.yaml");
const INVENTORY: &str = include_str!("../../../examples/demo/inventory.yaml");

/// The demo cluster, with a mirror holding stand-ins for what its machines need.
fn demo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(INSTALL_CONFIG_FILE), INSTALL_CONFIG).unwrap();
    fs::write(dir.path().join(INVENTORY_FILE), INVENTORY).unwrap();
    let version = kindling_config::inventory::DEFAULT_KUBERNETES_VERSION;
    let images = crate::manifests::Images::for_version(version);
    kindling_testkit::mirror::seed(dir.path(), version, &images.all());
    dir
}

pub(crate) fn settings() -> Settings {
    Settings {
        now: time::OffsetDateTime::now_utc(),
        key_algorithm: kindling_pki::KeyAlgorithm::EcdsaP256,
        lifetimes: kindling_pki::Lifetimes::default(),
        agent_sha512: Some("0".repeat(128)),
        rotate_ca: false,
        renew_before: time::Duration::ZERO,
    }
}

fn run_at(dir: &Path, target: Target, now: time::OffsetDateTime) -> Vec<AssetOutcome> {
    let loaded = ClusterDescription::load(dir).unwrap();
    let settings = Settings { now, ..settings() };
    create(dir, &loaded.description, target, &settings, &AtomicFiles).unwrap()
}

fn run_with(dir: &Path, storage: &dyn Storage) -> Result<Vec<AssetOutcome>, crate::AssetError> {
    let loaded = ClusterDescription::load(dir).unwrap();
    create(
        dir,
        &loaded.description,
        Target::Manifests,
        &settings(),
        storage,
    )
}

/// The crash tests run a few assets (one with a CA, one signed by it, and the cluster summary
/// chain), since they run the engine once per write.
fn run_small(dir: &Path, storage: &dyn Storage) -> Result<Vec<AssetOutcome>, crate::AssetError> {
    let loaded = ClusterDescription::load(dir).unwrap();
    let mut assets = crate::cluster::manifests_target();
    assets.push(&crate::pki::ROOT_CA);
    assets.push(&crate::pki::APISERVER);
    crate::Engine::new(dir, storage, crate::INPUTS).run(&loaded.description, &assets, &settings())
}

fn run(dir: &Path) -> Vec<AssetOutcome> {
    run_with(dir, &AtomicFiles).unwrap()
}

fn action(outcomes: &[AssetOutcome], asset: &str) -> Action {
    outcomes.iter().find(|o| o.asset == asset).unwrap().action
}

fn json(dir: &Path, file: &str) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join(file)).unwrap()).unwrap()
}

#[test]
fn a_second_run_changes_nothing() {
    let dir = demo_dir();
    let first = run(dir.path());
    assert!(
        first.iter().all(|o| o.action == Action::Generated),
        "{first:?}"
    );
    let metadata = fs::read(dir.path().join(METADATA_JSON)).unwrap();
    let second = run(dir.path());
    assert!(
        second
            .iter()
            .all(|o| o.action == Action::UpToDate && o.kept_edits.is_empty()),
        "{second:?}"
    );
    assert_eq!(fs::read(dir.path().join(METADATA_JSON)).unwrap(), metadata);
}

#[test]
fn a_user_edit_is_kept_and_only_its_dependants_are_regenerated() {
    let dir = demo_dir();
    run(dir.path());
    let id_before = fs::read_to_string(dir.path().join(CLUSTER_ID)).unwrap();

    let mut summary = json(dir.path(), CLUSTER_JSON);
    summary["clusterName"] = "edited".into();
    let edited = serde_json::to_vec_pretty(&summary).unwrap();
    fs::write(dir.path().join(CLUSTER_JSON), &edited).unwrap();

    let outcomes = run(dir.path());
    assert_eq!(action(&outcomes, "cluster-summary"), Action::UpToDate);
    assert_eq!(outcomes[0].kept_edits, [CLUSTER_JSON]);
    assert_eq!(action(&outcomes, "cluster-id"), Action::UpToDate);
    assert_eq!(action(&outcomes, "metadata"), Action::Regenerated);

    assert_eq!(
        fs::read(dir.path().join(CLUSTER_JSON)).unwrap(),
        edited,
        "the edit was overwritten"
    );
    assert_eq!(json(dir.path(), METADATA_JSON)["clusterName"], "edited");
    assert!(
        json(dir.path(), METADATA_JSON)["infraID"]
            .as_str()
            .unwrap()
            .starts_with("edited-")
    );
    assert_eq!(
        fs::read_to_string(dir.path().join(CLUSTER_ID)).unwrap(),
        id_before
    );

    // The edit stays the user's on later runs, even when the inputs change.
    let changed = INVENTORY.replace("192.168.126.120", "192.168.126.130");
    fs::write(dir.path().join(INVENTORY_FILE), changed).unwrap();
    let outcomes = run(dir.path());
    assert_eq!(action(&outcomes, "cluster-summary"), Action::Regenerated);
    assert_eq!(outcomes[0].kept_edits, [CLUSTER_JSON]);
    assert_eq!(fs::read(dir.path().join(CLUSTER_JSON)).unwrap(), edited);
}

#[test]
fn a_changed_input_regenerates_what_depends_on_it_and_keeps_the_cluster_id() {
    let dir = demo_dir();
    run(dir.path());
    let id_before = fs::read_to_string(dir.path().join(CLUSTER_ID)).unwrap();
    let changed = INSTALL_CONFIG.replace("name: demo", "name: other");
    fs::write(dir.path().join(INSTALL_CONFIG_FILE), changed).unwrap();
    let outcomes = run(dir.path());
    assert_eq!(action(&outcomes, "cluster-summary"), Action::Regenerated);
    assert_eq!(action(&outcomes, "cluster-id"), Action::UpToDate);
    assert_eq!(action(&outcomes, "metadata"), Action::Regenerated);
    assert_eq!(
        json(dir.path(), METADATA_JSON)["apiURL"],
        "https://api.other.example.localdomain:6443"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join(CLUSTER_ID)).unwrap(),
        id_before
    );
}

#[test]
fn a_deleted_output_is_regenerated() {
    let dir = demo_dir();
    run(dir.path());
    let before = fs::read(dir.path().join(CLUSTER_JSON)).unwrap();
    fs::remove_file(dir.path().join(CLUSTER_JSON)).unwrap();
    let outcomes = run(dir.path());
    assert_eq!(action(&outcomes, "cluster-summary"), Action::Regenerated);
    assert_eq!(fs::read(dir.path().join(CLUSTER_JSON)).unwrap(), before);
    // Same content, so what depends on it is left alone.
    assert_eq!(action(&outcomes, "metadata"), Action::UpToDate);
}

#[test]
fn a_file_already_on_disk_before_the_first_run_is_the_users() {
    let dir = demo_dir();
    fs::write(
        dir.path().join(CLUSTER_JSON),
        b"{\"clusterName\":\"mine\",\"apiURL\":\"https://x:6443\"}",
    )
    .unwrap();
    let outcomes = run(dir.path());
    assert_eq!(outcomes[0].kept_edits, [CLUSTER_JSON]);
    assert_eq!(json(dir.path(), METADATA_JSON)["clusterName"], "mine");
}

#[test]
fn inputs_are_never_touched() {
    let dir = demo_dir();
    run(dir.path());
    fs::remove_file(dir.path().join(CLUSTER_JSON)).unwrap();
    run(dir.path());
    assert_eq!(
        fs::read_to_string(dir.path().join(INSTALL_CONFIG_FILE)).unwrap(),
        INSTALL_CONFIG
    );
    assert_eq!(
        fs::read_to_string(dir.path().join(INVENTORY_FILE)).unwrap(),
        INVENTORY
    );
}

#[test]
fn files_have_the_modes_recorded_for_them() {
    let dir = demo_dir();
    run(dir.path());
    let state = State::load(dir.path()).unwrap();
    let mut seen = 0;
    for record in state.assets.values() {
        for (path, file) in &record.files {
            let mode = fs::metadata(dir.path().join(path))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, file.mode.bits(), "{path}");
            seen += 1;
        }
    }
    assert!(seen > 40, "only {seen} files");
}

/// Storage that crashes on its n-th write, leaving a half-written temp file as a real crash would.
struct CrashingStorage {
    crash_at: usize,
    writes: Cell<usize>,
}

impl Storage for CrashingStorage {
    fn write(&self, path: &Path, contents: &[u8], mode: Mode) -> io::Result<()> {
        self.writes.set(self.writes.get() + 1);
        fs::create_dir_all(path.parent().unwrap())?;
        let tmp = storage::temp_path(path)?;
        if self.writes.get() == self.crash_at {
            storage::write_temp(&tmp, &contents[..contents.len() / 2], mode)?;
            return Err(io::Error::other("simulated crash"));
        }
        storage::write_temp(&tmp, contents, mode)?;
        storage::commit(&tmp, path)
    }
}

/// Every recorded output parses, and the state file is a valid state.
fn assert_consistent(dir: &Path) {
    let state = State::load(dir).expect("state.json stays valid");
    for record in state.assets.values() {
        for path in record.files.keys().chain(record.pending.keys()) {
            if path.ends_with(".json") && dir.join(path).exists() {
                let bytes = fs::read(dir.join(path)).unwrap();
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .unwrap_or_else(|e| panic!("{path} is half-written: {e}"));
            }
        }
    }
}

#[test]
fn a_crash_at_any_write_leaves_a_valid_state_and_the_next_run_finishes() {
    // Count the writes of a regeneration run, then crash at each of them in turn.
    let total = {
        let dir = demo_dir();
        run_small(dir.path(), &AtomicFiles).unwrap();
        fs::write(
            dir.path().join(INSTALL_CONFIG_FILE),
            INSTALL_CONFIG.replace("name: demo", "name: other"),
        )
        .unwrap();
        let counting = CrashingStorage {
            crash_at: usize::MAX,
            writes: Cell::new(0),
        };
        run_small(dir.path(), &counting).unwrap();
        counting.writes.get()
    };
    assert!(
        total >= 6,
        "expected two state saves and one file per regenerated asset, saw {total} writes"
    );

    for crash_at in 1..=total {
        let dir = demo_dir();
        run_small(dir.path(), &AtomicFiles).unwrap();
        let old_state = fs::read(dir.path().join(STATE_FILE)).unwrap();
        fs::write(
            dir.path().join(INSTALL_CONFIG_FILE),
            INSTALL_CONFIG.replace("name: demo", "name: other"),
        )
        .unwrap();

        let crashing = CrashingStorage {
            crash_at,
            writes: Cell::new(0),
        };
        assert!(run_small(dir.path(), &crashing).is_err());
        assert_consistent(dir.path());
        if crash_at == 1 {
            assert_eq!(
                fs::read(dir.path().join(STATE_FILE)).unwrap(),
                old_state,
                "the first write crashed: nothing changed"
            );
        }

        let outcomes = run_small(dir.path(), &AtomicFiles).unwrap();
        assert!(
            outcomes.iter().all(|o| o.kept_edits.is_empty()),
            "crash at write {crash_at}: kindling's own half-run taken for a user edit: {outcomes:?}"
        );
        assert_eq!(
            json(dir.path(), METADATA_JSON)["clusterName"],
            "other",
            "crash at write {crash_at}"
        );
        assert_eq!(
            json(dir.path(), CLUSTER_JSON)["clusterName"],
            "other",
            "crash at write {crash_at}"
        );
        let again = run_small(dir.path(), &AtomicFiles).unwrap();
        assert!(
            again.iter().all(|o| o.action == Action::UpToDate),
            "crash at write {crash_at}: {again:?}"
        );
    }
}

#[test]
fn a_crash_during_the_first_run_is_recovered() {
    for crash_at in 1.. {
        let dir = demo_dir();
        let crashing = CrashingStorage {
            crash_at,
            writes: Cell::new(0),
        };
        if run_small(dir.path(), &crashing).is_ok() {
            assert!(crash_at > 5, "a first run makes more than 5 writes");
            break;
        }
        assert_consistent(dir.path());
        let outcomes = run_small(dir.path(), &AtomicFiles).unwrap();
        assert!(
            outcomes.iter().all(|o| o.kept_edits.is_empty()),
            "crash at write {crash_at}: {outcomes:?}"
        );
        assert!(dir.path().join(METADATA_JSON).exists());
    }
}

/// Runs `openssl verify` at a given time; Ok when the chain holds then.
fn verify_at(ca: &Path, cert: &Path, at: time::OffsetDateTime) -> Result<(), String> {
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(ca)
        .args(["-attime", &at.unix_timestamp().to_string()])
        .arg(cert)
        .output()
        .expect("openssl runs (./test.sh installs it)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn bootstrap_leaves_near_expiry_are_re_signed_under_the_same_ca() {
    let dir = demo_dir();
    let d = dir.path();
    let t0 = time::OffsetDateTime::now_utc();
    run_at(d, Target::Manifests, t0);
    let read = |p: &str| fs::read(d.join(p)).unwrap();
    let root_ca = read("tls/root-ca.crt");
    let etcd_ca = read("tls/etcd-ca.crt");
    let bootstrap_etcd = read("tls/etcd/bootstrap-peer.crt");
    let master_etcd = read("tls/etcd/master0-peer.crt");
    let apiserver = read("tls/apiserver/master0.crt");

    // An hour later nothing is due.
    let outcomes = run_at(d, Target::Manifests, t0 + time::Duration::hours(1));
    assert!(
        outcomes.iter().all(|o| o.action == Action::UpToDate),
        "{outcomes:?}"
    );

    // 30 hours on, the bootstrap leaves (48 h) expire within the 24 h window: re-signed.
    let t1 = t0 + time::Duration::hours(30);
    let outcomes = run_at(d, Target::Manifests, t1);
    assert_eq!(action(&outcomes, "etcd-bootstrap-certs"), Action::Renewed);
    assert_eq!(action(&outcomes, "bootstrap-admin-cert"), Action::Renewed);
    assert_eq!(
        action(&outcomes, "apiserver-bootstrap-cert"),
        Action::Renewed
    );
    assert_eq!(
        action(&outcomes, "kubeconfigs"),
        Action::Regenerated,
        "the kubeconfig embedding the renewed cert follows"
    );
    for kept in ["root-ca", "etcd-ca", "etcd-master-certs", "apiserver-cert"] {
        assert_eq!(action(&outcomes, kept), Action::UpToDate, "{kept}");
    }
    assert_eq!(read("tls/root-ca.crt"), root_ca);
    assert_eq!(read("tls/etcd-ca.crt"), etcd_ca);
    assert_eq!(read("tls/etcd/master0-peer.crt"), master_etcd);
    assert_eq!(read("tls/apiserver/master0.crt"), apiserver);
    assert_ne!(read("tls/etcd/bootstrap-peer.crt"), bootstrap_etcd);

    // The old bootstrap cert would have expired inside the window; the new one is good for it,
    // and chains to the same CA.
    let renewed = d.join("tls/etcd/bootstrap-peer.crt");
    let window_end = t1 + time::Duration::hours(24);
    verify_at(&d.join("tls/etcd-ca.crt"), &renewed, window_end).unwrap();
    fs::write(d.join("old.crt"), &bootstrap_etcd).unwrap();
    assert!(
        verify_at(&d.join("tls/etcd-ca.crt"), &d.join("old.crt"), window_end)
            .unwrap_err()
            .contains("expired")
    );

    // After a year every leaf is re-signed, still under the same CAs.
    let t2 = t0 + time::Duration::days(400);
    let outcomes = run_at(d, Target::Manifests, t2);
    for renewed in [
        "apiserver-cert",
        "etcd-master-certs",
        "client-certs",
        "mcs-cert",
    ] {
        assert_eq!(action(&outcomes, renewed), Action::Renewed, "{renewed}");
    }
    assert_eq!(read("tls/root-ca.crt"), root_ca);
    verify_at(
        &d.join("tls/root-ca.crt"),
        &d.join("tls/apiserver/master0.crt"),
        t2 + time::Duration::hours(1),
    )
    .unwrap();
}

#[test]
fn an_edited_certificate_is_kept_even_when_it_would_be_renewed() {
    let dir = demo_dir();
    let d = dir.path();
    let t0 = time::OffsetDateTime::now_utc();
    run_at(d, Target::Manifests, t0);
    // The user brings their own MCS certificate (here: a copy of the apiserver's).
    let own = fs::read(d.join("tls/apiserver/master0.crt")).unwrap();
    fs::write(d.join("tls/mcs.crt"), &own).unwrap();
    let outcomes = run_at(d, Target::Manifests, t0 + time::Duration::days(400));
    let mcs = outcomes.iter().find(|o| o.asset == "mcs-cert").unwrap();
    assert_eq!(mcs.kept_edits, ["tls/mcs.crt"]);
    assert_eq!(fs::read(d.join("tls/mcs.crt")).unwrap(), own);
}

/// The decoded contents of `path` in an Ignition config on disk.
fn ign_file(dir: &Path, config: &str, path: &str) -> Option<Vec<u8>> {
    let json = json(dir, config);
    let files = json["storage"]["files"].as_array()?;
    let file = files.iter().find(|f| f["path"] == path)?;
    kindling_ignition::data_url::decode(file["contents"]["source"].as_str()?)
}

#[test]
fn renewed_bootstrap_leaves_reach_bootstrap_ign_and_pointer_configs_stay_valid() {
    let dir = demo_dir();
    let d = dir.path();
    let t0 = time::OffsetDateTime::now_utc();
    run_at(d, Target::IgnitionConfigs, t0);
    let master_pointer = fs::read(d.join("master.ign")).unwrap();
    let worker_pointer = fs::read(d.join("worker.ign")).unwrap();
    let old_peer = fs::read(d.join("tls/etcd/bootstrap-peer.crt")).unwrap();
    assert_eq!(
        ign_file(d, "bootstrap.ign", crate::layout::ETCD_PEER_CERT).unwrap(),
        old_peer
    );

    let outcomes = run_at(d, Target::IgnitionConfigs, t0 + time::Duration::hours(30));
    assert_eq!(action(&outcomes, "etcd-bootstrap-certs"), Action::Renewed);
    assert_eq!(action(&outcomes, "bootstrap-ignition"), Action::Regenerated);
    assert_eq!(action(&outcomes, "pointer-ignition"), Action::UpToDate);
    let new_peer = fs::read(d.join("tls/etcd/bootstrap-peer.crt")).unwrap();
    assert_ne!(new_peer, old_peer);
    assert_eq!(
        ign_file(d, "bootstrap.ign", crate::layout::ETCD_PEER_CERT).unwrap(),
        new_peer
    );
    // The pointer configs still trust the same root CA.
    assert_eq!(fs::read(d.join("master.ign")).unwrap(), master_pointer);
    assert_eq!(fs::read(d.join("worker.ign")).unwrap(), worker_pointer);
}

#[test]
fn edited_manifests_are_kept_and_go_into_the_ignition_configs() {
    let dir = demo_dir();
    let d = dir.path();
    run(d);
    let coredns = "manifests/cluster/54-coredns-deployment.yaml";
    let edited = fs::read_to_string(d.join(coredns))
        .unwrap()
        .replace("replicas: 2", "replicas: 3");
    assert!(
        edited.contains("replicas: 3"),
        "the CoreDNS deployment sets replicas"
    );
    fs::write(d.join(coredns), &edited).unwrap();
    // A manifest of the user's own goes in too.
    fs::write(
        d.join("manifests/cluster/90-extra.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: extra}\n",
    )
    .unwrap();

    let outcomes = run_at(d, Target::IgnitionConfigs, time::OffsetDateTime::now_utc());
    let manifests = outcomes.iter().find(|o| o.asset == "manifests").unwrap();
    assert_eq!(manifests.kept_edits, [coredns]);
    assert_eq!(fs::read_to_string(d.join(coredns)).unwrap(), edited);
    let on_machine = |name: &str| {
        ign_file(
            d,
            "bootstrap.ign",
            &format!("{}/{name}", crate::layout::AGENT_MANIFESTS_DIR),
        )
    };
    assert_eq!(
        on_machine("54-coredns-deployment.yaml").unwrap(),
        edited.as_bytes()
    );
    assert!(on_machine("90-extra.yaml").is_some());
}

#[test]
fn snippets_are_merged_per_role_and_per_machine_and_bad_ones_name_file_and_line() {
    let dir = demo_dir();
    let d = dir.path();
    run_at(d, Target::IgnitionConfigs, time::OffsetDateTime::now_utc());
    fs::create_dir_all(d.join("snippets/worker")).unwrap();
    fs::create_dir_all(d.join("snippets/master1")).unwrap();
    fs::write(
        d.join("snippets/worker/10-motd.bu"),
        "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/motd\n      contents:\n        inline: hello workers\n",
    )
    .unwrap();
    fs::write(
        d.join("snippets/master1/10-sysctl.bu"),
        "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/sysctl.d/90-master1.conf\n      mode: 0600\n      contents:\n        inline: vm.swappiness=0\n",
    )
    .unwrap();
    let outcomes = run_at(d, Target::IgnitionConfigs, time::OffsetDateTime::now_utc());
    assert_eq!(
        action(&outcomes, "pool-ignition"),
        Action::Regenerated,
        "a new snippet is a changed input"
    );
    assert_eq!(
        ign_file(d, "ignition/worker.ign", "/etc/motd").unwrap(),
        b"hello workers"
    );
    assert!(ign_file(d, "ignition/master.ign", "/etc/motd").is_none());
    assert_eq!(
        ign_file(
            d,
            "ignition/machines/master1.ign",
            "/etc/sysctl.d/90-master1.conf"
        )
        .unwrap(),
        b"vm.swappiness=0"
    );
    assert!(
        ign_file(
            d,
            "ignition/machines/master0.ign",
            "/etc/sysctl.d/90-master1.conf"
        )
        .is_none()
    );

    fs::write(
        d.join("snippets/worker/20-bad.bu"),
        "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: etc/relative\n",
    )
    .unwrap();
    let loaded = ClusterDescription::load(d).unwrap();
    let err = create(
        d,
        &loaded.description,
        Target::IgnitionConfigs,
        &settings(),
        &AtomicFiles,
    )
    .unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, crate::AssetError::UserFile(_)), "{shown}");
    assert!(
        shown.contains("snippets/worker/20-bad.bu:5:") && shown.contains("storage.files[0].path"),
        "{shown}"
    );
}

/// An asset whose output is its parameter, as `create infra --phase` is for haproxy.cfg.
struct Phased(&'static str);

impl crate::Asset for Phased {
    fn id(&self) -> &'static str {
        "phased"
    }
    fn depends_on(&self) -> &'static [crate::Dependency] {
        &[crate::Dependency::Input(INVENTORY_FILE)]
    }
    fn parameters(&self, _ctx: &crate::Context<'_>) -> Result<String, crate::AssetError> {
        Ok(self.0.to_string())
    }
    fn generate(&self, _ctx: &crate::Context<'_>) -> Result<Vec<crate::Output>, crate::AssetError> {
        Ok(vec![crate::Output {
            path: "phased.txt".into(),
            contents: self.0.as_bytes().to_vec(),
            mode: Mode::Public,
        }])
    }
}

#[test]
fn a_changed_parameter_regenerates_the_asset_though_no_file_changed() {
    let dir = demo_dir();
    let loaded = ClusterDescription::load(dir.path()).unwrap();
    let engine = crate::Engine::new(dir.path(), &AtomicFiles, crate::INPUTS);
    let run = |phase: &'static str| {
        engine
            .run(&loaded.description, &[&Phased(phase)], &settings())
            .unwrap()[0]
            .action
    };
    assert_eq!(run("install"), Action::Generated);
    assert_eq!(run("install"), Action::UpToDate);
    assert_eq!(run("bootstrap-removed"), Action::Regenerated);
    assert_eq!(
        fs::read_to_string(dir.path().join("phased.txt")).unwrap(),
        "bootstrap-removed"
    );
    assert_eq!(run("bootstrap-removed"), Action::UpToDate);
    assert_eq!(run("install"), Action::Regenerated);
}

#[test]
fn the_join_token_expires_after_a_day_and_create_extends_it_keeping_the_token() {
    use time::format_description::well_known::Rfc3339;
    let dir = demo_dir();
    let d = dir.path();
    let t0 = time::OffsetDateTime::parse("2026-12-07T10:00:00Z", &Rfc3339).unwrap();
    run_at(d, Target::IgnitionConfigs, t0);
    let token = fs::read_to_string(d.join(crate::pki::BOOTSTRAP_TOKEN_FILE)).unwrap();
    let expiration = |d: &Path| {
        fs::read_to_string(d.join(crate::pki::BOOTSTRAP_TOKEN_EXPIRATION_FILE))
            .unwrap()
            .trim()
            .to_string()
    };
    let secret = |d: &Path| {
        fs::read_to_string(
            d.join(crate::manifests_asset::CLUSTER_DIR)
                .join(crate::manifests::BOOTSTRAP_TOKEN_SECRET_FILE),
        )
        .unwrap()
    };
    assert_eq!(expiration(d), "2026-12-08T10:00:00Z");
    assert!(
        secret(d).contains("expiration: \"2026-12-08T10:00:00Z\""),
        "{}",
        secret(d)
    );
    let kubeconfig = ign_file(
        d,
        "ignition/worker.ign",
        crate::layout::KUBELET_BOOTSTRAP_KUBECONFIG,
    );

    // Five hours in: more than half the day is left; nothing changes.
    let outcomes = run_at(d, Target::IgnitionConfigs, t0 + time::Duration::hours(5));
    assert_eq!(action(&outcomes, "bootstrap-token"), Action::UpToDate);

    // Thirteen hours in: extended by a day from now, with the same token, so the kubelets'
    // bootstrap kubeconfig, which configs already handed out carry, stays good.
    let outcomes = run_at(d, Target::IgnitionConfigs, t0 + time::Duration::hours(13));
    assert_eq!(action(&outcomes, "bootstrap-token"), Action::Renewed);
    assert_eq!(expiration(d), "2026-12-08T23:00:00Z");
    assert_eq!(
        fs::read_to_string(d.join(crate::pki::BOOTSTRAP_TOKEN_FILE)).unwrap(),
        token
    );
    assert!(secret(d).contains("expiration: \"2026-12-08T23:00:00Z\""));
    assert_eq!(
        ign_file(
            d,
            "ignition/worker.ign",
            crate::layout::KUBELET_BOOTSTRAP_KUBECONFIG
        ),
        kubeconfig
    );
}

#[test]
fn a_missing_ca_key_is_an_error_until_rotated_on_purpose() {
    let dir = demo_dir();
    let d = dir.path();
    run(d);
    let apiserver = fs::read(d.join("tls/apiserver/master0.crt")).unwrap();
    let before = crate::tests::snapshot_dir(d);
    fs::remove_file(d.join("tls/root-ca.key")).unwrap();
    let err = try_run(d, &settings()).unwrap_err();
    let shown = err.to_string();
    assert!(
        matches!(err, crate::AssetError::AuthorityMissing { .. }),
        "{shown}"
    );
    assert!(
        shown.starts_with("tls/root-ca.key is missing, but "),
        "{shown}"
    );
    assert!(
        shown.contains("tls/apiserver/master0.crt") || shown.contains("more"),
        "{shown}"
    );
    assert!(shown.contains("--rotate-ca"), "{shown}");
    // Nothing was written.
    let mut after = crate::tests::snapshot_dir(d);
    after.insert("tls/root-ca.key".into(), before["tls/root-ca.key"].clone());
    assert_eq!(after, before);

    // The same for the CSR signer under it.
    fs::write(d.join("tls/root-ca.key"), &before["tls/root-ca.key"]).unwrap();
    fs::remove_file(d.join("tls/csr-signer.crt")).unwrap();
    let err = try_run(d, &settings()).unwrap_err();
    assert!(
        err.to_string().starts_with("tls/csr-signer.crt is missing"),
        "{err}"
    );
    fs::write(d.join("tls/csr-signer.crt"), &before["tls/csr-signer.crt"]).unwrap();

    // Rotated on purpose: a new root, and the leaves re-signed under it.
    fs::remove_file(d.join("tls/root-ca.key")).unwrap();
    let rotate = Settings {
        rotate_ca: true,
        ..settings()
    };
    let outcomes = try_run(d, &rotate).unwrap();
    assert_eq!(action(&outcomes, "root-ca"), Action::Regenerated);
    assert_ne!(
        fs::read(d.join("tls/apiserver/master0.crt")).unwrap(),
        apiserver
    );
    verify_at(
        &d.join("tls/root-ca.crt"),
        &d.join("tls/apiserver/master0.crt"),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
}

/// `create manifests` with `settings`, its error kept.
fn try_run(dir: &Path, settings: &Settings) -> Result<Vec<AssetOutcome>, crate::AssetError> {
    let loaded = ClusterDescription::load(dir).unwrap();
    create(
        dir,
        &loaded.description,
        Target::Manifests,
        settings,
        &AtomicFiles,
    )
}

/// Every file under `dir`, by relative path.
pub(crate) fn snapshot_dir(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn a_workers_address_or_labels_do_not_re_key_the_control_plane() {
    let dir = demo_dir();
    let d = dir.path();
    run_at(d, Target::IgnitionConfigs, time::OffsetDateTime::now_utc());
    let before = snapshot_dir(d);
    let inventory = d.join(INVENTORY_FILE);
    let text = fs::read_to_string(&inventory).unwrap();
    let edited = text.replace(
        "    ip: 192.168.126.120\n",
        "    ip: 192.168.126.129\n    labels: {topology.kubernetes.io/zone: rack9}\n",
    );
    assert_ne!(edited, text);
    fs::write(&inventory, edited).unwrap();
    let outcomes = run_at(d, Target::IgnitionConfigs, time::OffsetDateTime::now_utc());
    let after = snapshot_dir(d);
    // Every key and certificate is as it was: their names did not change.
    for path in before
        .keys()
        .filter(|p| p.starts_with("tls/") || p.starts_with("auth/"))
    {
        assert_eq!(before[path], after[path], "{path} changed");
    }
    for asset in [
        "apiserver-cert",
        "etcd-master-certs",
        "mcs-cert",
        "client-certs",
        "kubeconfigs",
    ] {
        assert_eq!(action(&outcomes, asset), Action::UpToDate, "{asset}");
    }
    // What did change is reported, and it did change.
    assert_eq!(action(&outcomes, "machine-ignition"), Action::Regenerated);
    assert_ne!(
        before["ignition/machines/worker0.ign"],
        after["ignition/machines/worker0.ign"]
    );

    // A master's new address is in its etcd and apiserver certificates: those are re-issued,
    // and only those.
    let text = fs::read_to_string(&inventory).unwrap();
    fs::write(
        &inventory,
        text.replace("ip: 192.168.126.111\n", "ip: 192.168.126.119\n"),
    )
    .unwrap();
    let outcomes = run_at(d, Target::IgnitionConfigs, time::OffsetDateTime::now_utc());
    let again = snapshot_dir(d);
    assert_eq!(action(&outcomes, "etcd-master-certs"), Action::Regenerated);
    assert_ne!(
        again["tls/etcd/master1-peer.crt"],
        after["tls/etcd/master1-peer.crt"]
    );
    assert_eq!(
        again["tls/etcd/master0-peer.crt"],
        after["tls/etcd/master0-peer.crt"]
    );
    assert_eq!(action(&outcomes, "apiserver-cert"), Action::Regenerated);
    assert_ne!(
        again["tls/apiserver/master1.crt"],
        after["tls/apiserver/master1.crt"]
    );
    assert_eq!(
        again["tls/apiserver/master0.crt"],
        after["tls/apiserver/master0.crt"]
    );
}

#[test]
fn each_binary_has_its_own_hash_cache_entry_and_a_miss_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::write(&a, b"one build").unwrap();
    fs::write(&b, b"another build").unwrap();
    let hashed = std::cell::Cell::new(0);
    let hash = |p: &Path| {
        crate::binary_sha512(p, Some(&cache), |size| {
            assert!(size > 0);
            hashed.set(hashed.get() + 1)
        })
        .unwrap()
    };
    let (ha, hb) = (hash(&a), hash(&b));
    assert_eq!(hashed.get(), 2);
    assert_eq!(ha, crate::file_sha512(&a).unwrap());
    // Both are remembered: alternating between them hashes nothing again.
    assert_eq!((hash(&a), hash(&b)), (ha, hb));
    assert_eq!(hashed.get(), 2);
    assert_eq!(fs::read_dir(&cache).unwrap().count(), 2);
}

fn ignition_configs(dir: &Path) -> Result<Vec<AssetOutcome>, crate::AssetError> {
    let loaded = ClusterDescription::load(dir).unwrap();
    create(
        dir,
        &loaded.description,
        Target::IgnitionConfigs,
        &settings(),
        &AtomicFiles,
    )
}

#[test]
fn without_its_binaries_and_images_in_the_mirror_no_machine_config_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join(INSTALL_CONFIG_FILE), INSTALL_CONFIG).unwrap();
    fs::write(d.join(INVENTORY_FILE), INVENTORY).unwrap();
    let err = ignition_configs(d).unwrap_err();
    let crate::AssetError::MirrorIncomplete { files, images, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        files.contains(&"kubernetes/v1.34.1/kubelet".to_string()),
        "{files:?}"
    );
    assert!(files.contains(&"cni/bridge".to_string()), "{files:?}");
    assert!(
        images.contains(&"registry.k8s.io/pause:3.10.1".to_string()),
        "{images:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("kindling mirror --dir {}", d.display())),
        "{message}"
    );
    for config in ["bootstrap.ign", "worker.ign", "ignition/worker.ign"] {
        assert!(!d.join(config).exists(), "{config} was written");
    }

    // Mirrored, the configs are made; a manifest of the user's that names a new image is
    // refused until that image is mirrored too.
    let version = kindling_config::inventory::DEFAULT_KUBERNETES_VERSION;
    kindling_testkit::mirror::seed(
        d,
        version,
        &crate::manifests::Images::for_version(version).all(),
    );
    ignition_configs(d).unwrap();
    fs::write(
        d.join("manifests/cluster/90-tool.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: tool\n  namespace: default\nspec:\n  containers:\n    - name: tool\n      image: quay.io/example/tool:1.0\n",
    )
    .unwrap();
    let err = ignition_configs(d).unwrap_err();
    let crate::AssetError::MirrorIncomplete { files, images, .. } = &err else {
        panic!("{err}")
    };
    assert!(files.is_empty());
    assert_eq!(images, &["quay.io/example/tool:1.0"]);
}

#[test]
fn each_os_runs_its_own_runtime_with_the_mirrors_binaries() {
    for os in ["fcos", "flatcar", "rhcos"] {
        let dir = demo_dir();
        let d = dir.path();
        let inventory = INVENTORY.replace("os: fcos", &format!("os: {os}"));
        fs::write(d.join(INVENTORY_FILE), inventory).unwrap();
        ignition_configs(d).unwrap_or_else(|e| panic!("{os}: {e}"));
        let worker =
            kindling_ignition::Config::from_json(&fs::read(d.join("ignition/worker.ign")).unwrap())
                .unwrap();
        let unit = worker.unit("kubelet.service").unwrap().contents.unwrap();
        let files = kindling_mirror::Files::read(&d.join("mirror")).unwrap();
        match os {
            "fcos" | "flatcar" => {
                let bin = if os == "fcos" {
                    "/usr/local/bin"
                } else {
                    "/opt/bin"
                };
                assert!(unit.contains(&format!("ExecStart={bin}/kubelet")), "{unit}");
                assert!(
                    unit.contains("After=network-online.target containerd.service"),
                    "{unit}"
                );
                let kubelet = files.get("kubernetes/v1.34.1/kubelet").unwrap();
                let Some(kindling_ignition::FileEntry {
                    contents: kindling_ignition::Contents::Remote { url, hash },
                    mode,
                    ..
                }) = worker.file(&format!("{bin}/kubelet"))
                else {
                    panic!("{os}: no kubelet")
                };
                assert_eq!(
                    url,
                    "http://192.168.126.2:8080/assets/mirror/kubernetes/v1.34.1/kubelet"
                );
                assert_eq!(hash, Some(format!("sha512-{}", kubelet.sha512)));
                assert_eq!(mode, Some(0o755));
                for plugin in ["bridge", "host-local", "loopback", "portmap"] {
                    assert!(
                        worker.file(&format!("/opt/cni/bin/{plugin}")).is_some(),
                        "{os}: {plugin}"
                    );
                }
                assert!(worker.file(&format!("{bin}/crictl")).is_some());
                let Some(kindling_ignition::FileEntry {
                    contents: kindling_ignition::Contents::Inline(config),
                    ..
                }) = worker.file("/etc/containerd/config.toml")
                else {
                    panic!("{os}: no containerd config")
                };
                let config = String::from_utf8(config).unwrap();
                assert!(
                    config.contains("sandbox_image = \"registry.k8s.io/pause:3.10.1\""),
                    "{config}"
                );
                assert!(config.contains("SystemdCgroup = true"));
                assert_eq!(
                    worker.unit("containerd.service").unwrap().enabled,
                    Some(true)
                );
            }
            _ => {
                assert!(unit.contains("ExecStart=/usr/bin/kubelet"), "{unit}");
                assert!(
                    unit.contains("After=network-online.target crio.service"),
                    "{unit}"
                );
                assert!(worker.file("/usr/bin/kubelet").is_none());
                assert!(
                    worker
                        .file("/etc/crio/crio.conf.d/10-kindling.conf")
                        .is_some()
                );
            }
        }
        if os == "fcos" {
            assert_eq!(worker.unit("docker.service").unwrap().mask, Some(true));
        }
        if os == "flatcar" {
            let dropins = worker.unit("containerd.service").unwrap().dropins;
            assert!(
                dropins[0]
                    .1
                    .as_deref()
                    .unwrap()
                    .contains("ExecStart=/usr/bin/containerd\n")
            );
        }
    }
}

/// A machine's `wipeDisks` are in its own part, as Ignition's `storage.disks` with
/// `wipeTable`; no other machine's part names a disk.
#[test]
fn only_the_disks_a_machine_lists_in_wipe_disks_are_wiped() {
    let dir = demo_dir();
    let d = dir.path();
    let text = INVENTORY.replace(
        "    ip: 192.168.126.120\n",
        "    ip: 192.168.126.120\n    wipeDisks: [/dev/sdb, /dev/disk/by-id/wwn-0x5000c500a0b1c2d3]\n",
    );
    assert_ne!(text, INVENTORY);
    fs::write(d.join(INVENTORY_FILE), text).unwrap();
    run_at(d, Target::IgnitionConfigs, time::OffsetDateTime::now_utc());
    let worker0 = json(d, "ignition/machines/worker0.ign");
    assert_eq!(
        worker0["storage"]["disks"],
        serde_json::json!([
            {"device": "/dev/sdb", "wipeTable": true},
            {"device": "/dev/disk/by-id/wwn-0x5000c500a0b1c2d3", "wipeTable": true},
        ])
    );
    for other in ["worker1", "master0"] {
        let part = json(d, &format!("ignition/machines/{other}.ign"));
        assert!(part["storage"]["disks"].is_null(), "{other}: {part}");
    }
    // Nor does any other config: the pools', every machine of a pool gets.
    let mut dirs = vec![d.join("ignition")];
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if !path.ends_with("machines/worker0.ign") {
                let text = fs::read_to_string(&path).unwrap();
                assert!(!text.contains("\"disks\""), "{}", path.display());
                seen += 1;
            }
        }
    }
    assert!(seen > 5, "{seen} configs");
}
