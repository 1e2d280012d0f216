//! Parsing `#[state(...)]` into [`Attrs`].
//!
//! Like serde_derive, a bad value is recorded and parsing moves on to the next key, so one
//! compile reports every problem in the attribute rather than only the first.

use proc_macro2::{Ident, TokenStream, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::parse::discouraged::Speculative;
use syn::{Attribute, Error, Lit, LitInt, LitStr, Token, Type};

use crate::errors::Errors;
use crate::ttl;

/// The keys `#[state(...)]` accepts, for the unknown-key error.
const KEYS: &str = "`prefix`, `id`, `ttl`, `counter`, `notify`, `cache`, `lease`, `durable`, \
                    `history` or `previous`";

const PREFIX: &str = "`prefix` takes one string literal, like `prefix = \"session\"`";
const ID: &str = "`id` takes one type, like `id = u64` or `id = (String, u32)`";
const TTL: &str = "`ttl` takes a string like \"30m\" or \"1h30m\", or an integer number of seconds";
const PREVIOUS: &str = "`previous` takes one type, like `previous = SessionV1`";
const HISTORY: &str = "`history` takes how many changes the journal keeps, an integer from 1 to \
                       1,000,000,000, like `history = 10_000`";

/// What the `#[state(...)]` attributes of one type say. Invalid values are left out (their
/// errors are already recorded), so a `None` here does not mean the key was missing: see
/// [`Attrs::given`].
#[derive(Default)]
pub(crate) struct Attrs<'a> {
    /// The first `#[state(...)]`, where errors about keys that none of them gave point.
    pub first: Option<&'a Attribute>,
    pub prefix: Option<LitStr>,
    pub id: Option<Type>,
    /// In seconds, checked to be non-zero and to fit Redis's millisecond expiries.
    pub ttl: Option<u64>,
    /// The `counter` token, where errors about the type's shape point.
    pub counter: Option<Ident>,
    /// The `notify` token: writes announce themselves on the type's change feed.
    pub notify: Option<Ident>,
    /// The `cache` token: reads are kept decoded in the client's cache.
    pub cache: Option<Ident>,
    /// The `lease` token: the type's values are leases with fencing tokens.
    pub lease: Option<Ident>,
    /// The `durable` token: writes wait for the backend's durability.
    pub durable: Option<Ident>,
    /// The type of `previous = Type`: the older shape that stored values may still have.
    pub previous: Option<Type>,
    /// `history = N`: how many changes the journal keeps, with the literal for errors.
    pub history: Option<(u64, LitInt)>,
    given: Vec<&'static str>,
}

impl Attrs<'_> {
    /// Whether the key appeared, even with a value that did not parse.
    pub(crate) fn given(&self, key: &str) -> bool {
        self.given.contains(&key)
    }
}

/// Reads every `#[state(...)]` on the type; several are merged as if they were one.
pub(crate) fn get<'a>(attrs: &'a [Attribute], errors: &mut Errors) -> Attrs<'a> {
    let mut out = Attrs::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("state")) {
        out.first.get_or_insert(attr);
        let parsed = attr.parse_nested_meta(|meta| {
            // #[state(prefix = "session", id = u64, ttl = "30m", counter, notify, cache,
            //         previous = SessionV1)]
            let Some(key) = meta.path.get_ident().cloned() else {
                return unknown_key(&meta, errors);
            };
            let Some(name) = [
                "prefix", "id", "ttl", "counter", "notify", "cache", "lease", "durable", "history",
                "previous",
            ]
            .into_iter()
            .find(|name| key == name) else {
                return unknown_key(&meta, errors);
            };
            let duplicate = out.given(name);
            if duplicate {
                errors.push(Error::new(
                    key.span(),
                    format_args!("duplicate key `{key}` in `#[state(...)]`"),
                ));
            } else {
                out.given.push(name);
            }
            match name {
                // prefix = "session"
                "prefix" => {
                    let prefix = value(&meta, &key, errors, prefix_value, PREFIX);
                    if !duplicate {
                        out.prefix = prefix;
                    }
                }
                // id = u64, id = (String, u32), id = UserId
                "id" => {
                    let id = value(&meta, &key, errors, id_value, ID);
                    if !duplicate {
                        out.id = id;
                    }
                }
                // ttl = "1h30m", ttl = 90
                "ttl" => {
                    let ttl = value(&meta, &key, errors, ttl_value, TTL);
                    if !duplicate {
                        out.ttl = ttl;
                    }
                }
                // previous = SessionV1, previous = old::Session
                "previous" => {
                    let previous = value(&meta, &key, errors, previous_value, PREVIOUS);
                    if !duplicate {
                        out.previous = previous;
                    }
                }
                // history = 10_000
                "history" => {
                    let history = value(&meta, &key, errors, history_value, HISTORY);
                    if !duplicate {
                        out.history = history;
                    }
                }
                // counter, notify, cache, lease, durable
                _ => {
                    if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                        let extra = skip_value(meta.input);
                        errors.push(Error::new_spanned(
                            extra,
                            format_args!("`{name}` takes no value: write `{name}` alone"),
                        ));
                    }
                    if !duplicate {
                        let flag = match name {
                            "counter" => &mut out.counter,
                            "notify" => &mut out.notify,
                            "lease" => &mut out.lease,
                            "durable" => &mut out.durable,
                            _ => &mut out.cache,
                        };
                        *flag = Some(key);
                    }
                }
            }
            Ok(())
        });
        // Only a malformed attribute as a whole (`#[state]`, `#[state = ...]`, a key that is
        // not a path) gets here: errors in values were recorded and skipped above.
        if let Err(error) = parsed {
            errors.push(error);
        }
    }
    out
}

