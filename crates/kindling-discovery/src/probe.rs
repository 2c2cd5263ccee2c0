//! A machine's hardware, read from the kernel's /sys and /proc (under a root, so that tests can
//! give a tree of their own). Nothing is written: a file that is missing or unreadable leaves
//! its field empty. The one thing run is `ipmitool`, for the BMC's address, where the system
//! has it (see [`bmc_address`]).

use std::path::Path;

use crate::{Cpu, Disk, Hardware, Nic, System};

/// Reads the hardware of the machine whose /sys and /proc are under `root`.
pub fn hardware(root: &Path) -> Hardware {
    Hardware {
        nics: nics(root),
        disks: disks(root),
        cpu: cpu(root),
        memory_bytes: memory(root),
        system: system(root),
        bmc: bmc_address(root),
    }
}

/// The BMC's LAN address, asked of the BMC itself through the host's IPMI device (what
/// `ipmitool lan print` reads with Get LAN Configuration Parameters). Only where the system has
/// a BMC device (`/dev/ipmi0`) and ipmitool: the Fedora CoreOS live image has no ipmitool,
/// and the workspace forbids the unsafe ioctl that would read it without.
pub fn bmc_address(root: &Path) -> Option<String> {
    if !root.join("dev/ipmi0").exists() {
        return None;
    }
    let out = std::process::Command::new("ipmitool")
        .args(["lan", "print"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| lan_address(&String::from_utf8_lossy(&out.stdout)))
        .flatten()
        .map(|ip| format!("ipmi://{ip}"))
}

/// The `IP Address` of `ipmitool lan print`'s output; None when it is unset (0.0.0.0).
fn lan_address(text: &str) -> Option<std::net::Ipv4Addr> {
    let ip: std::net::Ipv4Addr = text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "IP Address").then(|| value.trim().parse().ok())?
    })?;
    (!ip.is_unspecified()).then_some(ip)
}

/// A sysfs attribute, trimmed; None when it is missing, unreadable or empty.
fn attribute(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The entries of a directory, sorted by name.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

fn nics(root: &Path) -> Vec<Nic> {
    let class = root.join("sys/class/net");
    entries(&class)
        .into_iter()
        .filter_map(|name| {
            let dir = class.join(&name);
            // Only interfaces with a device behind them: not lo, bridges, bonds or veths.
            if !dir.join("device").exists() {
                return None;
            }
            let driver = std::fs::read_link(dir.join("device/driver"))
                .ok()
                .and_then(|p| p.file_name()?.to_str().map(String::from));
            Some(Nic {
                mac: attribute(&dir.join("address"))?,
                // Reading `carrier` of a link that is down fails (EINVAL): no link.
                link: attribute(&dir.join("carrier")).as_deref() == Some("1"),
                // `speed` is -1 or unreadable without a link.
                speed_mbps: attribute(&dir.join("speed")).and_then(|s| s.parse().ok()),
                driver,
                name,
            })
        })
        .collect()
}

/// Block devices that are not disks.
const NOT_DISKS: [&str; 8] = ["loop", "ram", "zram", "dm-", "md", "sr", "nbd", "fd"];

fn disks(root: &Path) -> Vec<Disk> {
    let block = root.join("sys/block");
    entries(&block)
        .into_iter()
        .filter(|name| !NOT_DISKS.iter().any(|p| name.starts_with(p)))
        .filter_map(|name| {
            let dir = block.join(&name);
            let sectors: u64 = attribute(&dir.join("size"))?.parse().ok()?;
            if sectors == 0 {
                return None;
            }
            let first = |paths: &[&str]| paths.iter().find_map(|p| attribute(&dir.join(p)));
            Some(Disk {
                size_bytes: sectors * 512,
                model: first(&["device/model"]),
                serial: first(&["serial", "device/serial"]).or_else(|| vpd_serial(&dir)),
                wwn: first(&["wwid", "device/wwid"]),
                rotational: attribute(&dir.join("queue/rotational")).as_deref() != Some("0"),
                removable: attribute(&dir.join("removable")).as_deref() == Some("1"),
                name,
            })
        })
        .collect()
}

/// A SCSI disk's serial number from its Unit Serial Number page (VPD page 0x80): a 4-byte
/// header, then the serial, padded with spaces.
fn vpd_serial(dir: &Path) -> Option<String> {
    let page = std::fs::read(dir.join("device/vpd_pg80")).ok()?;
    let length = usize::from(*page.get(3)?);
    let serial = page.get(4..4 + length.min(page.len().saturating_sub(4)))?;
    let text = String::from_utf8_lossy(serial)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    (!text.is_empty()).then_some(text)
}

fn cpu(root: &Path) -> Cpu {
    let info = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
    let value = |line: &str, key: &str| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    };
    Cpu {
        model: info
            .lines()
            .find_map(|l| value(l, "model name"))
            .unwrap_or_default(),
        count: info
            .lines()
            .filter(|l| value(l, "processor").is_some())
            .count() as u32,
        arch: std::env::consts::ARCH.to_string(),
    }
}

