//! `agent install`: writes the default configuration, and with `--disable-telemetry` the
//! opt-out marker, as Netdata's installer does.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use telemetry_runtime::instrument_command;

use crate::config::{CONFIG_FILE, DEFAULT_CONFIG, OPT_OUT_MARKER};

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The configuration file.
    pub config: PathBuf,
    /// Whether the configuration file was written (else one was there already and is kept).
    pub wrote_config: bool,
    /// The opt-out marker.
    pub marker: PathBuf,
    /// Whether the marker exists now.
    pub opted_out: bool,
}

/// Why `install` failed.
#[derive(Debug)]
pub struct InstallError {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for InstallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Creates the configuration directory `dir` and its default `agent.conf` (an existing one is
/// kept), and with `disable_telemetry` the opt-out marker. It never removes a marker.
#[instrument_command(name = "install", message, args(disable_telemetry))]
pub fn install(dir: &Path, disable_telemetry: bool) -> Result<Installed, InstallError> {
    let failed = |action, path: &Path| {
        let path = path.to_owned();
        move |source| InstallError {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(failed("create", dir))?;
    let config = dir.join(CONFIG_FILE);
    let wrote_config = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&config)
    {
        Ok(mut file) => {
            io::Write::write_all(&mut file, DEFAULT_CONFIG.as_bytes())
                .map_err(failed("write", &config))?;
            true
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => false,
        Err(error) => return Err(failed("create", &config)(error)),
    };
    let marker = dir.join(OPT_OUT_MARKER);
    if disable_telemetry {
        std::fs::write(&marker, b"").map_err(failed("create", &marker))?;
    }
    let opted_out = marker.exists();
    Ok(Installed {
        config,
        wrote_config,
        marker,
        opted_out,
    })
}

#[cfg(test)]
mod tests {
    use telemetry_runtime::testing;

    use super::*;

    #[test]
    fn install_writes_the_configuration_and_reports_only_the_flag() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("alice-private").join("agent");
        let mut installed = None;
        let events = testing::record(|| installed = Some(install(&dir, false).unwrap()));
        let installed = installed.unwrap();
        assert!(installed.wrote_config && !installed.opted_out);
        assert_eq!(
            std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap(),
            DEFAULT_CONFIG
        );
        assert!(!dir.join(OPT_OUT_MARKER).exists());

        let command = events.only("command");
        assert_eq!(command["command"], "install");
        assert_eq!(command["outcome"], "ok");
        assert_eq!(command["disable_telemetry"], false);
        assert!(!events.contains_text("alice-private"));
    }

    #[test]
    fn disable_telemetry_writes_the_marker_and_keeps_an_edited_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "update_every = 9\n").unwrap();
        let events = testing::record(|| {
            let installed = install(dir.path(), true).unwrap();
            assert!(!installed.wrote_config && installed.opted_out);
        });
        assert!(dir.path().join(OPT_OUT_MARKER).exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap(),
            "update_every = 9\n"
        );
        assert_eq!(events.only("command")["disable_telemetry"], true);

        // Installing again without the flag keeps the user's choice.
        assert!(install(dir.path(), false).unwrap().opted_out);
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_an_error_sent_without_its_path() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("alice-private");
        std::fs::write(&file, b"").unwrap();
        let mut result = None;
        let events = testing::record(|| result = Some(install(&file.join("agent"), true)));
        let error = result.unwrap().unwrap_err();
        assert!(error.to_string().starts_with("cannot create "), "{error}");
        let command = events.only("command");
        assert_eq!(command["outcome"], "error");
        assert!(!events.contains_text("alice-private"));
    }
}
