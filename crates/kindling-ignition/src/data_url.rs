//! `data:` URLs (RFC 2397) for inline file contents and CA bundles.
//!
//! Text is percent-encoded so that it stays readable in the JSON (Butane does the same for
//! uncompressed contents); anything else is base64. Only RFC 3986 unreserved characters are
//! left as they are, so every URL parser reads the result the same way (Ignition's Go parser
//! included: no `+`-means-space ambiguity).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// `data:,<percent-encoded>` for text, `data:;base64,<base64>` otherwise.
pub fn encode(contents: &[u8]) -> String {
    if is_text(contents) {
        format!("data:,{}", percent_encode(contents))
    } else {
        format!("data:;base64,{}", STANDARD.encode(contents))
    }
}

/// The bytes of a `data:` URL this module wrote (or any `data:[<mediatype>][;base64],<data>`).
/// `None` for anything else, such as an `https:` URL or broken escapes.
pub fn decode(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("data:")?;
    let (header, data) = rest.split_once(',')?;
    if header.ends_with(";base64") {
        STANDARD.decode(percent_decode(data)?).ok()
    } else {
        percent_decode(data)
    }
}

/// UTF-8 without control characters other than tab and line breaks: what a person would call a
/// text file and would want to read in the config.
fn is_text(contents: &[u8]) -> bool {
    std::str::from_utf8(contents).is_ok_and(|s| {
        s.chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
    })
}

fn percent_encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes with the `data-url` crate (the WHATWG algorithm), not with our own decoder, so
    /// that a symmetric mistake in encode and decode cannot hide.
    fn independent_decode(url: &str) -> Vec<u8> {
        let parsed = data_url::DataUrl::process(url).expect("a data: URL");
        parsed.decode_to_vec().expect("decodable body").0
    }

    #[test]
    fn text_is_percent_encoded_and_round_trips() {
        let text = b"[Unit]\nDescription=a b+c/d%e ~ \xc3\xa9\n";
        let url = encode(text);
        assert!(url.starts_with("data:,"), "{url}");
        assert!(url.contains("%2B"), "'+' must be escaped: {url}");
        assert_eq!(independent_decode(&url), text);
        assert_eq!(decode(&url).unwrap(), text);
    }

    #[test]
    fn binary_is_base64_and_round_trips() {
        let cases: [&[u8]; 3] = [
            &[0, 1, 2, 0xff, 0xfe, b'\n'],
            b"\x1b[31mred\x1b[0m",
            &[0xc3],
        ];
        for bytes in cases {
            let url = encode(bytes);
            assert!(url.starts_with("data:;base64,"), "{url}");
            assert_eq!(independent_decode(&url), bytes, "{url}");
            assert_eq!(decode(&url).unwrap(), bytes, "{url}");
        }
    }

    #[test]
    fn empty_and_non_ascii_text_round_trip() {
        for text in ["", "∀∃∈∉∋∌∏∑\n", "tab\tcr\r\n"] {
            let url = encode(text.as_bytes());
            assert!(url.starts_with("data:,"), "{url}");
            assert_eq!(independent_decode(&url), text.as_bytes(), "{url}");
            assert_eq!(decode(&url).unwrap(), text.as_bytes(), "{url}");
        }
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(independent_decode(&encode(&all)), all);
        let printable: Vec<u8> = (0x20..0x7f).collect();
        assert_eq!(independent_decode(&encode(&printable)), printable);
    }

    #[test]
    fn decode_refuses_what_is_not_a_data_url() {
        assert_eq!(decode("https://example.com/x"), None);
        assert_eq!(decode("data:,%zz"), None);
        assert_eq!(
            decode("data:text/plain;charset=utf-8;base64,aGk=").unwrap(),
            b"hi"
        );
    }
}
