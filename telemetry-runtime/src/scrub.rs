//! Scrubbing of error and status messages before they leave the process.
//!
//! Messages are the usual way personal data escapes telemetry: `failed to open
//! /home/alice/taxes.pdf`, `connect to 10.1.2.3:5432 refused`, `token ghp_x1Y2... rejected`.
//! [`scrub`] keeps the words that explain what went wrong and replaces what identifies someone
//! with a placeholder:
//!
//! | found | replaced by |
//! |---|---|
//! | file paths: Unix, macOS, Windows, UNC, `~`, `$HOME/`, and relative paths such as `docs/a.txt` or `alice/notes` | `<path>` |
//! | URLs (`scheme://...`, `www.`) | `<url>` |
//! | e-mail addresses | `<email>` |
//! | IPv4 and IPv6 addresses, with port, CIDR or zone, and host names embedding one (`ip-10-0-1-2`) | `<ip>` |
//! | host names with a port (`db.acme.internal:5432`) | `<host>` |
//! | MAC addresses | `<mac>` |
//! | UUIDs, also inside a word | `<uuid>` |
//! | 16 or more hex digits | `<hex>` |
//! | numbers of 10 or more digits (accounts, cards, phones; separators allowed) | `<number>` |
//! | API keys, base64, JWTs: known prefixes (`ghp_`, `sk-`, `xoxb-`, `AKIA`...), and long runs mixing letters and digits | `<token>` |
//! | the value of a key naming a secret or a person (`password=...`, `token:...`, `user=...`) | `<redacted>` |
//! | percent-encoded text that hides any of these | `<redacted>` |
//!
//! The rules err on the side of privacy: a version such as `1.2.3.4` reads as an IP address and
//! is replaced too. Ordinary words survive: `I/O error`, `read/write`, `application/json`,
//! `HTTP/1.1`, `12/31/2024`.
//!
//! The work done is linear in the input, and the input considered is bounded by `max_len`:
//! text far beyond what could be sent is not looked at.
//!
//! What the rules cannot tell from ordinary words is kept: a host name without a port
//! (`db.acme.internal`), a value after a key that names nothing secret (`alice:hunter2`), a
//! key set apart from its value (`token: abc`), and the last part of an unquoted path holding a
//! space (`C:\Users\a\My Documents` keeps `Documents`). A message cut where looking stops is
//! scrubbed as if it ended there; a quoted path still open at that point goes whole, as
//! `"<path>`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// A message after [`scrub`]: the text that may be sent, and whether it was cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed {
    /// The scrubbed text, at most `max_len` bytes of valid UTF-8.
    pub text: String,
    /// Whether the scrubbed text was longer than `max_len` and was cut.
    pub truncated: bool,
}

/// Replaces paths, URLs, e-mail addresses, IP addresses, identifiers and secrets in `message`
/// with placeholders, then truncates the result to at most `max_len` bytes without splitting a
/// character. File paths become `<path>`, URLs `<url>`, e-mail addresses `<email>`, IP
/// addresses `<ip>`, host names with a port `<host>`, MAC addresses `<mac>`, UUIDs `<uuid>`,
/// long hex strings `<hex>`, numbers of 10 or more digits `<number>`, API keys and base64-like
/// tokens `<token>`, and the values of keys such as `password=` or `user=` `<redacted>`.
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
    let (message, mut truncated) = bounded_input(message, max_len);
    let cut = truncated;
    let mut out = String::with_capacity(message.len().min(max_len.saturating_add(16)));
    let mut state = State::default();
    let mut at = 0;
    let mut word_end = 0;
    while at < message.len() && out.len() <= max_len {
        let rest = &message[at..];
        if at >= word_end {
            let spaces = rest
                .find(|c: char| !c.is_whitespace())
                .unwrap_or(rest.len());
            if spaces > 0 {
                out.push_str(&rest[..spaces]);
                at += spaces;
                continue;
            }
            word_end = at + rest.find(char::is_whitespace).unwrap_or(rest.len());
            if is_plain_word(&message[at..word_end]) {
                out.push_str(&message[at..word_end]);
                state.after_path = false;
                at = word_end;
                continue;
            }
        }
        if let Some(consumed) = quoted_path(rest, cut, &mut out) {
            at += consumed;
            state.after_path = true;
            continue;
        }
        // A quoted path may start inside a word (`path="/Users/a b/c"`): stop the word there.
        let piece_end = message[at..word_end]
            .char_indices()
            .skip(1)
            .find(|&(offset, c)| {
                closing_quote(c).is_some() && starts_like_path(&rest[offset + c.len_utf8()..])
            })
            .map_or(word_end, |(offset, _)| at + offset);
        scrub_word(&message[at..piece_end], &mut out, &mut state);
        at = piece_end;
    }
    truncated |= at < message.len() || out.len() > max_len;
    out.truncate(floor_boundary(&out, max_len));
    Scrubbed {
        text: out,
        truncated,
    }
}

