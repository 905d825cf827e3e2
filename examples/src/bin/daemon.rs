//! A small long-running service that reports its start, its clean stop and its panics.
//!
//! It starts telemetry, installs the panic hook, and does one round of work per interval,
//! capturing an event for each. No endpoint is compiled in, so events are recorded in the local
//! log (`events.jsonl` in the state directory; `DAEMON_TELEMETRY_DIR` chooses it): no network,
//! no account.
//!
//! SIGINT (Ctrl-C) and SIGTERM (what `kill`, systemd and container runtimes send to stop a
//! service) make it leave its loop and return from `main`, so the telemetry guard is dropped
//! normally and `app_stopped` is recorded, as for any clean stop. A signal's default action
//! would instead end the process at once, recording nothing. It also stops by itself after
//! `--rounds` rounds (default 60), so that a forgotten run ends, and it never reads its
//! standard input, so it runs the same without a terminal.
//!
//! It prints `ready` once telemetry runs and the signals are handled, and where the events
//! went when it stops. `--panic-at N` panics in round `N`, to show `app_fatal` instead.
//!
//! Run with `cargo run -p examples --bin daemon -- --interval-ms 200`, then press Ctrl-C.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use telemetry_runtime::{Mode, Telemetry, TelemetryEvent};

/// One round of the daemon's periodic work finished.
#[derive(TelemetryEvent)]
struct RoundFinished {
    /// Which round, from 1.
    round: u64,
    /// How long the round's work took.
    took: Duration,
}

/// What the command line asks for.
struct Options {
    rounds: u64,
    interval: Duration,
    panic_at: Option<u64>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        rounds: 60,
        interval: Duration::from_secs(1),
        panic_at: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || -> Result<u64, String> {
            let value = args.next().ok_or(format!("{arg} needs a number"))?;
            value
                .parse()
                .map_err(|_| format!("{arg} needs a number, not {value:?}"))
        };
        match arg.as_str() {
            "--rounds" => options.rounds = number()?,
            "--interval-ms" => options.interval = Duration::from_millis(number()?),
            "--panic-at" => options.panic_at = Some(number()?),
            _ => {
                return Err(format!(
                    "unknown argument {arg:?}; expected --rounds N, --interval-ms N or --panic-at N"
                ));
            }
        }
    }
    Ok(options)
}

/// The round's work: a checksum over some numbers, standing in for what a real service does.
fn work(round: u64) -> u64 {
    (0..100_000u64).fold(round, |sum, n| {
        sum.rotate_left(5) ^ n.wrapping_mul(0x9e37_79b9)
    })
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("daemon: {problem}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = Telemetry::builder("daemon", env!("CARGO_PKG_VERSION"))
        .api_key("phc_example")
        .endpoint(option_env!("DAEMON_TELEMETRY_ENDPOINT"))
        .start();
    telemetry_runtime::install_panic_hook();

    // The handler runs on a thread of its own; it only wakes the loop, which then stops.
    let (stop, stop_requested) = mpsc::channel();
    if let Err(error) = ctrlc::set_handler(move || {
        let _ = stop.send(());
    }) {
        eprintln!("daemon: cannot handle SIGINT and SIGTERM: {error}");
        return ExitCode::FAILURE;
    }
    println!("ready");
    let _ = std::io::stdout().flush();

    let mut signalled = false;
    let mut rounds = 0;
    while rounds < options.rounds {
        rounds += 1;
        let started = Instant::now();
        let checksum = std::hint::black_box(work(rounds));
        if options.panic_at == Some(rounds) {
            panic!("round {rounds} failed (checksum {checksum:x})");
        }
        telemetry.capture(&RoundFinished {
            round: rounds,
            took: started.elapsed(),
        });
        match stop_requested.recv_timeout(options.interval) {
            Ok(()) => {
                signalled = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let why = if signalled {
        "stopped by a signal"
    } else {
        "finished its rounds"
    };
    println!(
        "{why} after {rounds} rounds; telemetry is {}",
        telemetry.status().summary()
    );
    if let (Mode::Local, Some(dir)) = (telemetry.mode(), telemetry.state_dir()) {
        println!("events are in {}", dir.join("events.jsonl").display());
    }
    // Returning drops the guard: a clean stop, which records `app_stopped`.
    ExitCode::SUCCESS
}
