//! A minimal program that uses telemetry the way an application does: start, capture through
//! the global `capture`, and exit by dropping the guard. The tests run it as a child process,
//! configured only through its environment, and read its final accounting from stdout.
//!
//! `telemetry-probe N` captures N events; `telemetry-probe telemetry <command>` runs the
//! telemetry subcommand instead. `PROBE_FIRST_RUN` (`hold`, `notify`, `silent`; default
//! `silent`) sets what the first run does, `PROBE_OPT_OUT_FILE` names an opt-out file, and
//! `PROBE_LIFECYCLE=1` turns lifecycle events on (off by default, so that the counts printed are
//! those of the events captured). `PROBE_PANIC=1` installs the panic hook and panics on the
//! main thread after capturing, with a message that holds a path. `PROBE_FLUSH_DEADLINE_MS`
//! sets how long the exit may wait to deliver (default: the library's). `PROBE_STATUS=1`
//! prints the status of the stopped telemetry to stderr after the accounting, between
//! `--- status ---` and `--- end ---`.

use std::process::ExitCode;

use telemetry_runtime::{FirstRun, Polarity, Telemetry, TelemetryEvent};

/// The probe did one unit of work.
#[derive(TelemetryEvent)]
struct Worked {
    /// Which unit.
    n: u32,
}

/// The threads of this process, or 0 where that cannot be read.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Stands in for `option_env!`: the endpoint a release build would have compiled in.
    let compiled_in = std::env::var("PROBE_COMPILED_ENDPOINT").ok();
    let first_run = match std::env::var("PROBE_FIRST_RUN").as_deref() {
        Ok("hold") => FirstRun::Hold,
        Ok("notify") => FirstRun::Notify,
        _ => FirstRun::Silent,
    };
    let mut builder = Telemetry::builder("probe", "0.1.0")
        .api_key("phc_probe")
        .endpoint(compiled_in.as_deref())
        .first_run(first_run)
        .lifecycle_events(std::env::var_os("PROBE_LIFECYCLE").is_some_and(|v| v == "1"))
        .opt_out_var("PROBE_DISABLE_TELEMETRY", Polarity::AnyValueDisables);
    if let Some(millis) = std::env::var("PROBE_FLUSH_DEADLINE_MS")
        .ok()
        .and_then(|millis| millis.parse().ok())
    {
        builder = builder.flush_deadline(std::time::Duration::from_millis(millis));
    }
    if let Ok(path) = std::env::var("PROBE_OPT_OUT_FILE") {
        builder = builder.opt_out_file(path);
    }
    if args.first().map(String::as_str) == Some("telemetry") {
        return telemetry_runtime::telemetry_command(&builder, &args[1..]);
    }
    let events: u32 = args
        .first()
        .map_or(0, |n| n.parse().expect("a number of events"));
    let threads_before = threads();
    let guard = builder.start();
    let panics = std::env::var_os("PROBE_PANIC").is_some_and(|v| v == "1");
    if panics {
        telemetry_runtime::install_panic_hook();
    }
    for n in 0..events {
        telemetry_runtime::capture(&Worked { n });
    }
    if panics {
        panic!("the probe could not read /home/alice/secret.txt");
    }
    let threads_after = threads();
    let telemetry = guard.handle();
    drop(guard);
    let stats = telemetry.stats();
    println!(
        "{{\"captured\":{},\"restored\":{},\"delivered\":{},\"spooled\":{},\"dropped\":{},\
         \"mode\":\"{}\",\"installation_id\":\"{}\",\"threads_before\":{threads_before},\
         \"threads_after\":{threads_after}}}",
        stats.captured,
        stats.restored,
        stats.delivered,
        stats.spooled,
        stats.dropped.total(),
        telemetry.mode(),
        telemetry.installation_id().unwrap_or_default(),
    );
    if std::env::var_os("PROBE_STATUS").is_some_and(|v| v == "1") {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "--- status ---\n{}\n--- end ---",
            telemetry.status()
        );
    }
    ExitCode::SUCCESS
}