/// The part of `message` worth looking at: output is cut at `max_len` bytes, and no placeholder
/// shrinks its input more than a few times, so text far beyond that is never sent. The last
/// word of a cut input is dropped: it may be the start of a longer token or path.
fn bounded_input(message: &str, max_len: usize) -> (&str, bool) {
    let limit = input_limit(max_len);
    if message.len() <= limit {
        return (message, false);
    }
    let kept = &message[..floor_boundary(message, limit)];
    (&kept[..kept.rfind(char::is_whitespace).unwrap_or(0)], true)
}

/// How much of a message [`scrub`] looks at for a given `max_len`.
pub(crate) fn input_limit(max_len: usize) -> usize {
    max_len.saturating_mul(4).saturating_add(1024)
}

#[derive(Default)]
struct State {
    /// The last thing written was a path: a next word holding a separator continues it
    /// (`/home/John Smith/notes` is one path with a space).
    after_path: bool,
}

/// Longest quoted path looked for; a longer one is scrubbed word by word.
const MAX_QUOTED: usize = 1024;

/// If `text` starts with an opening quote around a path, closed on the same line, writes the
/// quotes around `<path>` and returns how many bytes were consumed. Paths in quotes may hold
/// spaces (`"C:\Program Files\..."`), so the whole quoted span goes. When the message was
/// `cut` before the quote closes, the rest of `text` is the start of such a span: it goes too,
/// as `"<path>` with no closing quote.
fn quoted_path(text: &str, cut: bool, out: &mut String) -> Option<usize> {
    let open = text.chars().next()?;
    let close = closing_quote(open)?;
    let inner = &text[open.len_utf8()..];
    let window = &inner[..floor_boundary(inner, MAX_QUOTED)];
    let Some(end) = window.find([close, '\n']) else {
        if cut && window.len() == inner.len() && quoted_is_path(inner) {
            out.push(open);
            out.push_str("<path>");
            return Some(text.len());
        }
        return None;
    };
    let quoted = &inner[..end];
    if !inner[end..].starts_with(close) || !quoted_is_path(quoted) {
        return None;
    }
    out.push(open);
    out.push_str("<path>");
    out.push(close);
    Some(open.len_utf8() + end + close.len_utf8())
}

/// A quoted span is a path when it starts like one, or when one of its words is a path and it
/// holds no URL (a quoted URL is left to the word rules, which keep what precedes it).
fn quoted_is_path(quoted: &str) -> bool {
    starts_like_path(quoted)
        || (!quoted.contains("://")
            && quoted.contains(['/', '\\'])
            && quoted.split_whitespace().any(is_path))
}

/// The largest character boundary of `text` at or before `at`.
pub(crate) fn floor_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    let mut at = at;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn closing_quote(open: char) -> Option<char> {
    Some(match open {
        '"' => '"',
        '\'' => '\'',
        '`' => '`',
        '\u{201c}' => '\u{201d}', // “ ”
        '\u{2018}' => '\u{2019}', // ‘ ’
        '\u{201e}' => '\u{201c}', // „ “
        '\u{ab}' => '\u{bb}',     // « »
        '\u{300c}' => '\u{300d}', // 「 」
        '\u{300e}' => '\u{300f}', // 『 』
        _ => return None,
    })
}

const LEADING: &[char] = &[
    '(', '[', '{', '<', '"', '\'', '`', '\u{201c}', '\u{2018}', '\u{201e}', '\u{ab}', '\u{300c}',
    '\u{300e}', '\u{3010}', '\u{ff08}',
];
const TRAILING: &[char] = &[
    ')', ']', '}', '>', '"', '\'', '`', '\u{201c}', '\u{201d}', '\u{2019}', '\u{bb}', ',', ';',
    ':', '.', '!', '?', '\u{2026}', '\u{3001}', '\u{3002}', '\u{300d}', '\u{300f}', '\u{3011}',
    '\u{ff09}', '\u{ff0c}', '\u{ff1a}', '\u{ff1b}', '\u{ff01}', '\u{ff1f}',
];
/// Characters that separate the pieces of a word, such as `key=value`, `a,b` or `a&b`.
const DELIMITERS: &[char] = &[
    '=', ',', ';', '(', ')', '[', ']', '{', '}', '"', '\'', '`', '|', '<', '>', '&', '*', '#',
    '\u{201c}', '\u{201d}', '\u{2018}', '\u{2019}', '\u{201e}', '\u{ab}', '\u{bb}', '\u{2026}',
    '\u{3001}', '\u{3002}', '\u{300c}', '\u{300d}', '\u{300e}', '\u{300f}', '\u{3010}', '\u{3011}',
    '\u{ff08}', '\u{ff09}', '\u{ff0c}', '\u{ff1a}', '\u{ff1b}',
];

