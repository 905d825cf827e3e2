//! `#[derive(TelemetryValue)]`: an enum of unit variants, sent as the variant's name.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt as _;
use syn::{Data, DeriveInput, Fields};

use crate::attr::{self, Derive};
use crate::case::snake_case;
use crate::ctxt::Ctxt;

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::default();
    let container = attr::Container::from_ast(&cx, &input.attrs, Derive::Value);
    let krate = crate::runtime_path(container.krate.as_ref());
    let ident = &input.ident;

    let mut variants = Vec::new();
    match &input.data {
        Data::Enum(data) => {
            let mut seen: HashMap<String, &syn::Ident> = HashMap::new();
            for variant in &data.variants {
                let attrs = attr::Variant::from_ast(&cx, &variant.attrs);
                if !matches!(variant.fields, Fields::Unit) {
                    cx.error_spanned_by(
                        &variant.fields,
                        format_args!(
                            "`TelemetryValue` sends only the variant's name, so `{}` cannot carry fields; \
                             send its data from the event with a disposition instead",
                            variant.ident
                        ),
                    );
                }
                let name = match &attrs.rename {
                    Some(rename) => rename.value(),
                    None => snake_case(&variant.ident.unraw().to_string()),
                };
                if let Some(earlier) = seen.get(&name) {
                    let at = match &attrs.rename {
                        Some(rename) => quote!(#rename),
                        None => {
                            let variant = &variant.ident;
                            quote!(#variant)
                        }
                    };
                    cx.error_spanned_by(
                        at,
                        format_args!("`{name}` is already the name of `{earlier}`"),
                    );
                } else {
                    seen.insert(name.clone(), &variant.ident);
                }
                variants.push((&variant.ident, name));
            }
        }
        Data::Struct(data) => {
            let struct_token = data.struct_token;
            cx.error_spanned_by(
                quote!(#struct_token #ident),
                "`TelemetryValue` is derived for enums of unit variants; for a struct, derive `TelemetryEvent`",
            );
        }
        Data::Union(data) => {
            let union_token = data.union_token;
            cx.error_spanned_by(
                quote!(#union_token #ident),
                "`TelemetryValue` is derived for enums of unit variants, not for unions",
            );
        }
    }

    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let errors = cx.check().err().map(|error| error.to_compile_error());
    let (names, body) = if errors.is_some() {
        (Vec::new(), quote!(__out.null();))
    } else if variants.is_empty() {
        (Vec::new(), quote!(match *self {}))
    } else {
        let names: Vec<&String> = variants.iter().map(|(_, name)| name).collect();
        let idents = variants.iter().map(|(ident, _)| ident);
        let body = quote! {
            __out.string(match *self {
                #(Self::#idents => #names,)*
            });
        };
        (names, body)
    };
    quote! {
        #errors

        #[automatically_derived]
        impl #impl_generics #krate::TelemetryValue for #ident #ty_generics #where_clause {
            const __SHAPE: #krate::schema::Shape = #krate::schema::Shape::Enum(&[#(#names),*]);

            fn __write_json(&self, __out: &mut #krate::__private::JsonBuf, _: &#krate::HashKey) {
                #body
            }
        }
    }
}
