//! Checks that need the whole input rather than one key of `#[state(...)]`.

use syn::{Error, Fields, Type};

use crate::ast::{Data, Input};
use crate::errors::Errors;

const SYNTAX: &str = "#[state(prefix = \"name\", id = Type)]";

impl Input<'_> {
    pub(crate) fn validate(&self, errors: &mut Errors) {
        if !self.generics.params.is_empty() {
            errors.push(Error::new_spanned(
                self.generics,
                "a state type cannot be generic: its prefix and id name one concrete type; \
                 declare a separate type for each kind of state",
            ));
        }
        if let Data::Union(union) = self.data {
            errors.push(Error::new(
                union.span,
                "`StateKey` cannot be derived for a union; use a struct or an enum",
            ));
        }
        self.check_required(errors);
        self.check_prefix(errors);
        self.check_counter(errors);
        self.check_lease(errors);
        self.check_history(errors);
    }

    /// The journal records the changes the type announces: `history` without `notify` would
    /// record nothing.
    fn check_history(&self, errors: &mut Errors) {
        let Some((_, history)) = &self.attrs.history else {
            return;
        };
        if self.attrs.notify.is_none() {
            errors.push(Error::new(
                history.span(),
                "`history` needs `notify`: the journal keeps the changes the type announces; \
                 add `notify`, like `#[state(prefix = \"job\", id = u64, notify, history = 10_000)]`",
            ));
        }
    }

    /// A lease lives for its ttl unless extended: without one it would never end. Its value
    /// says who holds it, so it cannot be a counter.
    fn check_lease(&self, errors: &mut Errors) {
        let Some(lease) = &self.attrs.lease else {
            return;
        };
        if !self.attrs.given("ttl") {
            errors.push(Error::new(
                lease.span(),
                "a `lease` type needs a `ttl`: how long a holder keeps it without extending it, \
                 like `#[state(prefix = \"job-lease\", id = u64, ttl = \"30s\", lease)]`",
            ));
        }
        if let Some(counter) = &self.attrs.counter {
            errors.push(Error::new(
                counter.span(),
                "a `lease` type cannot be a `counter`: its value says who holds the lease",
            ));
        }
    }

    fn check_required(&self, errors: &mut Errors) {
        let Some(attr) = self.attrs.first else {
            errors.push(Error::new(
                self.ident.span(),
                format_args!(
                    "missing `#[state(...)]` attribute: `#[derive(StateKey)]` needs at least \
                     a prefix and an id type, like `{SYNTAX}`"
                ),
            ));
            return;
        };
        let missing = match (self.attrs.given("prefix"), self.attrs.given("id")) {
            (true, true) => return,
            (false, false) => "missing `prefix` and `id` in `#[state(...)]`",
            (false, true) => "missing `prefix` in `#[state(...)]`",
            (true, false) => "missing `id` in `#[state(...)]`",
        };
        errors.push(Error::new_spanned(
            attr,
            format_args!("{missing}; expected `{SYNTAX}`"),
        ));
    }

    fn check_prefix(&self, errors: &mut Errors) {
        let Some(prefix) = &self.attrs.prefix else {
            return;
        };
        let value = prefix.value();
        if value.is_empty() {
            errors.push(Error::new(
                prefix.span(),
                "prefix must not be empty; it tells this type's keys apart from other types'",
            ));
            return;
        }
        // The same rule as the store's namespace check (rules.rs says why).
        let Some(bad) = value.chars().find(|&c| !crate::rules::is_segment_char(c)) else {
            return;
        };
        let why = match bad {
            ':' => " (`:` separates the prefix from the id)",
            '*' | '?' | '[' | ']' => " (glob characters would break key scans)",
            '{' | '}' => " (braces are Redis Cluster hash tags)",
            _ => "",
        };
        let bad = match bad {
            ' ' => "` ` (a space)".to_owned(),
            _ => format!("`{}`", bad.escape_debug()),
        };
        errors.push(Error::new(
            prefix.span(),
            format_args!(
                "invalid character {bad} in prefix `{}`{why}; a prefix may hold {}",
                value.escape_debug(),
                crate::rules::SEGMENT_CHARS,
            ),
        ));
    }

    fn check_counter(&self, errors: &mut Errors) {
        let Some(counter) = &self.attrs.counter else {
            return;
        };
        // Counters are incremented inside Redis (INCRBY), which needs the stored value to be a
        // bare integer; a newtype of one integer is the shape serde writes as exactly that.
        const SHAPE: &str = "a `counter` must be a tuple struct with one integer field, \
                             like `struct ApiCalls(i64);`";
        match self.data {
            Data::Struct(Fields::Unnamed(fields)) if fields.unnamed.len() == 1 => {
                let ty = &fields.unnamed[0].ty;
                if !is_integer(ty) {
                    errors.push(Error::new_spanned(
                        ty,
                        "a `counter`'s field must be an integer type that holds every value it \
                         can reach: Redis counters are signed 64-bit, so use `i64` (or `i8`, \
                         `i16`, `i32`, `u8`, `u16`, `u32`)",
                    ));
                }
            }
            Data::Union(_) => {}
            _ => errors.push(Error::new(counter.span(), SHAPE)),
        }
    }
}

/// Whether `ty` names a primitive integer within `i64`'s range, bare or through `core::primitive`/`std::primitive`.
/// Aliases are not seen through: a macro only has the tokens.
fn is_integer(ty: &Type) -> bool {
    // Only types within Redis's signed 64-bit range: a `u64` counter could be incremented past
    // what `i64` increments can express.
    const INTEGERS: [&str; 7] = ["i8", "i16", "i32", "i64", "u8", "u16", "u32"];
    let Type::Path(path) = ty else {
        return false;
    };
    if path.qself.is_some() {
        return false;
    }
    let segments: Vec<_> = path.path.segments.iter().collect();
    if segments.iter().any(|segment| !segment.arguments.is_none()) {
        return false;
    }
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let primitive = match parents {
        [] => path.path.leading_colon.is_none(),
        [krate, module] => {
            (krate.ident == "core" || krate.ident == "std") && module.ident == "primitive"
        }
        _ => false,
    };
    primitive && INTEGERS.iter().any(|name| last.ident == name)
}