/// Scrubs one whitespace-free word into `out`.
fn scrub_word(word: &str, out: &mut String, state: &mut State) {
    let core_start = word.len() - word.trim_start_matches(LEADING).len();
    let core_end = word.trim_end_matches(TRAILING).len().max(core_start);
    let (lead, core, trail) = (
        &word[..core_start],
        &word[core_start..core_end],
        &word[core_end..],
    );
    out.push_str(lead);
    let continues_path = state.after_path && core.contains(['/', '\\']);
    state.after_path = false;
    if continues_path || starts_like_path(core) {
        out.push_str("<path>");
        state.after_path = true;
    } else if let Some(scheme_start) = url_start(core) {
        scrub_pieces(&core[..scheme_start], out, state);
        out.push_str("<url>");
    } else {
        scrub_pieces(core, out, state);
    }
    out.push_str(trail);
}

/// A word that no rule can replace, so it is kept without looking further: fewer than 16 ASCII
/// letters (too short for a hex run or a prefixed key, and without the digits, separators or
/// `@` every other rule needs), then at most some closing punctuation. Most words of a message
/// are like this.
fn is_plain_word(word: &str) -> bool {
    let bytes = word.as_bytes();
    let letters = bytes.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    (1..16).contains(&letters)
        && bytes[letters..]
            .iter()
            .all(|c| matches!(c, b'.' | b',' | b';' | b':' | b'!' | b'?' | b')'))
}

/// Where a `scheme://` URL starts in `word`, if it holds one.
fn url_start(word: &str) -> Option<usize> {
    let separator = word.find("://")?;
    let scheme = word[..separator]
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .map_or(0, |(at, c)| at + c.len_utf8());
    let starts_with_letter = word[scheme..separator]
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic());
    starts_with_letter.then_some(scheme)
}

/// Splits `text` at [`DELIMITERS`] and scrubs each piece. The value after a key that names a
/// secret or a person (`password=`, `token=`) is redacted whatever it looks like.
fn scrub_pieces(text: &str, out: &mut String, state: &mut State) {
    for_each_value(text, DELIMITERS, "=", out, |piece, out| {
        scrub_piece(piece, out, state);
    });
}

/// [`for_each_piece`], except that a piece following a sensitive key and `assignment` is
/// written as `<redacted>` instead of being passed to `each`.
fn for_each_value(
    text: &str,
    delimiters: &[char],
    assignment: &str,
    out: &mut String,
    mut each: impl FnMut(&str, &mut String),
) {
    let mut redact_next = false;
    for_each_piece(text, delimiters, out, |piece, delimiter, out| {
        if redact_next && !piece.is_empty() {
            out.push_str("<redacted>");
        } else {
            each(piece, out);
        }
        redact_next = delimiter == Some(assignment) && is_sensitive_key(piece);
    });
}

/// Calls `each` with every piece of `text` between `delimiters` and the delimiter that ends
/// it, then writes that delimiter. An `=` that pads base64 (`...Mg==`) is not a delimiter.
fn for_each_piece(
    text: &str,
    delimiters: &[char],
    out: &mut String,
    mut each: impl FnMut(&str, Option<&str>, &mut String),
) {
    let mut start = 0;
    let mut padding_end = 0;
    for (at, delimiter) in text.match_indices(delimiters) {
        if at < padding_end {
            continue;
        }
        if delimiter == "=" {
            let after = &text[at..];
            let padding = after.len() - after.trim_start_matches('=').len();
            if padding > 1 || at + padding == text.len() {
                padding_end = at + padding;
                continue;
            }
        }
        each(&text[start..at], Some(delimiter), out);
        out.push_str(delimiter);
        start = at + delimiter.len();
    }
    each(&text[start..], None, out);
}

/// Scrubs one delimiter-free piece.
fn scrub_piece(piece: &str, out: &mut String, state: &mut State) {
    if let Some(placeholder) = classify(piece) {
        out.push_str(placeholder);
        state.after_path = placeholder == "<path>";
    } else if let Some(decoded) = percent_decoded(piece) {
        // Percent-encoding hides separators and `@`: judge the decoded text.
        let mut scrubbed = String::new();
        scrub_pieces(&decoded, &mut scrubbed, &mut State::default());
        out.push_str(if scrubbed == decoded {
            piece
        } else {
            "<redacted>"
        });
    } else {
        // `peer:2001:db8::1`: an address after a label, found before the piece is split at `:`.
        let address = address_after_label(piece);
        let head = address.map_or(piece, |colon| &piece[..colon]);
        if head.contains(':') {
            scrub_colon_parts(head, out);
        } else {
            replace_inner(head, out);
        }
        if address.is_some() {
            out.push_str(":<ip>");
        }
    }
}

/// Where the `:` before a trailing IP address is, looking only as far back as an address can
/// be long.
fn address_after_label(piece: &str) -> Option<usize> {
    let start = floor_boundary(piece, piece.len().saturating_sub(65));
    piece[start..]
        .match_indices(':')
        .map(|(at, _)| start + at)
        .find(|&at| is_ip(&piece[at + 1..]))
}

/// Scrubs the parts of `sha256:<hex>` or `password:<redacted>`.
fn scrub_colon_parts(text: &str, out: &mut String) {
    for_each_value(text, &[':'], ":", out, |part, out| match classify(part) {
        Some(placeholder) => out.push_str(placeholder),
        None => replace_inner(part, out),
    });
}

