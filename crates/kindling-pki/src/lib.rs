//! Keys, certificate authorities and the certificates they sign; kubeconfigs; bootstrap tokens.
//!
//! Everything is PEM text in and out, so the asset engine can store it as files and a CA read
//! back from disk signs exactly like the one that was generated. Keys are ECDSA P-256 unless RSA
//! 2048 is asked for. Nothing here logs key material.

pub mod inspect;
pub mod kubeconfig;
mod token;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

pub use token::BootstrapToken;

/// The kind of key kindling generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256: small and fast; the default.
    #[default]
    EcdsaP256,
    /// RSA 2048 with SHA-256, for environments that require RSA.
    Rsa2048,
}

impl FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ecdsa" => Ok(KeyAlgorithm::EcdsaP256),
            "rsa" => Ok(KeyAlgorithm::Rsa2048),
            other => Err(format!("'{other}' is not a key algorithm (ecdsa or rsa)")),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa",
            KeyAlgorithm::Rsa2048 => "rsa",
        })
    }
}

/// How long certificates live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Certificate authorities: 10 years.
    pub root: Duration,
    /// Leaf certificates: 1 year.
    pub leaf: Duration,
    /// A leaf that expires within this window is re-signed (24 hours, like openshift-install's
    /// bootstrap certificates). Bootstrap leaves live twice this long, so every `create` leaves
    /// them good for at least the window.
    pub bootstrap_window: Duration,
}

impl Default for Lifetimes {
    fn default() -> Lifetimes {
        Lifetimes {
            root: Duration::days(3650),
            leaf: Duration::days(365),
            bootstrap_window: Duration::hours(24),
        }
    }
}

impl Lifetimes {
    pub fn bootstrap_leaf(&self) -> Duration {
        self.bootstrap_window * 2
    }
}

/// Clocks drift between the machine that signs and the machines that check: a certificate is
/// valid from a little before it was made.
const BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a {algorithm} key: {source}")]
    KeyGeneration {
        algorithm: KeyAlgorithm,
        source: rcgen::Error,
    },
    #[error("signing the certificate for {subject}: {source}")]
    Signing {
        subject: String,
        source: rcgen::Error,
    },
    #[error("reading the private key: {0}")]
    BadKey(rcgen::Error),
    #[error("reading the certificate: {0}")]
    BadCertificate(String),
    #[error("'{0}' is not a valid DNS name for a certificate")]
    BadName(String),
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// The subject and names of a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    pub common_name: String,
    /// Subject O= values; Kubernetes reads them as groups (e.g. system:masters).
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usage: Usage,
}

