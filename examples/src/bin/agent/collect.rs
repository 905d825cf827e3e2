//! `agent run`: the collection loop, the metrics it reads, and the event describing what it
//! was configured to do.

use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use telemetry_runtime::{TelemetryEvent, TelemetryValue, instrument_command};

use crate::config::{self, ConfigError};

/// A source of metrics the agent can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum Collector {
    /// The load average over 1, 5 and 15 minutes (`/proc/loadavg`).
    Load,
    /// Memory in use and in total (`/proc/meminfo`).
    Memory,
    /// The number of processes (`/proc`).
    Processes,
}

impl Collector {
    /// Every collector, in the order they are printed by default.
    pub const ALL: [Collector; 3] = [Collector::Load, Collector::Memory, Collector::Processes];

    /// The collector named `name` in the configuration file.
    pub fn parse(name: &str) -> Option<Collector> {
        Collector::ALL
            .into_iter()
            .find(|collector| collector.name().eq_ignore_ascii_case(name))
    }

    /// Its name in the configuration file and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Collector::Load => "load",
            Collector::Memory => "memory",
            Collector::Processes => "processes",
        }
    }

    /// One reading, as printed: `n/a` where the system does not offer it (off Linux).
    pub fn sample(self) -> String {
        let reading = match self {
            Collector::Load => load_average(),
            Collector::Memory => memory_in_use(),
            Collector::Processes => process_count().map(|count| count.to_string()),
        };
        format!("{} {}", self.name(), reading.as_deref().unwrap_or("n/a"))
    }
}

/// `0.52 0.58 0.59`: the first three fields of `/proc/loadavg`.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

/// `2048/7977 MiB`: memory in use (total less available) and in total.
fn memory_in_use() -> Option<String> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find(|line| line.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    let total = kib("MemTotal:")?;
    let available = kib("MemAvailable:")?;
    Some(format!(
        "{}/{} MiB",
        total.saturating_sub(available) / 1024,
        total / 1024
    ))
}

/// The number of processes: the numeric entries of `/proc`.
fn process_count() -> Option<usize> {
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(
        entries
            .flatten()
            .filter(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_digit())
            })
            .count(),
    )
}

/// The agent started collecting; what it was configured to do. Never where its files are or
/// what they hold beyond these settings.
#[derive(TelemetryEvent)]
pub struct AgentConfigured<'a> {
    /// The collectors enabled, from the fixed list `load`, `memory`, `processes`.
    pub collectors: &'a [Collector],
    /// The time between two collection rounds (`update_every`), in milliseconds.
    pub update_every: Duration,
    /// Whether a configuration file was read (else the defaults are used).
    pub config_file: bool,
}

/// Why the collection loop ended without a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT or SIGTERM arrived.
    Signal { rounds: u64 },
    /// The time `--exit-after` gave ran out.
    ExitAfter { rounds: u64 },
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::Signal { rounds } => write!(f, "stopped by a signal after {rounds} rounds"),
            Stopped::ExitAfter { rounds } => {
                write!(f, "stopped after {rounds} rounds, as --exit-after asked")
            }
        }
    }
}

