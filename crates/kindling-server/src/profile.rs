//! Boot profiles: the kernel, initrds and kernel arguments a machine boots, per OS, and the iPXE
//! and GRUB scripts that say so.

use kindling_config::inventory::{Os, OsImages};
use kindling_mirror::release::FCOS_PXE;

/// What a machine network-boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootProfile {
    pub kernel: String,
    pub initrds: Vec<String>,
    pub args: Vec<String>,
}

/// A boot script's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Ipxe,
    Grub,
}

/// Boot scripts, made once per install disk: the machines of a catalog differ in nothing else
/// but their Ignition URL, so each script is kept split around a stand-in for it, and a
/// machine's is the pieces joined with its URL. (/ipxe and /grub are asked on every boot, and a
/// profile made anew is a dozen strings.)
#[derive(Default)]
pub struct Scripts(std::sync::RwLock<std::collections::HashMap<String, [Option<Pieces>; 2]>>);

type Pieces = std::sync::Arc<[String]>;

/// What stands for the Ignition URL in a script made to be split.
const URL_STAND_IN: &str = "\u{1}kindling-ignition-url\u{1}";

impl Scripts {
    /// `kind` of script for a machine on `install_disk` whose config is at `ignition_url`;
    /// `profile` makes the profile for an Ignition URL, the first time.
    pub fn get(
        &self,
        kind: Script,
        install_disk: &str,
        ignition_url: &str,
        profile: impl FnOnce(&str) -> BootProfile,
    ) -> String {
        let slot = kind as usize;
        let known = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(install_disk)
            .and_then(|kinds| kinds[slot].clone());
        let pieces = known.unwrap_or_else(|| {
            let made = profile(URL_STAND_IN);
            let text = match kind {
                Script::Ipxe => made.ipxe(),
                Script::Grub => made.grub(),
            };
            let pieces: Pieces = text.split(URL_STAND_IN).map(String::from).collect();
            self.0
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(install_disk.to_string())
                .or_default()[slot] = Some(pieces.clone());
            pieces
        });
        pieces.join(ignition_url)
    }
}

/// What a profile needs to know about the machine and the cluster.
pub struct ProfileInputs<'a> {
    pub os: Os,
    pub images: &'a OsImages,
    /// `<serverURL>`, without a trailing slash.
    pub server_url: &'a str,
    pub install_disk: &'a str,
    /// The URL the machine fetches its Ignition config from.
    pub ignition_url: &'a str,
    /// `provisioning.kernelArgs`, appended.
    pub extra_args: &'a [String],
}

/// What the live system of a discovery boot needs to know.
pub struct LiveInputs<'a> {
    pub os: Os,
    pub images: &'a OsImages,
    pub server_url: &'a str,
    /// The live system's Ignition config.
    pub ignition_url: &'a str,
    pub extra_args: &'a [String],
}

/// An image's URL: as `provisioning.osImages` sets it, else `default` as served from
/// `<serverURL>/assets/<os>/`.
fn image_url(server_url: &str, os: Os, set: &Option<String>, default: &str) -> String {
    set.clone()
        .unwrap_or_else(|| format!("{server_url}/assets/{}/{default}", os_dir(os)))
}

/// The file name iPXE gives an image it downloaded: the last path segment of its URL. UEFI
/// kernels find their initrd by this name (`initrd=<name>`), which 2019's iPXE does not add.
fn image_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

