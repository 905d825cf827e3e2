//! The derives' attributes, read into typed records. Every mistake is recorded in the [`Ctxt`]
//! with the span of the offending tokens, and reading goes on, so all of them are reported.

use proc_macro2::Span;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Lit, LitInt, LitStr, Meta, Path, Token};

use crate::ctxt::Ctxt;

pub(crate) const TELEMETRY: &str = "telemetry";
const HASH: &str = "hash";
const TRUSTED_OR_HASH: &str = "trusted_or_hash";
const COUNT: &str = "count";
const IS_SET: &str = "is_set";
const SCRUB: &str = "scrub";
const PLAIN: &str = "plain";
const SKIP: &str = "skip";
pub(crate) const DISPOSITIONS: &[&str] =
    &[HASH, TRUSTED_OR_HASH, COUNT, IS_SET, SCRUB, PLAIN, SKIP];

/// `#[scrub]` without `max_len` keeps this many bytes.
pub(crate) const DEFAULT_MAX_LEN: usize = 200;

/// A setting that may be given once; giving it again is an error at the second place.
struct Once<T> {
    name: &'static str,
    value: Option<T>,
}

impl<T> Once<T> {
    fn new(name: &'static str) -> Self {
        Once { name, value: None }
    }

    fn set(&mut self, cx: &Ctxt, at: impl ToTokens, value: T) {
        if self.value.is_some() {
            cx.error_spanned_by(at, format_args!("duplicate `{}`", self.name));
        } else {
            self.value = Some(value);
        }
    }
}

/// Which derive is reading the attributes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Derive {
    Event,
    Value,
}

/// `#[telemetry(...)]` on the struct or enum.
pub(crate) struct Container {
    /// `name = "..."`: the event name.
    pub name: Option<LitStr>,
    /// `crate = path`: where the runtime is, when it was renamed.
    pub krate: Option<Path>,
    /// `nested`: only sent inside other events, so not listed on its own.
    pub nested: bool,
    pub doc: String,
}

impl Container {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute], derive: Derive) -> Self {
        let mut name = Once::new("name");
        let mut krate = Once::new("crate");
        let mut nested = Once::new("nested");
        for attr in attrs {
            if attr.path().is_ident(TELEMETRY) {
                let parsed = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("name") && derive == Derive::Event {
                        name.set(cx, &meta.path, non_empty_name(&meta)?);
                    } else if meta.path.is_ident("nested") && derive == Derive::Event {
                        nested.set(cx, &meta.path, ());
                    } else if meta.path.is_ident("crate") {
                        krate.set(cx, &meta.path, crate_path(&meta)?);
                    } else {
                        let expected = match derive {
                            Derive::Event => "`name = \"...\"`, `nested` or `crate = path`",
                            Derive::Value => "`crate = path` (variants take `rename`)",
                        };
                        return Err(unknown_key(&meta, expected));
                    }
                    Ok(())
                });
                if let Err(error) = parsed {
                    cx.syn_error(error);
                }
            } else if let Some(disposition) = disposition_name(attr.path()) {
                cx.error_spanned_by(
                    attr,
                    format_args!("`#[{disposition}]` goes on a field, not on the type"),
                );
            }
        }
        Container {
            name: name.value,
            krate: krate.value,
            nested: nested.value.is_some(),
            doc: doc(attrs),
        }
    }
}

/// What a field sends.
#[derive(Clone)]
pub(crate) enum Disposition {
    Hash,
    TrustedOrHash {
        prefixes: Vec<LitStr>,
        rule: Option<Path>,
    },
    Count,
    IsSet,
    Scrub {
        max_len: usize,
    },
    Plain,
    Skip,
    Flatten,
}

impl Disposition {
    fn describe(&self) -> &'static str {
        match self {
            Disposition::Hash => "#[hash]",
            Disposition::TrustedOrHash { .. } => "#[trusted_or_hash]",
            Disposition::Count => "#[count]",
            Disposition::IsSet => "#[is_set]",
            Disposition::Scrub { .. } => "#[scrub]",
            Disposition::Plain => "#[plain]",
            Disposition::Skip => "#[skip]",
            Disposition::Flatten => "#[telemetry(flatten)]",
        }
    }
}

/// The attributes of one field.
pub(crate) struct Field {
    /// `#[telemetry(rename = "...")]`.
    pub rename: Option<LitStr>,
    /// The disposition, if any, and where it was written.
    pub disposition: Option<(Disposition, Span)>,
    pub doc: String,
}

