//! `#[instrument_command]`: read the attribute and the function, check, then wrap the body.
//!
//! The function keeps its signature. Its body runs inside a closure (or an `async` block) so
//! that every way out of it, `return` and `?` included, passes the recorder, which records the
//! outcome from the returned value; a panic is recorded by the recorder's drop as it unwinds.
//!
//! Annotated parameters are written through the same runtime handles as event fields, so the
//! same type gets the same error. A parameter's type is named in the schema (a `static`, which
//! cannot see the function's generics) only when it mentions none of them, nor `Self` nor
//! `impl Trait`; the schema then uses the same tokens as the writer, so a type that does not fit
//! still gives one error. Lifetimes other than `'static` are written `'_` in both places.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned as _;
use syn::visit_mut::VisitMut;
use syn::{FnArg, Ident, ItemFn, LitInt, LitStr, Pat, Path, ReturnType, Type};

use crate::ast::Field;
use crate::attr::{self, DEFAULT_MAX_LEN, Disposition, TELEMETRY, Target};
use crate::ctxt::Ctxt;
use crate::event::{self, ScrubShape, scrub_shape};
use crate::tyname::type_name;
use crate::valid::truncated_name;

/// The properties every command event sends before its arguments.
const RESERVED: &[&str] = &[
    "command",
    "duration_ms",
    "outcome",
    "error_type",
    "error_message",
    "error_message_truncated",
];

/// `#[instrument_command(...)]`'s arguments.
#[derive(Default)]
struct Options {
    name: Option<LitStr>,
    event: Option<LitStr>,
    /// `message`: send the error's message, cut to this many bytes.
    message: Option<usize>,
    args: Vec<Ident>,
    krate: Option<Path>,
}

impl Options {
    fn parse(cx: &Ctxt, tokens: TokenStream) -> Options {
        let mut options = Options::default();
        let mut seen: Vec<&'static str> = Vec::new();
        let mut once = |key: &'static str, at: &Path| {
            if seen.contains(&key) {
                cx.error_spanned_by(at, format_args!("duplicate `{key}`"));
                false
            } else {
                seen.push(key);
                true
            }
        };
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") || meta.path.is_ident("event") {
                let key = if meta.path.is_ident("name") {
                    "name"
                } else {
                    "event"
                };
                let value = attr::non_empty_name(&meta)?;
                if key == "event" && value.value().starts_with('$') {
                    return Err(syn::Error::new_spanned(
                        value,
                        "names starting with `$` are reserved by PostHog",
                    ));
                }
                if once(key, &meta.path) {
                    if key == "name" {
                        options.name = Some(value);
                    } else {
                        options.event = Some(value);
                    }
                }
            } else if meta.path.is_ident("message") {
                let mut max_len = DEFAULT_MAX_LEN;
                if meta.input.peek(syn::token::Paren) {
                    meta.parse_nested_meta(|inner| {
                        if !inner.path.is_ident("max_len") {
                            return Err(inner.error("unknown key; expected `max_len = N`"));
                        }
                        let literal: LitInt = inner.value()?.parse()?;
                        max_len = literal.base10_parse()?;
                        if max_len == 0 {
                            return Err(syn::Error::new_spanned(
                                literal,
                                "`max_len` must be at least 1",
                            ));
                        }
                        Ok(())
                    })?;
                }
                if once("message", &meta.path) {
                    options.message = Some(max_len);
                }
            } else if meta.path.is_ident("args") {
                let mut listed = Vec::new();
                meta.parse_nested_meta(|inner| {
                    match inner.path.get_ident() {
                        Some(ident) if ident == "self" => {
                            return Err(inner.error("`self` is never sent"));
                        }
                        Some(ident) => listed.push(ident.clone()),
                        None => return Err(inner.error("expected a parameter's name")),
                    }
                    Ok(())
                })?;
                if once("args", &meta.path) {
                    options.args = listed;
                }
            } else if meta.path.is_ident("crate") {
                let path = attr::crate_path(&meta)?;
                if once("crate", &meta.path) {
                    options.krate = Some(path);
                }
            } else {
                let key = meta.path.to_token_stream().to_string().replace(' ', "");
                return Err(meta.error(format_args!(
                    "unknown argument `{key}`; expected `name = \"...\"`, `event = \"...\"`, `message`, `args(...)` or `crate = path`"
                )));
            }
            Ok(())
        });
        if let Err(error) = syn::parse::Parser::parse2(parser, tokens) {
            cx.syn_error(error);
        }
        options
    }
}

