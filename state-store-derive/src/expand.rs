//! The generated impls.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Type};

use crate::ast::{Data, Input};
use crate::errors::Errors;

pub(crate) fn derive(node: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let input = Input::from_syn(node, &mut errors);
    input.validate(&mut errors);
    let result = errors.finish();
    let Some(id) = &input.attrs.id else {
        // A missing or unparsable id is always among the errors, so this returns one.
        return Err(result.err().unwrap_or_else(|| {
            syn::Error::new(Span::call_site(), "missing `id` in `#[state(...)]`")
        }));
    };
    match result {
        Ok(()) => {
            let prefix = input.attrs.prefix.as_ref().map(syn::LitStr::value);
            Ok(impls(
                &input,
                id,
                &prefix.unwrap_or_default(),
                input.attrs.ttl,
            ))
        }
        Err(errors) if fallback_compiles(&input) => {
            // Still implementing the trait keeps the user's uses of it from adding "trait not
            // implemented" errors that would bury ours. The values never run: the crate fails
            // to compile on our errors.
            let errors = errors.into_compile_error();
            let impls = impls(&input, id, "", None);
            Ok(quote!(#errors #impls))
        }
        Err(errors) => Err(errors),
    }
}

/// Whether the impls could compile at all, so that emitting them would not add errors of
/// their own: a generic type has parameters we cannot name, and a union cannot be serialized.
fn fallback_compiles(input: &Input) -> bool {
    input.generics.params.is_empty() && !matches!(input.data, Data::Union(_))
}

fn impls(input: &Input, id: &Type, prefix: &str, ttl: Option<u64>) -> TokenStream {
    let ident = input.ident;
    let vis = input.vis;
    // At the id's span, so that an id which is not a `StateId` is reported at the user's type.
    let id_type = quote_spanned!(id.span()=> type Id = #id;);
    let ttl = match ttl {
        Some(secs) => {
            let secs = Literal::u64_unsuffixed(secs);
            quote! {
                ::state_store::__private::Some(::state_store::__private::Duration::from_secs(#secs))
            }
        }
        None => quote!(::state_store::__private::None),
    };
    let doc = format!(
        "The key of the `{ident}` with this id (`{prefix}:{{id}}` before the store's namespace)."
    );
    // The marker impls are never listed as "other types that implement" the trait in an error
    // about a type without it: that list would name every counter in the program (the
    // conformance suite's too), while the error's own note says what to add.
    let counter = input.attrs.counter.as_ref().map(|counter| {
        quote_spanned! {counter.span()=>
            #[automatically_derived]
            #[diagnostic::do_not_recommend]
            impl ::state_store::__private::Counter for #ident {}
        }
    });
    let (notify_const, notified) = match &input.attrs.notify {
        Some(notify) => (
            quote_spanned!(notify.span()=> const NOTIFY: bool = true;),
            Some(quote_spanned! {notify.span()=>
                #[automatically_derived]
                #[diagnostic::do_not_recommend]
                impl ::state_store::__private::Notified for #ident {}
            }),
        ),
        None => (TokenStream::new(), None),
    };
    // A cached value is handed out as a clone of the one kept: the type must be `Clone`, and
    // the error says so at `cache`.
    let cache = input.attrs.cache.as_ref().map(|cache| {
        quote_spanned! {cache.span()=>
            const CACHE: bool = true;
            fn __cached_clone(&self) -> ::state_store::__private::Option<Self> {
                ::state_store::__private::Some(::state_store::__private::Clone::clone(self))
            }
        }
    });
    let lease = input.attrs.lease.as_ref().map(|lease| {
        quote_spanned! {lease.span()=>
            #[automatically_derived]
            #[diagnostic::do_not_recommend]
            impl ::state_store::__private::Leased for #ident {}
        }
    });
    let durable = input
        .attrs
        .durable
        .as_ref()
        .map(|durable| quote_spanned!(durable.span()=> const DURABLE: bool = true;));
    // Without `notify` (an error already), no journal either: a `Journaled` impl would only add
    // a follow-on error about the missing feed.
    let (history_const, journaled) = match (&input.attrs.history, &input.attrs.notify) {
        (Some((keep, literal)), Some(_)) => (
            quote_spanned!(literal.span()=>
                const HISTORY: ::state_store::__private::Option<u64> =
                    ::state_store::__private::Some(#keep);
            ),
            Some(quote_spanned! {literal.span()=>
                #[automatically_derived]
                #[diagnostic::do_not_recommend]
                impl ::state_store::__private::Journaled for #ident {}
            }),
        ),
        _ => (TokenStream::new(), None),
    };
    let previous = input.attrs.previous.as_ref().map(previous);
    quote! {
        #[automatically_derived]
        impl ::state_store::__private::StateKey for #ident {
            #id_type
            const PREFIX: &'static str = #prefix;
            const TTL: ::state_store::__private::Option<::state_store::__private::Duration> = #ttl;
            #notify_const
            #durable
            #history_const
            #cache
            #previous
        }

        impl #ident {
            #[doc = #doc]
            #[must_use]
            // Unused when a private type's keys are only built by the store.
            #[allow(dead_code)]
            #vis fn key(id: &#id) -> ::state_store::__private::Key<#ident> {
                ::state_store::__private::Key::new(id)
            }
        }

        #counter
        #notified
        #lease
        #journaled
    }
}

/// `previous = Type`: a value that does not decode as the type is read as `Type` and converted
/// with `From`.
fn previous(ty: &Type) -> TokenStream {
    // As the user wrote it, for the decode error that names both shapes.
    let name = quote!(#ty).to_string().replace(' ', "");
    // At the type in the attribute, so that a missing `From` (or `Deserialize`) is reported
    // there rather than at the derive.
    let convert = quote_spanned! {ty.span()=>
        ::state_store::__private::from_slice::<#ty>(bytes)
            .map(<Self as ::state_store::__private::From<#ty>>::from)
    };
    quote! {
        fn __decode_previous(
            bytes: &[u8],
        ) -> ::state_store::__private::Option<(
            &'static str,
            ::state_store::__private::Result<Self, ::state_store::__private::JsonError>,
        )> {
            ::state_store::__private::Some((#name, #convert))
        }
    }
}
