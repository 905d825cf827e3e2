//! What `status` reports, and the first-run notice.

use std::fmt;
use std::path::PathBuf;

use crate::consent::{Decision, Mode};
use crate::spool::Spool;
use crate::state::Identity;

/// What telemetry does and why, who it sends as, where it keeps its state and what is
/// waiting to be sent. Its `Display` is what `telemetry status` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// What telemetry does. `on` without an endpoint is reported as `local`.
    pub mode: Mode,
    /// The setting that decided, and its value.
    pub decision: Decision,
    /// The installation id events are sent under, if one exists.
    pub installation_id: Option<String>,
    /// Whether the installation id is saved, temporary, or not created.
    pub identity: IdentityState,
    /// The state directory (identity, key, spool, local log, saved choice).
    pub state_dir: Option<PathBuf>,
    /// Why events could not be kept in the state directory (the spool, or the local log) the
    /// last time they were written, with the path and the OS's error; `None` when that worked
    /// or was not tried.
    pub state_problem: Option<String>,
    /// Where events are uploaded; `None` when nothing is uploaded.
    pub endpoint: Option<String>,
    /// Events waiting to be sent: in memory and in the spool.
    pub pending: u64,
    /// The CI provider, when running under CI.
    pub ci: Option<&'static str>,
    /// Whether this is a first run whose events are held until the next run.
    pub holding: bool,
}

/// Whether the installation id is kept across runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityState {
    /// Saved in the state directory.
    Saved,
    /// Made for this process only, because the state directory could not be used.
    Temporary {
        /// Why the state directory could not be used.
        reason: String,
    },
    /// None yet: telemetry has not run with this state directory (or was reset).
    NotCreated,
}

impl Status {
    /// The status of telemetry that is off: nothing is created, only read.
    pub(crate) fn off(
        decision: Decision,
        state_dir: Option<PathBuf>,
        ci: Option<&'static str>,
    ) -> Status {
        let installation_id = state_dir
            .as_deref()
            .and_then(Identity::read_installation_id);
        let pending = state_dir
            .as_deref()
            .map_or(0, |dir| Spool::in_state_dir(dir).count_events(true));
        Status {
            mode: Mode::Off,
            decision,
            identity: if installation_id.is_some() {
                IdentityState::Saved
            } else {
                IdentityState::NotCreated
            },
            installation_id,
            state_dir,
            state_problem: None,
            endpoint: None,
            pending,
            ci,
            holding: false,
        }
    }
}

impl fmt::Display for Status {
    /// One line per fact, `name: value`, aligned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "telemetry:        {}", self.summary())?;
        match (&self.installation_id, &self.identity) {
            (Some(id), IdentityState::Temporary { reason }) => {
                writeln!(f, "installation id:  {id} (temporary: {reason})")?;
            }
            (Some(id), _) => writeln!(f, "installation id:  {id}")?,
            (None, _) => writeln!(f, "installation id:  none yet")?,
        }
        match &self.state_dir {
            Some(dir) => writeln!(f, "state directory:  {}", dir.display())?,
            None => writeln!(f, "state directory:  none")?,
        }
        if let Some(problem) = &self.state_problem {
            writeln!(f, "state problem:    {problem}")?;
        }
        match (&self.endpoint, self.mode) {
            (Some(url), _) => writeln!(f, "endpoint:         {url}")?,
            (None, Mode::Off) => writeln!(f, "endpoint:         none: telemetry is off")?,
            (None, _) => writeln!(f, "endpoint:         none: local only")?,
        }
        if let Some(provider) = self.ci {
            writeln!(f, "ci:               {provider}")?;
        }
        if self.holding {
            writeln!(
                f,
                "first run:        events are kept here and sent by the next run, unless \
                 telemetry is turned off before"
            )?;
        }
        write!(f, "pending events:   {}", self.pending)
    }
}

impl Status {
    /// The mode and why, in a few words: `off (DO_NOT_TRACK=1)`, `on (the default)`, or
    /// `local (decided on (the default); no endpoint to upload to)`.
    pub fn summary(&self) -> String {
        if self.mode == self.decision.mode {
            self.decision.to_string()
        } else {
            format!(
                "{} (decided {}; no endpoint to upload to)",
                self.mode, self.decision
            )
        }
    }
}

/// The built-in first-run notice.
pub(crate) fn default_notice(app: &str, command: &str, prefix: &str, hold: bool) -> String {
    let mut text = format!(
        "{app} collects anonymous usage statistics to learn how it is used: which commands and \
         features run, how long they take, whether they fail, and the kind of system (OS, \
         architecture, CPU count). It never collects names, paths, file contents, host names \
         or IP addresses.\n\
         \x20 See everything it can send:  {command} schema\n\
         \x20 See what it does now:        {command} status\n\
         \x20 Turn it off:                 {command} disable, or set DO_NOT_TRACK=1 or \
         {prefix}_TELEMETRY=off\n"
    );
    if hold {
        text.push_str(
            "Nothing from this first run is sent now: it is kept on this machine and sent by the \
             next run, unless telemetry is turned off before then.\n",
        );
    }
    text
}