/// What carries the attributes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A field of an event.
    Field,
    /// A parameter of an instrumented function: sent only when annotated, and a bare
    /// `#[telemetry]` flattens it.
    Parameter,
}

impl Field {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute], target: Target) -> Self {
        let mut rename = Once::new("rename");
        let mut disposition: Option<(Disposition, Span)> = None;
        let mut set_disposition = |new: Disposition, at: Span| match &disposition {
            Some((old, _)) if old.describe() == new.describe() => {
                cx.syn_error(syn::Error::new(
                    at,
                    format_args!("duplicate `{}`", new.describe()),
                ));
            }
            Some((old, _)) => cx.syn_error(syn::Error::new(
                at,
                format_args!(
                    "`{}` conflicts with `{}`: a field takes at most one disposition",
                    new.describe(),
                    old.describe()
                ),
            )),
            None => disposition = Some((new, at)),
        };
        for attr in attrs {
            let path = attr.path();
            if path.is_ident(TELEMETRY) {
                if target == Target::Parameter && matches!(attr.meta, Meta::Path(_)) {
                    set_disposition(Disposition::Flatten, path.span());
                    continue;
                }
                let parsed = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("rename") {
                        rename.set(cx, &meta.path, non_empty_name(&meta)?);
                    } else if meta.path.is_ident("flatten") {
                        set_disposition(Disposition::Flatten, meta.path.span());
                    } else if meta.path.is_ident("name") {
                        return Err(
                            meta.error("a field's property is renamed with `rename = \"...\"`")
                        );
                    } else {
                        return Err(unknown_key(&meta, "`rename = \"...\"` or `flatten`"));
                    }
                    Ok(())
                });
                if let Err(error) = parsed {
                    cx.syn_error(error);
                }
            } else if let Some(name) = disposition_name(path) {
                match parse_disposition(name, attr) {
                    Ok(Disposition::Skip) if target == Target::Parameter => cx.error_spanned_by(
                        attr,
                        "`#[skip]` is not needed here: a parameter is only sent when it has a disposition or is listed in `args(...)`",
                    ),
                    Ok(parsed) => set_disposition(parsed, path.span()),
                    Err(error) => cx.syn_error(error),
                }
            }
        }
        Field {
            rename: rename.value,
            disposition,
            doc: doc(attrs),
        }
    }
}

/// `#[telemetry(rename = "...")]` on an enum variant.
pub(crate) struct Variant {
    pub rename: Option<LitStr>,
}

impl Variant {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut rename = Once::new("rename");
        for attr in attrs.iter().filter(|attr| attr.path().is_ident(TELEMETRY)) {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    rename.set(cx, &meta.path, non_empty_name(&meta)?);
                    Ok(())
                } else {
                    Err(unknown_key(&meta, "`rename = \"...\"`"))
                }
            });
            if let Err(error) = parsed {
                cx.syn_error(error);
            }
        }
        Variant {
            rename: rename.value,
        }
    }
}

fn disposition_name(path: &Path) -> Option<&'static str> {
    DISPOSITIONS
        .iter()
        .copied()
        .find(|name| path.is_ident(name))
}

fn parse_disposition(name: &'static str, attr: &Attribute) -> syn::Result<Disposition> {
    let no_arguments = |disposition: Disposition| match &attr.meta {
        Meta::Path(_) => Ok(disposition),
        Meta::List(list) => Err(syn::Error::new_spanned(
            &list.tokens,
            format_args!("`#[{name}]` takes no arguments"),
        )),
        Meta::NameValue(value) => Err(syn::Error::new_spanned(
            &value.value,
            format_args!("`#[{name}]` takes no arguments"),
        )),
    };
    match name {
        HASH => no_arguments(Disposition::Hash),
        COUNT => no_arguments(Disposition::Count),
        IS_SET => no_arguments(Disposition::IsSet),
        PLAIN => no_arguments(Disposition::Plain),
        SKIP => no_arguments(Disposition::Skip),
        SCRUB => parse_scrub(attr),
        TRUSTED_OR_HASH => parse_trusted_or_hash(attr),
        _ => unreachable!("every disposition name is handled"),
    }
}