impl BootProfile {
    /// The profile for `inputs.os`. Images not set in the inventory are served from
    /// `<serverURL>/assets/<os>/`, where they go after download (as with matchbox's examples).
    pub fn for_machine(inputs: &ProfileInputs<'_>) -> BootProfile {
        let images = inputs.images;
        let pick = |set: &Option<String>, default: &str| {
            image_url(inputs.server_url, inputs.os, set, default)
        };
        let profile = match inputs.os {
            // Fedora CoreOS live PXE: the live system installs to disk and reboots into it.
            // The names are the ones `kindling mirror --from-release` gives them.
            Os::Fcos => BootProfile {
                kernel: pick(&images.kernel, FCOS_PXE[0].1),
                initrds: vec![pick(&images.initramfs, FCOS_PXE[1].1)],
                args: vec![
                    format!(
                        "coreos.live.rootfs_url={}",
                        pick(&images.rootfs, FCOS_PXE[2].1)
                    ),
                    format!("coreos.inst.install_dev={}", inputs.install_disk),
                    format!("coreos.inst.ignition_url={}", inputs.ignition_url),
                    "ignition.firstboot".into(),
                    "ignition.platform.id=metal".into(),
                ],
            },
            // The RHCOS legacy installer of OCP 4.5 UPI: it writes the image, then the config.
            Os::Rhcos => BootProfile {
                kernel: pick(&images.kernel, "rhcos-installer-kernel-x86_64"),
                initrds: vec![pick(
                    &images.initramfs,
                    "rhcos-installer-initramfs.x86_64.img",
                )],
                args: vec![
                    "ip=dhcp".into(),
                    "rd.neednet=1".into(),
                    "coreos.inst=yes".into(),
                    format!(
                        "coreos.inst.install_dev={}",
                        inputs.install_disk.trim_start_matches("/dev/")
                    ),
                    format!(
                        "coreos.inst.image_url={}",
                        pick(&images.image, "rhcos-metal.x86_64.raw.gz")
                    ),
                    format!("coreos.inst.ignition_url={}", inputs.ignition_url),
                ],
            },
            // Flatcar's PXE image runs from RAM and applies Ignition on its first boot.
            Os::Flatcar => BootProfile::flatcar(images, &pick, inputs.ignition_url),
        };
        profile.finish(inputs.extra_args)
    }

    /// The arguments every profile has: each initrd's name first (see [`image_name`]), then
    /// the OS's, the consoles, and `provisioning.kernelArgs`.
    fn finish(mut self, extra_args: &[String]) -> BootProfile {
        let names: Vec<String> = self
            .initrds
            .iter()
            .map(|i| format!("initrd={}", image_name(i)))
            .collect();
        self.args.splice(0..0, names);
        self.args
            .extend(["console=tty0", "console=ttyS0,115200n8"].map(String::from));
        self.args.extend(extra_args.iter().cloned());
        self
    }

    /// The OS's live system from RAM, with `inputs.ignition_url` as its Ignition config and no
    /// install: for a machine that is discovered. RHCOS boots its live images (4.6 and later;
    /// 4.5's legacy installer images cannot run a live system), named as `provisioning.osImages`
    /// says or as for Fedora CoreOS.
    pub fn live(inputs: &LiveInputs<'_>) -> BootProfile {
        let images = inputs.images;
        let pick = |set: &Option<String>, default: &str| {
            image_url(inputs.server_url, inputs.os, set, default)
        };
        let profile = match inputs.os {
            Os::Fcos | Os::Rhcos => BootProfile {
                kernel: pick(&images.kernel, FCOS_PXE[0].1),
                initrds: vec![pick(&images.initramfs, FCOS_PXE[1].1)],
                args: vec![
                    format!(
                        "coreos.live.rootfs_url={}",
                        pick(&images.rootfs, FCOS_PXE[2].1)
                    ),
                    "ignition.firstboot".into(),
                    "ignition.platform.id=metal".into(),
                    format!("ignition.config.url={}", inputs.ignition_url),
                ],
            },
            Os::Flatcar => BootProfile::flatcar(images, &pick, inputs.ignition_url),
        };
        profile.finish(inputs.extra_args)
    }

    /// Flatcar's PXE image: it runs from RAM and applies Ignition on its first boot, for an
    /// install and a discovery alike.
    fn flatcar(
        images: &OsImages,
        pick: &dyn Fn(&Option<String>, &str) -> String,
        ignition_url: &str,
    ) -> BootProfile {
        BootProfile {
            kernel: pick(&images.kernel, "flatcar_production_pxe.vmlinuz"),
            initrds: vec![pick(
                &images.initramfs,
                "flatcar_production_pxe_image.cpio.gz",
            )],
            args: vec![
                "flatcar.first_boot=yes".into(),
                format!("ignition.config.url={ignition_url}"),
            ],
        }
    }

