//! What a certificate says: subject, issuer, names, validity. For `kindling certs`, and for
//! servers that identify a client by its certificate.

use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;

/// A certificate, as a person checking it would read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's distinguished name, e.g. `CN=system:node:worker0, O=system:nodes`.
    pub subject: String,
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    pub issuer: String,
    /// DNS names and IP addresses.
    pub names: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
}

fn bad(e: impl std::fmt::Display) -> PkiError {
    PkiError::BadCertificate(e.to_string())
}

/// Reads one DER certificate.
pub fn inspect_der(der: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(bad)?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let organizations = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).unwrap_or_default())
                            .to_string(),
                    ),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).unwrap_or_default())
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        subject: subject.to_string(),
        common_name,
        organizations,
        issuer: cert.issuer().to_string(),
        names,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca: cert.is_ca(),
    })
}

/// Reads every certificate of a PEM text (a bundle, or a certificate followed by its key).
pub fn inspect_pem(pem: &str) -> Result<Vec<CertInfo>, PkiError> {
    let mut found = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(bad)?;
        if block.label == "CERTIFICATE" {
            found.push(inspect_der(&block.contents)?);
        }
    }
    if found.is_empty() {
        return Err(bad("no certificate in the PEM text"));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ca, KeyAlgorithm, LeafSpec, Lifetimes};

    #[test]
    fn a_node_client_certificate_reads_back() {
        let lifetimes = Lifetimes::default();
        let now = OffsetDateTime::now_utc();
        let ca = Ca::generate(
            "kindling-root",
            KeyAlgorithm::EcdsaP256,
            now,
            lifetimes.root,
        )
        .unwrap();
        let leaf = ca
            .issue(
                &LeafSpec::client("system:node:worker0", &["system:nodes"]),
                KeyAlgorithm::EcdsaP256,
                now,
                lifetimes.leaf,
            )
            .unwrap();
        let mut pem = leaf.cert_pem.clone();
        pem.push_str(&leaf.key_pem);
        let info = inspect_pem(&pem).unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].common_name.as_deref(), Some("system:node:worker0"));
        assert_eq!(info[0].organizations, ["system:nodes"]);
        assert!(
            info[0].issuer.contains("kindling-root"),
            "{}",
            info[0].issuer
        );
        assert!(!info[0].is_ca);
        assert!(inspect_pem(&ca.cert_pem).unwrap()[0].is_ca);
        assert!(inspect_pem("nothing").is_err());
    }
}
