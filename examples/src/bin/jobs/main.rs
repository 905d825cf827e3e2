//! `jobs`: a single-node job scheduler that reads job specs in the shape of Bacalhau's, checks
//! them, runs them in a deterministic simulation, and reports what Bacalhau's published
//! telemetry reports, field by field, with stronger privacy: names, namespaces, images that
//! are not the project's own, and everything a spec holds are never sent in clear.
//!
//! # Commands
//!
//! - `jobs run SPEC [--format yaml|json]`: submit the job in `SPEC` (YAML or JSON, from the
//!   extension or else the content), validate it (warnings for what is suspicious, an error
//!   for what cannot run), run it, print a summary. Exits 1 when the job fails or the spec is
//!   unreadable or invalid. See `sim.rs` for how a task ends; `examples/specs/` has a rich
//!   YAML spec that completes and a JSON spec that fails.
//! - `jobs config set KEY VALUE`, `jobs config list`: the node's configuration,
//!   `$JOBS_CONFIG`, else `$XDG_CONFIG_HOME/jobs/config.yaml`, else `jobs/config.yaml` in the
//!   platform's configuration directory. Keys: `disableanalytics` (true/false), `nodetype`
//!   (hybrid, orchestrator, compute), `nodename` (default: a generated `n-<uuid>`),
//!   `networkid` (generated once, not settable). Keys are read in any case, written in lower
//!   case; other keys in the file are kept. An unknown key or a bad value exits 2 and leaves
//!   the file alone. `config set` already runs with the value it sets.
//! - `jobs telemetry status|enable|disable|local|schema [--json]|reset`: what telemetry does
//!   and everything it can send (`examples/jobs.TELEMETRY.md`).
//! - Global options: `--config KEY=VALUE` (repeatable) overrides a key for one run;
//!   `--node-type TYPE` sets the node's role for one run.
//!
//! # What is sent, against Bacalhau's published telemetry
//!
//! With every event (node attributes):
//! - node type → `node_type` (this program's property, from `--node-type` or `nodetype`);
//! - node id → `node_id`, the node's name as a keyed hash (Bacalhau: a SHA-256 of the name);
//! - network id → `network_id`, random, generated once and kept in the configuration;
//! - installation id → `installation_id`, instance id → `instance_id` (the library's);
//! - version → `$app_version` (the library's);
//! - environment, docker or local → `node_environment` (this program's, `/.dockerenv`
//!   exists); the library's `container` and `environment` say the same more generally;
//! - OS type → `os_name`, `kernel_name`; architecture → `arch` (the library's).
//!
//! Job submitted → `job_submitted`: job id → `job_id` (random); namespace → `namespace`
//! (keyed hash); name set → `name_set`; type → `job_type`; count → `count`; labels and meta
//! counts → `labels_count`, `meta_count`; version, revision → `version`, `revision`; task name
//! → `task_name` (keyed hash); engine and publisher types → `engine_type`, `publisher_type`;
//! env var count (job `Env` + task `Env` + `EnvironmentVariables`) → `env_var_count`; task
//! meta count → `task_meta_count`; input source types → `input_source_types`; result path
//! count → `result_path_count`; docker image → `docker_image`, in clear for
//! `ghcr.io/bacalhau-project/`, `expanso/` and `bacalhauproject/`, else a keyed hash;
//! resources → `cpu`, `memory_bytes`, `disk_bytes`, `gpu`, `gpu_types`; network → `network_type`,
//! `domain_count`; timeouts → `execution_timeout_ms`, `queue_timeout_ms`,
//! `total_timeout_ms`; warnings → `warnings` (the program's own words, scrubbed); error →
//! `error` (scrubbed).
//!
//! Execution events → `execution_updated`, once per state change (created, running, ended):
//! ids → `execution_id`, `job_id`, `evaluation_id`; node name → `node_name` (keyed hash, equal
//! to `node_id`); namespace → `namespace` (keyed hash); name set → `name_set`; previous and
//! next execution → `previous_execution`, `next_execution`; follow-up evaluation →
//! `follow_up_evaluation`; revision → `revision`; times → `create_time`, `modify_time`,
//! `queued_ms`, `run_ms`; resources with GPU name and vendor → `resources` (`cpu`,
//! `memory_bytes`, `disk_bytes`, `gpu`, `gpus: [{name, vendor}]`); desired and compute states → `desired_state`,
//! `compute_state`; compute message → `compute_message` (scrubbed); error code →
//! `error_code`; published result type → `published_result_type`; exit code → `exit_code`;
//! stdout and stderr truncated → `stdout_truncated`, `stderr_truncated`.
//!
//! Terminal job event → `job_finished`: `job_id`, `namespace` (keyed hash), `state`
//! (completed, failed, stopped), `executions`, `create_time`, `modify_time`, `duration_ms`.
//!
//! Commands → the library's `command` event for `run` (with the spec's `format` when given or
//! named by the extension, never the path), `config set` (with the `key`, never the value) and
//! `config list`; and the library's `app_started`, `app_stopped`, `app_fatal`.
//!
//! # Opting out
//!
//! Bacalhau's three ways, each of which wins over any opt-in (`JOBS_TELEMETRY=on` included):
//! - `JOBS_DISABLEANALYTICS=true` in the environment;
//! - `jobs config set DisableAnalytics true`, saved as `disableanalytics: true` (the command
//!   that sets it already sends nothing);
//! - `jobs --config DisableAnalytics=true <command>`, for one run.
//!
//! And the library's: `DO_NOT_TRACK=1`, `JOBS_TELEMETRY=off`, `jobs telemetry disable`, CI.
//! While telemetry is off, `run` and `config list` write no file: the node's generated name
//! and network id are kept only for telemetry, or when the user runs `config set`.
//! A configuration file that cannot be read turns telemetry off: `jobs run` still runs (with
//! the default node settings, saving nothing), the `config` commands fail with the reason.
//!
//! # Running it
//!
//! ```text
//! cargo run -p examples --bin jobs -- run examples/specs/payroll.yaml
//! cargo run -p examples --bin jobs -- run examples/specs/broken.json
//! cargo run -p examples --bin jobs -- config list
//! cargo run -p examples --bin jobs -- telemetry schema
//! ```
//!
//! A development build has no endpoint compiled in, so events go to the local log
//! (`$XDG_CONFIG_HOME/jobs/telemetry/events.jsonl`); `JOBS_TELEMETRY_DEBUG=1` prints them.

