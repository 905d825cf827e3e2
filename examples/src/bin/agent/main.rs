//! `agent`: a small monitoring daemon that reports what Netdata's agent reports in its
//! anonymous statistics, field by field, with each of its opt-outs, and with less that could
//! identify anyone.
//!
//! `agent run` reads a few local metrics every `update_every` seconds (the load average,
//! memory in use, the number of processes; `n/a` where `/proc` is missing, off Linux) and
//! prints them, until SIGINT or SIGTERM, `--exit-after SECS`, or `--panic-after SECS`, which
//! panics on purpose to show the fatal report. It prints `ready` once the signals are handled.
//! A signal makes it return from `main` at once (every wait is on a channel the signal handler
//! feeds), so the telemetry guard is dropped normally and the clean stop is reported. `agent
//! install [--disable-telemetry]` writes the default configuration, `agent.conf`, in the
//! configuration directory (`--config-dir`, `AGENT_CONFIG_DIR`, else `$XDG_CONFIG_HOME/agent`,
//! else the platform's), and with the flag the opt-out marker. `agent telemetry
//! status|enable|disable|local|schema [--json]|reset` shows or changes what telemetry does;
//! `agent telemetry schema` prints everything it can send (`examples/agent.TELEMETRY.md`).
//!
//! # What Netdata sends, and what carries it here
//!
//! Netdata's agent runs `anonymous-statistics.sh` with an action (`START`, `EXIT`, `FATAL`)
//! and a description of the host:
//!
//! | Netdata | Here |
//! | --- | --- |
//! | `START` | `app_started` (`first_run`), then `agent_configured` |
//! | `EXIT` | `app_stopped` (`uptime_ms`, `panics`) on a clean stop, plus the `command` event of `run` (`outcome`, `duration_ms`, `exit_after`, `panic_after`) |
//! | `FATAL`, `action_result` = process and thread name | `app_fatal`: `process`, `thread` |
//! | `FATAL`, `action_data` = function, file and line | `app_fatal`: `function` (the instrumented function running, `run`), `command`, `file` (relative, `examples/src/bin/agent/collect.rs`), `line`, `column`, and `message`, scrubbed |
//! | `netdata_machine_guid` | `installation_id`: a random id in the state directory, not the machine's |
//! | `netdata_version` | `$app_version` |
//! | `host_os_name`, `host_os_version`/`host_os_version_id`, `host_os_id`, `host_os_id_like` | `os_name`, `os_version`, `os_id`, `os_id_like` (every event) |
//! | `host_kernel_name`, `host_kernel_version`, `host_architecture` | `kernel_name`, `kernel_release`, `arch` (every event) |
//! | `host_virtualization` | `virtualization` (every event) |
//! | `host_container` | `container`, `environment` (every event) |
//! | `system_cpu_logical_cpu_count`, `system_total_ram` | `cpu_count`, `memory` as a coarse bucket (every event) |
//! | `netdata_config_*` (what the agent runs) | `agent_configured`: `collectors`, `update_every`, `config_file` |
//! | `--disable-telemetry` at install | the `command` event of `install`: `disable_telemetry` (false whenever it is sent: with the flag nothing is) |
//! | the sender's IP address, with the request | not kept: `$ip` is `0.0.0.0` and GeoIP is off |
//!
//! Not sent, where Netdata sends them: how the OS, virtualization and container were detected,
//! the CPU's model and frequency, the disk size, the exact amount of memory, the host name.
//!
//! # Opting out
//!
//! Any of these turns telemetry off before anything is written or started; each wins over
//! `AGENT_TELEMETRY=on`:
//!
//! - the marker file `.opt-out-from-anonymous-statistics` in the configuration directory
//!   (`Builder::opt_out_file`);
//! - `DISABLE_TELEMETRY` set to anything but empty or `0` (`Polarity::AnyValueDisables`),
//!   whitespace included: `" 0"` is not `0`, so it turns telemetry off;
//! - `agent install --disable-telemetry`, which writes that marker; that run itself sends
//!   nothing either (`Mode::Off`). `agent install` without the flag removes no marker, and says
//!   how to opt out.
//!
//! The library's own also apply: `DO_NOT_TRACK`, `AGENT_TELEMETRY=off`, `agent telemetry
//! disable`, and CI.
//!
//! # Running it
//!
//! ```text
//! cargo run -p examples --bin agent -- run --exit-after 5
//! cargo run -p examples --bin agent -- run          # until Ctrl-C
//! cargo run -p examples --bin agent -- run --panic-after 2
//! cargo run -p examples --bin agent -- install --disable-telemetry
//! cargo run -p examples --bin agent -- telemetry schema
//! ```
//!
//! No endpoint is compiled in unless `AGENT_TELEMETRY_ENDPOINT` is set at build time, so a
//! development build records events in `events.jsonl` in its state directory and sends nothing.

mod collect;
mod config;
mod install;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

