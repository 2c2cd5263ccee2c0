//! Day 2 of a cluster: what `kindling update` and `kindling serve` share about taking machines
//! out of service.
//!
//! - [`window`]: maintenance windows in a named time zone.
//! - [`slots`]: the reboot slots of a pool, a counting semaphore kept in the asset directory
//!   that Zincati's FleetLock requests (through `kindling serve`) and rolling updates take from
//!   alike, so that together they never take more machines out than the pool allows.
//! - [`policy`]: a pool's update policy: how many machines may be out at once, and when.
//! - [`certs`]: every certificate, key and token kindling made or approved, and its expiry.
//! - [`remove`]: `kindling remove machine`: drained, its etcd member gone while quorum holds,
//!   its Node deleted, out of inventory.yaml; resumable.
//! - [`status`]: every machine's stage, renderings, drift, readiness and certificate expiry.
//! - [`update`]: `kindling update`, the rolling update of a pool, resumable at every step.

pub mod certs;
pub mod install;
pub mod policy;
pub mod remove;
pub mod slots;
pub mod status;
pub mod update;
pub mod window;
