//! Ignition configs: built entry by entry ([`Config`]), merged with Ignition's own rules,
//! rendered for spec 3.0.0–3.4.0 (or translated down to 2.2/2.3 for Ignition 0.x), the pointer config a machine boots with ([`PointerConfig`]),
//! and the Butane subset users write snippets in ([`parse_snippet`]).
//!
//! The types underneath are coreos's `ignition-config` (generated from Ignition's schema), so
//! what we write is what Ignition reads. Every render is parsed back for the target spec before
//! it is returned; see [`Config::render`].

mod butane;
mod config;
pub mod data_url;
mod pointer;
mod render;
mod spec2;
#[cfg(test)]
mod tests;

pub use butane::{SnippetError, parse_snippet};
pub use config::{Config, Contents, FileEntry, UnitEntry};
pub use kindling_config::inventory::IgnitionVersion;
pub use pointer::PointerConfig;

/// Why a config could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum IgnitionError {
    /// The target spec lacks a feature the config uses.
    #[error("Ignition spec {version} cannot express {feature}; it needs spec {needs} or later")]
    Unsupported {
        version: IgnitionVersion,
        feature: String,
        needs: IgnitionVersion,
    },
    /// Parsed back for the target spec, the output had a key that spec does not know. Ignition
    /// would ignore it, so the machine would silently miss part of its config.
    #[error(
        "Ignition spec {version} has no field {key}; it would be ignored — target a later spec, or leave the feature out"
    )]
    UnknownField {
        version: IgnitionVersion,
        key: String,
    },
    /// An entry Ignition would refuse whatever the spec: a relative path, a bad unit name.
    #[error("{0}")]
    Invalid(String),
    /// The output did not parse as a config of the target spec (a bug in kindling).
    #[error("the rendered config does not parse as Ignition spec {version}: {source}")]
    Unparsable {
        version: IgnitionVersion,
        source: ignition_config::Error,
    },
    /// The config could not be turned into JSON (a bug in kindling).
    #[error("writing the config as JSON: {0}")]
    Json(#[from] serde_json::Error),
}
