//! Whether telemetry runs, decided once at start before anything is written or started.
//!
//! Every setting the user or the application may have made is read, in this order:
//!
//! 1. the mode the application set in code ([`Builder::mode`](crate::Builder::mode));
//! 2. `DO_NOT_TRACK`, set to anything but empty, `0` or `false`;
//! 3. `PREFIX_TELEMETRY` (`off`, `local`, `on`, also `0`/`1`, `false`/`true`, `no`/`yes`);
//! 4. the variables the application registered, each with its [`Polarity`];
//! 5. the opt-out files the application named;
//! 6. the choice saved by `telemetry enable|disable|local`;
//! 7. the values the application read from its own configuration;
//! 8. CI, detected from the usual variables: off unless the application chose
//!    [`CiPolicy::Include`];
//! 9. the application's default.
//!
//! Among 1 to 7, **any opt-out wins over any opt-in**, and `local` wins over `on`; the first
//! setting in the order above names the source. CI and the default only decide when none of
//! 1 to 7 says anything. A value that cannot be read counts as `off`: privacy fails closed.
//!
//! The saved choice is the file `consent` in the state directory. When it holds anything but
//! `off`, `local` or `on` (corrupt, cut short, empty, larger than a few kilobytes), cannot be
//! read (no permission), is not a regular file (a symlink, which is not followed, a FIFO, which
//! is not opened, a directory), or may be changed by other users (its mode lets group or others
//! write), it counts as `off`, and `status` says why: a user who saved a choice most likely
//! saved an opt-out, and an opt-in that someone else could have written is no opt-in. It is
//! not replaced, since that would guess at what the user chose: `telemetry enable`, `disable`
//! or `local` saves a new one over it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseModeError(String);

impl fmt::Display for ParseModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a telemetry mode (off, local, on)", self.0)
    }
}

impl std::error::Error for ParseModeError {}

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(text: &str) -> Result<Mode, ParseModeError> {
        Mode::parse(text).ok_or_else(|| ParseModeError(text.to_owned()))
    }
}

/// How an application's own opt-out setting reads (a variable it registers with
/// [`Builder::opt_out_var`](crate::Builder::opt_out_var), or a value from its configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Polarity {
    /// A "disable" flag: `true`, `1`, `yes` or `on` turns telemetry off; `false`, `0`, `no`
    /// or `off` is an opt-in (`JOBS_DISABLEANALYTICS=true`).
    Disables,
    /// An "enable" flag: `false`, `0`, `no` or `off` turns telemetry off, `local` makes it
    /// local, `true`, `1`, `yes` or `on` is an opt-in (`BENCH_TELEMETRY_ENABLED=false`,
    /// `API_ENABLE_TELEMETRY=0`).
    Enables,
    /// Any value but empty or `0` turns telemetry off; empty or `0` says nothing
    /// (`DISABLE_TELEMETRY=1`). Only exactly empty and exactly `0` say nothing: a value padded
    /// with whitespace, such as `" 0"` or `" "`, is a value, so it turns telemetry off.
    AnyValueDisables,
}

impl Polarity {
    /// The signal `text` gives as `source`, if any: its mode, or off with the reason when it
    /// cannot be read.
    fn decide(self, text: &str, source: Source) -> Option<Decision> {
        if self == Polarity::AnyValueDisables && text.trim() != text {
            // Shown trimmed, the value would read as one that says nothing.
            return Some(
                Decision::new(Mode::Off, source)
                    .with_value(text)
                    .with_problem(format!("{text:?} is neither empty nor 0, so off")),
            );
        }
        match self.read(text) {
            Ok(None) => None,
            Ok(Some(mode)) => Some(Decision::new(mode, source).with_value(text)),
            Err(problem) => Some(
                Decision::new(Mode::Off, source)
                    .with_value(text)
                    .with_problem(problem),
            ),
        }
    }

