//! Talks to the cluster's Kubernetes API (kube-rs): connecting with a kubeconfig, server-side
//! apply, the bootstrap record, CSR approval, `wait-for` and `gather`.
//!
//! The node agent uses [`client`] (connect, apply) and [`bootstrap`] (the record that
//! `wait-for bootstrap-complete` reads). The CLI's commands use the rest. No clap here: each
//! command builds a request value and calls in.

pub mod bootstrap;
pub mod client;

#[cfg(feature = "fake-apiserver")]
pub mod fake;

pub use client::{ClusterError, apply, connect, server_version};
