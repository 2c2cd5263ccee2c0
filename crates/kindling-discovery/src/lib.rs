//! Machines that are not in the inventory yet.
//!
//! With `kindling serve --discover`, a machine whose MAC no inventory entry has boots a live
//! system that runs `kindling agent discover` ([`agent`]): it reads the machine's hardware from
//! /sys and /proc ([`probe`]), reports it once with the one-time token its kernel arguments
//! carry, and waits. The server keeps each report ([`pending`]) until a person accepts the
//! machine into inventory.yaml (`kindling machines accept`), which picks its install disk by
//! the inventory's rule ([`pick_install_disk`]). Then the waiting machine reboots into its
//! install.

pub mod accept;
pub mod agent;
pub mod pending;
pub mod probe;

use kindling_config::inventory::{DiskRule, size_text};
use serde::{Deserialize, Serialize};

/// What a machine reports of itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hardware {
    pub nics: Vec<Nic>,
    pub disks: Vec<Disk>,
    pub cpu: Cpu,
    #[serde(deserialize_with = "whole::u64")]
    pub memory_bytes: u64,
    pub system: System,
    /// The BMC's LAN address, as `ipmi://<address>`, where the machine could read it (see
    /// [`probe::bmc_address`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc: Option<String>,
}

/// A network interface with a device behind it (not lo, bridges or veths).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nic {
    pub name: String,
    pub mac: String,
    /// Whether it has a carrier (a cable to a live port).
    pub link: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::some_u32"
    )]
    pub speed_mbps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

/// A whole disk (not a partition, loop, RAM or optical device).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    /// The kernel's name, e.g. `sda`; its device is `/dev/<name>`.
    pub name: String,
    #[serde(deserialize_with = "whole::u64")]
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    pub rotational: bool,
    /// USB sticks and card readers: never picked by a rule.
    pub removable: bool,
}

impl Disk {
    /// Its device path.
    pub fn device(&self) -> String {
        format!("/dev/{}", self.name)
    }

    /// One line for people: `sda 480G SSD "MODEL" serial S1`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} {} {}",
            self.device(),
            size_text(self.size_bytes),
            if self.rotational {
                "rotational"
            } else {
                "not rotational"
            }
        );
        if let Some(model) = &self.model {
            text.push_str(&format!(" \"{model}\""));
        }
        if let Some(serial) = &self.serial {
            text.push_str(&format!(" serial {serial}"));
        }
        if self.removable {
            text.push_str(" removable");
        }
        text
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    pub model: String,
    /// Logical CPUs.
    #[serde(deserialize_with = "whole::u32")]
    pub count: u32,
    pub arch: String,
}

/// The system's SMBIOS identity, as the kernel shows it under /sys/class/dmi/id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct System {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// Whole numbers as JSON may write them: `5184` or `5184.0` (JSON Schema's integers, which the
/// API's description promises).
mod whole {
    use serde::{Deserialize, Deserializer, de::Error};

    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        n.as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
                    .map(|f| f as u64)
            })
            .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number of 0 or more")))
    }

    pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let n = u64(d)?;
        u32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is too large")))
    }

    pub fn some_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        u32(d).map(Some)
    }
}

/// What the agent sends to `POST /api/v1/discovery`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Report {
    /// The MAC the machine network-booted with, as its kernel arguments say.
    pub mac: String,
    /// The one-time token from its kernel arguments.
    pub token: String,
    pub hardware: Hardware,
}

/// The disk `rule` picks: of the disks that match it, the smallest (ties by name), so that
/// bigger disks stay for data. Removable disks never match.
pub fn pick_install_disk<'d>(rule: &DiskRule, disks: &'d [Disk]) -> Result<&'d Disk, String> {
    disks
        .iter()
        .filter(|d| !d.removable)
        .filter(|d| rule.min_size.is_none_or(|min| d.size_bytes >= min))
        .filter(|d| rule.rotational.is_none_or(|r| d.rotational == r))
        .min_by(|a, b| a.size_bytes.cmp(&b.size_bytes).then(a.name.cmp(&b.name)))
        .ok_or_else(|| {
            let seen: Vec<String> = disks.iter().map(Disk::describe).collect();
            format!(
                "no disk matches installDisk {rule}; its disks: {}",
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, gib: u64, rotational: bool) -> Disk {
        Disk {
            name: name.into(),
            size_bytes: gib << 30,
            rotational,
            ..Disk::default()
        }
    }

    #[test]
    fn whole_numbers_may_be_written_as_json_floats_and_nothing_else_is_taken() {
        let disk = |size: &str| {
            serde_json::from_str::<Disk>(&format!(
                r#"{{"name": "sda", "sizeBytes": {size}, "rotational": true, "removable": false}}"#
            ))
            .map(|d| d.size_bytes)
            .map_err(|e| e.to_string())
        };
        assert_eq!(disk("5184"), Ok(5184));
        assert_eq!(disk("5184.0"), Ok(5184));
        assert!(disk("5184.5").unwrap_err().contains("not a whole number"));
        assert!(disk("-1").unwrap_err().contains("not a whole number"));
        assert!(disk("\"1\"").is_err());
    }

    #[test]
    fn the_smallest_matching_disk_is_picked_and_no_match_lists_the_disks() {
        let disks = [
            disk("sda", 4000, true),
            disk("nvme1n1", 960, false),
            disk("nvme0n1", 480, false),
            disk("sdb", 64, false),
            Disk {
                removable: true,
                ..disk("sdc", 128, false)
            },
        ];
        let rule = DiskRule {
            min_size: Some(100_000_000_000),
            rotational: Some(false),
        };
        assert_eq!(pick_install_disk(&rule, &disks).unwrap().name, "nvme0n1");
        let any_size = DiskRule {
            min_size: None,
            rotational: Some(true),
        };
        assert_eq!(pick_install_disk(&any_size, &disks).unwrap().name, "sda");
        let huge = DiskRule {
            min_size: Some(8 << 40),
            rotational: None,
        };
        let why = pick_install_disk(&huge, &disks).unwrap_err();
        assert!(
            why.starts_with("no disk matches installDisk {minSize: 8Ti}; its disks: /dev/sda 4000Gi rotational, /dev/nvme1n1 960Gi not rotational"),
            "{why}"
        );
        assert!(
            why.ends_with("/dev/sdc 128Gi not rotational removable"),
            "{why}"
        );
        assert!(
            pick_install_disk(&huge, &[])
                .unwrap_err()
                .ends_with("its disks: none")
        );
    }
}