mod config;
mod events;
mod sim;
mod spec;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;
use telemetry_runtime::{Builder, Mode, Polarity, Telemetry, TelemetryCommand, instrument_command};

use self::config::{Config, ConfigError, ConfigKey};
use self::events::{JobState, Node, NodeEnvironment, NodeType};
use self::sim::RunError;
use self::spec::SpecFormat;

/// A single-node job scheduler.
#[derive(Parser)]
#[command(name = "jobs", version)]
struct Cli {
    /// Overrides a configuration key for this run, such as `DisableAnalytics=true`.
    #[arg(long = "config", global = true, value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// The node's role for this run (default: `nodetype` in the configuration, else hybrid).
    #[arg(long, global = true, value_enum)]
    node_type: Option<NodeType>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Submit a job spec (YAML or JSON) and run it on this node.
    Run {
        /// The job spec.
        spec: PathBuf,
        /// The spec's format (default: from the extension, else from the content).
        #[arg(long, value_enum)]
        format: Option<SpecFormat>,
    },
    /// Show or change the node's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show or change what telemetry does, and list everything it can send.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Set a key: DisableAnalytics (true/false), NodeType (hybrid/orchestrator/compute) or
    /// NodeName.
    Set {
        /// The key, in any case.
        key: String,
        /// The value.
        value: String,
    },
    /// Print every key and its value.
    List,
}

/// The configuration as this run sees it: the file (or why it cannot be read) and the
/// overrides from `--config`.
struct Settings {
    path: Option<PathBuf>,
    file: Result<Config, ConfigError>,
    overrides: Vec<(ConfigKey, Value)>,
}