/// One annotated or listed parameter, with its type as written and as the expansion names it.
struct Param {
    ident: Ident,
    ty: Type,
    named: Type,
    attrs: attr::Field,
    /// Whether the type can be named in a `static` in the function.
    closed: bool,
    /// Whether the type contains `impl Trait`, so the writer infers it.
    has_impl: bool,
}

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let Ok(mut function) = syn::parse2::<ItemFn>(input.clone()) else {
        return not_a_function(input);
    };
    let cx = Ctxt::default();
    let options = Options::parse(&cx, args);
    if let Some(constness) = &function.sig.constness {
        cx.error_spanned_by(
            constness,
            "`#[instrument_command]` cannot time a `const fn`",
        );
    }
    let params = read_params(&cx, &mut function, &options);
    check_names(&cx, &params);
    let krate = crate::runtime_path(options.krate.as_ref());
    match cx.check() {
        Ok(()) => wrap(&function, &options, &params, &krate),
        // The function as written, minus the parameters' attributes, so that the only errors
        // are the ones above.
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#error #function)
        }
    }
}

/// The error for anything but a function with a body, with the item left as it was. It points
/// at the item's keyword and name (`struct Submit`), past attributes and visibility.
fn not_a_function(input: TokenStream) -> TokenStream {
    const KEYWORDS: &[&str] = &[
        "struct", "enum", "union", "mod", "trait", "impl", "const", "static", "type", "fn",
    ];
    let tokens: Vec<TokenTree> = input.clone().into_iter().collect();
    let start = tokens
        .iter()
        .position(
            |token| matches!(token, TokenTree::Ident(ident) if KEYWORDS.iter().any(|k| ident == k)),
        )
        .unwrap_or(0);
    let at: TokenStream = tokens.into_iter().skip(start).take(2).collect();
    let error = syn::Error::new_spanned(
        at,
        "`#[instrument_command]` goes on a function or a method with a body",
    )
    .to_compile_error();
    quote!(#error #input)
}

/// Reads each parameter's attributes and removes them from the function, which keeps its
/// other attributes (`cfg`, lints).
fn read_params(cx: &Ctxt, function: &mut ItemFn, options: &Options) -> Vec<Param> {
    let mut generics: Vec<String> = function
        .sig
        .generics
        .type_params()
        .map(|param| param.ident.to_string())
        .chain(
            function
                .sig
                .generics
                .const_params()
                .map(|param| param.ident.to_string()),
        )
        .collect();
    generics.push("Self".to_owned());
    let mut params = Vec::new();
    let mut found: Vec<Ident> = Vec::new();
    for input in &mut function.sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                for attr in receiver.attrs.iter().filter(|attr| is_ours(attr)) {
                    cx.error_spanned_by(attr, "`self` is never sent");
                }
                receiver.attrs.retain(|attr| !is_ours(attr));
            }
            FnArg::Typed(typed) => {
                let attrs = attr::Field::from_ast(cx, &typed.attrs, Target::Parameter);
                // `#[skip]` alone was reported as not needed; the parameter is not sent.
                let annotated = typed
                    .attrs
                    .iter()
                    .any(|attr| is_ours(attr) && !attr.path().is_ident("skip"));
                typed.attrs.retain(|attr| !is_ours(attr));
                let ident = match &*typed.pat {
                    Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                        Some(pat.ident.clone())
                    }
                    _ => None,
                };
                let listed = ident
                    .as_ref()
                    .is_some_and(|ident| options.args.contains(ident));
                if let Some(ident) = &ident {
                    found.push(ident.clone());
                }
                if !annotated && !listed {
                    continue;
                }
                let Some(ident) = ident else {
                    cx.error_spanned_by(
                        &typed.pat,
                        "a parameter that is sent needs a plain name, as in `name: Type`",
                    );
                    continue;
                };
                if attrs.disposition.is_none() && !listed {
                    // Only `#[telemetry(rename = "...")]`: say how to send it.
                    cx.error_spanned_by(
                        &ident,
                        format_args!(
                            "`{ident}` has no disposition: add one (`#[hash]`, `#[count]`, ...), or list it in `args({ident})` to send it as is"
                        ),
                    );
                    continue;
                }
                let ty = (*typed.ty).clone();
                let mut named = ty.clone();
                AnonymousLifetimes.visit_type_mut(&mut named);
                let tokens = ty.to_token_stream();
                let has_impl = contains_ident(tokens.clone(), &["impl"]);
                let closed = !has_impl
                    && !event::mentions(tokens.clone(), &generics)
                    && !mentions_generic_looking(tokens);
                params.push(Param {
                    ident,
                    ty,
                    named,
                    attrs,
                    closed,
                    has_impl,
                });
            }
        }
    }
    let mut listed: Vec<&Ident> = Vec::new();
    for ident in &options.args {
        if listed.contains(&ident) {
            cx.error_spanned_by(ident, format_args!("`{ident}` is listed twice"));
        } else if !found.contains(ident) {
            cx.error_spanned_by(ident, format_args!("no parameter is named `{ident}`"));
        }
        listed.push(ident);
    }
    params
}

