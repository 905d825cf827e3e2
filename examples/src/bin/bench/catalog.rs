//! What the benchmark knows without a network: its providers and platforms, its built-in
//! datasets of tasks, agents and models, and how each task plays out when the scripted agent
//! runs it. A dataset can also be read from a JSON file of the user's own tasks.

use std::path::Path;

use serde::{Deserialize, Serialize};
use telemetry_runtime::TelemetryValue;

/// Where a task's desktop runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, TelemetryValue, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// A simulated desktop in this process.
    Local,
    /// A desktop in a container on this machine.
    Docker,
    /// A desktop in the benchmark's cloud (needs an API key).
    Cloud,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Local, Provider::Docker, Provider::Cloud];

    pub fn name(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::Docker => "docker",
            Provider::Cloud => "cloud",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Provider::Local => "simulated desktop in this process",
            Provider::Docker => "desktop in a container on this machine",
            Provider::Cloud => "desktop in the benchmark cloud (needs --api-key)",
        }
    }

    /// The operating systems this provider can give a task.
    pub fn platforms(self) -> &'static [OsType] {
        match self {
            Provider::Local => &[
                OsType::Linux,
                OsType::Windows,
                OsType::Android,
                OsType::Macos,
            ],
            Provider::Docker => &[OsType::Linux, OsType::Android],
            Provider::Cloud => &[OsType::Linux, OsType::Windows, OsType::Macos],
        }
    }
}

/// The operating system of a task's desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OsType {
    Linux,
    Windows,
    Android,
    Macos,
}

impl OsType {
    pub fn name(self) -> &'static str {
        match self {
            OsType::Linux => "linux",
            OsType::Windows => "windows",
            OsType::Android => "android",
            OsType::Macos => "macos",
        }
    }
}

/// The stage of a task where something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Preparing the desktop and opening the task's apps.
    Setup,
    /// The agent acting on the desktop.
    Step,
    /// Scoring the final state.
    Evaluate,
}

/// The kind of failure, from a fixed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The desktop or its image could not be prepared.
    SetupError,
    /// The agent's service refused its credentials.
    AuthenticationError,
    /// An action could not be performed on the desktop.
    ActionError,
    /// The task ran out of time.
    Timeout,
    /// The evaluator could not score the final state.
    EvaluationError,
}

/// How a task plays out with the scripted agent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Script {
    /// The agent takes `steps` actions and the evaluator scores the result `reward`, from 0
    /// to 1; the task succeeds when the reward is 1.
    Evaluated { steps: u32, reward: f64 },
    /// The task stops with an error at `stage`. `{api_key}` in the message stands for the
    /// API key the run was given.
    Fails {
        stage: Stage,
        error: ErrorType,
        message: String,
    },
}

/// One task of a dataset: an environment, its desktop's OS and its script.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Task {
    pub env: String,
    pub os: OsType,
    #[serde(default = "default_max_steps")]
    pub max_steps: u32,
    #[serde(flatten)]
    pub script: Script,
}

fn default_max_steps() -> u32 {
    15
}

/// The most steps a task may take: the scripted agent does each one, so a larger bound
/// would keep a run busy for hours.
pub const MAX_STEPS: u32 = 1000;

/// A named set of tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub tasks: Vec<Task>,
    /// Whether the tasks come from the user's dataset file, whose failure messages are the
    /// user's own text, rather than from a built-in dataset, whose messages are ours.
    pub from_file: bool,
}

/// A dataset file: `{"tasks": [{"env": "...", "os": "linux", "outcome": "evaluated",
/// "steps": 3, "reward": 1.0}, ...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetFile {
    tasks: Vec<Task>,
}

/// Why a dataset could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(
        "no dataset named `{0}`: use one of {known} or the path of a dataset file",
        known = DATASETS.join(", ")
    )]
    Unknown(String),
    #[error("cannot read dataset {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("dataset {path} is not valid: {source}")]
    Malformed {
        path: String,
        source: serde_json::Error,
    },
    #[error("dataset {0} has no tasks")]
    Empty(String),
    /// Names the task by its position: its text is the user's.
    #[error("task {index} of dataset {path}: {problem}")]
    Invalid {
        path: String,
        index: usize,
        problem: &'static str,
    },
}

