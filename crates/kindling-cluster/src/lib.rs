//! Talks to the cluster's Kubernetes API (kube-rs): connecting with a kubeconfig, server-side
//! apply, the bootstrap record, CSR approval, `wait-for` and `gather`.
//!
//! The node agent uses [`client`] ([`connect`], [`server_version`], [`apply`],
//! [`parse_manifests`], [`apply_manifests`]), [`health`] (Ready nodes, control-plane mirror
//! pods), [`labels`] (the masters' labels) and [`bootstrap`] (the record that `wait-for bootstrap-complete` reads; its module doc
//! is the contract). The CLI's commands use [`csr`], [`wait`] and [`gather`]. No clap here: each
//! command builds a request value and calls in.
//!
//! Tests, here and in other crates, use [`fake`] (feature `fake-apiserver`): a fake API server,
//! in-process or on a loopback port.

pub mod bootstrap;
pub mod client;
pub mod csr;
pub mod drain;
pub mod gather;
pub mod health;
pub mod labels;
pub mod node_config;
pub mod progress;
pub mod timeline;
pub mod wait;

#[cfg(feature = "fake-apiserver")]
pub mod fake;

pub use client::{ClusterError, apply, apply_manifests, connect, parse_manifests, server_version};

/// The demo cluster (`examples/demo`), for unit tests.
#[cfg(test)]
pub(crate) fn demo() -> kindling_config::ClusterDescription {
    use kindling_config::{ClusterDescription, Source};
    ClusterDescription::parse(
        Source {
            name: "install-config.yaml",
            text: include_str!("../../../examples/demo/install-config.yaml"),
        },
        Source {
            name: "inventory.yaml",
            text: include_str!("../../../examples/demo/inventory.yaml"),
        },
    )
    .expect("the demo description is valid")
    .description
}