impl Settings {
    /// The file with the overrides applied; the defaults when the file cannot be read.
    fn effective(&self) -> Config {
        let mut config = match (&self.file, &self.path) {
            (Ok(config), _) => config.clone(),
            (Err(_), Some(path)) => Config::empty(path),
            (Err(_), None) => Config::empty(Path::new("config.yaml")),
        };
        for (key, value) in &self.overrides {
            config.set(key.name(), value.clone());
        }
        config
    }
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = Vec::new();
    for text in &cli.overrides {
        match config::parse_assignment(text) {
            Ok(assignment) => overrides.push(assignment),
            Err(error) => {
                eprintln!("jobs: {error}");
                return ExitCode::from(error.exit_code());
            }
        }
    }
    let path = config::default_path();
    let file = match &path {
        Some(path) => Config::load(path),
        None => Err(ConfigError::Unreadable {
            path: PathBuf::from("config.yaml"),
            detail: "there is no home or configuration directory".into(),
        }),
    };
    let mut settings = Settings {
        path,
        file,
        overrides,
    };

    // The node's name and network id are generated once and kept, by the commands that run
    // the node (not by `telemetry`, which only reports). They serve telemetry only, so `run`
    // and `config list` keep them only while telemetry is not off: an opted-out node writes
    // no file it was not asked to. `config set` saves them with the key it sets.
    let persist = !matches!(cli.command, Command::Telemetry(_));
    let store = matches!(
        cli.command,
        Command::Run { .. } | Command::Config(ConfigCommand::List)
    );
    let mut unsaved = false;
    if let Ok(file) = &mut settings.file
        && persist
    {
        let mut changed = false;
        if file
            .text(config::NODE_NAME)
            .is_none_or(|name| name.trim().is_empty())
        {
            file.set(
                config::NODE_NAME,
                Value::from(format!("n-{}", uuid::Uuid::new_v4())),
            );
            changed = true;
        }
        if file
            .text(config::NETWORK_ID)
            .is_none_or(|id| uuid::Uuid::parse_str(&id).is_err())
        {
            file.set(
                config::NETWORK_ID,
                Value::from(uuid::Uuid::new_v4().to_string()),
            );
            changed = true;
        }
        unsaved = changed && store;
    }

    // `config set DisableAnalytics true` is already an opt-out for the run that sets it.
    let mut decided = settings.effective();
    if let Command::Config(ConfigCommand::Set { key, value }) = &cli.command
        && let Ok(key) = ConfigKey::parse(key)
        && let Ok(value) = key.value(value)
    {
        decided.set(key.name(), value);
    }
    let builder = telemetry(&settings, &decided, cli.node_type);
    if unsaved
        && builder.status().mode != Mode::Off
        && let Ok(file) = &settings.file
        && let Err(error) = file.save()
    {
        eprintln!("jobs: {error}; the node's name is not kept");
    }

    let command = match cli.command {
        Command::Telemetry(command) => return command.run_and_report(&builder),
        command => command,
    };
    let _telemetry = builder.start();
    telemetry_runtime::install_panic_hook();

    match command {
        Command::Run { spec, format } => {
            let format = format.or_else(|| SpecFormat::from_extension(&spec));
            if let Err(error) = &settings.file {
                eprintln!("jobs: {error}; using the default node settings, telemetry is off");
            }
            let node_name = decided.text(config::NODE_NAME).unwrap_or_default();
            match run(&spec, format, &node_name) {
                Ok(()) => ExitCode::SUCCESS,
                Err(RunError::JobFailed) => ExitCode::FAILURE,
                Err(error) => {
                    eprintln!("jobs: {}", error.detail());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config(ConfigCommand::Set { key, value }) => {
            let parsed = ConfigKey::parse(&key).ok();
            match config_set(&mut settings.file, parsed, &key, &value) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("jobs: {error}");
                    ExitCode::from(error.exit_code())
                }
            }
        }
        Command::Config(ConfigCommand::List) => match config_list(&settings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("jobs: {error}");
                ExitCode::from(error.exit_code())
            }
        },
        Command::Telemetry(_) => unreachable!("handled before telemetry starts"),
    }
}

