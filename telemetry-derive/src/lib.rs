//! Derive macros for [`telemetry-runtime`](https://docs.rs/telemetry-runtime).
//!
//! Depend on `telemetry-runtime`, which re-exports these derives next to the traits they
//! implement; this crate's generated code calls the runtime's non-public API and is pinned to
//! its exact version.

mod ast;
mod attr;
mod case;
mod command;
mod ctxt;
mod event;
mod tyname;
mod valid;
mod value;

use proc_macro::TokenStream;
use quote::{ToTokens, quote};
use syn::{DeriveInput, parse_macro_input};

/// Derives `TelemetryEvent`: the anonymized properties and the schema of a struct.
///
/// See the `telemetry-runtime` documentation for the attributes.
#[proc_macro_derive(
    TelemetryEvent,
    attributes(telemetry, hash, trusted_or_hash, count, is_set, scrub, plain, skip)
)]
pub fn derive_telemetry_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::derive(&input).into()
}

/// Derives `TelemetryValue` for an enum of unit variants, sent as the variant's name.
#[proc_macro_derive(TelemetryValue, attributes(telemetry))]
pub fn derive_telemetry_value(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    value::derive(&input).into()
}

/// Records one event per call of a function: its command name, duration and outcome, and the
/// parameters annotated with a disposition.
///
/// See the `telemetry-runtime` documentation for the arguments.
#[proc_macro_attribute]
pub fn instrument_command(args: TokenStream, input: TokenStream) -> TokenStream {
    command::expand(args.into(), input.into()).into()
}

/// `::telemetry_runtime`, or the path given with `#[telemetry(crate = path)]`.
fn runtime_path(krate: Option<&syn::Path>) -> proc_macro2::TokenStream {
    match krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::telemetry_runtime),
    }
}