/// Writes `piece`, replacing identifiers embedded in it: UUIDs and runs of 10 or more digits.
fn replace_inner(piece: &str, out: &mut String) {
    let bytes = piece.as_bytes();
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        if let Some(end) = uuid_at(bytes, at) {
            out.push_str(&piece[copied..at]);
            out.push_str("<uuid>");
            copied = end;
            at = end;
        } else if bytes[at].is_ascii_digit() {
            let digits = bytes[at..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits >= 10 {
                out.push_str(&piece[copied..at]);
                out.push_str("<number>");
                copied = at + digits;
            }
            at += digits;
        } else {
            at += 1;
        }
    }
    out.push_str(&piece[copied..]);
}

fn classify(piece: &str) -> Option<&'static str> {
    if piece.is_empty() {
        None
    } else if piece.starts_with("www.") && piece[4..].contains('.') {
        Some("<url>")
    } else if is_email(piece) {
        Some("<email>")
    } else if is_ip(piece) || (!piece.contains(':') && has_ipv4_like(piece)) {
        Some("<ip>")
    } else if is_mac(piece) {
        Some("<mac>")
    } else if is_path(piece) {
        Some("<path>")
    } else if is_host_with_port(piece) {
        Some("<host>")
    } else if piece.len() == 36 && uuid_at(piece.as_bytes(), 0).is_some() {
        Some("<uuid>")
    } else if is_long_number(piece) {
        Some("<number>")
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
        // `/tmp`, `//server/x`; not a Windows switch such as `/Q` or `/?`.
        [b'/', rest @ ..] => {
            let name = rest
                .iter()
                .take_while(|&&c| c != b'/' && !c.is_ascii_whitespace())
                .count();
            name >= 2 || rest.get(name) == Some(&b'/')
        }
        [b'~', ..] => {
            // `~/x` or `~jürgen/x`
            let rest = &s[1..];
            let name = rest
                .find(|c: char| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-')))
                .unwrap_or(rest.len());
            matches!(rest.as_bytes().get(name), Some(b'/' | b'\\'))
        }
        [b'.', b'/' | b'\\', ..] | [b'.', b'.', b'/' | b'\\', ..] | [b'\\', b'\\', ..] => true,
        [drive, b':', b'/' | b'\\', ..] => drive.is_ascii_alphabetic(),
        // `$HOME/x`, `${HOME}/x`, `%APPDATA%\x`: only the variable name is looked at.
        [b'$', rest @ ..] => {
            let rest = rest.strip_prefix(b"{").unwrap_or(rest);
            let name = variable_name(rest);
            let after = rest[name..].strip_prefix(b"}").unwrap_or(&rest[name..]);
            name > 0 && matches!(after.first(), Some(b'/' | b'\\'))
        }
        [b'%', rest @ ..] => {
            let name = variable_name(rest);
            name > 0 && matches!(&rest[name..], [b'%', b'/' | b'\\', ..])
        }
        _ => false,
    }
}

fn variable_name(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count()
}

fn is_path(s: &str) -> bool {
    if starts_like_path(s) {
        return true;
    }
    if s.trim_end_matches('\\').contains('\\') {
        return s.len() >= 3;
    }
    if !s.contains('/') {
        return false;
    }
    let segments: Vec<&str> = s.split('/').filter(|seg| !seg.is_empty()).collect();
    let numeric = |seg: &str| {
        seg.starts_with(|c: char| c.is_ascii_digit())
            && seg.bytes().all(|c| c.is_ascii_digit() || c == b'.')
    };
    match segments.as_slice() {
        [] | [_] => false,
        // `application/json`, `HTTP/1.1`, `curl/8.4.0`, `12.5/s`, `3/4`
        [first, last] if is_mime_type(first) || numeric(last) || numeric(first) => false,
        // `I/O`, `read/write`, `TCP/UDP/ICMP`, `%Y/%m/%d`, `12/31/2024`
        _ => !segments
            .iter()
            .all(|seg| is_benign_segment(seg) || numeric(seg)),
    }
}

fn is_mime_type(segment: &str) -> bool {
    [
        "application",
        "text",
        "image",
        "audio",
        "video",
        "font",
        "model",
        "multipart",
        "message",
    ]
    .iter()
    .any(|mime| segment.eq_ignore_ascii_case(mime))
}

