//! `bench interact --env NAME`: sets up one built-in environment and lets the scripted agent
//! take one step in it, printing the action and what the desktop shows next.

use std::time::Instant;

use telemetry_runtime::{TelemetryEvent, instrument_command};

use crate::catalog::{self, Provider, Task};
use crate::events::{ActionType, ExecutionMode, StepExecuted, TaskStarted, new_run_id};

/// What `bench interact` is given. Each option's help says what of it is sent.
#[derive(Debug, Clone, clap::Args, TelemetryEvent)]
#[telemetry(nested)]
pub struct InteractArgs {
    /// The environment, one of the built-in datasets' (sent in clear; any other name is
    /// refused, and sent only as a keyed hash).
    #[arg(long)]
    #[trusted_or_hash(with = catalog::is_known_environment)]
    pub env: String,
    /// An instruction for the agent instead of the task's own. Only whether one was given is
    /// sent.
    #[arg(long)]
    #[is_set]
    pub prompt: Option<String>,
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum InteractError {
    #[error("no environment named `{env}`; the built-in ones are: {}", catalog::environments().join(", "))]
    UnknownEnvironment { env: String },
}

/// What the one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub action: ActionType,
    pub description: String,
    pub observation: String,
}

/// The scripted agent's first move in `task`, typing the prompt when there is one.
fn first_step(task: &Task, prompt: Option<&str>) -> Step {
    match prompt {
        Some(prompt) => Step {
            action: ActionType::Type,
            description: format!("type {prompt:?}"),
            observation: format!("{} shows the typed text", task.env),
        },
        None if task.env.contains("form") || task.env.contains("letter") => Step {
            action: ActionType::Click,
            description: "click the first text field".to_owned(),
            observation: "the field has focus".to_owned(),
        },
        None if task.env.contains("table") || task.env.contains("cells") => Step {
            action: ActionType::Scroll,
            description: "scroll to the table".to_owned(),
            observation: "the table is in view".to_owned(),
        },
        None => Step {
            action: ActionType::Click,
            description: format!("click the main control of {}", task.env),
            observation: "the window changed".to_owned(),
        },
    }
}

/// Runs one step of `args.env` with the scripted agent.
#[instrument_command(name = "interact")]
pub fn interact(#[telemetry] args: &InteractArgs) -> Result<Step, InteractError> {
    let task =
        catalog::environment(&args.env).ok_or_else(|| InteractError::UnknownEnvironment {
            env: args.env.clone(),
        })?;
    let run_id = new_run_id();
    telemetry_runtime::capture(&TaskStarted {
        env_name: &task.env,
        task_index: 0,
        execution_mode: ExecutionMode::Interactive,
        provider_type: Provider::Local,
        os_type: task.os,
        agent: "scripted",
        model: None,
        max_steps: task.max_steps,
        run_id: &run_id,
    });
    let started = Instant::now();
    let step = first_step(&task, args.prompt.as_deref());
    telemetry_runtime::capture(&StepExecuted {
        action_type: step.action,
        step_count: 1,
        duration_ms: started.elapsed(),
        run_id: &run_id,
    });
    println!(
        "{} ({}): step 1: {}\n  -> {}",
        task.env,
        task.os.name(),
        step.description,
        step.observation
    );
    Ok(step)
}

#[cfg(test)]
mod tests {
    use telemetry_runtime::testing;

    use super::*;

    #[test]
    fn one_step_is_reported_without_the_prompt() {
        let args = InteractArgs {
            env: "fill-form".to_owned(),
            prompt: Some("my salary is 93000, tell nobody".to_owned()),
        };
        let mut step = None;
        let events = testing::record(|| step = Some(interact(&args).unwrap()));
        assert_eq!(step.unwrap().action, ActionType::Type);
        assert_eq!(events.names(), ["task_started", "step_executed", "command"]);
        let started = events.only("task_started");
        assert_eq!(started["env_name"], "fill-form");
        assert_eq!(started["execution_mode"], "interactive");
        assert_eq!(started["os_type"], "linux");
        let stepped = events.only("step_executed");
        assert_eq!(stepped["action_type"], "type");
        assert_eq!(stepped["step_count"], 1);
        assert_eq!(stepped["run_id"], started["run_id"]);
        let command = events.only("command");
        assert_eq!(command["env"], "fill-form");
        assert_eq!(command["prompt"], true);
        assert!(!events.contains_text("salary"));
    }

    #[test]
    fn an_unknown_environment_is_refused_and_hashed() {
        let args = InteractArgs {
            env: "acme-payroll-portal".to_owned(),
            prompt: None,
        };
        let events = testing::record(|| {
            let error = interact(&args).unwrap_err();
            assert!(error.to_string().contains("click-button"), "{error}");
        });
        assert_eq!(events.names(), ["command"]);
        let command = events.only("command");
        assert_eq!(command["outcome"], "error");
        assert_eq!(command["env"], events.hash("acme-payroll-portal"));
        assert_eq!(command["prompt"], false);
        // The error's message names the environment: only its type is sent.
        assert_eq!(command["error_message"], serde_json::Value::Null);
        assert!(!events.contains_text("acme"));
    }
}
