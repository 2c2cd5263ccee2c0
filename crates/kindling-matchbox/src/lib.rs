//! A matchbox data directory, read into memory: which group and profile a request selects, and
//! what the group's templates render to.
//!
//! [matchbox](https://github.com/poseidon/matchbox) keeps `profiles/*.json`, `groups/*.json`,
//! `ignition/*` and `generic/*` under its `-data-path`. A machine asks for `/ipxe?mac=…&uuid=…`;
//! matchbox picks the group whose selectors all match the query and that has the most selectors,
//! then serves the group's profile: an iPXE or GRUB script from `boot`, the Ignition config named
//! by `ignition_id` (Butane templates are rendered with Go's `text/template` first), or the
//! generic template named by `generic_id`.
//!
//! This crate does the same work without I/O per request: [`DataDir::load`] reads and checks every
//! file once, [`DataDir::select`] picks a group, [`render`] fills a template, and [`ipxe_script`]
//! / [`grub_script`] write boot scripts byte for byte as matchbox does. The HTTP server lives in
//! `kindling-server`.
//!
//! Where matchbox is loose, kindling is strict and says so: bad files stop the load instead of
//! being skipped with a log line, UUID selectors match in any letter case, ties between equally
//! specific groups are broken by group id, and template syntax kindling does not implement is an
//! error naming the file and line.

mod boot;
mod datadir;
mod decode;
mod select;
mod template;
mod vars;

pub use boot::{
    BOOT_IPXE, BOOT_RETRY_SECONDS, BOOT_TRIES, chain_with_retries, grub, grub_script, ipxe,
    ipxe_script,
};
pub use datadir::{DataDir, LoadError, Problem};
pub use select::{Labels, NoMatch, Selected};
pub use template::{Template, TemplateError, TemplateKind, render};
pub use vars::{metadata_env, template_vars};

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A profile: how a machine boots, and which configs it is served (`profiles/<id>.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The profile's id; groups name it in `profile`, and it is also the file name
    /// (`profiles/<id>.json`), which is how matchbox looks profiles up.
    pub id: String,
    /// A human-readable name.
    pub name: String,
    /// The network boot settings; absent for profiles that only serve configs.
    pub boot: Option<Boot>,
    /// The file under `ignition/` served at `/ignition`: raw Ignition (`.ign`, `.ignition`) or a
    /// Butane template (anything else).
    pub ignition_id: Option<String>,
    /// The file under `generic/` served at `/generic`.
    pub generic_id: Option<String>,
    /// The file this profile was read from.
    pub source: PathBuf,
}

/// A profile's network boot settings, as matchbox's `NetBoot`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boot {
    /// The kernel URL or `/assets/…` path.
    pub kernel: String,
    /// The initramfs URLs, in order. Each may carry iPXE options such as `--name main`.
    pub initrd: Vec<String>,
    /// Kernel arguments, passed through untouched: `${uuid}` and `${mac:hexhyp}` are iPXE's
    /// variables, expanded by the firmware, not by the server.
    pub args: Vec<String>,
}

/// A group: the machines its selectors match, the profile they get, and the metadata their
/// templates see (`groups/<file>.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The group's id: its `id` field, or the file name without `.json` when the field is absent.
    pub id: String,
    /// A human-readable name.
    pub name: String,
    /// The id of the profile machines in this group get.
    pub profile: String,
    /// The labels a request must carry, all of them, for this group to match. `mac` values are
    /// normalised to the lower-case colon form, as matchbox does; other values are as written.
    pub selector: BTreeMap<String, String>,
    /// The group's metadata: always a JSON object (empty when the file has none).
    pub metadata: serde_json::Value,
    /// The file this group was read from.
    pub source: PathBuf,
}