    /// The images this profile fetches from `<server_url>/assets/`, as paths under `assets/`.
    pub fn served_assets(&self, server_url: &str) -> Vec<String> {
        let prefix = format!("{}/assets/", server_url.trim_end_matches('/'));
        std::iter::once(self.kernel.as_str())
            .chain(self.initrds.iter().map(String::as_str))
            .chain(
                self.args
                    .iter()
                    .filter_map(|a| a.split_once('=').map(|(_, v)| v)),
            )
            .filter_map(|url| url.strip_prefix(&prefix))
            .map(String::from)
            .collect()
    }

    /// The iPXE script, as matchbox writes it.
    pub fn ipxe(&self) -> String {
        kindling_matchbox::ipxe(&self.kernel, &self.initrds, &self.args)
    }

    /// The GRUB config, as matchbox writes it (an EFI and a BIOS entry).
    pub fn grub(&self) -> String {
        kindling_matchbox::grub(&self.kernel, &self.initrds, &self.args)
    }
}

/// The boot images machines of `description` will fetch from kindling serve's `/assets/` that
/// are not in `<dir>/assets/`: they would get 404 at boot. Images named elsewhere
/// (`provisioning.osImages` on another server) are not kindling's to check here; doctor HEADs
/// every URL.
pub fn missing_boot_assets(
    dir: &std::path::Path,
    description: &kindling_config::ClusterDescription,
) -> Vec<std::path::PathBuf> {
    let provisioning = &description.inventory.provisioning;
    let profile = BootProfile::for_machine(&ProfileInputs {
        os: provisioning.os,
        images: &provisioning.os_images,
        server_url: &provisioning.server_url,
        install_disk: "/dev/sda",
        ignition_url: "",
        extra_args: &[],
    });
    profile
        .served_assets(&provisioning.server_url)
        .into_iter()
        .map(|p| dir.join("assets").join(p))
        .filter(|p| !p.exists())
        .collect()
}

