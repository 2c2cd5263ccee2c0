//! `kindling agent node`: on every machine, the rendering of its pool it runs.
//!
//! - [`disk`]: a rendering on disk as Ignition writes it; drift found and reverted; a new
//!   rendering written, touching only what changed.
//! - [`action`]: after a new rendering, whether to do nothing, restart units, or reboot.
//! - [`agent`]: the loop: drift reported or reverted, the desired rendering applied, the Node
//!   told.

pub mod action;
pub mod agent;
pub mod disk;
