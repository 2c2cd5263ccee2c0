//! What a machine must do after a rendering changed its files: nothing, restart some units, or
//! reboot. A reboot is the safe default; a change is spared it only where the program that
//! reads the file is known and restarting it is enough (the machine-config-operator keeps a
//! similar, shorter list).

use std::collections::BTreeSet;

use kindling_assets::layout;

use super::disk::{PRESET_FILE, UNITS_DIR};

/// What to do once a rendering's files are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// `systemctl daemon-reload`, then restart these units, in order.
    Restart(BTreeSet<String>),
    /// Reboot; the path says why.
    Reboot {
        because: String,
    },
}

/// Paths read again by their program whenever it uses them: the kubelet watches its static
/// pods, containerd reads its registry hosts on every pull, the CNI plugins run per pod, and the
/// agent reads its own files.
const READ_AFRESH: &[&str] = &[
    layout::STATIC_PODS_DIR,
    "/etc/kindling/",
    "/etc/containerd/certs.d/",
    "/opt/cni/bin/",
];

/// The unit to restart for a file it alone reads.
fn owner(path: &str) -> Option<&'static str> {
    let kubelet = [
        layout::KUBELET_CONFIG,
        layout::KUBELET_ENV,
        layout::KUBELET_BOOTSTRAP_KUBECONFIG,
    ];
    if kubelet.contains(&path) || path.ends_with("/bin/kubelet") {
        Some(layout::KUBELET_UNIT)
    } else if path == "/etc/containerd/config.toml" {
        Some("containerd.service")
    } else if path.starts_with("/etc/crio/") || path.starts_with("/etc/containers/") {
        Some("crio.service")
    } else {
        None
    }
}

/// The unit a path under `/etc/systemd/system` is, or is a drop-in of.
fn unit_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(UNITS_DIR)?.strip_prefix('/')?;
    let unit = rest.split('/').next()?;
    Some(unit.strip_suffix(".d").unwrap_or(unit))
}

/// What `changed` and `removed` (paths on the machine; `masks` are the units now masked) call
/// for.
pub fn after(changed: &[String], removed: &[String], masks: &BTreeSet<String>) -> Action {
    let mut restart = BTreeSet::new();
    for path in changed.iter().chain(removed) {
        if READ_AFRESH.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        if let Some(unit) = owner(path) {
            restart.insert(unit.to_string());
            continue;
        }
        let is_removed = removed.contains(path);
        match unit_of(path) {
            Some(unit) if unit.ends_with(".service") && !is_removed && !masks.contains(unit) => {
                restart.insert(unit.to_string());
            }
            _ => {
                let because = if path == PRESET_FILE {
                    format!("{path} (which units start at boot) changed")
                } else if is_removed {
                    format!("{path} was removed")
                } else {
                    format!("{path} changed")
                };
                return Action::Reboot { because };
            }
        }
    }
    if restart.is_empty() {
        Action::Nothing
    } else {
        Action::Restart(restart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_reboot_only_when_no_restart_is_known_to_be_enough() {
        let none = BTreeSet::new();
        assert_eq!(
            after(
                &paths(&[
                    "/etc/kubernetes/manifests/kube-apiserver.yaml",
                    "/etc/containerd/certs.d/registry.k8s.io/hosts.toml",
                    "/etc/kindling/rendering",
                ]),
                &[],
                &none
            ),
            Action::Nothing
        );
        assert_eq!(
            after(
                &paths(&[
                    "/etc/kubernetes/kubelet.env",
                    "/usr/local/bin/kubelet",
                    "/etc/containerd/config.toml",
                    "/etc/systemd/system/kubelet.service.d/10-x.conf",
                ]),
                &[],
                &none
            ),
            Action::Restart(
                ["containerd.service", "kubelet.service"]
                    .map(String::from)
                    .into()
            )
        );
        let reboot = after(&paths(&["/etc/kubernetes/pki/ca.crt"]), &[], &none);
        assert!(
            matches!(&reboot, Action::Reboot { because } if because.contains("pki/ca.crt")),
            "{reboot:?}"
        );
        assert!(matches!(
            after(&paths(&[PRESET_FILE]), &[], &none),
            Action::Reboot { .. }
        ));
        // A unit that is removed or masked is stopped by a reboot, not restarted.
        assert!(matches!(
            after(&[], &paths(&["/etc/systemd/system/old.service"]), &none),
            Action::Reboot { .. }
        ));
        let masked = BTreeSet::from(["docker.service".to_string()]);
        assert!(matches!(
            after(
                &paths(&["/etc/systemd/system/docker.service"]),
                &[],
                &masked
            ),
            Action::Reboot { .. }
        ));
    }
}