    /// What `text` says under this polarity: `Ok(None)` when it says nothing, `Err` when it
    /// cannot be read (which counts as off).
    fn read(self, text: &str) -> Result<Option<Mode>, &'static str> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        match self {
            Polarity::AnyValueDisables => Ok((text != "0").then_some(Mode::Off)),
            Polarity::Enables => Mode::parse(text)
                .map(Some)
                .ok_or("not true/false, on/off, yes/no, 1/0 or local, so off"),
            Polarity::Disables => match Mode::parse(text) {
                Some(Mode::On) => Ok(Some(Mode::Off)),
                Some(Mode::Off) => Ok(Some(Mode::On)),
                _ => Err("not true/false, on/off, yes/no or 1/0, so off"),
            },
        }
    }
}

/// What happens when the process runs under CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CiPolicy {
    /// Telemetry is off unless the user or the application turned it on explicitly (CI
    /// machines are not users). The default.
    #[default]
    Off,
    /// Telemetry runs as it would elsewhere; every event says `ci: true` and the provider.
    Include,
}

/// The setting that decided the mode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The mode the application set in code, e.g. from a `--no-telemetry` flag.
    Application,
    /// The `DO_NOT_TRACK` variable.
    DoNotTrack,
    /// An environment variable: `PREFIX_TELEMETRY` or one the application registered.
    Variable(String),
    /// An opt-out file that exists.
    OptOutFile(PathBuf),
    /// The choice saved by `telemetry enable|disable|local`, in this file.
    SavedChoice(PathBuf),
    /// A value the application read from its configuration, described by the application.
    AppConfig(String),
    /// CI, with the provider's name (`unknown` when only `CI` is set).
    Ci(&'static str),
    /// The application's default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Application => f.write_str("set by the application"),
            Source::DoNotTrack => f.write_str("DO_NOT_TRACK"),
            Source::Variable(name) => f.write_str(name),
            Source::OptOutFile(path) => write!(f, "opt-out file {}", path.display()),
            Source::SavedChoice(path) => write!(f, "saved choice in {}", path.display()),
            Source::AppConfig(what) => f.write_str(what),
            Source::Ci(provider) => write!(f, "running in CI ({provider})"),
            Source::Default => f.write_str("the default"),
        }
    }
}

/// The mode, the setting that decided it and the value it held.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// What telemetry does.
    pub mode: Mode,
    /// Which setting decided.
    pub source: Source,
    /// The value the setting held, as written (cut to 80 characters), when it has one.
    pub value: Option<String>,
    /// Why the value could not be read, when it could not; it then counted as `off`.
    pub problem: Option<String>,
}

impl Decision {
    /// Off, as an application decides for a handle made with [`Telemetry::off`](crate::Telemetry::off).
    pub(crate) fn off_by_application() -> Decision {
        Decision::new(Mode::Off, Source::Application)
    }

    fn new(mode: Mode, source: Source) -> Decision {
        Decision {
            mode,
            source,
            value: None,
            problem: None,
        }
    }

    fn with_value(mut self, value: &str) -> Decision {
        let value = value.trim();
        self.value = Some(match value.char_indices().nth(80) {
            Some((end, _)) => format!("{}…", &value[..end]),
            None => value.to_owned(),
        });
        self
    }

    /// Off after all: a first run that cannot record its notice would hold its events forever.
    pub(crate) fn notice_unrecorded(mut self, problem: &str) -> Decision {
        self.mode = Mode::Off;
        self.with_problem(format!(
            "the first-run notice cannot be recorded ({problem}), so nothing is sent"
        ))
    }

    fn with_problem(mut self, problem: impl Into<String>) -> Decision {
        self.problem = Some(problem.into());
        self
    }
}

impl fmt::Display for Decision {
    /// `off (DO_NOT_TRACK=1)`, `on (the default)`, `off (JOBS_TELEMETRY=maybe: ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.mode, self.source)?;
        match (&self.value, &self.source) {
            (Some(value), Source::Variable(_) | Source::DoNotTrack) => write!(f, "={value}")?,
            (Some(value), _) => write!(f, ": {value}")?,
            (None, _) => {}
        }
        if let Some(problem) = &self.problem {
            write!(f, "; {problem}")?;
        }
        f.write_str(")")
    }
}