/// A part of `a/b` that is a common word, a unit, an acronym or a format code, not a name.
fn is_benign_segment(segment: &str) -> bool {
    const WORDS: &[&str] = &[
        "a", "all", "and", "any", "both", "close", "disable", "disabled", "down", "enable",
        "enabled", "exec", "execute", "false", "from", "get", "in", "input", "max", "min", "no",
        "none", "off", "on", "open", "or", "out", "output", "post", "put", "read", "receive",
        "recv", "request", "response", "send", "set", "start", "stop", "to", "true", "up", "write",
        "yes", "day", "gb", "gib", "h", "hr", "kb", "kib", "km", "mb", "mib", "ms", "ns", "op",
        "ops", "req", "s", "sec", "tb", "us",
    ];
    let chars = segment.chars().count();
    chars == 1
        || (chars <= 6
            && segment
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
        || (segment.starts_with('%') && chars <= 3)
        || WORDS.iter().any(|word| segment.eq_ignore_ascii_case(word))
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let local = local.strip_prefix("mailto:").unwrap_or(local);
    let domain = domain.trim_end_matches('/');
    !local.is_empty()
        && !local.contains(['/', '\\', '@'])
        && domain.chars().any(char::is_alphabetic)
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
        return !zone.is_empty() && address.parse::<Ipv6Addr>().is_ok();
    }
    false
}

/// Four groups of one to three digits joined by `.` or `-` anywhere in the piece: addresses
/// the standard parser refuses (`192.168.01.20`, `10.0.0.1.52344`) and host names built from
/// one (`ip-10-0-1-23.ec2.internal`).
fn has_ipv4_like(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len()).any(|start| {
        if !b[start].is_ascii_digit() || (start > 0 && b[start - 1].is_ascii_digit()) {
            return false;
        }
        let mut at = start;
        for group in 0..4 {
            if group > 0 {
                if !matches!(b.get(at), Some(b'.' | b'-')) {
                    return false;
                }
                at += 1;
            }
            let digits = b[at.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if !(1..=3).contains(&digits) {
                return false;
            }
            at += digits;
        }
        !b.get(at).is_some_and(u8::is_ascii_digit)
    })
}

