//! Ids and their key form.
//!
//! An id is written into a key as one or more `:`-separated parts. Integers are written in
//! decimal; strings are percent-encoded so that they never contain `:` or a glob character, which
//! makes the encoding reversible and collision-free: two different ids of one type never share a
//! key, and every key an id was written to parses back into that id.

use std::fmt;

/// Bytes that are percent-encoded in string id parts: the part separator, the escape character,
/// Redis glob characters, hash-tag braces, space and ASCII control characters.
fn needs_escape(b: u8) -> bool {
    matches!(
        b,
        b'%' | b':' | b'*' | b'?' | b'[' | b']' | b'\\' | b'{' | b'}' | b' ' | 0x00..=0x1f | 0x7f
    )
}

/// A type that can identify a state value inside its prefix: the `id` of `#[state(...)]`.
///
/// Implemented for every integer type, [`String`] and tuples of up to four ids. An id writes one
/// or more parts; a tuple writes its elements' parts joined by `:`.
///
/// # Your own id types
///
/// Implement it for a newtype by delegating to the wrapped id:
///
/// ```
/// use state_store::{IdError, KeyParts, StateId};
///
/// #[derive(Debug, Clone, PartialEq)]
/// pub struct UserId(u64);
///
/// impl StateId for UserId {
///     fn write_key(&self, out: &mut String) {
///         self.0.write_key(out)
///     }
///     fn read_key(parts: &mut KeyParts<'_>) -> Result<Self, IdError> {
///         u64::read_key(parts).map(UserId)
///     }
/// }
///
/// assert_eq!(state_store::id_to_key(&UserId(7)), "7");
/// assert_eq!(state_store::id_from_key::<UserId>("7").unwrap(), UserId(7));
/// ```
///
/// `write_key` must write only what `read_key` reads back, and must not write `:` except between
/// the parts of a composite id; build on the provided impls (which escape strings) to keep that.
pub trait StateId: Send + Sync + Sized + 'static {
    /// Appends this id's key form to `out`.
    fn write_key(&self, out: &mut String);

    /// Reads an id back from the parts of a key, taking exactly the parts `write_key` writes.
    fn read_key(parts: &mut KeyParts<'_>) -> Result<Self, IdError>;
}

/// Writes `id` in its key form (without prefix or namespace).
pub fn id_to_key<I: StateId>(id: &I) -> String {
    let mut out = String::new();
    id.write_key(&mut out);
    out
}

/// Parses an id back from its key form (without prefix or namespace).
///
/// Only the exact form [`id_to_key`] writes is accepted: `007` is not the integer `7`, and a raw
/// `*` or a lowercase escape is not part of any key this library writes.
pub fn id_from_key<I: StateId>(key: &str) -> Result<I, IdError> {
    let mut parts = KeyParts::new(key);
    let id = I::read_key(&mut parts)?;
    if let Some(rest) = parts.remainder() {
        return Err(IdError::new(format!("unexpected trailing part `{rest}`")));
    }
    // The parsers above are lenient in places (`+7`, `%3a`); the canonical form is the one we
    // write, so a key is ours only if writing the id back reproduces it.
    if id_to_key(&id) != key {
        return Err(IdError::new("not in the form this library writes"));
    }
    Ok(id)
}

/// The `:`-separated parts of a key, read from left to right by [`StateId::read_key`].
#[derive(Debug, Clone)]
pub struct KeyParts<'a> {
    rest: Option<&'a str>,
}

impl<'a> KeyParts<'a> {
    /// Parts of `key`, which holds only the id (no prefix or namespace).
    pub fn new(key: &'a str) -> Self {
        KeyParts { rest: Some(key) }
    }

    /// The next part, or an error when the key has no more parts.
    pub fn next_part(&mut self) -> Result<&'a str, IdError> {
        let rest = self
            .rest
            .ok_or_else(|| IdError::new("too few `:`-separated parts"))?;
        match rest.split_once(':') {
            Some((part, tail)) => {
                self.rest = Some(tail);
                Ok(part)
            }
            None => {
                self.rest = None;
                Ok(rest)
            }
        }
    }

    /// What is left unread, if anything.
    pub fn remainder(&self) -> Option<&'a str> {
        self.rest
    }
}

