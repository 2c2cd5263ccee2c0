//! What each OS needs to run Kubernetes, and where it is.
//!
//! | OS | runtime | kubelet | what kindling adds |
//! |---|---|---|---|
//! | Fedora CoreOS | containerd (shipped as a dependency of moby-engine, not enabled) | none | the kubelet and crictl in `/usr/local/bin`, the CNI plugins in `/opt/cni/bin`, containerd's config, enabled |
//! | Flatcar | containerd (built in, enabled; its config is in read-only `/usr`) | none | the same binaries in `/opt/bin` and `/opt/cni/bin`; containerd started with `/etc/containerd/config.toml` |
//! | RHCOS | CRI-O | `/usr/bin/kubelet` | CRI-O's drop-in: cgroup driver, sandbox image, `/opt/cni/bin` for flannel |
//!
//! `/usr` is read-only on all three, so binaries go where each OS keeps local ones. Every
//! runtime gets a registry mirror configuration that sends each image to the provisioning host
//! ([`mirror`]), trusting the cluster's root CA, with the machine's own credentials.

pub mod mirror;

use kindling_config::inventory::Os;

/// The container runtime an OS runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
}

/// Where the CNI plugins go on every OS: flannel's init container copies its own plugin there.
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// containerd's `config_path`: one `<registry>/hosts.toml` per upstream registry.
pub const CONTAINERD_HOSTS_DIR: &str = "/etc/containerd/certs.d";
pub const CRIO_DROPIN: &str = "/etc/crio/crio.conf.d/10-kindling.conf";
pub const CRIO_REGISTRIES: &str = "/etc/containers/registries.conf.d/50-kindling.conf";
/// install-config's `additionalTrustBundle` on the machine: the CAs of the site's own mirrors.
pub const ADDITIONAL_TRUST_BUNDLE: &str = "/etc/kindling/additional-trust-bundle.pem";
/// CRI-O's pull credentials, per machine (the `global_auth_file` of its drop-in).
pub const CRIO_AUTH: &str = "/etc/crio/kindling-auth.json";

/// How a machine of an OS runs its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub os: Os,
}

impl Node {
    pub fn new(os: Os) -> Node {
        Node { os }
    }

    pub fn runtime(&self) -> Runtime {
        match self.os {
            Os::Fcos | Os::Flatcar => Runtime::Containerd,
            Os::Rhcos => Runtime::CriO,
        }
    }

