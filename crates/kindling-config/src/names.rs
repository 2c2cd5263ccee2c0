//! DNS names: labels, domains and the FQDNs kindling gives machines.

/// The longest DNS name, in characters, without the trailing dot.
pub const MAX_NAME: usize = 253;
/// The longest DNS label.
pub const MAX_LABEL: usize = 63;

/// Checks a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter
/// or digit, at most 63 characters. The error says what is wrong.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("it is empty".into());
    }
    if label.len() > MAX_LABEL {
        return Err(format!(
            "it is {} characters long, more than {MAX_LABEL}",
            label.len()
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(if c.is_ascii_uppercase() {
            format!("'{c}' is upper-case")
        } else {
            format!("'{c}' is not allowed")
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("it starts or ends with '-'".into());
    }
    Ok(())
}

/// Checks a domain: DNS-1123 labels separated by dots, at most 253 characters.
pub fn check_domain(domain: &str) -> Result<(), String> {
    if domain.ends_with('.') {
        return Err("it ends with '.'; write it without the trailing dot".into());
    }
    if domain.len() > MAX_NAME {
        return Err(format!(
            "it is {} characters long, more than {MAX_NAME}",
            domain.len()
        ));
    }
    for label in domain.split('.') {
        check_label(label).map_err(|why| format!("label '{label}': {why}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(check_label("ocp45").is_ok());
        assert!(check_label("a-b").is_ok());
        assert!(check_label(&"a".repeat(63)).is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains() {
        assert!(check_domain("example.localdomain").is_ok());
        assert!(check_domain("com").is_ok());
        for bad in ["example.com.", "exa mple.com", "a..b", "", "Example.com"] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }
}