/// A key part that does not parse as the id type expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    message: String,
}

impl IdError {
    /// An error with this message, for [`StateId`] implementations.
    pub fn new(message: impl Into<String>) -> Self {
        IdError {
            message: message.into(),
        }
    }
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IdError {}

macro_rules! integer_ids {
    ($($t:ty),*) => {$(
        impl StateId for $t {
            fn write_key(&self, out: &mut String) {
                use std::fmt::Write;
                // Writing into a String cannot fail.
                let _ = write!(out, "{self}");
            }
            fn read_key(parts: &mut KeyParts<'_>) -> Result<Self, IdError> {
                let part = parts.next_part()?;
                part.parse().map_err(|e| {
                    IdError::new(format!("`{part}` is not a {}: {e}", stringify!($t)))
                })
            }
        }
    )*};
}

integer_ids!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

impl StateId for String {
    fn write_key(&self, out: &mut String) {
        write_str_key(self, out);
    }

    fn read_key(parts: &mut KeyParts<'_>) -> Result<Self, IdError> {
        let part = parts.next_part()?;
        if !part.contains('%') {
            return Ok(part.to_owned());
        }
        let bytes = part.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| IdError::new(format!("bad percent escape in `{part}`")))?;
                out.push(hex);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out)
            .map_err(|_| IdError::new(format!("`{part}` decodes to invalid UTF-8")))
    }
}

macro_rules! tuple_ids {
    ($first:ident $(, $rest:ident)*) => {
        impl<$first: StateId $(, $rest: StateId)*> StateId for ($first, $($rest,)*) {
            #[allow(non_snake_case)]
            fn write_key(&self, out: &mut String) {
                let ($first, $($rest,)*) = self;
                $first.write_key(out);
                $(
                    out.push(':');
                    $rest.write_key(out);
                )*
            }
            fn read_key(parts: &mut KeyParts<'_>) -> Result<Self, IdError> {
                Ok(($first::read_key(parts)?, $($rest::read_key(parts)?,)*))
            }
        }
    };
}

tuple_ids!(A);
tuple_ids!(A, B);
tuple_ids!(A, B, C);
tuple_ids!(A, B, C, D);

/// `uuid::Uuid` ids (feature `uuid`): hyphenated lowercase in the key
/// (`session:67e55044-10b1-426f-9247-bb680e5fe0c8`), read back only in that form, so each id has
/// one key.
#[cfg(feature = "uuid")]
#[cfg_attr(docsrs, doc(cfg(feature = "uuid")))]
impl StateId for uuid::Uuid {
    fn write_key(&self, out: &mut String) {
        let mut buf = uuid::Uuid::encode_buffer();
        out.push_str(self.hyphenated().encode_lower(&mut buf));
    }

    fn read_key(parts: &mut KeyParts<'_>) -> Result<Self, IdError> {
        let part = parts.next_part()?;
        let id = uuid::Uuid::try_parse(part)
            .map_err(|e| IdError::new(format!("`{part}` is not a UUID: {e}")))?;
        let mut buf = uuid::Uuid::encode_buffer();
        if id.hyphenated().encode_lower(&mut buf) != part {
            return Err(IdError::new(format!(
                "`{part}` is not a UUID in hyphenated lowercase, the form ids are stored in"
            )));
        }
        Ok(id)
    }
}

/// Appends the key form of a string id (escaped as [`StateId`] describes), for `String` ids
/// and the `&str` that names one.
fn write_str_key(id: &str, out: &mut String) {
    if !id.bytes().any(needs_escape) {
        out.push_str(id);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for c in id.chars() {
        // Every byte that needs escaping is ASCII, so checking whole chars is enough.
        if c.is_ascii() && needs_escape(c as u8) {
            let b = c as u8;
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push(c);
        }
    }
}

/// What the [`Store`](crate::Store) methods take as the id of an `S`: the id (`42`), a
/// reference to it (`&id`), or, for a `String` id, a `&str` (`"alice"`). All the store does
/// with it is write its key form.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an id of this state type: its id is `{I}`",
    label = "expected `{I}` or `&{I}`",
    note = "the id type comes from `#[state(id = ...)]` on the state type"
)]
pub trait IdArg<I: StateId> {
    /// Appends the id's key form to `out`, as [`StateId::write_key`] does.
    fn write_id(&self, out: &mut String);
}