fn memory(root: &Path) -> u64 {
    let info = std::fs::read_to_string(root.join("proc/meminfo")).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn system(root: &Path) -> System {
    let dmi = root.join("sys/class/dmi/id");
    let read = |name: &str| attribute(&dmi.join(name));
    System {
        vendor: read("sys_vendor"),
        product: read("product_name"),
        serial: read("product_serial"),
        uuid: read("product_uuid").map(|u| u.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, path: &str, contents: &[u8]) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    /// A tree shaped as Linux 6.1 shows a QEMU machine with a virtio NIC, a SCSI SSD (serial
    /// in its VPD page), a virtio disk, a loop device and a CD drive.
    #[test]
    fn hardware_is_read_from_sys_and_proc() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, "sys/class/net/lo/address", b"00:00:00:00:00:00\n");
        put(root, "sys/class/net/eth0/address", b"52:54:00:12:34:56\n");
        put(root, "sys/class/net/eth0/carrier", b"1\n");
        put(root, "sys/class/net/eth0/speed", b"1000\n");
        std::fs::create_dir_all(root.join("sys/class/net/eth0/device")).unwrap();
        put(root, "sys/class/net/br0/address", b"52:54:00:ff:ff:ff\n");
        put(root, "sys/block/sda/size", b"2097152\n");
        put(root, "sys/block/sda/queue/rotational", b"0\n");
        put(root, "sys/block/sda/removable", b"0\n");
        put(root, "sys/block/sda/device/model", b"QEMU HARDDISK   \n");
        put(
            root,
            "sys/block/sda/device/vpd_pg80",
            b"\0\x80\0\x08SSD00001",
        );
        put(root, "sys/block/vda/size", b"6291456\n");
        put(root, "sys/block/vda/queue/rotational", b"1\n");
        put(root, "sys/block/vda/serial", b"HDD00002\n");
        put(root, "sys/block/loop0/size", b"100\n");
        put(root, "sys/block/sr0/size", b"100\n");
        put(
            root,
            "proc/cpuinfo",
            b"processor\t: 0\nmodel name\t: QEMU Virtual CPU version 2.5+\n\nprocessor\t: 1\nmodel name\t: QEMU Virtual CPU version 2.5+\n",
        );
        put(
            root,
            "proc/meminfo",
            b"MemTotal:        1012345 kB\nMemFree: 1 kB\n",
        );
        put(root, "sys/class/dmi/id/sys_vendor", b"QEMU\n");
        put(root, "sys/class/dmi/id/product_serial", b"RACK1-U7\n");
        put(
            root,
            "sys/class/dmi/id/product_uuid",
            b"0B6B1D5E-7C6A-4B7E-9E1A-3D5C2F1A0B99\n",
        );

        let hw = hardware(root);
        assert_eq!(
            hw.nics,
            [Nic {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".into(),
                link: true,
                speed_mbps: Some(1000),
                driver: None,
            }]
        );
        let names: Vec<&str> = hw.disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "vda"]);
        assert_eq!(hw.disks[0].size_bytes, 1 << 30);
        assert!(!hw.disks[0].rotational);
        assert_eq!(hw.disks[0].model.as_deref(), Some("QEMU HARDDISK"));
        assert_eq!(hw.disks[0].serial.as_deref(), Some("SSD00001"));
        assert_eq!(hw.disks[1].size_bytes, 3 << 30);
        assert!(hw.disks[1].rotational);
        assert_eq!(hw.disks[1].serial.as_deref(), Some("HDD00002"));
        assert_eq!(hw.cpu.count, 2);
        assert_eq!(hw.cpu.model, "QEMU Virtual CPU version 2.5+");
        assert_eq!(hw.memory_bytes, 1012345 * 1024);
        assert_eq!(hw.system.vendor.as_deref(), Some("QEMU"));
        assert_eq!(hw.system.product, None);
        assert_eq!(
            hw.system.uuid.as_deref(),
            Some("0b6b1d5e-7c6a-4b7e-9e1a-3d5c2f1a0b99")
        );
    }

    #[test]
    fn the_bmc_address_is_read_from_ipmitools_lan_print() {
        let printed = "Set in Progress         : Set Complete\nAuth Type Support       : MD5 \nIP Address Source       : Static Address\nIP Address              : 10.0.0.5\nSubnet Mask             : 255.255.255.0\nMAC Address             : 52:54:00:aa:bb:cc\nDefault Gateway IP      : 10.0.0.1\n";
        assert_eq!(lan_address(printed), Some([10, 0, 0, 5].into()));
        assert_eq!(lan_address(&printed.replace("10.0.0.5", "0.0.0.0")), None);
        assert_eq!(lan_address("Set in Progress : Set Complete\n"), None);
    }

    #[test]
    fn an_empty_root_gives_an_empty_report() {
        let dir = tempfile::tempdir().unwrap();
        let hw = hardware(dir.path());
        assert!(hw.nics.is_empty() && hw.disks.is_empty());
        assert_eq!(hw.memory_bytes, 0);
    }
}
