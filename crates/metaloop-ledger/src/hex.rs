//! Lower-case hexadecimal, the form hashes take in text.

/// Encodes bytes as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// Decodes 64 hex digits (either case) into a hash; `None` if `text` is anything else.
pub fn decode_hash(text: &str) -> Option<[u8; 32]> {
    decode_array(text)
}

/// Decodes exactly `2 × N` hex digits (either case) into `N` bytes; `None` if `text` is
/// anything else.
pub fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_input() {
        let hash: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        let text = encode(&hash);
        assert_eq!(text.len(), 64);
        assert_eq!(&text[..6], "00254a");
        assert_eq!(decode_hash(&text), Some(hash));
        assert_eq!(decode_hash(&text.to_uppercase()), Some(hash));
        assert_eq!(decode_hash(&text[1..]), None);
        assert_eq!(decode_hash(&format!("{}g", &text[1..])), None);
    }
}
