//! NATS names of the store's keys: the bucket of a type prefix and the bucket key of an id,
//! both reversible, so that `ids` can list what a bucket holds.

/// The bucket of the type prefix `prefix`: `_` as `_u`, `.` as `_d`, `:` as `__`.
pub(super) fn bucket_name(prefix: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        match c {
            '_' => name.push_str("_u"),
            '.' => name.push_str("_d"),
            ':' => name.push_str("__"),
            c => name.push(c),
        }
    }
    name
}

/// Whether NATS takes `name` as a bucket name.
pub(super) fn valid_bucket(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The type prefix of a bucket name, `None` for a name [`bucket_name`] does not write.
pub(super) fn decode_bucket(name: &str) -> Option<String> {
    let mut prefix = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '_' => match chars.next()? {
                'u' => prefix.push('_'),
                'd' => prefix.push('.'),
                '_' => prefix.push(':'),
                _ => return None,
            },
            c if c.is_ascii_alphanumeric() || c == '-' => prefix.push(c),
            _ => return None,
        }
    }
    (!prefix.is_empty()).then_some(prefix)
}

/// The bucket key of `rest` (the part of a full key after the type prefix and its `:`).
pub(super) fn encode_key(rest: &str) -> String {
    if rest.is_empty() {
        return "=".to_owned();
    }
    let mut key = String::with_capacity(rest.len() + 8);
    for &b in rest.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_') {
            key.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            key.push('=');
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    key
}

/// The inverse of [`encode_key`]; `None` for a key it does not write.
pub(super) fn decode_key(key: &str) -> Option<String> {
    if key == "=" {
        return Some(String::new());
    }
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'=' {
            let hex = key.get(i + 1..i + 3)?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            if hex.bytes().any(|h| h.is_ascii_lowercase()) {
                return None;
            }
            out.push(byte);
            i += 3;
        } else if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_') {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_stay_valid() {
        for rest in [
            "", "42", "a%3Ab:7", "a.b", ".", "..", "x y", "é", "=", "==", "a=3A", "*?[]{}", "-_/",
        ] {
            let key = encode_key(rest);
            assert!(
                !key.is_empty() && !key.starts_with('.') && !key.ends_with('.'),
                "{key}"
            );
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b)),
                "{key}"
            );
            assert_eq!(decode_key(&key).as_deref(), Some(rest), "{key}");
        }
        assert_eq!(encode_key("a%3Ab:7"), "a=253Ab=3A7");
        assert_eq!(decode_key("a=zz"), None);
        assert_eq!(decode_key("a=3a"), None, "one spelling per key");
    }

    #[test]
    fn buckets_round_trip() {
        for prefix in ["session", "user-service:session", "a_b.c:d-e", "_:_"] {
            let name = bucket_name(prefix);
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)),
                "{name}"
            );
            assert_eq!(decode_bucket(&name).as_deref(), Some(prefix));
        }
        assert_eq!(bucket_name("user-service:session"), "user-service__session");
        assert_eq!(decode_bucket("a_x"), None);
    }
}
