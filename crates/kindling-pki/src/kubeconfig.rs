//! Kubeconfig files, as kubectl and the Kubernetes components read them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Who a kubeconfig authenticates as.
pub enum Credentials<'a> {
    /// A client certificate and key, PEM.
    ClientCert { cert_pem: &'a str, key_pem: &'a str },
    /// A bearer token (e.g. a bootstrap token).
    Token(&'a str),
}

/// A kubeconfig with one cluster, one user and one context, all certificates embedded.
pub fn render(
    cluster: &str,
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: &Credentials<'_>,
) -> String {
    let user_fields = match credentials {
        Credentials::ClientCert { cert_pem, key_pem } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            STANDARD.encode(cert_pem),
            STANDARD.encode(key_pem)
        ),
        Credentials::Token(token) => format!("    token: {}\n", quote(token)),
    };
    let context = format!("{user}@{cluster}");
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {cluster_q}\n  cluster:\n    server: {server_q}\n    certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user_q}\n  user:\n{user_fields}\
         contexts:\n\
         - name: {context_q}\n  context:\n    cluster: {cluster_q}\n    user: {user_q}\n\
         current-context: {context_q}\n\
         preferences: {{}}\n",
        cluster_q = quote(cluster),
        server_q = quote(server),
        ca = STANDARD.encode(ca_pem),
        user_q = quote(user),
        context_q = quote(&context),
    )
}

/// A YAML double-quoted string (JSON string syntax is valid YAML).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