fn os_dir(os: Os) -> &'static str {
    match os {
        Os::Fcos => "fcos",
        Os::Rhcos => "rhcos",
        Os::Flatcar => "flatcar",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_script_is_the_profile_made_anew_for_each_machine_and_disk() {
        let images = OsImages::default();
        let scripts = Scripts::default();
        for os in [Os::Fcos, Os::Flatcar, Os::Rhcos] {
            let scripts = Scripts::default();
            for (disk, url) in [
                (
                    "/dev/sda",
                    "http://192.0.2.2:8080/ignition?mac=52-54-00-00-00-01&token=a1",
                ),
                (
                    "/dev/sda",
                    "http://192.0.2.2:8080/ignition?mac=52-54-00-00-00-02&token=b2",
                ),
                (
                    "/dev/nvme0n1",
                    "http://192.0.2.2:8080/ignition?mac=52-54-00-00-00-03&token=c3",
                ),
            ] {
                let made = |ignition_url: &str| {
                    BootProfile::for_machine(&ProfileInputs {
                        install_disk: disk,
                        ignition_url,
                        ..inputs(os, &images)
                    })
                };
                assert_eq!(scripts.get(Script::Ipxe, disk, url, made), made(url).ipxe());
                assert_eq!(scripts.get(Script::Grub, disk, url, made), made(url).grub());
            }
        }
        // Made once per disk: a second machine's does not make the profile again.
        let made = |ignition_url: &str| {
            BootProfile::for_machine(&ProfileInputs {
                ignition_url,
                ..inputs(Os::Fcos, &images)
            })
        };
        scripts.get(Script::Ipxe, "/dev/sda", "http://a/1", made);
        let again = scripts.get(Script::Ipxe, "/dev/sda", "http://a/2", |_| unreachable!());
        assert!(
            again.contains("coreos.inst.ignition_url=http://a/2 "),
            "{again}"
        );
    }

    fn inputs(os: Os, images: &OsImages) -> ProfileInputs<'_> {
        ProfileInputs {
            os,
            images,
            server_url: "http://192.0.2.2:8080",
            install_disk: "/dev/sda",
            ignition_url: "http://192.0.2.2:8080/ignition?mac=52-54-00-00-00-20&token=abc",
            extra_args: &[],
        }
    }

    #[test]
    fn fedora_coreos_installs_from_the_live_image_with_the_machines_config() {
        let images = OsImages::default();
        let p = BootProfile::for_machine(&inputs(Os::Fcos, &images));
        assert_eq!(
            p.kernel,
            "http://192.0.2.2:8080/assets/fcos/fedora-coreos-live-kernel-x86_64"
        );
        assert_eq!(p.args[0], "initrd=fedora-coreos-live-initramfs.x86_64.img");
        assert!(
            p.args
                .contains(&"coreos.inst.install_dev=/dev/sda".to_string())
        );
        assert!(p.args.contains(&"coreos.live.rootfs_url=http://192.0.2.2:8080/assets/fcos/fedora-coreos-live-rootfs.x86_64.img".to_string()));
        assert!(p.args.iter().any(|a| a == "coreos.inst.ignition_url=http://192.0.2.2:8080/ignition?mac=52-54-00-00-00-20&token=abc"));
        let script = p.ipxe();
        assert!(script.starts_with("#!ipxe\nkernel http://192.0.2.2:8080/assets/fcos/fedora-coreos-live-kernel-x86_64 initrd=fedora-coreos-live-initramfs.x86_64.img "));
        assert!(script.ends_with("initrd http://192.0.2.2:8080/assets/fcos/fedora-coreos-live-initramfs.x86_64.img\nboot\n"));
    }

    #[test]
    fn the_rhcos_legacy_installer_gets_what_ocp_4_5_upi_documents() {
        let images = OsImages {
            image: Some("http://192.0.2.2:8080/rhcos-4.5.6-x86_64-metal.x86_64.raw.gz".into()),
            ..OsImages::default()
        };
        let p = BootProfile::for_machine(&inputs(Os::Rhcos, &images));
        for arg in [
            "initrd=rhcos-installer-initramfs.x86_64.img",
            "ip=dhcp",
            "rd.neednet=1",
            "coreos.inst=yes",
            "coreos.inst.install_dev=sda",
            "coreos.inst.image_url=http://192.0.2.2:8080/rhcos-4.5.6-x86_64-metal.x86_64.raw.gz",
        ] {
            assert!(
                p.args.contains(&arg.to_string()),
                "{arg} missing from {:?}",
                p.args
            );
        }
    }

    #[test]
    fn flatcar_and_custom_images() {
        let images = OsImages {
            kernel: Some("http://10.0.2.2:9000/vmlinuz".into()),
            initramfs: Some("http://10.0.2.2:9000/initrd.img?x=1".into()),
            ..OsImages::default()
        };
        let p = BootProfile::for_machine(&inputs(Os::Flatcar, &images));
        assert_eq!(p.kernel, "http://10.0.2.2:9000/vmlinuz");
        assert_eq!(p.args[0], "initrd=initrd.img");
        assert!(
            p.args
                .iter()
                .any(|a| a.starts_with("ignition.config.url=http://192.0.2.2:8080/ignition?"))
        );
        let grub = p.grub();
        assert!(
            grub.contains("linux \"http://10.0.2.2:9000/vmlinuz\" initrd=initrd.img"),
            "{grub}"
        );
        assert!(
            grub.contains(" \"http://10.0.2.2:9000/initrd.img?x=1\"\n"),
            "{grub}"
        );
        assert!(
            grub.contains("linuxefi \"http://10.0.2.2:9000/vmlinuz\""),
            "{grub}"
        );
    }
}