impl<I: StateId> IdArg<I> for I {
    fn write_id(&self, out: &mut String) {
        self.write_key(out);
    }
}

// Hidden from diagnostics too: listed, it would be the only "implemented for" help, and
// point at a generic impl instead of the id the label names.
#[diagnostic::do_not_recommend]
impl<I: StateId> IdArg<I> for &I {
    fn write_id(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

// Not listed among the accepted ids when an id of another type is given: the label names
// the id type, and `&str` there would read as a suggestion for every non-`String` id.
#[diagnostic::do_not_recommend]
impl IdArg<String> for &str {
    fn write_id(&self, out: &mut String) {
        write_str_key(self, out);
    }
}

// For `get_many(&["a", "b"])` and other iterators of `&&str`; hidden from diagnostics likewise.
#[diagnostic::do_not_recommend]
impl IdArg<String> for &&str {
    fn write_id(&self, out: &mut String) {
        write_str_key(self, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_escape_separators_and_globs() {
        assert_eq!(id_to_key(&("a:b".to_string(), 7u32)), "a%3Ab:7");
        assert_eq!(
            id_to_key(&"*?[]\\{} %".to_string()),
            "%2A%3F%5B%5D%5C%7B%7D%20%25"
        );
        assert_eq!(id_to_key(&"\n\u{7f}é".to_string()), "%0A%7Fé");
        assert_eq!(id_to_key(&String::new()), "");
        assert_eq!(id_to_key(&-12i64), "-12");
    }

    #[test]
    fn non_canonical_keys_are_rejected() {
        for (key, why) in [
            ("007", "leading zeros"),
            ("+7", "plus sign"),
            ("7:8", "trailing part"),
            ("", "empty integer"),
        ] {
            assert!(id_from_key::<u64>(key).is_err(), "{key}: {why}");
        }
        assert!(id_from_key::<String>("a*b").is_err(), "raw glob");
        assert!(id_from_key::<String>("%3a").is_err(), "lowercase escape");
        assert!(id_from_key::<String>("%4").is_err(), "short escape");
        assert!(id_from_key::<String>("%FF").is_err(), "invalid utf-8");
        assert!(id_from_key::<(String, u8)>("a").is_err(), "missing part");
    }

    fn nasty_string() -> impl Strategy<Value = String> {
        // Mostly the characters that matter, plus arbitrary unicode.
        proptest::collection::vec(
            prop_oneof![
                3 => proptest::sample::select(vec![':', '%', '*', '?', '[', ']', '\\', '{', '}', ' ', '\n', '\0', 'a', '0', 'é', '🦀']),
                1 => any::<char>(),
            ],
            0..12,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        #[test]
        fn string_ids_round_trip(s in nasty_string()) {
            let key = id_to_key(&s);
            prop_assert!(!key.contains(':'));
            prop_assert_eq!(id_from_key::<String>(&key).unwrap(), s);
        }

        #[test]
        fn composite_ids_round_trip(id in (nasty_string(), any::<i64>(), nasty_string(), any::<u8>())) {
            let key = id_to_key(&id);
            prop_assert_eq!(id_from_key::<(String, i64, String, u8)>(&key).unwrap(), id);
        }

        #[test]
        fn different_ids_never_share_a_key(a in (nasty_string(), nasty_string()), b in (nasty_string(), nasty_string())) {
            prop_assert_eq!(a == b, id_to_key(&a) == id_to_key(&b));
        }

        #[test]
        fn parsing_arbitrary_keys_never_panics(key in ".*") {
            let _ = id_from_key::<(String, u64)>(&key);
            let _ = id_from_key::<String>(&key);
        }
    }
}
