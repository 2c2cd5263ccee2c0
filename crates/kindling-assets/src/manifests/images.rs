//! The container images a cluster runs, in one table, every one pinned by version.
//!
//! The Kubernetes components follow `kubernetes.version` in the inventory; the others are the
//! releases this version of kindling was checked with. Changing one here changes every manifest
//! that names it.

/// etcd as kubeadm ships it for Kubernetes 1.34 (registry.k8s.io builds carry a `-0` suffix).
const ETCD_TAG: &str = "3.6.4-0";
/// CoreDNS as kubeadm ships it for Kubernetes 1.34.
const COREDNS_TAG: &str = "v1.12.1";
/// The pod sandbox image matching Kubernetes 1.34.
const PAUSE_TAG: &str = "3.10.1";
/// flannel publishes to ghcr.io only; registry.k8s.io does not mirror it. These are the images
/// of flannel's v0.27.4 release manifest.
const FLANNEL: &str = "ghcr.io/flannel-io/flannel:v0.27.4";
const FLANNEL_CNI_PLUGIN: &str = "ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1";

/// Every image reference kindling's manifests use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// `registry.k8s.io/kube-apiserver:v<version>`, and likewise the next three.
    pub kube_apiserver: String,
    pub kube_controller_manager: String,
    pub kube_scheduler: String,
    pub kube_proxy: String,
    /// The etcd release kubeadm pairs with Kubernetes 1.34.
    pub etcd: String,
    /// The CoreDNS release kubeadm pairs with Kubernetes 1.34.
    pub coredns: String,
    /// No manifest names it: it is the sandbox image the container runtime must be configured
    /// with (containerd's `sandbox_image`), kept here so that it is pinned with the rest.
    pub pause: String,
    /// flanneld, which also copies the CNI configuration into place.
    pub flannel: String,
    /// Carries the `flannel` CNI plugin binary that an init container copies to the host.
    pub flannel_cni_plugin: String,
}

impl Images {
    /// The images for a Kubernetes release, `MAJOR.MINOR.PATCH` (a leading `v` is accepted).
    pub fn for_version(kubernetes_version: &str) -> Images {
        let v = kubernetes_version
            .strip_prefix('v')
            .unwrap_or(kubernetes_version);
        let k8s = |component: &str| format!("registry.k8s.io/{component}:v{v}");
        Images {
            kube_apiserver: k8s("kube-apiserver"),
            kube_controller_manager: k8s("kube-controller-manager"),
            kube_scheduler: k8s("kube-scheduler"),
            kube_proxy: k8s("kube-proxy"),
            etcd: format!("registry.k8s.io/etcd:{ETCD_TAG}"),
            coredns: format!("registry.k8s.io/coredns/coredns:{COREDNS_TAG}"),
            pause: format!("registry.k8s.io/pause:{PAUSE_TAG}"),
            flannel: FLANNEL.to_string(),
            flannel_cni_plugin: FLANNEL_CNI_PLUGIN.to_string(),
        }
    }

    /// Every image, for pre-pulling or mirroring.
    pub fn all(&self) -> [&str; 9] {
        [
            &self.kube_apiserver,
            &self.kube_controller_manager,
            &self.kube_scheduler,
            &self.kube_proxy,
            &self.etcd,
            &self.coredns,
            &self.pause,
            &self.flannel,
            &self.flannel_cni_plugin,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_components_follow_the_version_and_the_rest_stay_pinned() {
        let images = Images::for_version("1.33.5");
        assert_eq!(
            images.kube_apiserver,
            "registry.k8s.io/kube-apiserver:v1.33.5"
        );
        assert_eq!(images.kube_proxy, "registry.k8s.io/kube-proxy:v1.33.5");
        assert_eq!(images.etcd, "registry.k8s.io/etcd:3.6.4-0");
        assert_eq!(
            Images::for_version("v1.34.1"),
            Images::for_version("1.34.1")
        );
    }

    #[test]
    fn every_image_has_a_version_tag() {
        for image in Images::for_version("1.34.1").all() {
            let (repo, tag) = image
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{image} has no tag"));
            assert!(!repo.is_empty() && !repo.ends_with('/'), "{image}");
            assert!(
                tag.starts_with(|c: char| c == 'v' || c.is_ascii_digit()),
                "{image}: tag {tag} is not a version"
            );
            assert!(tag.contains('.'), "{image}: tag {tag} is not a version");
            assert_ne!(tag, "latest", "{image}");
        }
    }
}
