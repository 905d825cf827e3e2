//! The struct being derived, with each field's attributes read and its property name decided.

use quote::ToTokens;
use syn::ext::IdentExt as _;
use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::attr::{self, Disposition};
use crate::ctxt::Ctxt;
use crate::tyname::type_name;

pub(crate) struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub attrs: attr::Field,
    /// The JSON property name: the `rename`, else the field's name.
    pub name: String,
    /// The Rust type as written, for the schema.
    pub rust_type: String,
}

impl Field<'_> {
    pub(crate) fn disposition(&self) -> Option<&Disposition> {
        self.attrs
            .disposition
            .as_ref()
            .map(|(disposition, _)| disposition)
    }

    /// What an error about this field's property name should point at.
    pub(crate) fn name_tokens(&self) -> proc_macro2::TokenStream {
        match &self.attrs.rename {
            Some(rename) => rename.to_token_stream(),
            None => self.ident.to_token_stream(),
        }
    }
}

/// The fields of a struct with named fields; any other shape is an error.
pub(crate) fn fields<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Option<Vec<Field<'a>>> {
    let ident = &input.ident;
    let data = match &input.data {
        Data::Struct(data) => data,
        Data::Enum(data) => {
            cx.error_spanned_by(
                { let enum_token = data.enum_token; quote::quote!(#enum_token #ident) },
                "`TelemetryEvent` cannot be derived for an enum: an event is a struct with named fields; \
                 to send an enum of unit variants as its variant name, derive `TelemetryValue`",
            );
            return None;
        }
        Data::Union(data) => {
            let union_token = data.union_token;
            cx.error_spanned_by(
                quote::quote!(#union_token #ident),
                "`TelemetryEvent` cannot be derived for a union: an event is a struct with named fields",
            );
            return None;
        }
    };
    match &data.fields {
        Fields::Named(named) => Some(
            named
                .named
                .iter()
                .map(|field| {
                    let ident = field.ident.as_ref().expect("named fields have names");
                    let attrs = attr::Field::from_ast(cx, &field.attrs, attr::Target::Field);
                    let name = match &attrs.rename {
                        Some(rename) => rename.value(),
                        None => ident.unraw().to_string(),
                    };
                    Field {
                        ident,
                        ty: &field.ty,
                        attrs,
                        name,
                        rust_type: type_name(&field.ty),
                    }
                })
                .collect(),
        ),
        Fields::Unnamed(unnamed) => {
            cx.error_spanned_by(
                unnamed,
                "`TelemetryEvent` needs named fields: each property is named after its field",
            );
            None
        }
        Fields::Unit => {
            cx.error_spanned_by(
                { let struct_token = data.struct_token; quote::quote!(#struct_token #ident) },
                format_args!(
                    "`TelemetryEvent` needs a struct with braces; an event without properties is written `struct {ident} {{}}`"
                ),
            );
            None
        }
    }
}