/// The built-in datasets.
pub const DATASETS: &[&str] = &["bench-basic", "bench-office"];
/// The built-in agents.
pub const AGENTS: &[&str] = &["scripted", "bench-agent", "random-clicker"];
/// The models the built-in agents know, all public.
pub const MODELS: &[&str] = &[
    "bench-scripted-1",
    "anthropic/claude-sonnet-4-20250514",
    "openai/computer-use-preview",
];

pub fn is_known_dataset(name: &str) -> bool {
    DATASETS.contains(&name)
}

pub fn is_known_environment(name: &str) -> bool {
    DATASETS
        .iter()
        .filter_map(|dataset| builtin(dataset))
        .any(|dataset| dataset.tasks.iter().any(|task| task.env == name))
}

pub fn is_known_agent(name: &str) -> bool {
    AGENTS.contains(&name)
}

pub fn is_known_model(name: &str) -> bool {
    MODELS.contains(&name)
}

fn evaluated(env: &str, os: OsType, steps: u32, reward: f64) -> Task {
    Task {
        env: env.to_owned(),
        os,
        max_steps: default_max_steps(),
        script: Script::Evaluated { steps, reward },
    }
}

fn fails(env: &str, os: OsType, stage: Stage, error: ErrorType, message: &str) -> Task {
    Task {
        env: env.to_owned(),
        os,
        max_steps: default_max_steps(),
        script: Script::Fails {
            stage,
            error,
            message: message.to_owned(),
        },
    }
}

/// The built-in dataset `name`, if there is one.
pub fn builtin(name: &str) -> Option<Dataset> {
    let tasks = match name {
        "bench-basic" => vec![
            evaluated("click-button", OsType::Linux, 2, 1.0),
            evaluated("fill-form", OsType::Linux, 5, 1.0),
            fails(
                "rename-file",
                OsType::Windows,
                Stage::Setup,
                ErrorType::SetupError,
                "cannot mount /home/alice/.local/share/bench/images/windows-11.qcow2: \
                 permission denied",
            ),
            evaluated("send-message", OsType::Android, 6, 0.5),
            fails(
                "open-settings",
                OsType::Macos,
                Stage::Step,
                ErrorType::AuthenticationError,
                "POST https://agents.bench.example/v1/step?api_key={api_key} failed: \
                 401 Unauthorized",
            ),
            evaluated("sort-table", OsType::Linux, 4, 1.0),
        ],
        "bench-office" => vec![
            evaluated("write-letter", OsType::Windows, 8, 1.0),
            fails(
                "export-report",
                OsType::Linux,
                Stage::Evaluate,
                ErrorType::EvaluationError,
                "evaluator could not open the outbox of alice.martin@example.com \
                 (/home/alice/Mail/outbox.mbox): mailbox locked",
            ),
            evaluated("merge-cells", OsType::Macos, 7, 0.0),
        ],
        _ => return None,
    };
    Some(Dataset {
        name: name.to_owned(),
        tasks,
        from_file: false,
    })
}

/// The built-in dataset `name`, or the dataset file at that path.
pub fn load(name: &str) -> Result<Dataset, DatasetError> {
    if let Some(dataset) = builtin(name) {
        return Ok(dataset);
    }
    let path = Path::new(name);
    if !path.exists() && !name.contains(std::path::MAIN_SEPARATOR) && !name.ends_with(".json") {
        return Err(DatasetError::Unknown(name.to_owned()));
    }
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Read {
        path: name.to_owned(),
        source,
    })?;
    let file: DatasetFile =
        serde_json::from_str(&text).map_err(|source| DatasetError::Malformed {
            path: name.to_owned(),
            source,
        })?;
    if file.tasks.is_empty() {
        return Err(DatasetError::Empty(name.to_owned()));
    }
    for (index, task) in file.tasks.iter().enumerate() {
        let problem = match task.script {
            _ if task.max_steps > MAX_STEPS => Some("max_steps must be at most 1000"),
            Script::Evaluated { reward, .. } if !(0.0..=1.0).contains(&reward) => {
                Some("the reward must be between 0 and 1")
            }
            Script::Evaluated { steps, .. } if steps > task.max_steps => {
                Some("more steps than max_steps")
            }
            _ => None,
        };
        if let Some(problem) = problem {
            return Err(DatasetError::Invalid {
                path: name.to_owned(),
                index,
                problem,
            });
        }
    }
    Ok(Dataset {
        name: name.to_owned(),
        tasks: file.tasks,
        from_file: true,
    })
}