use clap::{Parser, Subcommand};
use telemetry_runtime::{Builder, Mode, Polarity, Telemetry, TelemetryCommand};

/// A small monitoring daemon with Netdata's anonymous statistics.
#[derive(Parser)]
#[command(name = "agent", version)]
struct Cli {
    /// The configuration directory [default: $XDG_CONFIG_HOME/agent, else the platform's]
    #[arg(long, global = true, env = "AGENT_CONFIG_DIR", value_name = "DIR")]
    config_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Collect and print metrics until SIGINT or SIGTERM.
    Run {
        /// Stop cleanly after this many seconds (0: after one round).
        #[arg(long, value_name = "SECS")]
        exit_after: Option<u64>,
        /// Panic after this many seconds, to show what a fatal error reports.
        #[arg(long, value_name = "SECS")]
        panic_after: Option<u64>,
    },
    /// Write the default configuration in the configuration directory.
    Install {
        /// Also opt out of anonymous statistics, for good (writes the opt-out marker).
        #[arg(long)]
        disable_telemetry: bool,
    },
    /// Show or change what telemetry does.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
}

/// The telemetry of the agent, with its opt-outs; nothing is started.
fn telemetry(config_dir: Option<&PathBuf>, explicit_dir: bool) -> Builder {
    let mut builder = Telemetry::builder("agent", env!("CARGO_PKG_VERSION"))
        .api_key("phc_agent_example")
        .endpoint(option_env!("AGENT_TELEMETRY_ENDPOINT"))
        .opt_out_var("DISABLE_TELEMETRY", Polarity::AnyValueDisables);
    if let Some(dir) = config_dir {
        builder = builder.opt_out_file(dir.join(config::OPT_OUT_MARKER));
        // A configuration directory chosen by hand holds the telemetry state too, unless
        // that has a place of its own.
        if explicit_dir && std::env::var_os("AGENT_TELEMETRY_DIR").is_none() {
            builder = builder.state_dir(dir.join("telemetry"));
        }
    }
    builder
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let explicit_dir = cli
        .config_dir
        .as_ref()
        .is_some_and(|dir| !dir.as_os_str().is_empty());
    let config_dir = config::config_dir(cli.config_dir.clone());
    let builder = telemetry(config_dir.as_ref(), explicit_dir);
    if let Command::Telemetry(command) = &cli.command {
        return command.run_and_report(&builder);
    }
    let Some(config_dir) = config_dir else {
        eprintln!("agent: no configuration directory: set HOME, AGENT_CONFIG_DIR or --config-dir");
        return ExitCode::from(2);
    };
    match cli.command {
        Command::Run {
            exit_after,
            panic_after,
        } => run(builder, &config_dir, exit_after, panic_after),
        Command::Install { disable_telemetry } => install(builder, &config_dir, disable_telemetry),
        Command::Telemetry(_) => unreachable!("handled above"),
    }
}

fn run(
    builder: Builder,
    config_dir: &std::path::Path,
    exit_after: Option<u64>,
    panic_after: Option<u64>,
) -> ExitCode {
    let telemetry = builder.start();
    telemetry_runtime::install_panic_hook();
    // The handler runs on a thread of its own; it only wakes the loop, which then returns.
    let (stop, stop_requested) = mpsc::channel();
    if let Err(error) = ctrlc::set_handler(move || {
        let _ = stop.send(());
    }) {
        eprintln!("agent: cannot handle SIGINT and SIGTERM: {error}");
        return ExitCode::FAILURE;
    }
    match collect::run(config_dir, exit_after, panic_after, &stop_requested) {
        Ok(stopped) => {
            println!("{stopped}; telemetry is {}", telemetry.status().summary());
            // Returning drops the guard: a clean stop, which sends `app_stopped`.
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("agent: {error}");
            ExitCode::from(2)
        }
    }
}

fn install(builder: Builder, config_dir: &std::path::Path, disable_telemetry: bool) -> ExitCode {
    // Opting out at install sends nothing, not even the install itself.
    let builder = if disable_telemetry {
        builder.mode(Mode::Off)
    } else {
        builder
    };
    let _telemetry = builder.start();
    telemetry_runtime::install_panic_hook();
    match install::install(config_dir, disable_telemetry) {
        Ok(installed) => {
            if installed.wrote_config {
                println!("wrote {}", installed.config.display());
            } else {
                println!("kept {}", installed.config.display());
            }
            if installed.opted_out {
                println!(
                    "anonymous statistics are off: {} exists",
                    installed.marker.display()
                );
            } else {
                println!(
                    "anonymous statistics are on; to opt out, run `agent install \
                     --disable-telemetry`, create {}, set DISABLE_TELEMETRY=1 or run `agent \
                     telemetry disable` (`agent telemetry schema` lists what is sent)",
                    installed.marker.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("agent: {error}");
            ExitCode::FAILURE
        }
    }
}
