//! Scrubbing of error and status messages before they leave the process.
//!
//! Messages are the usual way personal data escapes telemetry: `failed to open
//! /home/alice/taxes.pdf`, `connect to 10.1.2.3:5432 refused`, `token ghp_x1Y2... rejected`.
//! [`scrub`] keeps the words that explain what went wrong and replaces what identifies someone
//! with a placeholder:
//!
//! | found | replaced by |
//! |---|---|
//! | file paths (Unix, macOS, Windows, UNC, `~`, relative with a directory) | `<path>` |
//! | URLs (`scheme://...`, `www.`) | `<url>` |
//! | e-mail addresses | `<email>` |
//! | IPv4 and IPv6 addresses, with or without port, CIDR or zone | `<ip>` |
//! | UUIDs | `<uuid>` |
//! | 16 or more hex digits | `<hex>` |
//! | long tokens mixing letters and digits (API keys, base64, JWTs) | `<token>` |
//!
//! The rules err on the side of privacy: a version such as `1.2.3.4` reads as an IP address and
//! is replaced too.

use std::net::{IpAddr, SocketAddr};

/// A message after [`scrub`]: the text that may be sent, and whether it was cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed {
    /// The scrubbed text, at most `max_len` bytes of valid UTF-8.
    pub text: String,
    /// Whether the scrubbed text was longer than `max_len` and was cut.
    pub truncated: bool,
}

/// Replaces paths, URLs, e-mail addresses, IP addresses and long tokens in `message` with
/// placeholders, then truncates the result to at most `max_len` bytes without splitting a
/// character.
///
/// ```
/// let s = telemetry_runtime::scrub("cannot read /home/alice/notes.txt: permission denied", 200);
/// assert_eq!(s.text, "cannot read <path>: permission denied");
/// assert!(!s.truncated);
///
/// let s = telemetry_runtime::scrub("crème brûlée", 4);
/// assert_eq!(s.text, "crè");
/// assert!(s.truncated);
/// ```
pub fn scrub(message: &str, max_len: usize) -> Scrubbed {
    let mut out = String::with_capacity(message.len().min(max_len.saturating_add(16)));
    let mut rest = message;
    while !rest.is_empty() && out.len() <= max_len {
        let spaces = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        if spaces > 0 {
            out.push_str(&rest[..spaces]);
            rest = &rest[spaces..];
            continue;
        }
        if let Some(consumed) = quoted_path(rest, &mut out) {
            rest = &rest[consumed..];
            continue;
        }
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        // A quoted path may start inside a word (`path="/Users/a b/c"`): stop the word there.
        let word_end = rest[..word_end]
            .char_indices()
            .skip(1)
            .find(|&(at, c)| {
                closing_quote(c).is_some() && starts_like_path(&rest[at + c.len_utf8()..])
            })
            .map_or(word_end, |(at, _)| at);
        scrub_word(&rest[..word_end], &mut out);
        rest = &rest[word_end..];
    }
    let truncated = !rest.is_empty() || out.len() > max_len;
    if out.len() > max_len {
        let mut cut = max_len;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    Scrubbed {
        text: out,
        truncated,
    }
}

/// If `text` starts with an opening quote followed by a path and closed on the same line, writes
/// the quotes around `<path>` and returns how many bytes were consumed. Paths in quotes may hold
/// spaces (`"C:\Program Files\..."`), so the whole quoted span goes.
fn quoted_path(text: &str, out: &mut String) -> Option<usize> {
    let open = text.chars().next()?;
    let close = closing_quote(open)?;
    let inner = &text[open.len_utf8()..];
    if !starts_like_path(inner) {
        return None;
    }
    let line = &inner[..inner.find('\n').unwrap_or(inner.len())];
    let end = line.find(close)?;
    out.push(open);
    out.push_str("<path>");
    out.push(close);
    Some(open.len_utf8() + end + close.len_utf8())
}

fn closing_quote(open: char) -> Option<char> {
    Some(match open {
        '"' => '"',
        '\'' => '\'',
        '`' => '`',
        '\u{201c}' => '\u{201d}', // “ ”
        '\u{2018}' => '\u{2019}', // ‘ ’
        '\u{ab}' => '\u{bb}',     // « »
        _ => return None,
    })
}

const LEADING: &[char] = &[
    '(', '[', '{', '<', '"', '\'', '`', '\u{201c}', '\u{2018}', '\u{ab}',
];
const TRAILING: &[char] = &[
    ')', ']', '}', '>', '"', '\'', '`', '\u{201d}', '\u{2019}', '\u{bb}', ',', ';', ':', '.', '!',
    '?',
];
/// Characters that separate the pieces of a word, such as `key=value` or `a,b`.
const DELIMITERS: &[char] = &[
    '=', ',', ';', '(', ')', '[', ']', '{', '}', '"', '\'', '`', '|', '<', '>',
];

/// Scrubs one whitespace-free word into `out`.
fn scrub_word(word: &str, out: &mut String) {
    let core_start = word.len() - word.trim_start_matches(LEADING).len();
    let core_end = word.trim_end_matches(TRAILING).len().max(core_start);
    let (lead, core, trail) = (
        &word[..core_start],
        &word[core_start..core_end],
        &word[core_end..],
    );
    out.push_str(lead);
    if starts_like_path(core) {
        out.push_str("<path>");
    } else if let Some(scheme_start) = url_start(core) {
        scrub_pieces(&core[..scheme_start], out);
        out.push_str("<url>");
    } else {
        scrub_pieces(core, out);
    }
    out.push_str(trail);
}

/// Where a `scheme://` URL starts in `word`, if it holds one.
fn url_start(word: &str) -> Option<usize> {
    let separator = word.find("://")?;
    let scheme = word[..separator]
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .map_or(0, |at| at + 1);
    let starts_with_letter = word[scheme..separator]
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic());
    starts_with_letter.then_some(scheme)
}

