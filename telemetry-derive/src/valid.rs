//! Checks that span more than one attribute: names that collide, settings that contradict.

use std::collections::HashMap;

use crate::ast::Field;
use crate::attr::{self, Disposition};
use crate::ctxt::Ctxt;

/// The flag sent next to a `#[scrub]` property `name`.
pub(crate) fn truncated_name(name: &str) -> String {
    format!("{name}_truncated")
}

pub(crate) fn check(cx: &Ctxt, container: &attr::Container, fields: &[Field]) {
    if let Some(name) = &container.name {
        reserved(cx, name, &name.value());
    }
    let mut sent: HashMap<String, &Field> = HashMap::new();
    for field in fields {
        let rename = field.attrs.rename.as_ref();
        match field.disposition() {
            Some(Disposition::Skip) => {
                if let Some(rename) = rename {
                    cx.error_spanned_by(
                        rename,
                        "a `#[skip]` field is never sent, so it has no name to rename",
                    );
                }
                continue;
            }
            Some(Disposition::Flatten) => {
                if let Some(rename) = rename {
                    cx.error_spanned_by(
                        rename,
                        "a flattened field sends its own fields' properties; it has no property to rename",
                    );
                }
                continue;
            }
            _ => {}
        }
        reserved(cx, field.name_tokens(), &field.name);
        let mut names = vec![field.name.clone()];
        if let Some(Disposition::Scrub { .. }) = field.disposition() {
            names.push(truncated_name(&field.name));
        }
        for name in names {
            if let Some(earlier) = sent.get(&name) {
                cx.error_spanned_by(
                    field.name_tokens(),
                    format_args!(
                        "property `{name}` is already sent by field `{}`",
                        earlier.ident
                    ),
                );
            } else {
                sent.insert(name, field);
            }
        }
    }
}

fn reserved(cx: &Ctxt, at: impl quote::ToTokens, name: &str) {
    if name.starts_with('$') {
        cx.error_spanned_by(at, "names starting with `$` are reserved by PostHog");
    }
}
