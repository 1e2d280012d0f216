//! The derive input as the types the later stages work on.

use syn::{Data as SynData, DeriveInput, Fields, Generics, Ident, Visibility};

use crate::attr::{self, Attrs};
use crate::errors::Errors;

pub(crate) struct Input<'a> {
    pub ident: &'a Ident,
    pub vis: &'a Visibility,
    pub generics: &'a Generics,
    pub data: Data<'a>,
    pub attrs: Attrs<'a>,
}

/// The kind of type, with what the checks of `valid.rs` need from each.
pub(crate) enum Data<'a> {
    Struct(&'a Fields),
    Enum,
    Union(&'a syn::token::Union),
}

impl<'a> Input<'a> {
    pub(crate) fn from_syn(node: &'a DeriveInput, errors: &mut Errors) -> Self {
        let attrs = attr::get(&node.attrs, errors);
        let data = match &node.data {
            SynData::Struct(data) => {
                reject_on_fields(&data.fields, errors);
                Data::Struct(&data.fields)
            }
            SynData::Enum(data) => {
                for variant in &data.variants {
                    attr::reject_misplaced(&variant.attrs, "variant", errors);
                    reject_on_fields(&variant.fields, errors);
                }
                Data::Enum
            }
            SynData::Union(data) => Data::Union(&data.union_token),
        };
        Input {
            ident: &node.ident,
            vis: &node.vis,
            generics: &node.generics,
            data,
            attrs,
        }
    }
}

fn reject_on_fields(fields: &Fields, errors: &mut Errors) {
    for field in fields {
        attr::reject_misplaced(&field.attrs, "field", errors);
    }
}