/// Runs the agent: reads the configuration in `dir`, reports it, prints `ready`, then
/// collects one round every `update_every` until `stop` receives (a signal), `exit_after`
/// seconds have passed, or `panic_after` seconds have passed, when it panics on purpose to
/// show what a fatal error reports. Every wait ends at once when `stop` receives.
#[instrument_command(name = "run", message, args(exit_after, panic_after))]
pub fn run(
    dir: &Path,
    exit_after: Option<u64>,
    panic_after: Option<u64>,
    stop: &Receiver<()>,
) -> Result<Stopped, ConfigError> {
    let config = config::load(dir)?;
    telemetry_runtime::capture(&AgentConfigured {
        collectors: &config.collectors,
        update_every: config.update_every,
        config_file: config.from_file,
    });
    let started = Instant::now();
    // A deadline past what an `Instant` can hold is never reached.
    let at =
        |seconds: Option<u64>| seconds.and_then(|s| started.checked_add(Duration::from_secs(s)));
    let (exit_at, panic_at) = (at(exit_after), at(panic_after));
    println!("ready");
    let _ = std::io::stdout().flush();

    let mut rounds = 0;
    loop {
        let now = Instant::now();
        if panic_at.is_some_and(|at| now >= at) {
            panic!("collector failed after {rounds} rounds (--panic-after)");
        }
        rounds += 1;
        let samples: Vec<String> = config.collectors.iter().map(|c| c.sample()).collect();
        println!("round {rounds}: {}", samples.join(", "));
        if exit_at.is_some_and(|at| Instant::now() >= at) {
            return Ok(Stopped::ExitAfter { rounds });
        }
        let wake = [Some(now + config.update_every), exit_at, panic_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now);
        match stop.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                return Ok(Stopped::Signal { rounds });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use serde_json::json;
    use telemetry_runtime::testing;

    use super::*;

    #[test]
    fn a_run_reports_its_configuration_and_its_command() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(config::CONFIG_FILE),
            "update_every = 7\ncollectors = processes, load\n",
        )
        .unwrap();
        let (_stop, stopped) = mpsc::channel();
        let mut result = None;
        let events = testing::record(|| {
            result = Some(run(dir.path(), Some(0), None, &stopped));
        });
        assert_eq!(result.unwrap().unwrap(), Stopped::ExitAfter { rounds: 1 });
        assert_eq!(events.names(), ["agent_configured", "command"]);

        let configured = events.only("agent_configured");
        assert_eq!(
            configured.property_names(),
            ["collectors", "update_every", "config_file"]
        );
        assert_eq!(configured["collectors"], json!(["processes", "load"]));
        assert_eq!(configured["update_every"], 7000);
        assert_eq!(configured["config_file"], true);

        let command = events.only("command");
        assert_eq!(command["command"], "run");
        assert_eq!(command["outcome"], "ok");
        assert_eq!(command["exit_after"], 0);
        assert_eq!(command["panic_after"], json!(null));
        assert!(!events.contains_text(&dir.path().to_string_lossy()));
    }

    #[test]
    fn a_signal_ends_the_wait_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (stop, stopped) = mpsc::channel();
        stop.send(()).unwrap();
        let started = Instant::now();
        let events = testing::record(|| {
            // Without the signal this would wait an hour.
            assert_eq!(
                run(dir.path(), Some(3600), None, &stopped).unwrap(),
                Stopped::Signal { rounds: 1 }
            );
        });
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_eq!(events.only("agent_configured")["config_file"], false);
        assert_eq!(events.only("command")["exit_after"], 3600);
    }

    #[test]
    fn a_deadline_too_far_to_compute_is_never_reached() {
        let dir = tempfile::tempdir().unwrap();
        let (stop, stopped) = mpsc::channel();
        stop.send(()).unwrap();
        let events = testing::record(|| {
            assert_eq!(
                run(dir.path(), Some(u64::MAX), Some(u64::MAX), &stopped).unwrap(),
                Stopped::Signal { rounds: 1 }
            );
        });
        let command = events.only("command");
        assert_eq!(command["outcome"], "ok");
        assert_eq!(command["exit_after"], u64::MAX);
    }

    #[test]
    fn a_malformed_configuration_is_an_error_sent_without_its_path() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("alice-private").join("agent");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(config::CONFIG_FILE), "token = hunter2-secret\n").unwrap();
        let (_stop, stopped) = mpsc::channel();
        let mut result = None;
        let events = testing::record(|| result = Some(run(&dir, None, None, &stopped)));
        let error = result.unwrap().unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");

        assert_eq!(events.names(), ["command"], "no configuration, no report");
        let command = events.only("command");
        assert_eq!(command["outcome"], "error");
        assert!(
            command["error_type"]
                .as_str()
                .unwrap()
                .ends_with("ConfigError"),
            "{}",
            command["error_type"]
        );
        assert_eq!(
            command["error_message"],
            "<path>, line 1: unknown setting (expected update_every or collectors)"
        );
        assert!(!events.contains_text("alice-private"));
        assert!(!events.contains_text("hunter2"));
    }

    #[test]
    fn the_panic_of_panic_after_unwinds_through_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let (_stop, stopped) = mpsc::channel();
        let recorder = testing::Recorder::new();
        let outcome = std::panic::catch_unwind(|| {
            recorder.record(|| run(dir.path(), None, Some(0), &stopped))
        });
        assert!(outcome.is_err(), "--panic-after 0 panics");
        let events = recorder.events();
        let command = events.only("command");
        assert_eq!(command["outcome"], "panic");
        assert_eq!(command["panic_after"], 0);
    }

    #[test]
    fn collectors_print_a_reading_or_not_available() {
        for collector in Collector::ALL {
            let sample = collector.sample();
            assert!(sample.starts_with(collector.name()), "{sample}");
            assert_eq!(Collector::parse(collector.name()), Some(collector));
        }
        if cfg!(target_os = "linux") {
            assert!(!Collector::Processes.sample().ends_with("n/a"));
        }
    }
}