/// Splits `text` at [`DELIMITERS`] and scrubs each piece; a piece nothing matches is split
/// once more at `:` (`sha256:<hex>`, `id:<uuid>`).
fn scrub_pieces(text: &str, out: &mut String) {
    for_each_piece(text, DELIMITERS, out, |piece, out| {
        if let Some(placeholder) = classify(piece) {
            out.push_str(placeholder);
        } else if piece.contains(':') {
            for_each_piece(piece, &[':'], out, |part, out| {
                out.push_str(classify(part).unwrap_or(part));
            });
        } else {
            out.push_str(piece);
        }
    });
}

fn for_each_piece(
    text: &str,
    delimiters: &[char],
    out: &mut String,
    mut each: impl FnMut(&str, &mut String),
) {
    let mut start = 0;
    for (at, c) in text.match_indices(delimiters) {
        each(&text[start..at], out);
        out.push_str(c);
        start = at + c.len();
    }
    each(&text[start..], out);
}

fn classify(piece: &str) -> Option<&'static str> {
    if piece.is_empty() {
        None
    } else if piece.starts_with("www.") && piece[4..].contains('.') {
        Some("<url>")
    } else if is_email(piece) {
        Some("<email>")
    } else if is_ip(piece) {
        Some("<ip>")
    } else if is_path(piece) {
        Some("<path>")
    } else if is_uuid(piece) {
        Some("<uuid>")
    } else if is_long_hex(piece) {
        Some("<hex>")
    } else if is_secret_token(piece) {
        Some("<token>")
    } else {
        None
    }
}

/// Absolute, home-relative, dot-relative, drive-letter, UNC and variable-rooted paths.
fn starts_like_path(s: &str) -> bool {
    let b = s.as_bytes();
    match b {
        [b'/', rest @ ..] => rest.iter().any(|&c| c != b'/' && !c.is_ascii_whitespace()),
        [b'~', rest @ ..] => {
            // `~/x` or `~alice/x`
            let name = rest
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
                .count();
            matches!(rest.get(name), Some(b'/' | b'\\'))
        }
        [b'.', b'/' | b'\\', ..] | [b'.', b'.', b'/' | b'\\', ..] | [b'\\', b'\\', ..] => true,
        [drive, b':', b'/' | b'\\', ..] => drive.is_ascii_alphabetic(),
        [b'$' | b'%', ..] => s.contains(['/', '\\']),
        _ => false,
    }
}

fn is_path(s: &str) -> bool {
    if starts_like_path(s) {
        return true;
    }
    if s.contains('\\') {
        return s.len() >= 3;
    }
    if !s.contains('/') {
        return false;
    }
    let segments: Vec<&str> = s.split('/').filter(|seg| !seg.is_empty()).collect();
    if segments
        .iter()
        .all(|seg| seg.bytes().all(|c| c.is_ascii_digit()))
    {
        return false; // a date or a fraction: 12/31/2024, 3/4
    }
    let has_extension = |seg: &str| {
        seg.rsplit_once('.').is_some_and(|(stem, ext)| {
            !stem.is_empty() && ext.bytes().any(|c| c.is_ascii_alphanumeric())
        })
    };
    // `I/O`, `and/or`, `application/json` stay; `src/main.rs`, `a/b/c` and `host.lan/x` go.
    match segments.as_slice() {
        [] | [_] => false,
        [first, last] => has_extension(last) || first.contains('.'),
        _ => true,
    }
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let local = local.strip_prefix("mailto:").unwrap_or(local);
    !local.is_empty()
        && !local.contains(['/', '\\', '@'])
        && !domain.is_empty()
        && domain.chars().any(|c| c.is_alphanumeric())
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn is_ip(s: &str) -> bool {
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    if s.parse::<IpAddr>().is_ok() || s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    if let Some((address, prefix)) = s.split_once('/') {
        return prefix.parse::<u8>().is_ok() && address.parse::<IpAddr>().is_ok();
    }
    if let Some((address, zone)) = s.split_once('%') {
        return !zone.is_empty() && address.parse::<std::net::Ipv6Addr>().is_ok();
    }
    false
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(at, c)| match at {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_long_hex(s: &str) -> bool {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    digits.len() >= 16 && digits.bytes().all(|c| c.is_ascii_hexdigit())
}

/// API keys, base64 blobs, JWTs: long, and either mixing upper and lower case or one unbroken
/// run of letters and digits. `snake_case_names_like_this_1` stay.
fn is_secret_token(s: &str) -> bool {
    if s.len() < 20
        || !s.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'_' | b'-' | b'.' | b'~')
        })
    {
        return false;
    }
    let has = |f: fn(&u8) -> bool| s.as_bytes().iter().any(f);
    let mixed_case = has(u8::is_ascii_uppercase) && has(u8::is_ascii_lowercase);
    let unbroken = s.bytes().all(|c| c.is_ascii_alphanumeric());
    has(u8::is_ascii_digit) && has(u8::is_ascii_alphabetic) && (mixed_case || unbroken)
}

