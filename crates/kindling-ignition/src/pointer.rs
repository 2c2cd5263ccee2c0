//! [`PointerConfig`]: the small config a machine boots with. It tells Ignition to fetch the full
//! config from the machine config server and which CA to trust for that TLS connection.

use ignition_config::v3_3;
use kindling_config::inventory::IgnitionVersion;

use crate::{IgnitionError, data_url, render};

/// The config written to `master.ign` and `worker.ign`: merge the full config from `source`
/// (for example `https://api-int.<cluster domain>:22623/config/worker`), trusting
/// `root_ca_pem` for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerConfig {
    /// URL of the full config.
    pub source: String,
    /// PEM certificate(s) of the CA that signed the server's certificate.
    pub root_ca_pem: String,
    /// Extra HTTP headers for fetching `source` (a per-machine token, say). Spec 3.1 or later.
    pub http_headers: Vec<(String, String)>,
}

impl PointerConfig {
    /// The pointer config as JSON for spec `version`, compact as [`Config::render`] writes it.
    /// The CA is inline, as a `data:` URL in `ignition.security.tls.certificateAuthorities`.
    ///
    /// Fails if `version` is 3.0.0 and there are headers: that spec has no `httpHeaders`, and
    /// dropping them would leave the machine unable to authenticate.
    ///
    /// [`Config::render`]: crate::Config::render
    pub fn render(&self, version: IgnitionVersion) -> Result<Vec<u8>, IgnitionError> {
        let headers = self
            .http_headers
            .iter()
            .map(|(name, value)| v3_3::HttpHeadersItem {
                name: name.clone(),
                value: Some(value.clone()),
            })
            .collect::<Vec<_>>();
        let merge = v3_3::Resource {
            source: Some(self.source.clone()),
            http_headers: (!headers.is_empty()).then_some(headers),
            ..Default::default()
        };
        let ca = v3_3::Resource {
            source: Some(data_url::encode(self.root_ca_pem.as_bytes())),
            ..Default::default()
        };
        let mut config = v3_3::Config::default();
        config.ignition.config = Some(v3_3::IgnitionConfig {
            merge: Some(vec![merge]),
            replace: None,
        });
        config.ignition.security = Some(v3_3::Security {
            tls: Some(v3_3::SecurityTls {
                certificate_authorities: Some(vec![ca]),
            }),
        });
        render::render(&config, version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn pointer(headers: &[(&str, &str)]) -> PointerConfig {
        PointerConfig {
            source: "https://api-int.demo.example.com:22623/config/worker".into(),
            root_ca_pem: PEM.into(),
            http_headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_pointer_merges_the_pool_config_and_trusts_the_root_ca() {
        let json = pointer(&[]).render(IgnitionVersion::V3_3).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            concat!(
                r#"{"ignition":{"config":{"merge":[{"source":"https://api-int.demo.example.com:22623/config/worker"}]},"#,
                r#""security":{"tls":{"certificateAuthorities":[{"source":"data:,-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----%0A"}]}},"#,
                r#""version":"3.3.0"}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn headers_go_on_the_merge_source_from_spec_3_1() {
        let p = pointer(&[("Authorization", "Bearer t0k3n")]);
        for version in IgnitionVersion::ALL
            .iter()
            .filter(|v| **v >= IgnitionVersion::V3_1)
        {
            let json: serde_json::Value =
                serde_json::from_slice(&p.render(*version).unwrap()).unwrap();
            assert_eq!(
                json["ignition"]["config"]["merge"][0]["httpHeaders"],
                serde_json::json!([{"name": "Authorization", "value": "Bearer t0k3n"}])
            );
        }
        let err = p.render(IgnitionVersion::V3_0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Ignition spec 3.0.0 cannot express HTTP headers for fetching the merged config; it needs spec 3.1.0 or later"
        );
        pointer(&[]).render(IgnitionVersion::V3_0).unwrap();
    }

    #[test]
    fn a_source_ignition_cannot_fetch_is_refused() {
        let mut p = pointer(&[]);
        p.source = "api-int.demo.example.com:22623/config/worker".into();
        let err = p.render(IgnitionVersion::V3_3).unwrap_err();
        assert!(
            err.to_string().contains("not a URL Ignition can fetch"),
            "{err}"
        );
    }
}
