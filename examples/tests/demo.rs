//! The README's first command works on any machine, CI included: it shows the `jobs` flows
//! arriving at a local receiver, the hashing, an opt-out that sends nothing, and that the
//! spec's private values never left.

#![deny(warnings, unused_qualifications)]

use std::process::{Command, Stdio};

#[test]
fn the_demo_shows_what_arrived_and_what_never_left() {
    // Run as a newcomer would, with whatever this environment holds (`CI=true` under CI):
    // the demo's own sandbox decides what `jobs` sees.
    let output = Command::new(env!("CARGO_BIN_EXE_demo"))
        .stdin(Stdio::null())
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    for shown in [
        "A PostHog-compatible receiver is listening on http://127.0.0.1:",
        "the receiver got 8 event(s): app_started, job_submitted, execution_updated",
        "== What `job_submitted` carries",
        "\"namespace\": \"",
        "\"node_id\": \"",
        "ghcr.io/bacalhau-project/examples/report:1.0 -> \"ghcr.io/bacalhau-project/examples/report:1.0\"",
        "`jobs --config DisableAnalytics=true run ...` sent 0 request(s)",
        "never sent, in any byte of any request: \"finance-alice\"",
        "never sent, in any byte of any request: \"hunter2-fake-secret\"",
        "examples/jobs.TELEMETRY.md",
    ] {
        assert!(
            stdout.contains(shown),
            "`{shown}` is missing from:\n{stdout}"
        );
    }
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");
}