#[cfg(test)]
mod tests {
    use super::scrub;

    fn s(message: &str) -> String {
        scrub(message, 10_000).text
    }

    #[test]
    fn paths_of_every_platform() {
        assert_eq!(s("open /home/alice/x.txt failed"), "open <path> failed");
        assert_eq!(s("open /Users/bob/Library/a.plist"), "open <path>");
        assert_eq!(s(r"open C:\Users\carol\AppData\x.ini"), "open <path>");
        assert_eq!(s("open C:/Users/carol/x.ini"), "open <path>");
        assert_eq!(s(r"share \\fileserver\home\dave"), "share <path>");
        assert_eq!(s("see ~/notes and ~erin/notes"), "see <path> and <path>");
        assert_eq!(s("in ./data/x and ../y"), "in <path> and <path>");
        assert_eq!(s("in src/main.rs:12:5"), "in <path>");
        assert_eq!(s("in a/b/c"), "in <path>");
        assert_eq!(s("$HOME/.config/app"), "<path>");
        assert_eq!(s(r"%APPDATA%\app\cfg"), "<path>");
        assert_eq!(s("--config=/etc/app/secret.yaml"), "--config=<path>");
    }

    #[test]
    fn quoted_paths_with_spaces_go_whole() {
        assert_eq!(
            s(r#"cannot open "C:\Program Files\Acme Corp\report q3.xlsx": denied"#),
            r#"cannot open "<path>": denied"#
        );
        assert_eq!(
            s("file '/Users/alice/My Documents/taxes' missing"),
            "file '<path>' missing"
        );
        assert_eq!(s(r#"path="/home/a b/c d" bad"#), r#"path="<path>" bad"#);
    }

    #[test]
    fn ordinary_words_with_slashes_stay() {
        let text = "I/O error: read/write and/or application/json at 12/31/2024, 3/4 done";
        assert_eq!(s(text), text);
    }

    #[test]
    fn urls_keep_what_precedes_them() {
        assert_eq!(
            s("GET https://bob:hunter2@api.example.com/v1/x?token=abc&u=bob failed"),
            "GET <url> failed"
        );
        assert_eq!(s("(see http://internal.lan/wiki)."), "(see <url>).");
        assert_eq!(s("endpoint=postgres://db.lan:5432/app"), "endpoint=<url>");
        assert_eq!(s("visit www.example.com now"), "visit <url> now");
    }

    #[test]
    fn emails_ips_and_tokens() {
        assert_eq!(
            s("mail alice.smith+x@example.co.uk now"),
            "mail <email> now"
        );
        assert_eq!(s("<bob@example.com>"), "<<email>>");
        assert_eq!(
            s("connect 192.168.1.20:5432 refused"),
            "connect <ip> refused"
        );
        assert_eq!(s("peer [2001:db8::1]:443 reset"), "peer [<ip>]:443 reset");
        assert_eq!(s("addr=[fe80::1%eth0]:80"), "addr=[<ip>]:80");
        assert_eq!(s("net 10.0.0.0/8 ::1"), "net <ip> <ip>");
        assert_eq!(
            s("job 550e8400-e29b-41d4-a716-446655440000 gone"),
            "job <uuid> gone"
        );
        assert_eq!(
            s("image sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
            "image sha256:<hex>"
        );
        assert_eq!(s("key AKIAIOSFODNN7EXAMPLE bad"), "key <token> bad");
        assert_eq!(
            s("auth=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP"),
            "auth=<token>"
        );
        assert_eq!(
            s("field snake_case_names_like_this"),
            "field snake_case_names_like_this"
        );
    }

    #[test]
    fn truncation_never_splits_a_character() {
        let text = "ééééé"; // 2 bytes each
        let out = scrub(text, 5);
        assert_eq!(out.text, "éé");
        assert!(out.truncated);
        assert!(!scrub("abc", 3).truncated);
        let out = scrub("🦀🦀", 3);
        assert_eq!(out.text, "");
        assert!(out.truncated);
    }

    #[test]
    fn huge_input_is_cut_early() {
        let text = "word ".repeat(1_000_000);
        let out = scrub(&text, 100);
        assert!(out.truncated);
        assert!(out.text.len() <= 100);
    }
}
