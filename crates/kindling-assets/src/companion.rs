//! Who makes the Ignition configs of an asset directory: kindling, or openshift-install with
//! kindling as its companion (serving its configs, writing the infrastructure around them).
//!
//! `kindling serve` (what it serves as it is) and `create infra` (where the load balancer sends
//! the machine config server's port) must agree on this, so it is decided here, once.

use std::path::Path;

use crate::ignition::pool_path;

/// openshift-install's record of what it generated; it writes it from its first `create`.
pub const OPENSHIFT_INSTALL_STATE: &str = ".openshift_install_state.json";

/// Which program makes the directory's Ignition configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigMaker {
    /// kindling: its machine config server (`kindling serve`) serves the pool configs.
    Kindling,
    /// openshift-install (OpenShift companion mode): its own machine config server runs on the
    /// bootstrap machine and then on the masters; kindling serves its `.ign` files as they are.
    OpenShiftInstall,
}

/// Decides who makes the configs in `dir`.
///
/// kindling's pool configs (`ignition/<pool>.ign`) mean kindling, whatever else is there: they
/// only come from `kindling create ignition-configs`. Without them, openshift-install's state
/// file or a `master.ign` mean openshift-install (its `create ignition-configs` writes both;
/// the state file alone already says so before the `.ign` files exist). `bootstrap.ign` tells
/// nothing: both write it. An empty directory is kindling's.
pub fn config_maker(dir: &Path) -> ConfigMaker {
    let exists = |path: &str| dir.join(path).exists();
    if ["master", "worker", "infra"]
        .iter()
        .any(|pool| exists(&pool_path(pool)))
    {
        return ConfigMaker::Kindling;
    }
    if exists(OPENSHIFT_INSTALL_STATE) || exists("master.ign") {
        return ConfigMaker::OpenShiftInstall;
    }
    ConfigMaker::Kindling
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "{}").unwrap();
        }
        dir
    }

    #[test]
    fn openshift_install_output_without_kindling_pools_is_companion_mode() {
        for files in [
            &[OPENSHIFT_INSTALL_STATE][..],
            &["bootstrap.ign", "master.ign", "worker.ign"],
            &[OPENSHIFT_INSTALL_STATE, "master.ign"],
        ] {
            let dir = dir_with(files);
            assert_eq!(
                config_maker(dir.path()),
                ConfigMaker::OpenShiftInstall,
                "{files:?}"
            );
        }
    }

    #[test]
    fn kindling_pools_or_nothing_is_kindling() {
        for files in [
            &[][..],
            &["bootstrap.ign"],
            &["master.ign", "ignition/master.ign"],
            &[OPENSHIFT_INSTALL_STATE, "ignition/worker.ign"],
        ] {
            let dir = dir_with(files);
            assert_eq!(config_maker(dir.path()), ConfigMaker::Kindling, "{files:?}");
        }
    }
}
