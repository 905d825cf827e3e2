//! Where the agent keeps its files, and its configuration file.
//!
//! The configuration directory is `--config-dir` (or `AGENT_CONFIG_DIR`), else
//! `$XDG_CONFIG_HOME/agent` when that is an absolute path, else the platform's configuration
//! directory (`~/.config/agent` on Linux). It holds `agent.conf` and, when the user opted out,
//! the marker `.opt-out-from-anonymous-statistics`.
//!
//! `agent.conf` is a list of `key = value` lines; `#` starts a comment:
//!
//! ```text
//! update_every = 1
//! collectors = load, memory, processes
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::collect::Collector;

/// The configuration file's name, in the configuration directory.
pub const CONFIG_FILE: &str = "agent.conf";

/// The file whose presence turns anonymous statistics off, as Netdata's does.
pub const OPT_OUT_MARKER: &str = ".opt-out-from-anonymous-statistics";

/// The longest interval between two rounds, in seconds.
const MAX_UPDATE_EVERY: u64 = 3600;

/// What `agent install` writes.
pub const DEFAULT_CONFIG: &str = "\
# The agent's configuration, written by `agent install`.
# Seconds between two collection rounds (1 to 3600).
update_every = 1
# The collectors to run, from: load, memory, processes.
collectors = load, memory, processes
";

/// The configuration directory: `explicit` (`--config-dir`, `AGENT_CONFIG_DIR`), else
/// `$XDG_CONFIG_HOME/agent`, else the platform's; `None` when none is known (no home).
pub fn config_dir(explicit: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(dir) = explicit.filter(|dir| !dir.as_os_str().is_empty()) {
        return Some(dir);
    }
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(dirs::config_dir)
        .map(|dir| dir.join("agent"))
}

/// What the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The time between two collection rounds.
    pub update_every: Duration,
    /// The collectors to run, each once, in the order given.
    pub collectors: Vec<Collector>,
    /// Whether it was read from a file (else it is the default).
    pub from_file: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            update_every: Duration::from_secs(1),
            collectors: Collector::ALL.to_vec(),
            from_file: false,
        }
    }
}

/// Why the configuration could not be read. Its message names no value from the file, so that
/// nothing the user wrote there reaches telemetry; the line number says where to look.
#[derive(Debug)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    Read { path: PathBuf, source: io::Error },
    /// A line is not understood.
    Syntax {
        path: PathBuf,
        line: usize,
        problem: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ConfigError::Syntax {
                path,
                line,
                problem,
            } => write!(f, "{}, line {line}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Syntax { .. } => None,
        }
    }
}

/// Reads `agent.conf` in `dir`; the default configuration when there is none.
pub fn load(dir: &Path) -> Result<Config, ConfigError> {
    let path = dir.join(CONFIG_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).map_err(|(line, problem)| ConfigError::Syntax {
            path,
            line,
            problem,
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Config::default()),
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

/// Parses the text of `agent.conf`; on error, the line (from 1) and what is wrong with it.
pub fn parse(text: &str) -> Result<Config, (usize, &'static str)> {
    let mut config = Config {
        from_file: true,
        ..Config::default()
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err((number, "expected `key = value`"));
        };
        match key.trim() {
            "update_every" => {
                let seconds: u64 = value.trim().parse().map_err(|_| {
                    (
                        number,
                        "update_every needs a whole number of seconds, 1 to 3600",
                    )
                })?;
                if !(1..=MAX_UPDATE_EVERY).contains(&seconds) {
                    return Err((number, "update_every must be 1 to 3600 seconds"));
                }
                config.update_every = Duration::from_secs(seconds);
            }
            "collectors" => {
                let mut collectors = Vec::new();
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let collector = Collector::parse(name).ok_or((
                        number,
                        "unknown collector (expected load, memory or processes)",
                    ))?;
                    if !collectors.contains(&collector) {
                        collectors.push(collector);
                    }
                }
                config.collectors = collectors;
            }
            _ => {
                return Err((
                    number,
                    "unknown setting (expected update_every or collectors)",
                ));
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_reads_as_the_default_configuration() {
        let config = parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(
            config,
            Config {
                from_file: true,
                ..Config::default()
            }
        );
    }

    #[test]
    fn settings_comments_and_duplicates() {
        let config =
            parse("# comment\n\nupdate_every = 5 # seconds\ncollectors = memory, load, memory\n")
                .unwrap();
        assert_eq!(config.update_every, Duration::from_secs(5));
        assert_eq!(config.collectors, [Collector::Memory, Collector::Load]);
    }

    #[test]
    fn errors_name_the_line_and_never_the_value() {
        assert_eq!(
            parse("update_every = 1\nfrobnicate = secret-value")
                .unwrap_err()
                .0,
            2
        );
        assert_eq!(parse("update_every = 0").unwrap_err().0, 1);
        assert_eq!(parse("update_every = soon").unwrap_err().0, 1);
        assert_eq!(parse("collectors = load, gpu-of-alice").unwrap_err().0, 1);
        assert_eq!(parse("just words").unwrap_err().0, 1);
        let (_, problem) = parse("collectors = gpu-of-alice").unwrap_err();
        assert!(!problem.contains("alice"));
    }

    #[test]
    fn a_missing_file_is_the_default_and_an_unreadable_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Config::default());
        // A directory where the file should be cannot be read as one.
        std::fs::create_dir(dir.path().join(CONFIG_FILE)).unwrap();
        let error = load(dir.path()).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    }
}
