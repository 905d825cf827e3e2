#![forbid(unsafe_code)]
#![deny(warnings, unused_qualifications, missing_docs)]
//! An instrumented `main` returning a `Result`, sending its error's scrubbed message.

use std::error::Error;

use telemetry_runtime::instrument_command;

#[instrument_command(name = "jobs", message(max_len = 120))]
fn main() -> Result<(), Box<dyn Error>> {
    let jobs: u32 = "3".parse()?;
    assert_eq!(jobs, 3);
    Ok(())
}