fn parse_scrub(attr: &Attribute) -> syn::Result<Disposition> {
    let mut max_len = None;
    match &attr.meta {
        Meta::Path(_) => {}
        Meta::List(_) => attr.parse_nested_meta(|meta| {
            if !meta.path.is_ident("max_len") {
                return Err(unknown_key(&meta, "`max_len = N`"));
            }
            if max_len.is_some() {
                return Err(meta.error("duplicate `max_len`"));
            }
            let literal: LitInt = meta.value()?.parse()?;
            let value: usize = literal.base10_parse()?;
            if value == 0 {
                return Err(syn::Error::new_spanned(
                    literal,
                    "`max_len` must be at least 1",
                ));
            }
            max_len = Some(value);
            Ok(())
        })?,
        Meta::NameValue(value) => {
            return Err(syn::Error::new_spanned(
                &value.value,
                "write `#[scrub]` or `#[scrub(max_len = N)]`",
            ));
        }
    }
    Ok(Disposition::Scrub {
        max_len: max_len.unwrap_or(DEFAULT_MAX_LEN),
    })
}

fn parse_trusted_or_hash(attr: &Attribute) -> syn::Result<Disposition> {
    const NEEDS: &str = "`#[trusted_or_hash]` needs `prefixes = [\"...\"]` or `with = path::to::is_trusted` to know which values to send in clear";
    let mut prefixes: Option<Vec<LitStr>> = None;
    let mut rule: Option<Path> = None;
    match &attr.meta {
        Meta::List(_) => attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("prefixes") {
                if prefixes.is_some() {
                    return Err(meta.error("duplicate `prefixes`"));
                }
                let value = meta.value()?;
                let content;
                let brackets = syn::bracketed!(content in value);
                let list = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
                if list.is_empty() {
                    return Err(syn::Error::new(
                        brackets.span.join(),
                        "`prefixes` needs at least one prefix",
                    ));
                }
                if let Some(empty) = list.iter().find(|prefix| prefix.value().is_empty()) {
                    return Err(syn::Error::new_spanned(
                        empty,
                        "an empty prefix would trust every value",
                    ));
                }
                prefixes = Some(list.into_iter().collect());
            } else if meta.path.is_ident("with") {
                if rule.is_some() {
                    return Err(meta.error("duplicate `with`"));
                }
                rule = Some(meta.value()?.parse()?);
            } else {
                return Err(unknown_key(&meta, "`prefixes = [...]` or `with = path`"));
            }
            Ok(())
        })?,
        Meta::Path(path) => return Err(syn::Error::new_spanned(path, NEEDS)),
        Meta::NameValue(value) => return Err(syn::Error::new_spanned(value, NEEDS)),
    }
    if prefixes.is_none() && rule.is_none() {
        return Err(syn::Error::new_spanned(&attr.meta, NEEDS));
    }
    Ok(Disposition::TrustedOrHash {
        prefixes: prefixes.unwrap_or_default(),
        rule,
    })
}

/// `crate = path` or `crate = "path"`: where the runtime is.
pub(crate) fn crate_path(meta: &ParseNestedMeta) -> syn::Result<Path> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        value.parse::<LitStr>()?.parse::<Path>()
    } else {
        value.parse::<Path>()
    }
}

pub(crate) fn non_empty_name(meta: &ParseNestedMeta) -> syn::Result<LitStr> {
    let name: LitStr = meta.value()?.parse()?;
    if name.value().is_empty() {
        return Err(syn::Error::new_spanned(name, "a name cannot be empty"));
    }
    Ok(name)
}

fn unknown_key(meta: &ParseNestedMeta, expected: &str) -> syn::Error {
    let key = meta.path.to_token_stream().to_string().replace(' ', "");
    meta.error(format_args!("unknown key `{key}`; expected {expected}"))
}

/// The doc comment: one leading space stripped from each line, surrounding blank lines trimmed.
fn doc(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        let Meta::NameValue(pair) = &attr.meta else {
            continue;
        };
        if let (
            true,
            Expr::Lit(ExprLit {
                lit: Lit::Str(text),
                ..
            }),
        ) = (pair.path.is_ident("doc"), &pair.value)
        {
            let text = text.value();
            lines.extend(
                // `split`, not `lines`: a blank `///` line is `""` and must stay a paragraph break.
                text.split('\n')
                    .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end().to_owned()),
            );
        }
    }
    lines.join("\n").trim().to_owned()
}