/// Telemetry as the configuration `decided` and the options say.
fn telemetry(settings: &Settings, decided: &Config, node_type: Option<NodeType>) -> Builder {
    let node_type = node_type
        .or_else(|| {
            decided
                .text(config::NODE_TYPE)
                .and_then(|text| NodeType::parse(&text))
        })
        .unwrap_or(NodeType::Hybrid);
    let node = Node {
        node_type,
        node_id: decided
            .text(config::NODE_NAME)
            .unwrap_or_else(|| format!("n-{}", uuid::Uuid::new_v4())),
        network_id: decided
            .text(config::NETWORK_ID)
            .filter(|id| uuid::Uuid::parse_str(id).is_ok()),
        node_environment: NodeEnvironment::detect(),
    };
    let mut builder = Telemetry::builder("jobs", env!("CARGO_PKG_VERSION"))
        .api_key("phc_jobs_example")
        .endpoint(option_env!("JOBS_TELEMETRY_ENDPOINT"))
        .opt_out_var("JOBS_DISABLEANALYTICS", Polarity::Disables)
        .command_name("jobs telemetry")
        .properties(node);
    let overridden = settings
        .overrides
        .iter()
        .rev()
        .find(|(key, _)| *key == ConfigKey::DisableAnalytics);
    let where_ = settings.path.as_deref().map_or_else(
        || "the configuration".to_owned(),
        |path| path.display().to_string(),
    );
    match (overridden, &settings.file) {
        (Some((_, Value::Bool(true))), _) => builder = builder.mode(Mode::Off),
        (Some((_, value)), _) => {
            builder = builder.config_value(
                "--config DisableAnalytics",
                config::display(value),
                Polarity::Disables,
            );
        }
        (None, Err(_)) => {
            builder = builder.config_value(
                format!("{} (unreadable)", where_),
                "unreadable",
                Polarity::Disables,
            );
        }
        (None, Ok(_)) => {
            if let Some(value) = decided.text(config::DISABLE_ANALYTICS) {
                builder = builder.config_value(
                    format!("disableanalytics in {where_}"),
                    value,
                    Polarity::Disables,
                );
            }
        }
    }
    builder
}

/// Submits the job in `spec` and runs it.
#[instrument_command(name = "run", message, args(format))]
fn run(spec: &Path, format: Option<SpecFormat>, node_name: &str) -> Result<(), RunError> {
    let (job, _) = spec::read(spec, format).map_err(RunError::Spec)?;
    let mut stdout = std::io::stdout().lock();
    // A job that fails is a command that fails: its outcome and exit code say so.
    match sim::submit_and_run(&job, node_name, &mut stdout)? {
        JobState::Failed => Err(RunError::JobFailed),
        JobState::Completed | JobState::Stopped => Ok(()),
    }
}

/// Sets `raw_key` (known as `key`) to `value` in the configuration file.
#[instrument_command(name = "config set", args(key))]
fn config_set(
    file: &mut Result<Config, ConfigError>,
    key: Option<ConfigKey>,
    raw_key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let checked = ConfigKey::parse(raw_key)?;
    let value = checked.value(value)?;
    let config = file.as_mut().map_err(|error| error.clone())?;
    config.set(checked.name(), value);
    config.save()?;
    println!(
        "{}  {}",
        checked.name(),
        config::display(config.get(checked.name()).expect("just set"))
    );
    Ok(())
}

/// Prints every key and its value, one per line.
#[instrument_command(name = "config list")]
fn config_list(settings: &Settings) -> Result<(), ConfigError> {
    if let Err(error) = &settings.file {
        return Err(error.clone());
    }
    let config = settings.effective();
    let defaults = [
        (config::DISABLE_ANALYTICS, "false"),
        (config::NODE_TYPE, NodeType::Hybrid.as_str()),
        (config::NODE_NAME, ""),
        (config::NETWORK_ID, ""),
    ];
    let mut out = String::new();
    for (key, default) in defaults {
        let value = config.text(key).unwrap_or_else(|| default.to_owned());
        out.push_str(&format!("{key:<18}{value}\n"));
    }
    for (key, value) in config.entries() {
        if !defaults
            .iter()
            .any(|(known, _)| key.eq_ignore_ascii_case(known))
        {
            out.push_str(&format!("{key:<18}{}\n", config::display(value)));
        }
    }
    print!("{out}");
    Ok(())
}
