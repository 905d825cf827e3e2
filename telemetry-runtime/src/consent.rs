//! Whether telemetry runs, decided once at start before anything is written or started.

use std::fmt;
use std::str::FromStr;

use crate::config::{Env, Var};

/// What telemetry does in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Nothing is recorded, written or sent; `capture` returns at once.
    Off,
    /// Events are appended to a bounded log in the state directory and never uploaded.
    Local,
    /// Events are uploaded.
    On,
}

impl Mode {
    /// The mode a setting names: `off`, `local` or `on`, also `0`/`1`, `false`/`true` and
    /// `no`/`yes`, in any case, surrounding whitespace ignored.
    ///
    /// ```
    /// use telemetry_runtime::Mode;
    ///
    /// assert_eq!(Mode::parse(" OFF "), Some(Mode::Off));
    /// assert_eq!(Mode::parse("1"), Some(Mode::On));
    /// assert_eq!(Mode::parse("local"), Some(Mode::Local));
    /// assert_eq!(Mode::parse("maybe"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Mode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" | "0" | "false" | "no" => Some(Mode::Off),
            "on" | "1" | "true" | "yes" => Some(Mode::On),
            "local" => Some(Mode::Local),
            _ => None,
        }
    }

    /// The mode's name: `off`, `local` or `on`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Local => "local",
            Mode::On => "on",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Mode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a telemetry mode (off, local, on)")]
pub struct ParseModeError(String);

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(text: &str) -> Result<Mode, ParseModeError> {
        Mode::parse(text).ok_or_else(|| ParseModeError(text.to_owned()))
    }
}

/// The mode, and the setting that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub mode: Mode,
    pub source: String,
}

/// Decides the mode. Any opt-out wins over any opt-in; `local` wins over `on`. A value that
/// cannot be read counts as `off`: privacy fails closed.
pub(crate) fn decide(env: &Env, prefix: &str, explicit: Option<Mode>, default: Mode) -> Decision {
    let mut signals: Vec<(Mode, String)> = Vec::new();
    if let Some(mode) = explicit {
        signals.push((mode, format!("set by the application ({mode})")));
    }
    match env.var("DO_NOT_TRACK") {
        Var::Unset => {}
        Var::Text(text)
            if matches!(
                text.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "false"
            ) => {}
        Var::Text(text) => signals.push((Mode::Off, format!("DO_NOT_TRACK={}", text.trim()))),
        Var::NotUnicode => signals.push((Mode::Off, "DO_NOT_TRACK (unreadable)".to_owned())),
    }
    let name = format!("{prefix}_TELEMETRY");
    match env.var(&name) {
        Var::Unset => {}
        Var::Text(text) if text.trim().is_empty() => {}
        Var::Text(text) => match Mode::parse(&text) {
            Some(mode) => signals.push((mode, format!("{name}={}", text.trim()))),
            None => signals.push((
                Mode::Off,
                format!("{name}={} (not off/local/on, so off)", text.trim()),
            )),
        },
        Var::NotUnicode => signals.push((Mode::Off, format!("{name} (unreadable, so off)"))),
    }
    signals.push((default, format!("default ({default})")));
    for wanted in [Mode::Off, Mode::Local, Mode::On] {
        if let Some((mode, source)) = signals.iter().find(|(mode, _)| *mode == wanted) {
            return Decision {
                mode: *mode,
                source: source.clone(),
            };
        }
    }
    unreachable!("the default is always a signal")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs)
    }

    #[test]
    fn opt_out_wins_over_opt_in() {
        let decided = decide(
            &env(&[("DO_NOT_TRACK", "1"), ("JOBS_TELEMETRY", "on")]),
            "JOBS",
            Some(Mode::On),
            Mode::On,
        );
        assert_eq!(decided.mode, Mode::Off);
        assert_eq!(decided.source, "DO_NOT_TRACK=1");
        let decided = decide(&env(&[]), "JOBS", Some(Mode::Off), Mode::On);
        assert_eq!(decided.mode, Mode::Off);
    }

    #[test]
    fn local_wins_over_on() {
        let decided = decide(
            &env(&[("JOBS_TELEMETRY", "Local")]),
            "JOBS",
            Some(Mode::On),
            Mode::On,
        );
        assert_eq!(decided.mode, Mode::Local);
        assert_eq!(decided.source, "JOBS_TELEMETRY=Local");
    }

    #[test]
    fn do_not_track_counts_unless_empty_zero_or_false() {
        for value in ["", "0", "false", " FALSE "] {
            let decided = decide(&env(&[("DO_NOT_TRACK", value)]), "X", None, Mode::On);
            assert_eq!(decided.mode, Mode::On, "{value:?}");
        }
        for value in ["1", "true", "yes", "anything"] {
            let decided = decide(&env(&[("DO_NOT_TRACK", value)]), "X", None, Mode::On);
            assert_eq!(decided.mode, Mode::Off, "{value:?}");
        }
    }

    #[test]
    fn an_unreadable_setting_fails_closed() {
        let decided = decide(&env(&[("X_TELEMETRY", "enabled-ish")]), "X", None, Mode::On);
        assert_eq!(decided.mode, Mode::Off);
        assert!(decided.source.contains("enabled-ish"), "{}", decided.source);
    }

    #[test]
    fn the_default_decides_when_nothing_is_set() {
        let decided = decide(&env(&[]), "X", None, Mode::Local);
        assert_eq!(
            decided,
            Decision {
                mode: Mode::Local,
                source: "default (local)".into()
            }
        );
    }
}
