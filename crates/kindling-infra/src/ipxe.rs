//! `infra/boot.ipxe`: the first script iPXE runs, for sites that serve it from a web server of
//! their own (or a TFTP server). Like `kindling serve`'s `/boot.ipxe`, it chains to the
//! machine's own script with an absolute URL, and tries again when that fails.

use kindling_config::ClusterDescription;

use crate::site::{self, InfraError};

/// `infra/boot.ipxe`, relative to the asset directory.
pub const BOOT_IPXE: &str = "infra/boot.ipxe";

/// The script: `#!ipxe` (iPXE ignores a script that does not start exactly so), then a chain
/// to `<serverURL>/ipxe?…` with the machine's MAC and UUID, tried again when it fails (see
/// [`kindling_matchbox::chain_with_retries`]).
pub fn boot_script(d: &ClusterDescription) -> Result<String, InfraError> {
    let base = site::server_url(d)?;
    Ok(kindling_matchbox::chain_with_retries(&format!(
        "{base}/ipxe?uuid=${{uuid}}&mac=${{mac:hexhyp}}&domain=${{domain}}&hostname=${{hostname}}&serial=${{serial}}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_starts_with_the_ipxe_magic_and_chains_to_the_server() {
        let script = boot_script(&crate::tests::upi()).unwrap();
        assert!(script.starts_with("#!ipxe\n"), "{script}");
        assert!(
            script
                .contains("\nchain http://172.16.0.101:8080/ipxe?uuid=${uuid}&mac=${mac:hexhyp}&"),
            "{script}"
        );
    }

    #[test]
    fn a_trailing_slash_in_the_server_url_makes_no_double_slash() {
        let mut d = crate::tests::demo();
        d.inventory.provisioning.server_url = "http://192.168.126.2:8080/".into();
        let script = boot_script(&d).unwrap();
        assert!(
            script.contains("chain http://192.168.126.2:8080/ipxe?"),
            "{script}"
        );
    }
}