/// The settings an application registered, and its default.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    pub explicit: Option<Mode>,
    pub variables: Vec<(String, Polarity)>,
    pub opt_out_files: Vec<PathBuf>,
    pub app_config: Vec<(String, String, Polarity)>,
    pub ci: CiPolicy,
    pub default: Option<Mode>,
}

/// The file in the state directory that holds the choice saved by `telemetry enable`,
/// `disable` or `local`.
pub(crate) const CHOICE_FILE: &str = "consent";

/// The saved choice in `dir`: `Ok(None)` when there is none.
pub(crate) fn read_choice(dir: &Path) -> io::Result<Option<Mode>> {
    let path = dir.join(CHOICE_FILE);
    let text = match crate::state::read_small_checked(&path, 0o022) {
        Ok(text) => text,
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    std::str::from_utf8(&text)
        .ok()
        .and_then(Mode::parse)
        .map(Some)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "it is not off, local or on"))
}

/// Decides the mode from `env`, the application's `rules`, the saved choice in `state_dir`
/// and the CI provider, if any (see the [module documentation](self) for the order).
pub(crate) fn decide(
    env: &Env,
    prefix: &str,
    rules: &Rules,
    state_dir: Option<&Path>,
    ci: Option<&'static str>,
) -> Decision {
    let mut signals: Vec<Decision> = Vec::new();
    if let Some(mode) = rules.explicit {
        signals.push(Decision::new(mode, Source::Application));
    }
    match env.var("DO_NOT_TRACK") {
        Var::Text(text)
            if !matches!(
                text.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "false"
            ) =>
        {
            signals.push(Decision::new(Mode::Off, Source::DoNotTrack).with_value(&text));
        }
        Var::NotUnicode => signals
            .push(Decision::new(Mode::Off, Source::DoNotTrack).with_problem("not valid Unicode")),
        _ => {}
    }
    let own = (format!("{prefix}_TELEMETRY"), Polarity::Enables);
    for (name, polarity) in std::iter::once(&own).chain(&rules.variables) {
        let source = || Source::Variable(name.clone());
        match env.var(name) {
            Var::Unset => {}
            Var::Text(text) => signals.extend(polarity.decide(&text, source())),
            Var::NotUnicode => signals
                .push(Decision::new(Mode::Off, source()).with_problem("not valid Unicode, so off")),
        }
    }
    for path in &rules.opt_out_files {
        match path.symlink_metadata() {
            Ok(_) => signals.push(Decision::new(Mode::Off, Source::OptOutFile(path.clone()))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) if error.kind() == io::ErrorKind::NotADirectory => {}
            Err(error) => signals.push(
                Decision::new(Mode::Off, Source::OptOutFile(path.clone()))
                    .with_problem(format!("cannot tell whether it exists ({error}), so off")),
            ),
        }
    }
    if let Some(dir) = state_dir {
        let source = || Source::SavedChoice(dir.join(CHOICE_FILE));
        match read_choice(dir) {
            Ok(None) => {}
            Ok(Some(mode)) => signals.push(Decision::new(mode, source())),
            Err(error) => signals.push(
                Decision::new(Mode::Off, source())
                    .with_problem(format!("cannot be read ({error}), so off")),
            ),
        }
    }
    for (what, text, polarity) in &rules.app_config {
        signals.extend(polarity.decide(text, Source::AppConfig(what.clone())));
    }
    for wanted in [Mode::Off, Mode::Local, Mode::On] {
        if let Some(index) = signals.iter().position(|signal| signal.mode == wanted) {
            return signals.swap_remove(index);
        }
    }
    if let (Some(provider), CiPolicy::Off) = (ci, rules.ci) {
        return Decision::new(Mode::Off, Source::Ci(provider));
    }
    Decision::new(rules.default.unwrap_or(Mode::On), Source::Default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs)
    }

    fn rules() -> Rules {
        Rules::default()
    }

    fn decide_env(pairs: &[(&str, &str)], rules: &Rules) -> Decision {
        decide(&env(pairs), "JOBS", rules, None, None)
    }

    #[test]
    fn nothing_set_means_the_default() {
        let decided = decide_env(&[], &rules());
        assert_eq!((decided.mode, decided.source), (Mode::On, Source::Default));
        let local = Rules {
            default: Some(Mode::Local),
            ..rules()
        };
        assert_eq!(decide_env(&[], &local).mode, Mode::Local);
    }

    #[test]
    fn the_application_decides_in_code() {
        for mode in [Mode::Off, Mode::Local, Mode::On] {
            let decided = decide_env(
                &[],
                &Rules {
                    explicit: Some(mode),
                    default: Some(Mode::Off),
                    ..rules()
                },
            );
            assert_eq!((decided.mode, decided.source), (mode, Source::Application));
        }
    }

    #[test]
    fn do_not_track_counts_unless_empty_zero_or_false() {
        for value in ["", "0", "false", " FALSE "] {
            assert_eq!(
                decide_env(&[("DO_NOT_TRACK", value)], &rules()).mode,
                Mode::On,
                "{value:?}"
            );
        }
        for value in ["1", "true", "yes", "anything"] {
            let decided = decide_env(&[("DO_NOT_TRACK", value)], &rules());
            assert_eq!(decided.mode, Mode::Off, "{value:?}");
            assert_eq!(decided.source, Source::DoNotTrack);
            assert_eq!(decided.to_string(), format!("off (DO_NOT_TRACK={value})"));
        }
    }

    #[test]
    fn the_prefix_variable_takes_every_documented_form() {
        for (value, mode) in [
            ("off", Mode::Off),
            ("OFF", Mode::Off),
            (" 0 ", Mode::Off),
            ("false", Mode::Off),
            ("No", Mode::Off),
            ("local", Mode::Local),
            ("LOCAL\n", Mode::Local),
            ("on", Mode::On),
            ("1", Mode::On),
            ("True", Mode::On),
            ("yes", Mode::On),
        ] {
            let decided = decide_env(
                &[("JOBS_TELEMETRY", value)],
                &Rules {
                    default: Some(if mode == Mode::On {
                        Mode::Off
                    } else {
                        Mode::On
                    }),
                    ..rules()
                },
            );
            // The default differs from the value, so only the variable can have decided.
            assert_eq!(decided.mode, mode, "{value:?}");
            assert_eq!(decided.source, Source::Variable("JOBS_TELEMETRY".into()));
            assert_eq!(decided.value.as_deref(), Some(value.trim()));
        }
    }

    #[test]
    fn an_unreadable_value_fails_closed_and_says_why() {
        let decided = decide_env(&[("JOBS_TELEMETRY", "enabled-ish")], &rules());
        assert_eq!(decided.mode, Mode::Off);
        assert_eq!(decided.value.as_deref(), Some("enabled-ish"));
        assert!(decided.problem.is_some());
        let shown = decided.to_string();
        assert!(
            shown.starts_with("off (JOBS_TELEMETRY=enabled-ish; not "),
            "{shown}"
        );
    }

    #[test]
    fn a_padded_any_value_opt_out_says_why_it_is_off() {
        let registered = Rules {
            variables: vec![("DISABLE_TELEMETRY".into(), Polarity::AnyValueDisables)],
            ..rules()
        };
        let decided = decide_env(&[("DISABLE_TELEMETRY", " 0")], &registered);
        assert_eq!(decided.mode, Mode::Off);
        assert_eq!(
            decided.to_string(),
            r#"off (DISABLE_TELEMETRY=0; " 0" is neither empty nor 0, so off)"#
        );
    }

    #[test]
    fn registered_variables_read_with_their_polarity() {
        let registered = Rules {
            variables: vec![
                ("JOBS_DISABLEANALYTICS".into(), Polarity::Disables),
                ("BENCH_TELEMETRY_ENABLED".into(), Polarity::Enables),
                ("DISABLE_TELEMETRY".into(), Polarity::AnyValueDisables),
            ],
            default: Some(Mode::Local),
            ..rules()
        };
        let cases: &[(&str, &str, Mode)] = &[
            ("JOBS_DISABLEANALYTICS", "true", Mode::Off),
            ("JOBS_DISABLEANALYTICS", "1", Mode::Off),
            ("JOBS_DISABLEANALYTICS", "YES", Mode::Off),
            ("JOBS_DISABLEANALYTICS", "false", Mode::On),
            ("JOBS_DISABLEANALYTICS", "0", Mode::On),
            ("JOBS_DISABLEANALYTICS", "sure", Mode::Off),
            ("JOBS_DISABLEANALYTICS", "", Mode::Local),
            ("BENCH_TELEMETRY_ENABLED", "false", Mode::Off),
            ("BENCH_TELEMETRY_ENABLED", "0", Mode::Off),
            ("BENCH_TELEMETRY_ENABLED", "true", Mode::On),
            ("BENCH_TELEMETRY_ENABLED", "local", Mode::Local),
            ("BENCH_TELEMETRY_ENABLED", "perhaps", Mode::Off),
            ("DISABLE_TELEMETRY", "1", Mode::Off),
            ("DISABLE_TELEMETRY", "yes", Mode::Off),
            ("DISABLE_TELEMETRY", "false", Mode::Off),
            ("DISABLE_TELEMETRY", "0", Mode::Local),
            ("DISABLE_TELEMETRY", "", Mode::Local),
            ("DISABLE_TELEMETRY", " ", Mode::Off),
            ("DISABLE_TELEMETRY", " 0", Mode::Off),
            ("DISABLE_TELEMETRY", "0 ", Mode::Off),
            ("DISABLE_TELEMETRY", "\t1\n", Mode::Off),
            ("JOBS_DISABLEANALYTICS", " true ", Mode::Off),
            ("JOBS_DISABLEANALYTICS", " ", Mode::Local),
            ("BENCH_TELEMETRY_ENABLED", " false\n", Mode::Off),
            ("BENCH_TELEMETRY_ENABLED", " 0 ", Mode::Off),
        ];
        for &(name, value, mode) in cases {
            let decided = decide_env(&[(name, value)], &registered);
            assert_eq!(decided.mode, mode, "{name}={value:?}");
            if mode != Mode::Local {
                assert_eq!(decided.source, Source::Variable(name.into()));
            }
        }
    }

    #[test]
    fn any_opt_out_wins_over_any_opt_in() {
        let registered = Rules {
            explicit: Some(Mode::On),
            variables: vec![("BENCH_TELEMETRY_ENABLED".into(), Polarity::Enables)],
            app_config: vec![(
                "telemetry in bench.toml".into(),
                "true".into(),
                Polarity::Enables,
            )],
            ..rules()
        };
        let decided = decide_env(
            &[
                ("BENCH_TELEMETRY_ENABLED", "true"),
                ("JOBS_TELEMETRY", "on"),
                ("DO_NOT_TRACK", "1"),
            ],
            &registered,
        );
        assert_eq!(
            (decided.mode, decided.source),
            (Mode::Off, Source::DoNotTrack)
        );
        // The last source in the order still wins when it is the only opt-out.
        let decided = decide(
            &env(&[("JOBS_TELEMETRY", "on")]),
            "JOBS",
            &Rules {
                app_config: vec![(
                    "disableanalytics in config.yaml".into(),
                    "true".into(),
                    Polarity::Disables,
                )],
                ..registered.clone()
            },
            None,
            None,
        );
        assert_eq!(decided.mode, Mode::Off);
        assert_eq!(
            decided.to_string(),
            "off (disableanalytics in config.yaml: true)"
        );
        // And `local` wins over `on`.
        let decided = decide_env(&[("JOBS_TELEMETRY", "local")], &registered);
        assert_eq!(decided.mode, Mode::Local);
    }

    #[test]
    fn an_opt_out_file_turns_telemetry_off_while_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join(".opt-out-from-anonymous-statistics");
        let registered = Rules {
            explicit: Some(Mode::On),
            opt_out_files: vec![marker.clone()],
            ..rules()
        };
        assert_eq!(decide_env(&[], &registered).mode, Mode::On);
        std::fs::write(&marker, "").unwrap();
        let decided = decide_env(&[], &registered);
        assert_eq!(decided.mode, Mode::Off);
        assert_eq!(decided.source, Source::OptOutFile(marker));
    }

    #[test]
    fn the_saved_choice_counts_and_a_corrupt_one_is_off() {
        let dir = tempfile::tempdir().unwrap();
        let decide_saved = || decide(&env(&[]), "JOBS", &rules(), Some(dir.path()), None);
        assert_eq!(decide_saved().source, Source::Default);
        for (text, mode) in [
            ("off\n", Mode::Off),
            ("local", Mode::Local),
            ("on", Mode::On),
        ] {
            std::fs::write(dir.path().join(CHOICE_FILE), text).unwrap();
            let decided = decide_saved();
            assert_eq!(decided.mode, mode);
            assert_eq!(
                decided.source,
                Source::SavedChoice(dir.path().join(CHOICE_FILE))
            );
        }
        std::fs::write(dir.path().join(CHOICE_FILE), [0xff, 0xfe]).unwrap();
        let decided = decide_saved();
        assert_eq!(decided.mode, Mode::Off);
        assert!(decided.problem.unwrap().contains("cannot be read"));
        // A state directory that does not exist, or is a file, holds no choice.
        let file = dir.path().join(CHOICE_FILE);
        let decided = decide(&env(&[]), "JOBS", &rules(), Some(&file), None);
        assert_eq!(decided.source, Source::Default);
    }

    #[test]
    fn ci_is_off_unless_someone_asked_for_telemetry() {
        let decided = decide(&env(&[]), "JOBS", &rules(), None, Some("github-actions"));
        assert_eq!(
            (decided.mode, decided.source),
            (Mode::Off, Source::Ci("github-actions"))
        );
        let sending = Rules {
            ci: CiPolicy::Include,
            ..rules()
        };
        let decided = decide(&env(&[]), "JOBS", &sending, None, Some("gitlab"));
        assert_eq!((decided.mode, decided.source), (Mode::On, Source::Default));
        // An explicit opt-in is a person asking: it counts in CI too.
        let decided = decide(
            &env(&[("JOBS_TELEMETRY", "on")]),
            "JOBS",
            &rules(),
            None,
            Some("gitlab"),
        );
        assert_eq!(decided.mode, Mode::On);
    }

    #[cfg(unix)]
    #[test]
    fn a_saved_choice_that_is_not_a_file_is_off_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join(CHOICE_FILE))
            .status();
        if !made.is_ok_and(|status| status.success()) {
            return; // No mkfifo here.
        }
        // Reading a FIFO would wait for a writer forever; it is refused instead.
        let decided = decide(&env(&[]), "JOBS", &rules(), Some(dir.path()), None);
        assert_eq!(decided.mode, Mode::Off);
        assert!(decided.problem.unwrap().contains("not a regular file"));
    }

    #[cfg(unix)]
    #[test]
    fn a_saved_choice_others_may_change_is_off() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHOICE_FILE);
        std::fs::write(&path, "on\n").unwrap();
        let decide_saved = || decide(&env(&[]), "JOBS", &rules(), Some(dir.path()), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            decide_saved().mode,
            Mode::On,
            "others reading it is harmless"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let decided = decide_saved();
        assert_eq!(decided.mode, Mode::Off);
        let shown = decided.to_string();
        assert!(shown.contains("other users may change it"), "{shown}");
    }
}
