//! MAC addresses, in every form people copy them from.

use std::fmt;
use std::str::FromStr;

/// A 48-bit MAC address. `00:50:56:96:11:C2`, `00-50-56-96-11-c2` and `0050.5696.11c2` are the same
/// address; it prints in the lower-case colon form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr([u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a MAC address (expected six hex pairs such as 52:54:00:12:34:56, 52-54-00-12-34-56 or 5254.0012.3456)"
)]
pub struct ParseMacError(String);

impl MacAddr {
    pub const fn new(octets: [u8; 6]) -> MacAddr {
        MacAddr(octets)
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Group (multicast or broadcast) addresses never belong to one network card.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// The hyphenated form iPXE's `${mac:hexhyp}` produces, used in matchbox selectors.
    pub fn hexhyp(&self) -> String {
        self.join('-')
    }

    fn join(&self, sep: char) -> String {
        // Not format!("{b:02x}") per byte: a MAC is written on every boot request.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(17);
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(sep);
            }
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 15)]));
        }
        out
    }
}

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<MacAddr, ParseMacError> {
        let err = || ParseMacError(s.to_string());
        let groups: Vec<&str> = if s.contains(':') {
            s.split(':').collect()
        } else if s.contains('-') {
            s.split('-').collect()
        } else if s.contains('.') {
            s.split('.').collect()
        } else {
            return Err(err());
        };
        let group_len = match groups.len() {
            6 => 2,
            3 if s.contains('.') => 4,
            _ => return Err(err()),
        };
        let mut hex = String::with_capacity(12);
        for group in groups {
            if group.len() != group_len || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            hex.push_str(group);
        }
        let mut octets = [0u8; 6];
        for (i, octet) in octets.iter_mut().enumerate() {
            *octet = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(MacAddr(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(':'))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_common_form_is_the_same_mac() {
        let want: MacAddr = "00:50:56:96:11:c2".parse().unwrap();
        for form in [
            "00:50:56:96:11:C2",
            "00-50-56-96-11-c2",
            "00-50-56-96-11-C2",
            "0050.5696.11c2",
            "0050.5696.11C2",
        ] {
            assert_eq!(form.parse::<MacAddr>().unwrap(), want, "{form}");
        }
        assert_eq!(want.to_string(), "00:50:56:96:11:c2");
        assert_eq!(want.hexhyp(), "00-50-56-96-11-c2");
    }

    #[test]
    fn malformed_macs_are_refused() {
        for bad in [
            "",
            "00:50:56:96:11",
            "00:50:56:96:11:c2:00",
            "00:50:56:96:11:g2",
            "0:50:56:96:11:c2",
            "00:50-56:96:11:c2",
            "005056.9611c2",
            "005056:9611c2",
            "+0:50:56:96:11:c2",
            "00:50:56:96:11:ç2",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn group_and_zero_addresses_are_recognised() {
        assert!(
            "01:00:5e:00:00:01"
                .parse::<MacAddr>()
                .unwrap()
                .is_multicast()
        );
        assert!(
            "ff:ff:ff:ff:ff:ff"
                .parse::<MacAddr>()
                .unwrap()
                .is_multicast()
        );
        assert!(
            !"02:00:00:00:00:01"
                .parse::<MacAddr>()
                .unwrap()
                .is_multicast()
        );
        assert!("00:00:00:00:00:00".parse::<MacAddr>().unwrap().is_zero());
    }

    proptest! {
        #[test]
        fn printing_then_parsing_round_trips(octets in any::<[u8; 6]>()) {
            let mac = MacAddr::new(octets);
            prop_assert_eq!(mac.to_string().parse::<MacAddr>().unwrap(), mac);
            prop_assert_eq!(mac.hexhyp().parse::<MacAddr>().unwrap(), mac);
            prop_assert_eq!(mac.to_string().to_uppercase().parse::<MacAddr>().unwrap(), mac);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<MacAddr>();
        }
    }
}