/// The task of a built-in dataset whose environment is `env`.
pub fn environment(env: &str) -> Option<Task> {
    DATASETS
        .iter()
        .filter_map(|dataset| builtin(dataset))
        .flat_map(|dataset| dataset.tasks)
        .find(|task| task.env == env)
}

/// Every built-in environment's name.
pub fn environments() -> Vec<String> {
    DATASETS
        .iter()
        .filter_map(|dataset| builtin(dataset))
        .flat_map(|dataset| dataset.tasks)
        .map(|task| task.env)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_names_are_known_and_others_are_not() {
        assert!(is_known_dataset("bench-basic"));
        assert!(!is_known_dataset("bench-basic-private"));
        assert!(is_known_environment("click-button"));
        assert!(!is_known_environment("payroll-portal"));
        assert!(is_known_model("anthropic/claude-sonnet-4-20250514"));
        assert!(!is_known_model(
            "anthropic/claude-sonnet-4-20250514-ft-acme"
        ));
        assert!(is_known_agent("scripted"));
        assert!(!is_known_agent("scripted-for-acme"));
    }

    #[test]
    fn dataset_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.json");
        std::fs::write(
            &path,
            r#"{"tasks": [
                {"env": "payroll-portal", "os": "windows", "outcome": "evaluated", "steps": 3, "reward": 1.0},
                {"env": "crm", "os": "linux", "outcome": "fails", "stage": "setup", "error": "timeout", "message": "slow"}
            ]}"#,
        )
        .unwrap();
        let dataset = load(path.to_str().unwrap()).unwrap();
        assert_eq!(dataset.tasks.len(), 2);
        assert_eq!(dataset.tasks[0].env, "payroll-portal");
        assert_eq!(dataset.tasks[0].max_steps, 15);

        std::fs::write(&path, r#"{"tasks": [{"env": "x"}]}"#).unwrap();
        let error = load(path.to_str().unwrap()).unwrap_err();
        assert!(matches!(error, DatasetError::Malformed { .. }), "{error}");
        std::fs::write(&path, r#"{"tasks": []}"#).unwrap();
        assert!(matches!(
            load(path.to_str().unwrap()),
            Err(DatasetError::Empty(_))
        ));
        std::fs::write(
            &path,
            r#"{"tasks": [{"env": "x", "os": "linux", "outcome": "evaluated", "steps": 1, "reward": 2}]}"#,
        )
        .unwrap();
        assert!(matches!(
            load(path.to_str().unwrap()),
            Err(DatasetError::Invalid { .. })
        ));
        // Steps are bounded: each is work the run does.
        for task in [
            r#"{"env": "secret-env", "os": "linux", "outcome": "evaluated", "steps": 4294967295, "reward": 1, "max_steps": 4294967295}"#,
            r#"{"env": "secret-env", "os": "linux", "outcome": "evaluated", "steps": 4294967295, "reward": 1}"#,
            r#"{"env": "secret-env", "os": "linux", "outcome": "fails", "stage": "evaluate", "error": "timeout", "message": "m", "max_steps": 1001}"#,
        ] {
            let ok = r#"{"env": "x", "os": "linux", "outcome": "evaluated", "steps": 1000, "reward": 1, "max_steps": 1000}"#;
            std::fs::write(&path, format!(r#"{{"tasks": [{ok}, {task}]}}"#)).unwrap();
            let error = load(path.to_str().unwrap()).unwrap_err();
            assert!(
                matches!(error, DatasetError::Invalid { index: 1, .. }),
                "{error}"
            );
            let message = error.to_string();
            assert!(message.contains("task 1 of dataset"), "{message}");
            assert!(message.contains("steps"), "{message}");
            assert!(!message.contains("secret-env"), "{message}");
        }
        let missing = dir.path().join("missing.json");
        assert!(matches!(
            load(missing.to_str().unwrap()),
            Err(DatasetError::Read { .. })
        ));
        assert!(matches!(load("nope"), Err(DatasetError::Unknown(_))));
    }
}
