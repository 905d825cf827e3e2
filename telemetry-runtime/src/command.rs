//! The `telemetry` subcommand an application offers its users: `status`, `enable`, `disable`,
//! `local`, `schema [--json]` and `reset`.
//!
//! With clap (feature `clap`), add it as a subcommand:
//!
//! ```
//! # #[cfg(feature = "clap")]
//! # mod example {
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     /// Show or change what telemetry does.
//!     #[command(subcommand)]
//!     Telemetry(telemetry_runtime::TelemetryCommand),
//!     // ... the application's own commands
//! }
//!
//! fn dispatch(command: &Command, builder: &telemetry_runtime::Builder) -> std::process::ExitCode {
//!     match command {
//!         Command::Telemetry(command) => command.run_and_report(builder),
//!     }
//! }
//! # }
//! ```
//!
//! Without clap, hand it the words after `telemetry`:
//!
//! ```
//! use telemetry_runtime::{Telemetry, TelemetryCommand};
//!
//! let builder = Telemetry::builder("jobs", "1.0.0");
//! let command = TelemetryCommand::parse(["schema", "--json"])?;
//! assert_eq!(command, TelemetryCommand::Schema { json: true });
//! # Ok::<(), telemetry_runtime::CommandError>(())
//! ```

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::consent::{CHOICE_FILE, Decision, Mode, Source};
use crate::spool::{SPOOL_DIR, Spool};
use crate::state::{
    ID_FILE, KEY_FILE, LOG_FILE, OLD_LOG_FILE, create_private_dir, record_notice, write_new_private,
};
use crate::telemetry::Builder;

/// Show or change what telemetry does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::Subcommand))]
pub enum TelemetryCommand {
    /// Show whether telemetry is on and why, the installation id, and what is pending.
    Status,
    /// Turn telemetry on; refused, writing nothing, while another opt-out is set.
    Enable,
    /// Turn telemetry off, and delete unsent events and the local log.
    Disable,
    /// Record events on this machine only; never upload them. Refused, writing nothing,
    /// while another opt-out is set.
    Local,
    /// List every event this program can send, with every property.
    Schema {
        /// Print JSON instead of Markdown.
        #[cfg_attr(feature = "clap", arg(long))]
        json: bool,
    },
    /// Forget the installation id and hashing key, and delete unsent events.
    Reset,
}

/// Why a `telemetry` command failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CommandError {
    /// The words given are not a command.
    Usage(String),
    /// There is no state directory to save the choice in.
    NoStateDir {
        /// The prefix of the application's variables.
        prefix: String,
    },
    /// `enable` or `local` was refused, and nothing written: a setting that wins over any
    /// saved choice keeps telemetry off.
    Overridden {
        /// The command refused: `enable` or `local`.
        command: &'static str,
        /// The setting that keeps telemetry off, and its value.
        decision: Decision,
    },
    /// Reading or writing the state directory failed.
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Usage(problem) => {
                write!(f, "{problem}\n\n{}", TelemetryCommand::USAGE)
            }
            CommandError::NoStateDir { prefix } => write!(
                f,
                "no state directory to keep the choice in (HOME is not set); set \
                 {prefix}_TELEMETRY_DIR, or use {prefix}_TELEMETRY=off or DO_NOT_TRACK=1"
            ),
            CommandError::Overridden { command, decision } => write!(
                f,
                "telemetry stays {decision}, which wins over `telemetry {command}`; nothing \
                 was changed. Remove that setting first"
            ),
            CommandError::Io {
                action,
                path,
                source,
            } => write!(f, "could not {action} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for CommandError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CommandError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl TelemetryCommand {
    /// How the command is used, for applications that parse arguments themselves.
    pub const USAGE: &'static str = "\
usage: telemetry <command>
  status          show whether telemetry is on and why, the installation id, and what is pending
  enable          turn telemetry on (refused while another opt-out is set)
  disable         turn telemetry off, and delete unsent events and the local log
  local           record events on this machine only; never upload them
  schema [--json] list every event this program can send
  reset           forget the installation id and hashing key, and delete unsent events";

    /// Parses the words after `telemetry`.
    pub fn parse<I>(args: I) -> Result<TelemetryCommand, CommandError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok(match words.as_slice() {
            ["status"] => TelemetryCommand::Status,
            ["enable"] => TelemetryCommand::Enable,
            ["disable"] => TelemetryCommand::Disable,
            ["local"] => TelemetryCommand::Local,
            ["schema"] => TelemetryCommand::Schema { json: false },
            ["schema", "--json"] => TelemetryCommand::Schema { json: true },
            ["reset"] => TelemetryCommand::Reset,
            [] => return Err(CommandError::Usage("a telemetry command is missing".into())),
            _ => {
                return Err(CommandError::Usage(format!(
                    "unknown telemetry command: `{}`",
                    words.join(" ")
                )));
            }
        })
    }

    /// Runs the command for the application that `builder` configures (it is not started),
    /// printing to stdout.
    pub fn run(&self, builder: &Builder) -> Result<(), CommandError> {
        self.run_to(builder, &mut io::stdout().lock())
    }

    /// Runs the command, printing its error (if any) to stderr: what `main` returns.
    pub fn run_and_report(&self, builder: &Builder) -> ExitCode {
        report(self.run(builder))
    }

    /// Runs the command, printing to `out`.
    pub fn run_to(&self, builder: &Builder, out: &mut dyn Write) -> Result<(), CommandError> {
        let report = match self {
            TelemetryCommand::Status => builder.status().to_string(),
            TelemetryCommand::Schema { json: false } => crate::schema::to_markdown_with(
                &crate::schema::events(),
                builder.properties_schema(),
            ),
            TelemetryCommand::Schema { json: true } => {
                let value = crate::schema::to_json_with(
                    &crate::schema::events(),
                    builder.properties_schema(),
                );
                serde_json::to_string_pretty(&value).expect("a JSON value serializes")
            }
            TelemetryCommand::Enable => change(builder, Mode::On)?,
            TelemetryCommand::Local => change(builder, Mode::Local)?,
            TelemetryCommand::Disable => change(builder, Mode::Off)?,
            TelemetryCommand::Reset => reset(builder)?,
        };
        // A closed pipe (`| head`) is not the command's failure.
        let _ = writeln!(out, "{}", report.trim_end());
        Ok(())
    }
}