impl LeafSpec {
    pub fn client(common_name: &str, organizations: &[&str]) -> LeafSpec {
        LeafSpec {
            common_name: common_name.to_string(),
            organizations: organizations.iter().map(|o| o.to_string()).collect(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usage: Usage::Client,
        }
    }
}

/// Generates a private key, PEM (PKCS#8).
pub fn generate_key(algorithm: KeyAlgorithm) -> Result<String, PkiError> {
    Ok(key_pair(algorithm)?.serialize_pem())
}

/// The public key of a PEM private key, PEM (SubjectPublicKeyInfo).
pub fn public_key_pem(key_pem: &str) -> Result<String, PkiError> {
    Ok(KeyPair::from_pem(key_pem)
        .map_err(PkiError::BadKey)?
        .public_key_pem())
}

fn key_pair(algorithm: KeyAlgorithm) -> Result<KeyPair, PkiError> {
    let generated = match algorithm {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    };
    generated.map_err(|source| PkiError::KeyGeneration { algorithm, source })
}

/// A random positive serial number, so that re-signing never repeats one.
fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // A failure of the system's random source is not something to carry on from.
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn name(common_name: &str, organizations: &[String]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in organizations {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A certificate authority, able to sign leaves.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA valid from `now` for `lifetime`.
    pub fn generate(
        common_name: &str,
        algorithm: KeyAlgorithm,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<Ca, PkiError> {
        Ca::make(common_name, algorithm, now, lifetime, None)
    }

    /// A CA with a new key: self-signed, or under `parent` (then it may sign leaves only, and
    /// names its parent's key).
    fn make(
        common_name: &str,
        algorithm: KeyAlgorithm,
        now: OffsetDateTime,
        lifetime: Duration,
        parent: Option<&Ca>,
    ) -> Result<Ca, PkiError> {
        let key = key_pair(algorithm)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, &[]);
        params.is_ca = IsCa::Ca(match parent {
            None => BasicConstraints::Unconstrained,
            Some(_) => BasicConstraints::Constrained(0),
        });
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.use_authority_key_identifier_extension = parent.is_some();
        params.not_before = now - BACKDATE;
        params.not_after = now + lifetime;
        params.serial_number = Some(serial());
        let cert = match parent {
            None => params.self_signed(&key),
            Some(parent) => params.signed_by(&key, &parent.issuer),
        }
        .map_err(|source| PkiError::Signing {
            subject: common_name.to_string(),
            source,
        })?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA read back from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(PkiError::BadKey)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            issuer,
        })
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A new intermediate CA signed by this one, with a new key, valid from `now` for
    /// `lifetime`; it may sign leaves only (path length 0).
    pub fn issue_ca(
        &self,
        common_name: &str,
        algorithm: KeyAlgorithm,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<Ca, PkiError> {
        Ca::make(common_name, algorithm, now, lifetime, Some(self))
    }

    /// Signs a new leaf with a new key, valid from `now` for `lifetime`.
    pub fn issue(
        &self,
        spec: &LeafSpec,
        algorithm: KeyAlgorithm,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<CertAndKey, PkiError> {
        let key = key_pair(algorithm)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&spec.common_name, &spec.organizations);
        params.subject_alt_names = spec
            .dns_names
            .iter()
            .map(|n| {
                n.clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| PkiError::BadName(n.clone()))
            })
            .chain(spec.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if algorithm == KeyAlgorithm::Rsa2048 {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = match spec.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = now + lifetime;
        params.serial_number = Some(serial());
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Signing {
                subject: spec.common_name.clone(),
                source,
            })?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Whether an existing leaf (`cert_pem` with `key_pem`) is what `ca` would issue for `spec` now,
/// and valid past `valid_until`: the same subject, names and usage, signed by this CA (its key
/// identifier), with this key. Such a leaf is kept rather than re-keyed: a change elsewhere in
/// the description (a worker's address, a label) must not re-key the API server or etcd.
pub fn reusable(
    cert_pem: &str,
    key_pem: &str,
    spec: &LeafSpec,
    ca: &Ca,
    valid_until: OffsetDateTime,
) -> bool {
    use x509_parser::extensions::GeneralName;
    let parse = |pem: &str| {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .ok()
            .map(|(_, p)| p)
    };
    let (Some(leaf_pem), Some(ca_pem)) = (parse(cert_pem), parse(&ca.cert_pem)) else {
        return false;
    };
    let (Ok(leaf), Ok(ca_cert)) = (leaf_pem.parse_x509(), ca_pem.parse_x509()) else {
        return false;
    };
    if leaf.validity().not_after.to_datetime() <= valid_until {
        return false;
    }
    // The key in the key file is the certificate's.
    let Ok(key) = KeyPair::from_pem(key_pem) else {
        return false;
    };
    if rcgen::PublicKeyData::subject_public_key_info(&key) != leaf.public_key().raw {
        return false;
    }
    // Signed by this CA: its subject and key identifier.
    if leaf.issuer().as_raw() != ca_cert.subject().as_raw() {
        return false;
    }
    use x509_parser::extensions::ParsedExtension;
    let aki = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    let ski = ca_cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        });
    if aki.is_none() || aki != ski {
        return false;
    }
    // The subject.
    let subject = leaf.subject();
    let cn: Vec<&str> = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let mut o: Vec<&str> = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let mut want_o: Vec<&str> = spec.organizations.iter().map(String::as_str).collect();
    o.sort_unstable();
    want_o.sort_unstable();
    if cn != [spec.common_name.as_str()] || o != want_o {
        return false;
    }
    // The names.
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns.push(n.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => ips.push(IpAddr::from(
                        <[u8; 4]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    16 => ips.push(IpAddr::from(
                        <[u8; 16]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    _ => return false,
                },
                _ => return false,
            }
        }
    }
    let (mut want_dns, mut want_ips) = (spec.dns_names.clone(), spec.ips.clone());
    for v in [&mut dns, &mut want_dns] {
        v.sort();
        v.dedup();
    }
    for v in [&mut ips, &mut want_ips] {
        v.sort();
        v.dedup();
    }
    if dns != want_dns || ips != want_ips {
        return false;
    }
    // The usage.
    let Ok(Some(eku)) = leaf.extended_key_usage() else {
        return false;
    };
    let (server, client) = match spec.usage {
        Usage::Server => (true, false),
        Usage::Client => (false, true),
        Usage::ServerAndClient => (true, true),
    };
    eku.value.server_auth == server && eku.value.client_auth == client
}

/// When a PEM certificate stops being valid.
pub fn not_after(cert_pem: &str) -> Result<OffsetDateTime, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    Ok(cert.validity().not_after.to_datetime())
}

#[cfg(test)]
mod tests;
