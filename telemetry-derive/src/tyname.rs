//! The Rust type of a field as a readable string, for the schema.

use quote::ToTokens;

/// `Option < & 'a str >` as `Option<&'a str>`.
pub(crate) fn type_name(ty: &syn::Type) -> String {
    let mut text = ty.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        (" ;", ";"),
        ("& ", "&"),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
    ] {
        text = text.replace(from, to);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::type_name;

    fn name(ty: &str) -> String {
        type_name(&syn::parse_str(ty).unwrap())
    }

    #[test]
    fn reads_like_source() {
        assert_eq!(name("Option<&'a str>"), "Option<&'a str>");
        assert_eq!(
            name("std::collections::HashMap<String, Vec<u8>>"),
            "std::collections::HashMap<String, Vec<u8>>"
        );
        assert_eq!(name("&'a [Gpu<'a>]"), "&'a [Gpu<'a>]");
        assert_eq!(name("[u8; 32]"), "[u8; 32]");
        assert_eq!(
            name("Box<dyn std::error::Error + Send>"),
            "Box<dyn std::error::Error + Send>"
        );
        assert_eq!(name("&mut (u8, u16)"), "&mut (u8, u16)");
    }
}