/// Rejects `#[state(...)]` on a field or variant, where it would otherwise be silently ignored.
pub(crate) fn reject_misplaced(attrs: &[Attribute], place: &str, errors: &mut Errors) {
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("state")) {
        errors.push(Error::new_spanned(
            attr,
            format_args!("`#[state(...)]` belongs on the type, not on a {place}"),
        ));
    }
}

fn unknown_key(meta: &ParseNestedMeta, errors: &mut Errors) -> syn::Result<()> {
    let path = &meta.path;
    let shown = quote::quote!(#path).to_string().replace(' ', "");
    errors.push(Error::new_spanned(
        path,
        format_args!("unknown key `{shown}` in `#[state(...)]`; expected {KEYS}"),
    ));
    skip_value(meta.input);
    Ok(())
}

/// Parses the value after `key =`. On failure, records the error and skips to the next `,` so
/// that parsing carries on with the next key.
fn value<T>(
    meta: &ParseNestedMeta, key: &Ident, errors: &mut Errors,
    parse: fn(ParseStream) -> syn::Result<T>, expected: &str,
) -> Option<T> {
    let input = meta.input;
    if input.parse::<Token![=]>().is_err() {
        errors.push(Error::new(
            key.span(),
            format_args!("expected `{key} = ...`; {expected}"),
        ));
        skip_value(input);
        return None;
    }
    // On a fork, so that when the value turns out to be followed by more tokens (`ttl = 30 * 60`)
    // the error can cover the whole value.
    let fork = input.fork();
    match parse(&fork) {
        Ok(value) if fork.is_empty() || fork.peek(Token![,]) => {
            input.advance_to(&fork);
            Some(value)
        }
        Ok(_) => {
            errors.push(Error::new_spanned(skip_value(input), expected));
            None
        }
        Err(error) => {
            errors.push(error);
            skip_value(input);
            None
        }
    }
}

/// Consumes tokens up to the next `,` at this level, returning them for an error's span.
fn skip_value(input: ParseStream) -> TokenStream {
    let mut skipped = TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        match input.parse::<TokenTree>() {
            Ok(token) => skipped.extend([token]),
            Err(_) => break,
        }
    }
    skipped
}

fn prefix_value(input: ParseStream) -> syn::Result<LitStr> {
    if input.peek(LitStr) {
        return input.parse();
    }
    // A bare word is most likely the intended prefix without its quotes.
    match input.fork().parse::<Ident>() {
        Ok(word) => Err(input.error(format_args!(
            "`prefix` takes a string literal, like `prefix = \"{word}\"`"
        ))),
        Err(_) => Err(input.error(PREFIX)),
    }
}

fn id_value(input: ParseStream) -> syn::Result<Type> {
    // Other derives (serde's `bound`) take types in strings, so this mix-up is likely.
    if let Ok(text) = input.fork().parse::<LitStr>() {
        return Err(Error::new(
            text.span(),
            format_args!(
                "`id` takes a type, not a string: write `id = {}`",
                text.value()
            ),
        ));
    }
    if input.peek(Lit) {
        return Err(input.error(ID));
    }
    input.parse()
}

fn previous_value(input: ParseStream) -> syn::Result<Type> {
    if let Ok(text) = input.fork().parse::<LitStr>() {
        return Err(Error::new(
            text.span(),
            format_args!(
                "`previous` takes a type, not a string: write `previous = {}`",
                text.value()
            ),
        ));
    }
    if input.peek(Lit) {
        return Err(input.error(PREVIOUS));
    }
    input.parse()
}

