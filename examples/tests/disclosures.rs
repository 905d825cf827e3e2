//! Each program's disclosure, `examples/<program>.TELEMETRY.md`, is exactly what
//! `<program> telemetry schema` prints: the document is generated from the code, and this test
//! fails as soon as the two differ. After changing a program's events, regenerate them with
//! `EXAMPLES_BLESS=1 cargo test -p examples --test disclosures` and review the diff.

#![deny(warnings, unused_qualifications)]

use std::path::Path;
use std::process::{Command, Stdio};

const PROGRAMS: [(&str, &str); 4] = [
    ("jobs", env!("CARGO_BIN_EXE_jobs")),
    ("agent", env!("CARGO_BIN_EXE_agent")),
    ("bench", env!("CARGO_BIN_EXE_bench")),
    ("api", env!("CARGO_BIN_EXE_api")),
];

/// What `program telemetry schema` prints, in an empty environment: the schema depends on the
/// code only, never on the machine or its settings.
fn generated(program: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(program)
        .args(["telemetry", "schema"])
        .env_clear()
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .expect("the program runs");
    assert!(output.status.success(), "{program}: {output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn each_disclosure_is_what_its_program_generates() {
    let bless = std::env::var_os("EXAMPLES_BLESS").is_some();
    let mut stale = Vec::new();
    for (name, program) in PROGRAMS {
        let generated = generated(program);
        assert!(
            generated.starts_with("# Telemetry events") && generated.contains("`command`"),
            "{name}: {generated}"
        );
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("{name}.TELEMETRY.md"));
        if bless {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        if checked_in != generated {
            let line = checked_in
                .lines()
                .zip(generated.lines())
                .position(|(old, new)| old != new)
                .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
            stale.push(format!(
                "{}: differs from `{name} telemetry schema` from line {}",
                path.display(),
                line + 1
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nregenerate with `EXAMPLES_BLESS=1 cargo test -p examples --test disclosures` and review the diff",
        stale.join("\n")
    );
}

#[test]
fn each_disclosure_lists_only_its_own_program_s_events() {
    let schemas: Vec<(&str, String)> = PROGRAMS
        .iter()
        .map(|(name, program)| (*name, generated(program)))
        .collect();
    let events = |schema: &str| -> Vec<String> {
        schema
            .lines()
            .filter_map(|line| line.strip_prefix("## `"))
            .map(|title| title.split('`').next().unwrap_or_default().to_owned())
            .collect()
    };
    let library = [
        "app_fatal",
        "app_started",
        "app_stopped",
        "command",
        "telemetry_dropped",
    ];
    for (name, schema) in &schemas {
        let own: Vec<String> = events(schema)
            .into_iter()
            .filter(|event| !library.contains(&event.as_str()))
            .collect();
        assert!(!own.is_empty(), "{name} defines no event of its own");
        for (other, other_schema) in &schemas {
            if other != name {
                for event in &own {
                    assert!(
                        !events(other_schema).contains(event),
                        "`{event}` of {name} is also listed by {other}"
                    );
                }
            }
        }
    }
}