fn is_mac(s: &str) -> bool {
    let separator = match s.as_bytes().get(2) {
        Some(&c @ (b':' | b'-')) => c,
        _ => return false,
    };
    s.len() == 17
        && s.bytes().enumerate().all(|(at, c)| {
            if at % 3 == 2 {
                c == separator
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// `db01.acme.internal:5432`: a dotted host name and a port. `main.rs:12` is a file and line.
fn is_host_with_port(s: &str) -> bool {
    const SOURCE: &[&str] = &[
        "c", "cc", "cpp", "cs", "go", "h", "hpp", "java", "js", "json", "kt", "md", "php", "py",
        "rb", "rs", "sh", "swift", "toml", "ts", "txt", "xml", "yaml", "yml",
    ];
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let Some((_, last)) = host.rsplit_once('.') else {
        return false;
    };
    port.parse::<u16>().is_ok()
        && last.len() >= 2
        && last.bytes().all(|c| c.is_ascii_alphabetic())
        && !SOURCE.iter().any(|ext| last.eq_ignore_ascii_case(ext))
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'))
}

/// The end of a UUID starting at `at`, if one does.
fn uuid_at(bytes: &[u8], at: usize) -> Option<usize> {
    let window = bytes.get(at..at + 36)?;
    let uuid = window.iter().enumerate().all(|(offset, c)| match offset {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    let bounded = |c: Option<&u8>| !c.is_some_and(u8::is_ascii_hexdigit);
    let before = at.checked_sub(1).and_then(|before| bytes.get(before));
    (uuid && bounded(before) && bounded(bytes.get(at + 36))).then_some(at + 36)
}

/// Ten or more digits, possibly grouped: `123456789012`, `4111-1111-1111-1111`,
/// `+1-555-123-4567`.
fn is_long_number(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.' | b'+'))
        && s.bytes().filter(u8::is_ascii_digit).count() >= 10
}

fn is_long_hex(s: &str) -> bool {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let count = digits.bytes().filter(|&c| c != b'_').count();
    count >= 16 && digits.bytes().all(|c| c.is_ascii_hexdigit() || c == b'_')
}

/// API keys, base64 blobs, JWTs.
fn is_secret_token(s: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-",
        "xoxa-",
        "xoxs-",
        "xapp-",
        "sk-",
        "sk_live_",
        "sk_test_",
        "rk_live_",
        "pk_live_",
        "AKIA",
        "ASIA",
        "AIza",
        "ya29.",
        "npm_",
        "pypi-",
        "hf_",
        "shpat_",
        "dop_v1_",
        "key-",
    ];
    let charset = |c: u8| c.is_ascii_alphanumeric() || b"+/=_-.~".contains(&c);
    if !s.bytes().all(charset) {
        return false;
    }
    if s.len() >= 16 && PREFIXES.iter().any(|prefix| s.starts_with(prefix)) {
        return true;
    }
    let letters_and_digits = |run: &str| {
        run.bytes().any(|c| c.is_ascii_digit()) && run.bytes().any(|c| c.is_ascii_alphabetic())
    };
    // One long run of letters and digits (`3ax6xnjp29jd6fds4gc3`), between separators or not.
    if s.split(['-', '_', '.', '~'])
        .any(|run| run.len() >= 16 && letters_and_digits(run) && !is_camel_case_name(run))
    {
        return true;
    }
    // Mixed case with digits (`eyJhbGciOiJIUzI1NiJ9`), unless every part is a name
    // (`com.example.UserService2.load`).
    let has = |f: fn(&u8) -> bool| s.as_bytes().iter().any(f);
    let names_only = s
        .split(['-', '_', '.', '~'])
        .all(|run| run.bytes().all(|c| c.is_ascii_alphabetic()) || is_camel_case_name(run));
    s.len() >= 20
        && letters_and_digits(s)
        && has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_lowercase)
        && !names_only
}

/// A type or function name such as `Http2ConnectionError` or `InvalidUtf8InPathComponent`:
/// few digits, and words of several lower-case letters, which random tokens rarely have.
fn is_camel_case_name(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let mut lower_runs = Vec::new();
    let mut run = 0;
    for (at, &c) in b.iter().enumerate() {
        if c.is_ascii_lowercase() {
            if run == 0 && at > 0 && b[at - 1].is_ascii_digit() {
                return false; // `3ax`: random, not a name
            }
            run += 1;
        } else if !c.is_ascii_alphanumeric() {
            return false;
        } else if run > 0 {
            lower_runs.push(run);
            run = 0;
        }
    }
    if run > 0 {
        lower_runs.push(run);
    }
    let lower: usize = lower_runs.iter().sum();
    digits <= 2 && !lower_runs.is_empty() && lower >= 3 * lower_runs.len()
}

/// The decoded text of a piece holding percent-escapes, if it holds any.
fn percent_decoded(piece: &str) -> Option<String> {
    let bytes = piece.as_bytes();
    let escaped = bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    escaped.then(|| {
        percent_encoding::percent_decode_str(piece)
            .decode_utf8_lossy()
            .into_owned()
    })
}

/// A key whose value identifies someone or grants access: `password`, `db_password`,
/// `api-key`, `access_token`, `user`, `email`...
fn is_sensitive_key(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "pass",
        "pwd",
        "auth",
        "user",
        "username",
        "userid",
        "uid",
        "login",
        "email",
        "mail",
        "account",
        "owner",
        "cookie",
        "session",
        "sessionid",
        "sid",
        "credential",
        "credentials",
    ];
    const SUFFIXES: &[&str] = &["password", "passwd", "passphrase", "secret", "token", "key"];
    let key: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    !key.is_empty()
        && (EXACT.contains(&key.as_str()) || SUFFIXES.iter().any(|suffix| key.ends_with(suffix)))
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn words_kept_without_looking_are_words_every_rule_keeps() {
        // Short letter runs that come closest to a rule: hex letters, key prefixes, drive
        // letters, `www`, IPv6-like words, and the closing punctuation allowed after them.
        let mut words: Vec<String> = [
            "a",
            "C",
            "www",
            "fe",
            "ff",
            "AKIA",
            "ASIA",
            "AIza",
            "sk",
            "hf",
            "key",
            "Basic",
            "Bearer",
            "password",
            "token",
            "user",
            "deadbeefcafe",
            "ABCDEFabcdef",
            "fdcafe",
            "abcdefabcdefabc",
            "HTTPSConnection",
            "localhost",
            "home",
            "Users",
            "tmp",
        ]
        .iter()
        .map(|w| (*w).to_owned())
        .collect();
        words.extend((1..16).map(|n| "abcdef".chars().cycle().take(n).collect::<String>()));
        words.extend((1..16).map(|n| "ABCDEF".chars().cycle().take(n).collect::<String>()));
        for word in words.clone() {
            for punctuation in [".", ",", ";", ":", "!", "?", ")", "):", "..."] {
                words.push(format!("{word}{punctuation}"));
            }
        }
        for word in &words {
            assert!(super::is_plain_word(word), "{word}");
            for after_path in [false, true] {
                let mut out = String::new();
                let mut state = super::State { after_path };
                super::scrub_word(word, &mut out, &mut state);
                assert_eq!(&out, word, "after a path: {after_path}");
                assert!(!state.after_path, "{word}");
            }
        }
        for word in [
            "abcdefabcdefabcd",
            "a1",
            "a-b",
            "a/b",
            "a@b",
            "(a",
            "a.b",
            "C:/",
            "é",
            "",
        ] {
            assert!(!super::is_plain_word(word), "{word}");
        }
    }

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
        assert_eq!(s("see ~jürgen/notes and ~zoë/x"), "see <path> and <path>");
        assert_eq!(s("in ./data/x and ../y"), "in <path> and <path>");
        assert_eq!(s("in src/main.rs:12:5"), "in <path>");
        assert_eq!(s("in alpha/beta/gamma"), "in <path>");
        assert_eq!(
            s("pull denied for alice/private-img"),
            "pull denied for <path>"
        );
        assert_eq!(s("$HOME/.config/app and ${HOME}/x"), "<path> and <path>");
        assert_eq!(s(r"%APPDATA%\app\cfg"), "<path>");
        assert_eq!(s("--config=/etc/app/secret.yaml"), "--config=<path>");
    }

    #[test]
    fn a_quoted_path_still_open_where_looking_stops_goes_whole() {
        // Long paths shrink to `<path>`, so the quoted path after them reaches the output.
        // Looking stops at 1424 bytes for `max_len = 100`: each length of the last long path
        // puts that point at another place inside the quotes.
        assert_eq!(super::input_limit(100), 1424);
        let paths: String = (0..6).map(|_| format!("/{} ", "p".repeat(199))).collect();
        for shift in 150..230 {
            let message = format!(
                "{paths}/{} see \"/home/alice/My Secret Project/notes.txt\" for more",
                "q".repeat(shift),
            );
            let scrubbed = scrub(&message, 100);
            for secret in ["alice", "Secret", "Project", "notes"] {
                assert!(
                    !scrubbed.text.contains(secret),
                    "{shift}: {}",
                    scrubbed.text
                );
            }
        }
    }

    #[test]
    fn paths_with_spaces_go_whole() {
        assert_eq!(
            s(r#"cannot open "C:\Program Files\Acme Corp\report q3.xlsx": denied"#),
            r#"cannot open "<path>": denied"#
        );
        assert_eq!(
            s("file '/Users/alice/My Documents/taxes' missing"),
            "file '<path>' missing"
        );
        assert_eq!(s(r#"path="/home/a b/c d" bad"#), r#"path="<path>" bad"#);
        assert_eq!(
            s(r#"cannot open "Documents/Tax Return 2023.pdf": not found"#),
            r#"cannot open "<path>": not found"#
        );
        assert_eq!(s("at /home/John Smith/notes now"), "at <path> <path> now");
        assert_eq!(s("\"/home/alice/My Documents/taxes"), "\"<path> <path>");
        assert_eq!(s("'/home/o'brien/file'"), "'<path>'<path>'");
    }

    #[test]
    fn ordinary_words_with_slashes_stay() {
        for text in [
            "I/O error: read/write and/or application/json at 12/31/2024, 3/4 done",
            "HTTP/1.1 404 Not Found from curl/8.4.0 (Mozilla/5.0)",
            "rate 12.5/s, 50.0/100.0 MB, TCP/UDP/ICMP, read/write/execute, %Y/%m/%d",
            "application/vnd.api+json and application/vnd.ms-excel",
            "Invalid switch - /Q",
            r#"message: \"No such file or directory\""#,
            "unexpected character '$' at line 1, price \"$5\"",
        ] {
            assert_eq!(s(text), text);
        }
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
        assert_eq!(s("无法连接https://example.com/a"), "无法连接<url>");
        assert_eq!(s("„https://example.com“"), "„<url>“");
    }

    #[test]
    fn emails_and_addresses() {
        assert_eq!(
            s("mail alice.smith+x@example.co.uk now"),
            "mail <email> now"
        );
        assert_eq!(s("<bob@example.com>"), "<<email>>");
        assert_eq!(
            s("to alice@example.com/ and bob@example.com#x"),
            "to <email> and <email>#x"
        );
        assert_eq!(
            s("query ?to=alice@example.com&subject=hi"),
            "query ?to=<email>&subject=hi"
        );
        assert_eq!(
            s("crate `serde@1.0.200` failed"),
            "crate `serde@1.0.200` failed"
        );
        assert_eq!(
            s("connect 192.168.1.20:5432 refused"),
            "connect <ip> refused"
        );
        assert_eq!(s("peer [2001:db8::1]:443 reset"), "peer [<ip>]:443 reset");
        assert_eq!(s("addr=[fe80::1%eth0]:80"), "addr=[<ip>]:80");
        assert_eq!(s("net 10.0.0.0/8 ::1"), "net <ip> <ip>");
        assert_eq!(s("peer:2001:db8::dead:beef reset"), "peer:<ip> reset");
        assert_eq!(
            s("from ip6:fe80::1 and addr:10.0.0.1"),
            "from ip6:<ip> and addr:<ip>"
        );
        for host in [
            "192.168.01.20",
            "192.168.1.20.52344",
            "ip-10-0-1-23.ec2.internal",
        ] {
            assert_eq!(s(host), "<ip>");
        }
        assert_eq!(
            s("connect to db01.acme-corp.internal:5432"),
            "connect to <host>"
        );
        assert_eq!(s("nic 00:1a:2b:3c:4d:5e up"), "nic <mac> up");
    }

    #[test]
    fn punctuation_of_every_script_separates() {
        assert_eq!(
            s("无法发送到 alice@example.com。连接 10.0.0.1，失败"),
            "无法发送到 <email>。连接 <ip>，失败"
        );
        assert_eq!(
            s("„alice@example.com“ and 「10.0.0.1」 and （bob@example.com）"),
            "„<email>“ and 「<ip>」 and （<email>）"
        );
        assert_eq!(
            s("send to alice@example.com… failed"),
            "send to <email>… failed"
        );
    }

    #[test]
    fn identifiers_and_secrets() {
        assert_eq!(
            s("job 550e8400-e29b-41d4-a716-446655440000 gone"),
            "job <uuid> gone"
        );
        assert_eq!(
            s("app-550e8400-e29b-41d4-a716-446655440000.json"),
            "app-<uuid>.json"
        );
        assert_eq!(
            s("image sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
            "image sha256:<hex>"
        );
        assert_eq!(s("flags 0x1234_5678_9abc_def0"), "flags <hex>");
        assert_eq!(
            s("account 123456789012 card 4111-1111-1111-1111"),
            "account <number> card <number>"
        );
        assert_eq!(s("call +1-555-123-4567"), "call <number>");
        assert_eq!(
            s("sid S-1-5-21-3623811015-3361044348-30300820-1013"),
            "sid S-1-5-21-<number>-<number>-30300820-1013"
        );
        assert_eq!(s("key AKIAIOSFODNN7EXAMPLE bad"), "key <token> bad");
        assert_eq!(
            s("auth=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP"),
            "auth=<redacted>"
        );
        assert_eq!(
            s("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP"),
            "jwt <token>"
        );
        assert_eq!(
            s("Authorization: Basic YWxpY2U6aHVudGVyMg== rejected"),
            "Authorization: Basic <token> rejected"
        );
        for key in [
            "key-3ax6xnjp29jd6fds4gc373sgvjxteol0",
            "shpat_0123456789abcdef0123456789abcdef",
            "xoxb-123456789012-123456789012-abcdefghijklmnopqrstuvwx",
            "glpat-abcdefghijklmnopqrst",
        ] {
            assert_eq!(s(key), "<token>", "{key}");
        }
        for name in [
            "snake_case_names_like_this",
            "Http2ConnectionError",
            "InvalidUtf8InPathComponent",
        ] {
            assert_eq!(s(name), name);
        }
    }

    #[test]
    fn values_of_secret_and_personal_keys() {
        assert_eq!(
            s("Server=db;User Id=alice;Password=S3cret!;"),
            "Server=db;User Id=alice;Password=<redacted>!;"
        );
        assert_eq!(
            s("host=db.lan user=alice password=hunter2 dbname=x"),
            "host=db.lan user=<redacted> password=<redacted> dbname=x"
        );
        assert_eq!(
            s("access_token=ya29.a0AfH6SMBx&scope=email"),
            "access_token=<redacted>&scope=email"
        );
        assert_eq!(
            s("login failed: password:hunter2"),
            "login failed: password:<redacted>"
        );
    }

    #[test]
    fn percent_encoded_secrets() {
        assert_eq!(s("email=bob%40example.com"), "email=<redacted>");
        assert_eq!(s("next=%2Fhome%2Falice%2Fsecret.txt"), "next=<redacted>");
        assert_eq!(s("q=hello%20world"), "q=hello%20world");
    }

    #[test]
    fn truncation_never_splits_a_character() {
        let out = scrub("ééééé", 5);
        assert_eq!(out.text, "éé");
        assert!(out.truncated);
        assert!(!scrub("abc", 3).truncated);
        let out = scrub("🦀🦀", 3);
        assert_eq!(out.text, "");
        assert!(out.truncated);
    }

    #[test]
    fn huge_and_hostile_input_is_bounded() {
        for text in [
            "word ".repeat(1_000_000),
            "\"$".repeat(100_000),
            "'%".repeat(100_000),
            "x\u{201c}/a".repeat(100_000),
            "'/a'/a".repeat(100_000),
            "a".repeat(1_000_000),
            "a:".repeat(100_000),
            "=".repeat(1_000_000),
        ] {
            let out = scrub(&text, 100);
            assert!(out.truncated);
            assert!(out.text.len() <= 100);
        }
    }

    #[test]
    fn a_word_cut_by_the_input_bound_is_dropped() {
        let message = format!(
            "{}abcdefg ghp_R2d2C3poX8y9Z7w6V5u4T3s2R1q0P9o8N7m6 and more",
            format!("/{} ", "p".repeat(199)).repeat(7)
        );
        let out = scrub(&message, 100);
        assert!(out.truncated);
        assert_eq!(out.text, "<path> ".repeat(7) + "abcdefg");
    }

    #[test]
    fn arbitrary_text_never_panics_and_respects_the_limit() {
        // A fixed pseudo-random walk over characters that stress the rules.
        let alphabet: Vec<char> =
            "a Z0/\\:.@%$~-_=&\"'`“”„«»「」（）[]{}()<>#*é日🦀\u{200b}\n\u{a0}"
                .chars()
                .collect();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..3_000 {
            let len = round % 97;
            let text: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[usize::try_from(seed % alphabet.len() as u64).unwrap()]
                })
                .collect();
            let max_len = round % 41;
            let out = scrub(&text, max_len);
            assert!(out.text.len() <= max_len, "{text:?}");
            let whole = scrub(&text, usize::MAX / 8).text;
            assert!(
                whole.starts_with(&out.text),
                "{text:?}: {whole:?} vs {:?}",
                out.text
            );
        }
    }
}
