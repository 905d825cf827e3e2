//! Records the version of the compiler that builds this crate, and so the application, for the
//! `rustc_version` property. Never fails the build: without an answer the version is `unknown`.

use std::process::Command;

fn main() {
    // Without this line Cargo would rerun the script whenever any file of the package changes.
    // A new toolchain rebuilds every crate anyway, and with it this script's output.
    println!("cargo::rerun-if-env-changed=RUSTC");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| version_number(&text))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo::rustc-env=TELEMETRY_RUSTC_VERSION={version}");
}

/// The version in `rustc --version` output such as `rustc 1.95.0 (59807616e 2026-04-14)` or
/// `rustc 1.96.0-nightly (abcdef012 2026-05-01)`.
fn version_number(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    if words.next()? != "rustc" {
        return None;
    }
    let version = words.next()?;
    let plausible = version.len() <= 64
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    plausible.then(|| version.to_owned())
}
