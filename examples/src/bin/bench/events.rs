//! The events `bench` sends, besides the `command` event of each instrumented command and the
//! library's own. Built-in dataset, environment, agent and model names are sent in clear;
//! any other name (a private dataset, a fine-tuned model, an in-house agent) only as a keyed
//! hash, so it can be counted and correlated but never read.

use std::time::Duration;

use telemetry_runtime::{TelemetryEvent, TelemetryValue};

use crate::catalog::{self, ErrorType, OsType, Provider, Stage};

/// How a task is being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum ExecutionMode {
    /// As part of `bench run`.
    Batch,
    /// One step at a time, with `bench interact`.
    Interactive,
}

/// The kind of action an agent took, never its target or text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum ActionType {
    Click,
    Type,
    Scroll,
}

/// A batch of tasks started (`bench run`).
#[derive(Debug, TelemetryEvent)]
pub struct BatchStarted<'a> {
    /// The dataset: in clear when built in, a keyed hash for a dataset file.
    #[trusted_or_hash(with = catalog::is_known_dataset)]
    pub dataset_name: &'a str,
    /// How many distinct tasks the batch runs.
    pub task_count: u32,
    /// How many runs in total: tasks times variants.
    pub variant_count: u32,
    /// How many tasks may run at once.
    pub parallelism: u32,
    /// The agent: in clear when built in, else a keyed hash.
    #[trusted_or_hash(with = catalog::is_known_agent)]
    pub agent: &'a str,
    /// The model: in clear when it is a public model the built-in agents know, else a keyed
    /// hash; `null` when none was chosen.
    #[trusted_or_hash(with = catalog::is_known_model)]
    pub model: Option<&'a str>,
    /// Where the tasks' desktops run.
    pub provider_type: Provider,
    /// A random id generated for this batch, to relate its events.
    #[plain]
    pub run_id: &'a str,
}

/// A task started.
#[derive(Debug, TelemetryEvent)]
pub struct TaskStarted<'a> {
    /// The environment: in clear when built in, else a keyed hash.
    #[trusted_or_hash(with = catalog::is_known_environment)]
    pub env_name: &'a str,
    /// Which variant of the environment's task, from 0.
    pub task_index: u32,
    /// Whether the task runs in a batch (`bench run`) or interactively (`bench interact`).
    pub execution_mode: ExecutionMode,
    /// Where the task's desktop runs.
    pub provider_type: Provider,
    /// The operating system of the task's desktop (not of this machine: that is `os_name`).
    pub os_type: OsType,
    /// The agent: in clear when built in, else a keyed hash.
    #[trusted_or_hash(with = catalog::is_known_agent)]
    pub agent: &'a str,
    /// The model: in clear when public and known, else a keyed hash; `null` when none.
    #[trusted_or_hash(with = catalog::is_known_model)]
    pub model: Option<&'a str>,
    /// The task's budget of agent steps.
    pub max_steps: u32,
    /// The random id of the batch or interactive session.
    #[plain]
    pub run_id: &'a str,
}

/// A task ran to its evaluation and was scored.
#[derive(Debug, TelemetryEvent)]
pub struct EvaluationCompleted<'a> {
    /// The environment: in clear when built in, else a keyed hash.
    #[trusted_or_hash(with = catalog::is_known_environment)]
    pub env_name: &'a str,
    /// Which variant of the environment's task, from 0.
    pub task_index: u32,
    /// Whether the reward reached 1.
    pub success: bool,
    /// The evaluator's score, from 0 to 1.
    pub reward: f64,
    /// How many actions the agent took.
    pub total_steps: u32,
    /// How long the task took, in milliseconds.
    pub duration_ms: Duration,
    /// The agent: in clear when built in, else a keyed hash.
    #[trusted_or_hash(with = catalog::is_known_agent)]
    pub agent: &'a str,
    /// The model: in clear when public and known, else a keyed hash; `null` when none.
    #[trusted_or_hash(with = catalog::is_known_model)]
    pub model: Option<&'a str>,
    /// The random id of the batch.
    #[plain]
    pub run_id: &'a str,
}

/// A task stopped with an error before it could be scored.
#[derive(Debug, TelemetryEvent)]
pub struct TaskFailed<'a> {
    /// The environment: in clear when built in, else a keyed hash.
    #[trusted_or_hash(with = catalog::is_known_environment)]
    pub env_name: &'a str,
    /// Which variant of the environment's task, from 0.
    pub task_index: u32,
    /// The kind of error, from a fixed list.
    pub error_type: ErrorType,
    /// The error's message when it is the program's own text (a built-in dataset's task or
    /// a provider without the task's desktop), never holding the API key, without paths,
    /// URLs, e-mail addresses, keys or tokens, cut to 200 bytes; `null` for a task of a
    /// dataset file, whose messages are the user's own text.
    #[scrub(max_len = 200)]
    pub error_message: Option<&'a str>,
    /// Where the task failed.
    pub stage: Stage,
    /// The random id of the batch.
    #[plain]
    pub run_id: &'a str,
}

/// One task of a batch finished, scored or not.
#[derive(Debug, TelemetryEvent)]
pub struct BatchTaskCompleted<'a> {
    /// The environment: in clear when built in, else a keyed hash.
    #[trusted_or_hash(with = catalog::is_known_environment)]
    pub env_name: &'a str,
    /// Which variant of the environment's task, from 0.
    pub task_index: u32,
    /// The task's position in the batch, from 0.
    pub batch_index: u32,
    /// Whether the task was scored with a reward of 1.
    pub success: bool,
    /// The evaluator's score; `null` when the task failed before it was scored.
    pub reward: Option<f64>,
    /// How many actions the agent took.
    pub total_steps: u32,
    /// How long the task took, in milliseconds.
    pub duration_ms: Duration,
    /// The kind of error when the task failed, else `null`.
    pub error_type: Option<ErrorType>,
    /// The random id of the batch.
    #[plain]
    pub run_id: &'a str,
}

/// The agent took one step in an interactive session (`bench interact`).
#[derive(Debug, TelemetryEvent)]
pub struct StepExecuted<'a> {
    /// What kind of action it was.
    pub action_type: ActionType,
    /// Which step, from 1.
    pub step_count: u32,
    /// How long the step took, in milliseconds.
    pub duration_ms: Duration,
    /// The random id of the session.
    #[plain]
    pub run_id: &'a str,
}

/// A new random id for a batch or session.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
