//! The `#[derive(StateKey)]` macro of [`state-store`](https://docs.rs/state-store).
//!
//! Depend on `state-store` rather than on this crate: it re-exports the derive next to the
//! trait, and the generated code refers to `::state_store`.
#![warn(missing_docs)]

extern crate proc_macro;

mod ast;
mod attr;
mod errors;
mod expand;
mod rules;
mod ttl;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Implements `StateKey` for a struct or enum, and adds a `key(&id)` function returning its
/// typed `Key`. (The same example runs as a doctest on `state_store::StateKey`.)
///
/// ```text
/// use serde::{Deserialize, Serialize};
/// use state_store::StateKey;
///
/// #[derive(Serialize, Deserialize, StateKey)]
/// #[state(prefix = "session", id = u64, ttl = "30m")]
/// pub struct Session {
///     pub cart: Vec<String>,
/// }
///
/// #[derive(Serialize, Deserialize, StateKey)]
/// #[state(prefix = "ratelimit", id = String, ttl = "1m", counter)]
/// pub struct ApiCalls(pub i64);
///
/// assert_eq!(Session::key(&42).to_string(), "session:42");
/// ```
///
/// `#[state(...)]` takes, in any order and across any number of `#[state]` attributes:
/// - `prefix = "..."` (required): ASCII letters, digits, `_`, `-` and `.`;
/// - `id = Type` (required): a `StateId`, such as an integer, `String` or a tuple of ids;
/// - `ttl = "1h30m"` (optional): the expiry of every write, as `<number><unit>` pairs with units
///   `d`, `h`, `m`, `s` from largest to smallest, or as an integer number of seconds
///   (`ttl = 90`); without it keys never expire;
/// - `counter` (optional): marks a tuple struct with one integer field as a `Counter`;
/// - `notify` (optional): every write announces itself on the type's change feed, which
///   `Store::watch` reads (the type implements `Notified`);
/// - `cache` (optional, on a `Clone` type): reads keep the decoded value in the backend's
///   client-side cache (`StateKey::CACHE`);
/// - `lease` (optional, with a `ttl`): the type's values are leases with fencing tokens, taken
///   with `Store::acquire` (the type implements `Leased`);
/// - `durable` (optional): every write waits until it reached the backend's `Durability`
///   (replicas, append-only files), else `Error::NotDurable` (`StateKey::DURABLE`);
/// - `history = N` (optional, with `notify`): every change is also appended to the type's
///   journal, which keeps about the last `N` (at least `N`, at most `2N`), for
///   `Store::journal` and `Store::consume` (`StateKey::HISTORY`; the type implements
///   `Journaled`);
/// - `previous = Type` (optional): the older shape stored values may have, a `Deserialize`
///   type the state type implements `From`; reads convert such values and `Store::migrate`
///   rewrites them (a missing `From` is a compile error at `Type`).
///
/// The type must not be generic. Mistakes are compile errors at the offending token.
#[proc_macro_derive(StateKey, attributes(state))]
pub fn derive_state_key(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The rules shared with `state_store` (prefix characters, the ttl ceiling), as items: the
/// runtime expands this once, so both crates compile the same source. Not public API.
#[doc(hidden)]
#[proc_macro]
pub fn __rules(_input: TokenStream) -> TokenStream {
    include_str!("rules.rs")
        .parse()
        .unwrap_or_else(|_| panic!("rules.rs is valid Rust"))
}
