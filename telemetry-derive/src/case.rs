//! Names: `JobSubmitted` becomes the event `job_submitted`.

/// `snake_case` of a Rust type or variant name: `JobSubmitted` → `job_submitted`,
/// `HTTPRequest` → `http_request`, `V2Event` → `v2_event`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (at, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let previous = at.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(at + 1);
            let after_word = previous.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit());
            let ends_acronym =
                previous.is_some_and(char::is_uppercase) && next.is_some_and(|n| n.is_lowercase());
            if after_word || ends_acronym {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn words_acronyms_and_digits() {
        assert_eq!(snake_case("JobSubmitted"), "job_submitted");
        assert_eq!(snake_case("HTTPRequest"), "http_request");
        assert_eq!(snake_case("IOError"), "io_error");
        assert_eq!(snake_case("V2Event"), "v2_event");
        assert_eq!(snake_case("Docker"), "docker");
        assert_eq!(snake_case("Job_Done"), "job_done");
        assert_eq!(snake_case("already_snake"), "already_snake");
        assert_eq!(snake_case("ÉtéFini"), "été_fini");
    }
}
