//! Boot scripts from a profile's `boot`, byte for byte as matchbox writes them.
//!
//! matchbox renders these with fixed Go templates over the profile's `NetBoot`
//! (`matchbox/http/ipxe.go`, `matchbox/http/grub.go`); kernel arguments and initrd entries are
//! copied as written, so iPXE variables such as `${uuid}` and `${mac:hexhyp}` reach the firmware
//! untouched.

use crate::Boot;

/// The `/boot.ipxe` script: iPXE gathers the machine's attributes and chainloads `/ipxe` with
/// them (matchbox's `ipxeBootstrap`).
pub const BOOT_IPXE: &str = "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}\n";

/// How many times kindling's first script fetches the next one before it gives up, and the
/// seconds between tries. A replica of the provisioning service that died mid-boot, or one
/// still taking a new revision (503), answers a later try; clients that walk the boot chain
/// in the tests try as often.
pub const BOOT_TRIES: u32 = 10;
pub const BOOT_RETRY_SECONDS: u32 = 3;

/// kindling's first script: chains to `url` (which may name iPXE settings such as
/// `${mac:hexhyp}`), and tries again [`BOOT_TRIES`] times, [`BOOT_RETRY_SECONDS`] apart, when
/// the fetch or the chained script fails; then reboots. (matchbox's own [`BOOT_IPXE`] tries
/// once.)
pub fn chain_with_retries(url: &str) -> String {
    format!(
        "#!ipxe\n\
         set tries:int32 0\n\
         :fetch\n\
         chain {url} ||\n\
         inc tries\n\
         iseq ${{tries}} {BOOT_TRIES} && goto failed ||\n\
         echo kindling: the boot script did not come (try ${{tries}} of {BOOT_TRIES}); again in {BOOT_RETRY_SECONDS} s\n\
         sleep {BOOT_RETRY_SECONDS}\n\
         goto fetch\n\
         :failed\n\
         echo kindling: no boot script after {BOOT_TRIES} tries; rebooting in 30 s\n\
         sleep 30\n\
         reboot\n"
    )
}

/// The `/ipxe` script for `boot`: `kernel` with the arguments on one line, one `initrd` line per
/// initramfs, then `boot`.
pub fn ipxe_script(boot: &Boot) -> String {
    ipxe(&boot.kernel, &boot.initrd, &boot.args)
}

/// [`ipxe_script`] from the parts of a boot, for callers that hold them elsewhere (kindling's
/// own boot profiles), so that both are written the same way.
pub fn ipxe(kernel: &str, initrds: &[String], args: &[String]) -> String {
    // Sized up front: this is written for every machine's every boot.
    let length = 32
        + kernel.len()
        + args.iter().map(|a| a.len() + 1).sum::<usize>()
        + initrds.iter().map(|i| i.len() + 8).sum::<usize>();
    let mut out = String::with_capacity(length);
    out.push_str("#!ipxe\nkernel ");
    out.push_str(kernel);
    for arg in args {
        out.push(' ');
        out.push_str(arg);
    }
    out.push('\n');
    for initrd in initrds {
        out.push_str("initrd ");
        out.push_str(initrd);
        out.push('\n');
    }
    out.push_str("boot\n");
    out
}

/// The `/grub` config for `boot`: an EFI entry (`linuxefi`/`initrdefi`) and a BIOS entry
/// (`linux`/`initrd`), with the kernel and each initrd quoted.
pub fn grub_script(boot: &Boot) -> String {
    grub(&boot.kernel, &boot.initrd, &boot.args)
}

/// [`grub_script`] from the parts of a boot.
pub fn grub(kernel: &str, initrds: &[String], args: &[String]) -> String {
    let mut out = String::from("default=0\nfallback=1\ntimeout=1\n");
    for (title, linux, initrd) in [
        ("CoreOS (EFI)", "linuxefi", "initrdefi"),
        ("CoreOS (BIOS)", "linux", "initrd"),
    ] {
        out.push_str(&format!(
            "menuentry \"{title}\" {{\necho \"Loading kernel\"\n{linux} \"{}\"",
            kernel
        ));
        for arg in args {
            out.push(' ');
            out.push_str(arg);
        }
        out.push_str(&format!("\necho \"Loading initrd\"\n{initrd} "));
        for path in initrds {
            out.push_str(&format!(" \"{path}\""));
        }
        out.push_str("\n}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// matchbox's `storage/testfakes` profile.
    fn fake() -> Boot {
        Boot {
            kernel: "/image/kernel".into(),
            initrd: vec!["/image/initrd_a".into(), "/image/initrd_b".into()],
            args: vec!["a=b".into(), "c".into()],
        }
    }

    /// matchbox's `ipxeTemplate` (matchbox/http/ipxe.go): the `{{- range}}` form that writes one
    /// `initrd` line per entry.
    #[test]
    fn ipxe_script_matches_matchbox() {
        assert_eq!(
            ipxe_script(&fake()),
            "#!ipxe\nkernel /image/kernel a=b c\ninitrd /image/initrd_a\ninitrd /image/initrd_b\nboot\n"
        );
        let bare = Boot {
            kernel: "/k".into(),
            ..Boot::default()
        };
        assert_eq!(ipxe_script(&bare), "#!ipxe\nkernel /k\nboot\n");
    }

    /// matchbox/http/grub_test.go, `TestGrubHandler`: note the two spaces after `initrdefi`.
    #[test]
    fn grub_script_matches_matchbox() {
        assert_eq!(
            grub_script(&fake()),
            r#"default=0
fallback=1
timeout=1
menuentry "CoreOS (EFI)" {
echo "Loading kernel"
linuxefi "/image/kernel" a=b c
echo "Loading initrd"
initrdefi  "/image/initrd_a" "/image/initrd_b"
}
menuentry "CoreOS (BIOS)" {
echo "Loading kernel"
linux "/image/kernel" a=b c
echo "Loading initrd"
initrd  "/image/initrd_a" "/image/initrd_b"
}
"#
        );
    }

    #[test]
    fn ipxe_variables_in_arguments_are_left_alone() {
        let boot = Boot {
            kernel: "/assets/k".into(),
            initrd: vec!["--name main /assets/initramfs.img".into()],
            args: vec![
                "initrd=main".into(),
                "ignition.config.url=http://matchbox.example.com:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}".into(),
            ],
        };
        assert_eq!(
            ipxe_script(&boot),
            "#!ipxe\nkernel /assets/k initrd=main ignition.config.url=http://matchbox.example.com:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}\ninitrd --name main /assets/initramfs.img\nboot\n"
        );
    }
}