fn is_ours(attr: &syn::Attribute) -> bool {
    attr.path().is_ident(TELEMETRY)
        || attr::DISPOSITIONS
            .iter()
            .any(|name| attr.path().is_ident(name))
}

/// Whether `tokens` name what is most likely the type parameter of an enclosing `impl` or
/// trait, which the macro cannot see: one capital letter, maybe followed by digits (`T`, `E2`).
/// A `static` cannot name those, so such a type is described by its disposition alone.
fn mentions_generic_looking(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => {
            let name = ident.to_string();
            let mut chars = name.chars();
            chars.next().is_some_and(|c| c.is_ascii_uppercase())
                && chars.all(|c| c.is_ascii_digit())
        }
        TokenTree::Group(group) => mentions_generic_looking(group.stream()),
        _ => false,
    })
}

fn contains_ident(tokens: TokenStream, names: &[&str]) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => names.iter().any(|name| ident == name),
        TokenTree::Group(group) => contains_ident(group.stream(), names),
        _ => false,
    })
}

/// Writes every lifetime but `'static` as `'_`, which the function body and a `static` in it
/// can both infer.
struct AnonymousLifetimes;

impl VisitMut for AnonymousLifetimes {
    fn visit_lifetime_mut(&mut self, lifetime: &mut syn::Lifetime) {
        if lifetime.ident != "static" {
            *lifetime = syn::Lifetime::new("'_", lifetime.span());
        }
    }
}

/// The property names: none taken by the command event itself, none twice, none reserved.
fn check_names(cx: &Ctxt, params: &[Param]) {
    let mut sent: Vec<(String, &Ident)> = Vec::new();
    for param in params {
        let rename = param.attrs.rename.as_ref();
        let at = match rename {
            Some(rename) => rename.to_token_stream(),
            None => param.ident.to_token_stream(),
        };
        if matches!(param.attrs.disposition, Some((Disposition::Flatten, _))) {
            if let Some(rename) = rename {
                cx.error_spanned_by(
                    rename,
                    "a flattened parameter sends its own fields' properties; it has no property to rename",
                );
            }
            continue;
        }
        let name = property_name(param);
        if name.starts_with('$') {
            cx.error_spanned_by(&at, "names starting with `$` are reserved by PostHog");
        }
        let mut names = vec![name.clone()];
        if matches!(
            param.attrs.disposition,
            Some((Disposition::Scrub { .. }, _))
        ) {
            names.push(truncated_name(&name));
        }
        for name in names {
            if RESERVED.contains(&name.as_str()) {
                cx.error_spanned_by(
                    &at,
                    format_args!(
                        "every command event sends `{name}`; rename this parameter's property with `#[telemetry(rename = \"...\")]`"
                    ),
                );
            } else if let Some((_, earlier)) = sent.iter().find(|(sent, _)| *sent == name) {
                cx.error_spanned_by(
                    &at,
                    format_args!("property `{name}` is already sent by parameter `{earlier}`"),
                );
            } else {
                sent.push((name, &param.ident));
            }
        }
    }
}

fn property_name(param: &Param) -> String {
    match &param.attrs.rename {
        Some(rename) => rename.value(),
        None => param.ident.unraw().to_string(),
    }
}