fn history_value(input: ParseStream) -> syn::Result<(u64, LitInt)> {
    let int = input
        .parse::<LitInt>()
        .map_err(|e| Error::new(e.span(), HISTORY))?;
    if !int.suffix().is_empty() {
        return Err(Error::new(int.span(), HISTORY));
    }
    match int.base10_parse::<u64>() {
        Ok(keep) if (1..=1_000_000_000).contains(&keep) => Ok((keep, int)),
        _ => Err(Error::new(int.span(), HISTORY)),
    }
}

fn ttl_value(input: ParseStream) -> syn::Result<u64> {
    let lit = input
        .parse::<Lit>()
        .map_err(|e| Error::new(e.span(), TTL))?;
    let secs = match &lit {
        Lit::Str(text) => ttl::parse_duration(&text.value()),
        Lit::Int(int) => ttl::parse_seconds(int.base10_digits()),
        _ => Err(TTL.to_owned()),
    };
    secs.map_err(|message| Error::new(lit.span(), message))
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    /// The messages of the errors `get` records for these attributes.
    fn messages(attrs: &[Attribute]) -> Vec<String> {
        let mut errors = Errors::default();
        get(attrs, &mut errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn values() {
        let attrs: Vec<Attribute> = vec![
            parse_quote!(#[state(prefix = "job", id = (String, u32))]),
            parse_quote!(#[serde(rename_all = "camelCase")]),
            parse_quote!(#[state(ttl = 1_800, counter, notify, lease, previous = old::Job)]),
        ];
        let mut errors = Errors::default();
        let got = get(&attrs, &mut errors);
        assert!(errors.finish().is_ok());
        assert_eq!(got.prefix.map(|p| p.value()).as_deref(), Some("job"));
        let id = got.id.map(|id| quote::quote!(#id).to_string());
        assert_eq!(id.as_deref(), Some("(String , u32)"));
        assert_eq!(got.ttl, Some(1800));
        assert!(got.counter.is_some());
        assert!(got.notify.is_some());
        assert!(got.lease.is_some());
        let previous = got.previous.map(|ty| quote::quote!(#ty).to_string());
        assert_eq!(previous.as_deref(), Some("old :: Job"));
        assert!(got.first.is_some());
    }

    #[test]
    fn every_bad_value_is_reported() {
        let attr: Attribute = parse_quote! {
            #[state(prefix = 5, id = "u64", ttl = -5, ttl = 1.5, size = 3, counter = true, id = 7, notify(yes))]
        };
        assert_eq!(
            messages(&[attr]),
            [
                PREFIX,
                "`id` takes a type, not a string: write `id = u64`",
                "ttl must be greater than zero; leave out `ttl` for keys that never expire",
                "duplicate key `ttl` in `#[state(...)]`",
                TTL,
                "unknown key `size` in `#[state(...)]`; expected `prefix`, `id`, `ttl`, `counter`, `notify`, `cache`, `lease`, `durable`, `history` or `previous`",
                "`counter` takes no value: write `counter` alone",
                "duplicate key `id` in `#[state(...)]`",
                ID,
                "`notify` takes no value: write `notify` alone",
            ]
        );
    }

    #[test]
    fn malformed_values() {
        for (attr, message) in [
            (
                parse_quote!(#[state(prefix "a")]),
                "expected `prefix = ...`",
            ),
            (
                parse_quote!(#[state(prefix = session)]),
                "like `prefix = \"session\"`",
            ),
            (parse_quote!(#[state(id = u64 u32)]), ID),
            (
                parse_quote!(#[state(previous = "SessionV1")]),
                "write `previous = SessionV1`",
            ),
            (parse_quote!(#[state(previous = 1)]), PREVIOUS),
            (
                parse_quote!(#[state(previous)]),
                "expected `previous = ...`",
            ),
            (parse_quote!(#[state(ttl = 30 * 60)]), TTL),
            (
                parse_quote!(#[state(ttl = "1h", id)]),
                "expected `id = ...`",
            ),
            (parse_quote!(#[state(a::b = 1)]), "unknown key `a::b`"),
            (
                parse_quote!(#[state]),
                "expected attribute arguments in parentheses",
            ),
        ] {
            let got = messages(&[attr]);
            assert!(
                got.len() == 1 && got[0].contains(message),
                "expected one error containing {message:?}, got {got:?}"
            );
        }
    }
}