    /// The runtime's CRI socket, for the kubelet's `containerRuntimeEndpoint`.
    pub fn endpoint(&self) -> &'static str {
        match self.runtime() {
            Runtime::Containerd => "unix:///run/containerd/containerd.sock",
            Runtime::CriO => "unix:///var/run/crio/crio.sock",
        }
    }

    /// The runtime's unit, which the kubelet's unit wants and follows.
    pub fn runtime_unit(&self) -> &'static str {
        match self.runtime() {
            Runtime::Containerd => "containerd.service",
            Runtime::CriO => "crio.service",
        }
    }

    /// Where kindling puts the kubelet and crictl; `None` where the OS ships them.
    pub fn bin_dir(&self) -> Option<&'static str> {
        match self.os {
            // /usr/local is /var/usrlocal, writable, and its bin is labelled for executables.
            Os::Fcos => Some("/usr/local/bin"),
            Os::Flatcar => Some("/opt/bin"),
            Os::Rhcos => None,
        }
    }

    /// The kubelet binary's path.
    pub fn kubelet(&self) -> String {
        match self.bin_dir() {
            Some(dir) => format!("{dir}/kubelet"),
            None => "/usr/bin/kubelet".to_string(),
        }
    }

    /// Whether kindling must bring the kubelet, crictl and the CNI plugins from the mirror.
    pub fn needs_binaries(&self) -> bool {
        self.bin_dir().is_some()
    }

    /// The runtime's own configuration files, `(path, contents)`, pinned to `sandbox_image`.
    pub fn runtime_files(&self, sandbox_image: &str) -> Vec<(&'static str, String)> {
        match self.runtime() {
            Runtime::Containerd => vec![(CONTAINERD_CONFIG, containerd_config(sandbox_image))],
            Runtime::CriO => vec![(CRIO_DROPIN, crio_dropin(sandbox_image))],
        }
    }

    /// Drop-ins for the runtime's unit, `(unit, name, contents)`.
    pub fn runtime_dropins(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        match self.os {
            // Flatcar's unit starts containerd with --config /usr/share/containerd/config.toml;
            // without --config it reads /etc/containerd/config.toml (flatcar.org, "Customizing
            // Docker", custom containerd configuration).
            Os::Flatcar => vec![(
                "containerd.service",
                "10-kindling.conf",
                "[Service]\nExecStart=\nExecStart=/usr/bin/containerd\n",
            )],
            Os::Fcos | Os::Rhcos => Vec::new(),
        }
    }

    /// Units to enable, and to mask, beyond the kubelet.
    pub fn units(&self) -> (Vec<&'static str>, Vec<&'static str>) {
        match self.os {
            // containerd comes with moby-engine, which FCOS does not enable, nor containerd;
            // Docker is masked so that nothing else runs containers beside the kubelet's.
            Os::Fcos => (
                vec!["containerd.service"],
                vec!["docker.service", "docker.socket"],
            ),
            Os::Flatcar => (vec!["containerd.service"], Vec::new()),
            Os::Rhcos => (vec!["crio.service"], Vec::new()),
        }
    }
}

/// containerd's configuration: version 2, which containerd 1.6 and 1.7 read and 2.x converts.
/// The CRI plugin on (some packages disable it), the systemd cgroup driver as the kubelet's, the
/// sandbox image pinned with the cluster's other images, and registry hosts from
/// [`CONTAINERD_HOSTS_DIR`].
pub fn containerd_config(sandbox_image: &str) -> String {
    format!(
        r#"# containerd for the kubelet. Generated by kindling.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = []
oom_score = -999

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  enable_selinux = true

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{CNI_CONF_DIR}"

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{CONTAINERD_HOSTS_DIR}"
"#
    )
}

/// CRI-O's drop-in on RHCOS: the cgroup driver, the sandbox image, the plugin directory flannel
/// writes to beside RHCOS's own, and the per-machine pull credentials.
pub fn crio_dropin(sandbox_image: &str) -> String {
    format!(
        r#"# CRI-O for the kubelet. Generated by kindling.
[crio.runtime]
cgroup_manager = "systemd"

[crio.image]
pause_image = "{sandbox_image}"
global_auth_file = "{CRIO_AUTH}"

[crio.network]
plugin_dirs = ["{CNI_BIN_DIR}", "/var/lib/cni/bin", "/usr/libexec/cni"]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_os_gets_its_own_runtime_and_places() {
        let fcos = Node::new(Os::Fcos);
        assert_eq!(fcos.kubelet(), "/usr/local/bin/kubelet");
        assert_eq!(fcos.endpoint(), "unix:///run/containerd/containerd.sock");
        assert!(fcos.units().1.contains(&"docker.service"));
        let flatcar = Node::new(Os::Flatcar);
        assert_eq!(flatcar.kubelet(), "/opt/bin/kubelet");
        assert_eq!(flatcar.runtime_dropins()[0].0, "containerd.service");
        let rhcos = Node::new(Os::Rhcos);
        assert_eq!(rhcos.runtime(), Runtime::CriO);
        assert_eq!(rhcos.kubelet(), "/usr/bin/kubelet");
        assert!(!rhcos.needs_binaries());
        assert_eq!(
            rhcos.runtime_files("registry.k8s.io/pause:3.10.1")[0].0,
            CRIO_DROPIN
        );
    }
}
