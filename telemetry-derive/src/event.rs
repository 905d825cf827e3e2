//! `#[derive(TelemetryEvent)]`: read, check, then generate.
//!
//! Each field's type is reached only through one `const fn` of the runtime per disposition
//! (`__private::hash::<T>()` and so on), whose bound says which types fit. The same call, with
//! the field type's own span, yields both the schema entry and the writer, so a field whose
//! type does not fit produces one error, pointing at that type.

use proc_macro2::{Literal, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::ext::IdentExt as _;
use syn::{DeriveInput, GenericArgument, Generics, PathArguments, Type};

use crate::ast::{self, Field};
use crate::attr::{self, Derive, Disposition};
use crate::case::snake_case;
use crate::ctxt::Ctxt;
use crate::valid;

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::default();
    let container = attr::Container::from_ast(&cx, &input.attrs, Derive::Event);
    let krate = crate::runtime_path(container.krate.as_ref());
    let fields = ast::fields(&cx, input);
    if let Some(fields) = &fields {
        valid::check(&cx, &container, fields);
    }
    match (cx.check(), fields) {
        (Ok(()), Some(fields)) => expand(input, &container, &krate, &fields),
        (result, _) => {
            let errors = result.err().map(|error| error.to_compile_error());
            let stub = stub(input, &krate);
            quote!(#errors #stub)
        }
    }
}

fn expand(
    input: &DeriveInput,
    container: &attr::Container,
    krate: &TokenStream,
    fields: &[Field],
) -> TokenStream {
    let private = quote!(#krate::__private);
    let ident = &input.ident;
    let generics = with_bounds(&input.generics, fields, krate);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let rust_type = ident.unraw().to_string();
    let name = match &container.name {
        Some(name) => name.value(),
        None => snake_case(&rust_type),
    };
    let description = &container.doc;
    let nested = container.nested;
    let schemas = fields.iter().map(|field| field_schema(field, krate, None));
    let writes = fields.iter().map(|field| {
        let member = field.ident;
        let handle = handle(field, krate);
        write_field(field, &quote!(&self.#member), handle, krate)
    });

    // Only a type the registry can name is registered: lifetimes become `'static`, but an event
    // generic over types has no single schema to list.
    let nameable = input.generics.type_params().next().is_none()
        && input.generics.const_params().next().is_none();
    let registration = (nameable && !nested).then(|| {
        let lifetimes = input.generics.lifetimes().map(|_| quote!('static));
        quote! {
            #private::inventory::submit! {
                #private::Registration(
                    <#ident<#(#lifetimes),*> as #krate::TelemetryEvent>::SCHEMA
                )
            }
        }
    });

    // A top-level property named like one the library sends with every event would be
    // replaced by it: checked at compile time against the library's own list.
    let common_checks = (!nested).then(|| {
        fields
            .iter()
            .filter(|field| {
                !matches!(
                    field.disposition(),
                    Some(Disposition::Skip | Disposition::Flatten)
                )
            })
            .map(|field| common_check(&field.name, field.name_tokens(), &private))
            .collect::<TokenStream>()
    });

    quote! {
        #common_checks

        #[automatically_derived]
        impl #impl_generics #krate::TelemetryEvent for #ident #ty_generics #where_clause {
            const SCHEMA: &'static #krate::schema::EventSchema = &#krate::schema::EventSchema {
                name: #name,
                description: #description,
                rust_type: #rust_type,
                nested: #nested,
                fields: &[#(#schemas)*],
            };

            fn __write_fields(
                &self,
                __properties: &mut #private::ObjectWriter<'_>,
                __key: &#krate::HashKey,
            ) {
                #(#writes)*
            }
        }

        #[automatically_derived]
        impl #impl_generics #krate::TelemetryValue for #ident #ty_generics #where_clause {
            const __SHAPE: #krate::schema::Shape =
                #krate::schema::Shape::Object(<Self as #krate::TelemetryEvent>::SCHEMA);

            fn __write_json(&self, __out: &mut #private::JsonBuf, __key: &#krate::HashKey) {
                let mut __properties = __out.object();
                #krate::TelemetryEvent::__write_fields(self, &mut __properties, __key);
                __properties.end();
            }
        }

        #registration
    }
}

/// A compile-time check that the property `name` is not one the library sends with every
/// event; its error points at `at`.
pub(crate) fn common_check(name: &str, at: TokenStream, private: &TokenStream) -> TokenStream {
    let span = at
        .into_iter()
        .next()
        .map_or_else(proc_macro2::Span::call_site, |token| token.span());
    let message = format!(
        "`{name}` is sent with every event by the library; rename this property with `#[telemetry(rename = \"...\")]`"
    );
    let private = respan(private.clone(), span);
    quote::quote_spanned! {span=>
        const _: () = #private::check_property(#name, #message);
    }
}

/// `tokens` with every token at `span`, so that an error about them points there.
pub(crate) fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

/// The runtime `const fn` that checks the field's type under its disposition and returns its
/// shape and writer. The schema and the writer both use exactly these tokens.
pub(crate) fn handle(field: &Field, krate: &TokenStream) -> Option<TokenStream> {
    let private = quote!(#krate::__private);
    let ty = field.ty;
    Some(match field.disposition() {
        None => quote!(#private::value::<#ty>()),
        Some(Disposition::Hash) => quote!(#private::hash::<#ty>()),
        Some(Disposition::TrustedOrHash { .. }) => quote!(#private::trusted_or_hash::<#ty>()),
        Some(Disposition::Count) => quote!(#private::count::<#ty>()),
        Some(Disposition::IsSet) => quote!(#private::is_set::<#ty>()),
        Some(Disposition::Plain) => quote!(#private::plain::<#ty>()),
        Some(Disposition::Flatten) => quote!(#private::flatten::<#ty>()),
        Some(Disposition::Scrub { .. }) => match scrub_shape(ty) {
            ScrubShape::Text => quote!(#private::scrub::<#ty>()),
            ScrubShape::Option(inner) => quote!(#private::scrub_option::<#inner>()),
            ScrubShape::Sequence(item) => quote!(#private::scrub_seq::<#ty, #item>()),
        },
        Some(Disposition::Skip) => return None,
    })
}

/// The schema entries of `field`: its shape from its handle, or `shape` when its type cannot
/// be named where the schema is (a parameter of a generic type).
pub(crate) fn field_schema(
    field: &Field,
    krate: &TokenStream,
    shape: Option<TokenStream>,
) -> TokenStream {
    let Some(handle) = handle(field, krate) else {
        return TokenStream::new();
    };
    let schema = quote!(#krate::schema);
    let name = &field.name;
    let rust_type = &field.rust_type;
    let description = &field.attrs.doc;
    let shape = match (shape, field.disposition()) {
        (Some(shape), _) => shape,
        (None, Some(Disposition::Flatten)) => quote!(#schema::Shape::Object(#handle.schema)),
        (None, _) => quote!(#handle.shape),
    };
    let disposition = match field.disposition() {
        None => quote!(Value),
        Some(Disposition::Hash) => quote!(Hash),
        Some(Disposition::TrustedOrHash { prefixes, rule }) => {
            let rule = match rule {
                Some(rule) => {
                    let text = rule.to_token_stream().to_string().replace(' ', "");
                    quote!(::core::option::Option::Some(#text))
                }
                None => quote!(::core::option::Option::None),
            };
            quote!(TrustedOrHash { prefixes: &[#(#prefixes),*], rule: #rule })
        }
        Some(Disposition::Count) => quote!(Count),
        Some(Disposition::IsSet) => quote!(IsSet),
        Some(Disposition::Scrub { max_len }) => {
            let max_len = Literal::usize_unsuffixed(*max_len);
            quote!(Scrub { max_len: #max_len })
        }
        Some(Disposition::Plain) => quote!(Plain),
        Some(Disposition::Flatten) => quote!(Flatten),
        Some(Disposition::Skip) => unreachable!("skipped fields have no handle"),
    };
    let entry = quote! {
        #schema::FieldSchema {
            name: #name,
            rust_type: #rust_type,
            disposition: #schema::Disposition::#disposition,
            description: #description,
            shape: #shape,
        },
    };
    let Some(Disposition::Scrub { max_len }) = field.disposition() else {
        return entry;
    };
    let truncated = valid::truncated_name(name);
    let about = format!("Whether `{name}` was longer than {max_len} bytes and was cut.");
    quote! {
        #entry
        #schema::FieldSchema {
            name: #truncated,
            rust_type: "bool",
            disposition: #schema::Disposition::Truncated,
            description: #about,
            shape: #schema::Shape::Boolean,
        },
    }
}

/// Writes `field`'s properties, `value` being a reference to its value and `handle` the
/// handle of its type ([`handle`], or one inferred from the value).
pub(crate) fn write_field(
    field: &Field,
    value: &TokenStream,
    handle: Option<TokenStream>,
    krate: &TokenStream,
) -> TokenStream {
    let Some(handle) = handle else {
        return TokenStream::new();
    };
    let private = quote!(#krate::__private);
    let name = &field.name;
    match field.disposition() {
        None | Some(Disposition::Hash) => quote! {
            (#handle.write)(#value, __properties.key(#name), __key);
        },
        Some(Disposition::TrustedOrHash { prefixes, rule }) => {
            let rule = match rule {
                Some(rule) => quote!(::core::option::Option::Some(#rule)),
                None => quote!(::core::option::Option::None),
            };
            quote! {
                (#handle.write)(
                    #value,
                    __properties.key(#name),
                    __key,
                    &#private::Trust { prefixes: &[#(#prefixes),*], rule: #rule },
                );
            }
        }
        Some(Disposition::Count | Disposition::IsSet | Disposition::Plain) => quote! {
            (#handle.write)(#value, __properties.key(#name));
        },
        Some(Disposition::Flatten) => quote! {
            (#handle.write)(#value, __properties, __key);
        },
        Some(Disposition::Scrub { max_len }) => {
            let truncated = valid::truncated_name(name);
            let max_len = Literal::usize_unsuffixed(*max_len);
            quote! {
                (#handle.write)(
                    #value,
                    __properties,
                    &#private::ScrubField { name: #name, truncated_name: #truncated, max_len: #max_len },
                );
            }
        }
        Some(Disposition::Skip) => unreachable!("skipped fields have no handle"),
    }
}

/// How `#[scrub]` reaches the text: the value itself, inside an `Option`, or in a sequence.
pub(crate) enum ScrubShape<'a> {
    Text,
    Option(&'a Type),
    Sequence(&'a Type),
}

pub(crate) fn scrub_shape(ty: &Type) -> ScrubShape<'_> {
    match ty {
        Type::Group(group) => scrub_shape(&group.elem),
        Type::Paren(paren) => scrub_shape(&paren.elem),
        Type::Array(array) => ScrubShape::Sequence(&array.elem),
        Type::Reference(reference) => match &*reference.elem {
            Type::Slice(slice) => ScrubShape::Sequence(&slice.elem),
            _ => ScrubShape::Text,
        },
        Type::Path(path) if path.qself.is_none() => {
            let Some(last) = path.path.segments.last() else {
                return ScrubShape::Text;
            };
            let PathArguments::AngleBracketed(arguments) = &last.arguments else {
                return ScrubShape::Text;
            };
            let mut types = arguments.args.iter().filter_map(|argument| match argument {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            });
            match (types.next(), types.next()) {
                (Some(inner), None) if last.ident == "Option" => ScrubShape::Option(inner),
                (Some(item), None) if last.ident == "Vec" => ScrubShape::Sequence(item),
                _ => ScrubShape::Text,
            }
        }
        _ => ScrubShape::Text,
    }
}

/// The struct's generics, plus a bound for each field whose type mentions a type parameter:
/// `T: TelemetryValue` for a value field, `T: Hashable` for `#[hash]`, and so on. Fields of
/// concrete types need none; their check happens, with their span, in the generated body.
fn with_bounds(generics: &Generics, fields: &[Field], krate: &TokenStream) -> Generics {
    let params: Vec<String> = generics
        .type_params()
        .map(|param| param.ident.to_string())
        .collect();
    let mut generics = generics.clone();
    if params.is_empty() {
        return generics;
    }
    let dispositions = quote!(#krate::dispositions);
    for field in fields
        .iter()
        .filter(|field| mentions(field.ty.to_token_stream(), &params))
    {
        let ty = field.ty;
        let bounds: Vec<TokenStream> = match field.disposition() {
            None => vec![quote!(#ty: #krate::TelemetryValue)],
            Some(Disposition::Hash) => vec![quote!(#ty: #dispositions::Hashable)],
            Some(Disposition::TrustedOrHash { .. }) => vec![quote!(#ty: #dispositions::Trustable)],
            Some(Disposition::Count) => vec![quote!(#ty: #dispositions::Countable)],
            Some(Disposition::IsSet) => vec![quote!(#ty: #dispositions::Presence)],
            Some(Disposition::Plain) => vec![quote!(#ty: #krate::__private::serde::Serialize)],
            Some(Disposition::Flatten) => vec![quote!(#ty: #krate::TelemetryEvent)],
            Some(Disposition::Scrub { .. }) => match scrub_shape(ty) {
                ScrubShape::Text => vec![quote!(#ty: ::core::fmt::Display)],
                ScrubShape::Option(inner) => vec![quote!(#inner: ::core::fmt::Display)],
                ScrubShape::Sequence(item) => vec![
                    quote!(#ty: ::core::convert::AsRef<[#item]>),
                    quote!(#item: ::core::fmt::Display),
                ],
            },
            Some(Disposition::Skip) => vec![],
        };
        let where_clause = generics.make_where_clause();
        for bound in bounds {
            where_clause
                .predicates
                .push(syn::parse2(bound).expect("a bound on a field type parses"));
        }
    }
    generics
}

pub(crate) fn mentions(tokens: TokenStream, params: &[String]) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => params.iter().any(|param| ident == param),
        TokenTree::Group(group) => mentions(group.stream(), params),
        _ => false,
    })
}

/// Implementations that compile whatever the input, emitted next to the errors so that code
/// using the type reports nothing more.
fn stub(input: &DeriveInput, krate: &TokenStream) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::TelemetryEvent for #ident #ty_generics #where_clause {
            const SCHEMA: &'static #krate::schema::EventSchema = &#krate::__private::STUB_SCHEMA;
            fn __write_fields(
                &self,
                _: &mut #krate::__private::ObjectWriter<'_>,
                _: &#krate::HashKey,
            ) {
            }
        }

        #[automatically_derived]
        impl #impl_generics #krate::TelemetryValue for #ident #ty_generics #where_clause {
            const __SHAPE: #krate::schema::Shape = #krate::schema::Shape::Any;
            fn __write_json(&self, __out: &mut #krate::__private::JsonBuf, _: &#krate::HashKey) {
                __out.null();
            }
        }
    }
}