/// Parses the words after `telemetry` and runs the command, printing errors to stderr: the
/// whole subcommand in one call for applications that parse arguments themselves.
///
/// ```no_run
/// use std::process::ExitCode;
///
/// fn main() -> ExitCode {
///     let builder = telemetry_runtime::Telemetry::builder("jobs", env!("CARGO_PKG_VERSION"));
///     let args: Vec<String> = std::env::args().skip(1).collect();
///     if args.first().map(String::as_str) == Some("telemetry") {
///         return telemetry_runtime::telemetry_command(&builder, &args[1..]);
///     }
///     let _telemetry = builder.start();
///     // ...
///     ExitCode::SUCCESS
/// }
/// ```
pub fn telemetry_command<S: AsRef<str>>(builder: &Builder, args: &[S]) -> ExitCode {
    report(TelemetryCommand::parse(args).and_then(|command| command.run(builder)))
}

fn report(result: Result<(), CommandError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(io::stderr().lock(), "error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn state_dir(builder: &Builder) -> Result<PathBuf, CommandError> {
    builder
        .state_dir_path()
        .ok_or_else(|| CommandError::NoStateDir {
            prefix: builder.prefix(),
        })
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CommandError {
    let path = path.to_owned();
    move |source| CommandError::Io {
        action,
        path,
        source,
    }
}

/// Saves `mode` as the user's choice; leaving `on` deletes what is waiting for upload, and
/// `off` also the local log. Nothing is sent to announce it. `on` and `local` are refused,
/// writing nothing, when an opt-out that wins over any saved choice is set (a variable, an
/// opt-out file, the application's setting); `off` never is.
fn change(builder: &Builder, mode: Mode) -> Result<String, CommandError> {
    if mode != Mode::Off {
        let decision = builder.decide_without_choice();
        if decision.mode == Mode::Off && !matches!(decision.source, Source::Ci(_) | Source::Default)
        {
            return Err(CommandError::Overridden {
                command: if mode == Mode::On { "enable" } else { "local" },
                decision,
            });
        }
    }
    let dir = state_dir(builder)?;
    create_private_dir(&dir).map_err(io_error("create", &dir))?;
    write_new_private(&dir, CHOICE_FILE, format!("{mode}\n").as_bytes())
        .map_err(io_error("save the choice in", &dir.join(CHOICE_FILE)))?;
    let mut report = String::new();
    match mode {
        Mode::On => {
            // Whoever turns telemetry on has read what it does: no notice, nothing held.
            record_notice(&dir).map_err(io_error("write", &dir))?;
            report.push_str("Telemetry is enabled.\n");
        }
        Mode::Local | Mode::Off => {
            if mode == Mode::Off {
                for name in [LOG_FILE, OLD_LOG_FILE] {
                    remove_if_present(&dir.join(name))?;
                }
            }
            let deleted = clear_spool(&dir)?;
            if mode == Mode::Off {
                report.push_str("Telemetry is disabled");
                report.push_str(", and the local log is deleted");
            } else {
                report.push_str("Telemetry records events on this machine only");
            }
            if deleted > 0 {
                report.push_str(&format!("; {deleted} unsent events were deleted"));
            }
            report.push_str(".\n");
        }
    }
    // Compared with what was decided: `on` without an endpoint runs as `local`, which is not
    // another setting's doing.
    let status = builder.status();
    if status.decision.mode != mode {
        report.push_str(&format!(
            "Another setting decides for now: telemetry is {}.\n",
            status.decision
        ));
    }
    Ok(report)
}

fn reset(builder: &Builder) -> Result<String, CommandError> {
    let dir = state_dir(builder)?;
    let deleted = clear_spool(&dir)?;
    for name in [ID_FILE, KEY_FILE] {
        remove_if_present(&dir.join(name))?;
    }
    let mut report = String::from(
        "The installation id and hashing key are deleted; new ones are made the next time \
         telemetry runs.",
    );
    if deleted > 0 {
        report.push_str(&format!(" {deleted} unsent events were deleted."));
    }
    Ok(report)
}

/// Deletes the spool; how many events it held.
fn clear_spool(dir: &Path) -> Result<u64, CommandError> {
    let spool = Spool::in_state_dir(dir);
    let held = spool.count_events(true);
    spool
        .clear()
        .map_err(io_error("delete", &dir.join(SPOOL_DIR)))?;
    Ok(held)
}

fn remove_if_present(path: &Path) -> Result<(), CommandError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(io_error("delete", path)(error))
        }
        _ => Ok(()),
    }
}