fn wrap(
    function: &ItemFn,
    options: &Options,
    params: &[Param],
    krate: &TokenStream,
) -> TokenStream {
    let private = quote!(#krate::__private);
    let schema = quote!(#krate::schema);
    let function_name = function.sig.ident.unraw().to_string();
    let command = options
        .name
        .as_ref()
        .map_or_else(|| function_name.clone(), LitStr::value);
    let event_name = options
        .event
        .as_ref()
        .map_or_else(|| "command".to_owned(), LitStr::value);
    let description =
        format!("The `{command}` command ran: how long it took, how it ended, and its arguments.");

    let fields: Vec<(Field, &Param)> = params
        .iter()
        .map(|param| {
            let field = Field {
                ident: &param.ident,
                ty: &param.named,
                attrs: attr::Field {
                    rename: param.attrs.rename.clone(),
                    disposition: param
                        .attrs
                        .disposition
                        .as_ref()
                        .map(|(disposition, span)| (disposition.clone(), *span)),
                    doc: format!("The `{}` argument.", param.ident.unraw()),
                },
                name: property_name(param),
                rust_type: type_name(&param.ty),
            };
            (field, param)
        })
        .collect();

    let schemas = fields.iter().map(|(field, param)| {
        let shape = (!param.closed).then(|| untyped_shape(field, &schema));
        event::field_schema(field, krate, shape)
    });
    let writes = fields.iter().map(|(field, param)| {
        // Read through a call-site ident: the same binding, but the read is the macro's.
        let mut ident = param.ident.clone();
        ident.set_span(Span::call_site());
        let handle = if param.has_impl {
            inferred_handle(field, param, &private)
        } else {
            event::handle(field, krate)
        };
        event::write_field(field, &quote!(&#ident), handle, krate)
    });

    // How the outcome is read from the returned value: by its type, or, to send the message,
    // through a bound whose error points at the return type.
    let returned = quote!(__telemetry_returned);
    let (message, message_fields, outcome) = match options.message {
        Some(max_len) => {
            let span = match &function.sig.output {
                ReturnType::Type(_, ty) => ty.span(),
                ReturnType::Default => function.sig.ident.span(),
            };
            (
                quote!(::core::option::Option::Some(#max_len)),
                quote!(
                    #private::fields::error_message(#max_len),
                    #private::fields::ERROR_MESSAGE_TRUNCATED,
                ),
                {
                    let private = event::respan(private.clone(), span);
                    let returned = event::respan(returned.clone(), span);
                    quote_spanned!(span=> #private::outcome_with_message(&#returned))
                },
            )
        }
        None => (
            quote!(::core::option::Option::None),
            TokenStream::new(),
            quote!({
                #[allow(unused_imports)]
                use #private::{AnyOutcome as _, ResultOutcome as _};
                (&#private::Returned(&#returned)).__telemetry_outcome()
            }),
        ),
    };

    let statics = quote! {
        static __TELEMETRY_SCHEMA: #schema::EventSchema = #schema::EventSchema {
            name: #event_name,
            description: #description,
            rust_type: ::core::concat!(::core::module_path!(), "::", #function_name),
            nested: false,
            fields: &[
                #private::fields::command(&[#command]),
                #private::fields::DURATION,
                #private::fields::OUTCOME,
                #private::fields::ERROR_TYPE,
                #message_fields
                #(#schemas)*
            ],
        };
        static __TELEMETRY_COMMAND: #private::CommandSpec = #private::CommandSpec {
            command: #command,
            function: #function_name,
            message: #message,
            schema: &__TELEMETRY_SCHEMA,
        };
        #private::inventory::submit! {
            #private::Registration(&__TELEMETRY_SCHEMA)
        }
    };
    // Names that would replace another property: the library's own, checked at compile time,
    // and, for flattened arguments the schema can name, theirs against all others.
    let mut taken: Vec<String> = RESERVED.iter().map(|name| (*name).to_owned()).collect();
    let mut checks = TokenStream::new();
    for (field, _) in &fields {
        let disposition = field.disposition();
        if matches!(disposition, Some(Disposition::Flatten)) {
            continue;
        }
        checks.extend(event::common_check(
            &field.name,
            field.name_tokens(),
            &private,
        ));
        taken.push(field.name.clone());
        if matches!(disposition, Some(Disposition::Scrub { .. })) {
            taken.push(truncated_name(&field.name));
        }
    }
    let mut flattened: Vec<TokenStream> = Vec::new();
    for (field, param) in &fields {
        if !matches!(field.disposition(), Some(Disposition::Flatten)) || !param.closed {
            continue;
        }
        let Some(handle) = event::handle(field, krate) else {
            continue;
        };
        let span = param.ty.span();
        let message = format!(
            "a property of `{}` is already sent by this command's event (its own properties, another argument, or the library's); rename it there",
            field.rust_type
        );
        let checker = event::respan(private.clone(), span);
        checks.extend(quote_spanned! {span=>
            const _: () = #checker::check_flattened(#handle.schema, &[#(#taken),*], &[#(#flattened),*], #message);
        });
        flattened.push(quote!(#handle.schema));
    }
    let statics = quote!(#statics #checks);
    let arguments = quote! {
        |__properties: &mut #private::ObjectWriter<'_>, __key: &#krate::HashKey| {
            #(#writes)*
        }
    };

    let ItemFn {
        attrs,
        vis,
        modifiers,
        sig,
        block,
    } = function;
    let (annotation, arrow) = match &sig.output {
        ReturnType::Type(_, ty) if contains_ident(ty.to_token_stream(), &["impl"]) => {
            (TokenStream::new(), TokenStream::new())
        }
        ReturnType::Type(_, ty) => (quote!(: #ty), quote!(-> #ty)),
        ReturnType::Default => (TokenStream::new(), TokenStream::new()),
    };
    let body = if matches!(sig.safety, syn::Safety::Unsafe(_)) {
        quote!({ #[allow(unused_unsafe)] unsafe #block })
    } else {
        quote!(#block)
    };
    let span = Span::call_site();
    let start = quote_spanned! {span=>
        #statics
        let mut __telemetry = #private::Recorder::start_async(&__TELEMETRY_COMMAND, #arguments);
    };
    let never = matches!(&sig.output, ReturnType::Type(_, ty) if matches!(**ty, Type::Never(_)));
    let inner = match (sig.asyncness.is_some(), &sig.output) {
        (true, _) if never => {
            let error = syn::Error::new_spanned(
                &sig.output,
                "an `async fn` that never returns has no outcome to record; instrument the function that awaits it",
            )
            .to_compile_error();
            quote!(#error #body)
        }
        (true, ReturnType::Default) => quote_spanned! {span=>
            #start
            __telemetry.run(::core::pin::pin!(async move #body)).await;
            __telemetry.finish(#private::Outcome::Ok);
        },
        (true, ReturnType::Type(..)) => quote_spanned! {span=>
            #start
            let __telemetry_returned #annotation =
                __telemetry.run(::core::pin::pin!(async move #body)).await;
            __telemetry.finish(#outcome);
            __telemetry_returned
        },
        // The body runs in a closure called once, so that `return` and `?` come back here.
        (false, _) if never => quote_spanned! {span=>
            #statics
            let __telemetry = #private::Recorder::start(&__TELEMETRY_COMMAND, #arguments);
            #private::call_once(move || #arrow #body)
        },
        (false, ReturnType::Default) => quote_spanned! {span=>
            #statics
            let __telemetry = #private::Recorder::start(&__TELEMETRY_COMMAND, #arguments);
            #private::call_once(move || #body);
            __telemetry.finish(#private::Outcome::Ok);
        },
        (false, ReturnType::Type(..)) => quote_spanned! {span=>
            #statics
            let __telemetry = #private::Recorder::start(&__TELEMETRY_COMMAND, #arguments);
            let __telemetry_returned #annotation = #private::call_once(move || #arrow #body);
            __telemetry.finish(#outcome);
            __telemetry_returned
        },
    };
    let defaultness = &modifiers.defaultness;
    quote! {
        #(#attrs)*
        #vis #defaultness #sig {
            #inner
        }
    }
}

/// The shape of a parameter whose type the schema cannot name: what its disposition alone
/// says.
fn untyped_shape(field: &Field, schema: &TokenStream) -> TokenStream {
    match field.disposition() {
        Some(Disposition::Count) => quote!(#schema::Shape::Integer),
        Some(Disposition::IsSet) => quote!(#schema::Shape::Boolean),
        Some(Disposition::Scrub { .. }) => match scrub_shape(field.ty) {
            ScrubShape::Text => quote!(#schema::Shape::String),
            ScrubShape::Option(_) => quote!(#schema::Shape::Nullable(&#schema::Shape::String)),
            ScrubShape::Sequence(_) => quote!(#schema::Shape::Array(&#schema::Shape::String)),
        },
        _ => quote!(#schema::Shape::Any),
    }
}

/// The handle of an `impl Trait` parameter, inferred from its value.
fn inferred_handle(field: &Field, param: &Param, private: &TokenStream) -> Option<TokenStream> {
    let ident = &param.ident;
    let span = param.ty.span();
    let function = match field.disposition() {
        None => quote!(value),
        Some(Disposition::Hash) => quote!(hash),
        Some(Disposition::TrustedOrHash { .. }) => quote!(trusted_or_hash),
        Some(Disposition::Count) => quote!(count),
        Some(Disposition::IsSet) => quote!(is_set),
        Some(Disposition::Plain) => quote!(plain),
        Some(Disposition::Flatten) => quote!(flatten),
        Some(Disposition::Scrub { .. }) => match scrub_shape(field.ty) {
            ScrubShape::Text => quote!(scrub),
            ScrubShape::Option(_) => quote!(scrub_option),
            ScrubShape::Sequence(_) => {
                return Some(quote_spanned! {span=>
                    ::core::compile_error!("`#[scrub]` on a sequence of `impl Trait` items needs the item type named")
                });
            }
        },
        Some(Disposition::Skip) => return None,
    };
    Some(quote_spanned! {span=> #private::inferred::#function(&#ident) })
}
