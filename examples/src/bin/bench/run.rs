//! `bench run`: runs a dataset's tasks, each in as many variants as asked, on a few worker
//! threads, with the scripted agent on simulated desktops. Everything happens in this
//! process: no network, no waiting.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use telemetry_runtime::{TelemetryEvent, instrument_command};

use crate::catalog::{self, Dataset, ErrorType, OsType, Provider, Script, Stage, Task};
use crate::events::{
    BatchStarted, BatchTaskCompleted, EvaluationCompleted, ExecutionMode, TaskFailed, TaskStarted,
    new_run_id,
};
use crate::trace::TraceRecord;

/// What `bench run` is given. Each option's help says what of it is sent.
#[derive(Debug, Clone, clap::Args, TelemetryEvent)]
#[telemetry(nested)]
pub struct RunArgs {
    /// The dataset: a built-in name (sent in clear) or the path of a dataset file (sent as a
    /// keyed hash).
    #[arg(long, default_value = "bench-basic")]
    #[trusted_or_hash(with = catalog::is_known_dataset)]
    pub dataset: String,
    /// Run only the dataset's first N tasks.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub tasks: Option<u32>,
    /// How many variants of each task to run.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub variants: u32,
    /// How many tasks to run at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallelism: u32,
    /// The agent: a built-in one (sent in clear) or another (sent as a keyed hash).
    #[arg(long, default_value = "scripted")]
    #[trusted_or_hash(with = catalog::is_known_agent)]
    pub agent: String,
    /// The model: a public one the built-in agents know (sent in clear) or another, such as
    /// a fine-tuned model (sent as a keyed hash).
    #[arg(long)]
    #[trusted_or_hash(with = catalog::is_known_model)]
    pub model: Option<String>,
    /// Where the tasks' desktops run.
    #[arg(long, value_enum, default_value = "local")]
    pub provider: Provider,
    /// Write each task's record to DIR/trace.jsonl. Only whether it was given is sent.
    #[arg(long, value_name = "DIR")]
    #[is_set]
    pub output: Option<PathBuf>,
    /// The API key for the cloud provider and the agent's service. Only whether it was given
    /// is sent.
    #[arg(
        long,
        value_name = "KEY",
        env = "BENCH_API_KEY",
        hide_env_values = true
    )]
    #[is_set]
    pub api_key: Option<String>,
}

impl Default for RunArgs {
    fn default() -> RunArgs {
        RunArgs {
            dataset: "bench-basic".to_owned(),
            tasks: None,
            variants: 1,
            parallelism: 1,
            agent: "scripted".to_owned(),
            model: None,
            provider: Provider::Local,
            output: None,
            api_key: None,
        }
    }
}

/// Why a batch could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Dataset(#[from] catalog::DatasetError),
    #[error("the cloud provider needs an API key: pass --api-key or set BENCH_API_KEY")]
    CloudNeedsKey,
    #[error("cannot write the trace to {path}: {source}")]
    Output {
        path: String,
        source: std::io::Error,
    },
}

/// The key a failing task's message quotes when the run was given none.
const DEMO_KEY: &str = "sk-bench-demo-7d41c9e0a2f86b35";
/// What stands for the key in the message that is sent: the key itself never is.
const KEY_PLACEHOLDER: &str = "REDACTED";

/// A batch ready to run.
pub struct Plan<'a> {
    pub tasks: &'a [Task],
    pub variants: u32,
    pub parallelism: u32,
    pub agent: &'a str,
    pub model: Option<&'a str>,
    pub provider: Provider,
    pub api_key: Option<&'a str>,
    /// Whether the tasks come from the user's dataset file: their failure messages are then
    /// the user's own text, and are never sent.
    pub from_file: bool,
    pub run_id: &'a str,
}

/// How one task of the batch ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResult {
    pub env: String,
    pub task_index: u32,
    pub batch_index: u32,
    pub os: OsType,
    /// The reward, when the task was scored.
    pub reward: Option<f64>,
    pub steps: u32,
    pub duration: Duration,
    /// The error, when the task failed before it was scored.
    pub failure: Option<(ErrorType, Stage, String)>,
}

impl TaskResult {
    pub fn success(&self) -> bool {
        self.reward == Some(1.0)
    }
}

/// Runs a batch and prints a line per task and a summary.
#[instrument_command(name = "run")]
pub fn run(#[telemetry] args: &RunArgs) -> Result<Vec<TaskResult>, RunError> {
    let dataset: Dataset = catalog::load(&args.dataset)?;
    if args.provider == Provider::Cloud && args.api_key.is_none() {
        return Err(RunError::CloudNeedsKey);
    }
    let count = args
        .tasks
        .map_or(dataset.tasks.len(), |n| dataset.tasks.len().min(n as usize));
    let run_id = new_run_id();
    let plan = Plan {
        tasks: &dataset.tasks[..count],
        variants: args.variants,
        parallelism: args.parallelism,
        agent: &args.agent,
        model: args.model.as_deref(),
        provider: args.provider,
        api_key: args.api_key.as_deref(),
        from_file: dataset.from_file,
        run_id: &run_id,
    };
    telemetry_runtime::capture(&BatchStarted {
        dataset_name: &args.dataset,
        task_count: u32::try_from(count).unwrap_or(u32::MAX),
        variant_count: u32::try_from(count)
            .unwrap_or(u32::MAX)
            .saturating_mul(plan.variants),
        parallelism: plan.parallelism,
        agent: plan.agent,
        model: plan.model,
        provider_type: plan.provider,
        run_id: &run_id,
    });
    let results = execute(&plan, &|work| work());

    let mut out = String::new();
    for result in &results {
        let outcome = match (&result.failure, result.reward) {
            (Some((_, stage, message)), _) => {
                format!("failed at {}: {message}", stage_name(*stage))
            }
            (None, Some(reward)) => format!("reward {reward:.2} in {} steps", result.steps),
            (None, None) => "not scored".to_owned(),
        };
        let _ = writeln!(
            out,
            "[{:>3}] {} #{} ({}): {outcome}",
            result.batch_index,
            result.env,
            result.task_index,
            result.os.name()
        );
    }
    let succeeded = results.iter().filter(|result| result.success()).count();
    let failed = results
        .iter()
        .filter(|result| result.failure.is_some())
        .count();
    let _ = writeln!(
        out,
        "{}: {} tasks, {succeeded} succeeded, {} scored below 1, {failed} failed",
        dataset.name,
        results.len(),
        results.len() - succeeded - failed
    );
    print!("{out}");
    if let Some(dir) = &args.output {
        let path = write_trace(dir, &results)?;
        println!("trace written to {}", path.display());
    }
    Ok(results)
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Setup => "setup",
        Stage::Step => "step",
        Stage::Evaluate => "evaluate",
    }
}

/// Writes one JSON line per task to `dir/trace.jsonl`.
fn write_trace(dir: &std::path::Path, results: &[TaskResult]) -> Result<PathBuf, RunError> {
    let path = dir.join("trace.jsonl");
    let failed = |source| RunError::Output {
        path: path.display().to_string(),
        source,
    };
    let mut text = String::new();
    for result in results {
        let record = TraceRecord {
            env: result.env.clone(),
            task_index: result.task_index,
            batch_index: result.batch_index,
            os: result.os,
            success: result.success(),
            reward: result.reward,
            steps: result.steps,
            duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
            error_type: result.failure.as_ref().map(|failure| failure.0),
            stage: result.failure.as_ref().map(|failure| failure.1),
            error: result.failure.as_ref().map(|failure| failure.2.clone()),
        };
        text.push_str(&serde_json::to_string(&record).expect("a record always serializes"));
        text.push('\n');
    }
    fs::create_dir_all(dir).map_err(failed)?;
    fs::write(&path, text).map_err(failed)?;
    Ok(path)
}

/// Runs every task of `plan` in each of its variants on up to `plan.parallelism` threads (the
/// calling thread when one is enough), each worker's loop inside `within`, and returns the
/// results in batch order. Events go through the global `capture`, which works from any
/// thread; tests pass a `within` that records each worker.
pub fn execute(plan: &Plan<'_>, within: &(dyn Fn(&mut dyn FnMut()) + Sync)) -> Vec<TaskResult> {
    let jobs: Vec<(&Task, u32)> = plan
        .tasks
        .iter()
        .flat_map(|task| (0..plan.variants).map(move |variant| (task, variant)))
        .collect();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(jobs.len()));
    let worker = || {
        within(&mut || {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(task, variant)) = jobs.get(index) else {
                    break;
                };
                let batch_index = u32::try_from(index).unwrap_or(u32::MAX);
                let result = run_task(plan, task, variant, batch_index);
                results
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(result);
            }
        });
    };
    let workers = (plan.parallelism as usize).clamp(1, jobs.len().max(1));
    if workers == 1 {
        worker();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(worker);
            }
        });
    }
    let mut results = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    results.sort_by_key(|result| result.batch_index);
    results
}

/// Runs variant `variant` of `task` with the scripted agent and reports it.
fn run_task(plan: &Plan<'_>, task: &Task, variant: u32, batch_index: u32) -> TaskResult {
    let started = Instant::now();
    telemetry_runtime::capture(&TaskStarted {
        env_name: &task.env,
        task_index: variant,
        execution_mode: ExecutionMode::Batch,
        provider_type: plan.provider,
        os_type: task.os,
        agent: plan.agent,
        model: plan.model,
        max_steps: task.max_steps,
        run_id: plan.run_id,
    });
    // The message sent for a failure, when one may be: never the key, and never the text of
    // a user's dataset file.
    let mut sent_message: Option<String> = None;
    let (reward, steps, failure) = if !plan.provider.platforms().contains(&task.os) {
        let message = format!(
            "the {} provider has no {} desktop",
            plan.provider.name(),
            task.os.name()
        );
        sent_message = Some(message.clone());
        (
            None,
            0,
            Some((ErrorType::SetupError, Stage::Setup, message)),
        )
    } else {
        match &task.script {
            Script::Evaluated { steps, reward } => {
                // Later variants take a step more each, as harder phrasings of the task would.
                let steps = (steps + variant).min(task.max_steps);
                std::hint::black_box(act(steps));
                (Some(*reward), steps, None)
            }
            Script::Fails {
                stage,
                error,
                message,
            } => {
                let steps = match stage {
                    Stage::Setup => 0,
                    Stage::Step => 1,
                    Stage::Evaluate => task.max_steps.min(3),
                };
                std::hint::black_box(act(steps));
                if !plan.from_file {
                    sent_message = Some(message.replace("{api_key}", KEY_PLACEHOLDER));
                }
                let message = message.replace("{api_key}", plan.api_key.unwrap_or(DEMO_KEY));
                (None, steps, Some((*error, *stage, message)))
            }
        }
    };
    let duration = started.elapsed();
    match (&failure, reward) {
        (Some((error_type, stage, _)), _) => telemetry_runtime::capture(&TaskFailed {
            env_name: &task.env,
            task_index: variant,
            error_type: *error_type,
            error_message: sent_message.as_deref(),
            stage: *stage,
            run_id: plan.run_id,
        }),
        (None, reward) => telemetry_runtime::capture(&EvaluationCompleted {
            env_name: &task.env,
            task_index: variant,
            success: reward == Some(1.0),
            reward: reward.unwrap_or(0.0),
            total_steps: steps,
            duration_ms: duration,
            agent: plan.agent,
            model: plan.model,
            run_id: plan.run_id,
        }),
    }
    telemetry_runtime::capture(&BatchTaskCompleted {
        env_name: &task.env,
        task_index: variant,
        batch_index,
        success: reward == Some(1.0),
        reward,
        total_steps: steps,
        duration_ms: duration,
        error_type: failure.as_ref().map(|failure| failure.0),
        run_id: plan.run_id,
    });
    TaskResult {
        env: task.env.clone(),
        task_index: variant,
        batch_index,
        os: task.os,
        reward,
        steps,
        duration,
        failure,
    }
}

/// The scripted agent's actions for `steps` steps, folded into a checksum: the work a real
/// agent's steps stand for.
fn act(steps: u32) -> u64 {
    (0..steps).fold(0x5eed, |sum, step| {
        (0..1_000u64).fold(sum, |sum, n| sum.rotate_left(7) ^ (n + u64::from(step)))
    })
}

#[cfg(test)]
mod tests {
    use telemetry_runtime::testing::{self, Recorder};

    use super::*;

    #[test]
    fn a_batch_reports_each_task_in_order_with_its_outcome() {
        let args = RunArgs {
            tasks: Some(3),
            variants: 2,
            api_key: Some("sk-live-0123456789abcdef0123".to_owned()),
            ..RunArgs::default()
        };
        let mut results = Vec::new();
        let events = testing::record(|| results = run(&args).unwrap());
        assert_eq!(results.len(), 6);

        assert_eq!(
            events.names(),
            [
                "batch_started",
                // click-button, two variants.
                "task_started",
                "evaluation_completed",
                "batch_task_completed",
                "task_started",
                "evaluation_completed",
                "batch_task_completed",
                // fill-form, two variants.
                "task_started",
                "evaluation_completed",
                "batch_task_completed",
                "task_started",
                "evaluation_completed",
                "batch_task_completed",
                // rename-file fails at setup, twice.
                "task_started",
                "task_failed",
                "batch_task_completed",
                "task_started",
                "task_failed",
                "batch_task_completed",
                "command",
            ]
        );
        let batch = events.only("batch_started");
        assert_eq!(batch["dataset_name"], "bench-basic");
        assert_eq!(batch["task_count"], 3);
        assert_eq!(batch["variant_count"], 6);
        assert_eq!(batch["agent"], "scripted");
        assert_eq!(batch["model"], serde_json::Value::Null);
        let run_id = batch["run_id"].as_str().unwrap();
        assert_eq!(run_id.len(), 36);

        let started: Vec<_> = events.named("task_started").collect();
        assert_eq!(started[0]["env_name"], "click-button");
        assert_eq!(started[1]["task_index"], 1);
        assert_eq!(started[4]["os_type"], "windows");
        assert!(started.iter().all(|event| event["run_id"] == run_id));
        let evaluated: Vec<_> = events.named("evaluation_completed").collect();
        // click-button takes 2 steps, one more in its second variant.
        assert_eq!(evaluated[0]["total_steps"], 2);
        assert_eq!(evaluated[1]["total_steps"], 3);
        assert_eq!(evaluated[0]["success"], true);
        let failed = events.named("task_failed").next().unwrap();
        assert_eq!(failed["stage"], "setup");
        assert_eq!(failed["error_type"], "setup_error");
        assert_eq!(
            failed["error_message"],
            "cannot mount <path>: permission denied"
        );
        let completed: Vec<_> = events.named("batch_task_completed").collect();
        let indexes: Vec<_> = completed
            .iter()
            .map(|event| &event["batch_index"])
            .collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4, 5]);
        assert_eq!(completed[5]["reward"], serde_json::Value::Null);
        assert_eq!(completed[5]["error_type"], "setup_error");

        let command = events.only("command");
        assert_eq!(command["command"], "run");
        assert_eq!(command["tasks"], 3);
        assert_eq!(command["variants"], 2);
        assert_eq!(command["api_key"], true);
        assert_eq!(command["output"], false);
        assert!(!events.contains_text("alice"));
        assert!(!events.contains_text("sk-live"));
    }

    #[test]
    fn private_names_are_hashed_and_failure_messages_scrubbed() {
        let args = RunArgs {
            agent: "acme-internal-agent".to_owned(),
            model: Some("ft:acme-payroll-model".to_owned()),
            api_key: Some("sk-live-0123456789abcdef0123".to_owned()),
            ..RunArgs::default()
        };
        let events = testing::record(|| {
            run(&args).unwrap();
        });
        let batch = events.only("batch_started");
        assert_eq!(batch["agent"], events.hash("acme-internal-agent"));
        assert_eq!(batch["model"], events.hash("ft:acme-payroll-model"));
        let messages: Vec<_> = events
            .named("task_failed")
            .map(|event| event["error_message"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(messages.len(), 2);
        assert!(messages[1].starts_with("POST <url> failed"), "{messages:?}");
        for secret in ["acme", "alice", "sk-live", "agents.bench.example"] {
            assert!(!events.contains_text(secret), "{secret} was recorded");
        }
    }

    #[test]
    fn a_dataset_files_failure_messages_are_never_sent_nor_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suite.json");
        std::fs::write(
            &path,
            r#"{"tasks": [{"env": "vpn", "os": "linux", "outcome": "fails", "stage": "step",
                "error": "authentication_error",
                "message": "login as alice.martin with password {api_key} for Alice Martin"}]}"#,
        )
        .unwrap();
        let args = RunArgs {
            dataset: path.to_str().unwrap().to_owned(),
            api_key: Some("hunter2pass".to_owned()),
            ..RunArgs::default()
        };
        let mut results = Vec::new();
        let events = testing::record(|| results = run(&args).unwrap());
        let failed = events.only("task_failed");
        assert_eq!(failed["error_message"], serde_json::Value::Null);
        assert_eq!(failed["error_type"], "authentication_error");
        assert_eq!(failed["stage"], "step");
        for secret in ["alice", "hunter2pass"] {
            assert!(!events.contains_text(secret), "{secret} was recorded");
        }
        // The user still sees the message, on their own terminal and trace.
        let message = &results[0].failure.as_ref().unwrap().2;
        assert!(message.contains("Alice Martin"), "{message}");
    }

    #[test]
    fn a_built_in_failure_message_is_sent_without_the_key() {
        let args = RunArgs {
            tasks: Some(5),
            api_key: Some("hunter2pass".to_owned()),
            ..RunArgs::default()
        };
        let events = testing::record(|| {
            run(&args).unwrap();
        });
        let messages: Vec<_> = events
            .named("task_failed")
            .map(|event| event["error_message"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(!events.contains_text("hunter2pass"));
    }

    #[test]
    fn worker_threads_capture_every_task_once() {
        let dataset = catalog::builtin("bench-basic").unwrap();
        let plan = Plan {
            tasks: &dataset.tasks,
            variants: 3,
            parallelism: 4,
            agent: "scripted",
            model: Some("bench-scripted-1"),
            provider: Provider::Docker,
            api_key: None,
            from_file: false,
            run_id: "run",
        };
        // Each worker records into the one shared recording.
        let recorder = Recorder::new();
        let results = execute(&plan, &|work| recorder.record(work));
        let events = recorder.events();
        assert_eq!(results.len(), 18);
        assert_eq!(events.named("task_started").count(), 18);
        assert_eq!(events.named("batch_task_completed").count(), 18);
        let mut indexes: Vec<u64> = events
            .named("batch_task_completed")
            .map(|event| event["batch_index"].as_u64().unwrap())
            .collect();
        indexes.sort_unstable();
        assert_eq!(indexes, (0..18).collect::<Vec<_>>());
        // Docker has no Windows or macOS desktops: those tasks fail at setup.
        let unsupported = results
            .iter()
            .filter(|result| matches!(result.os, OsType::Windows | OsType::Macos))
            .count();
        assert_eq!(unsupported, 6);
        let failed = events.named("task_failed").count();
        assert_eq!(failed, unsupported);
        assert_eq!(
            events.named("evaluation_completed").count() + failed,
            18,
            "every task is either scored or failed"
        );
    }

    #[test]
    fn the_cloud_needs_a_key_and_unknown_datasets_are_errors() {
        let cloud = RunArgs {
            provider: Provider::Cloud,
            ..RunArgs::default()
        };
        let events = testing::record(|| {
            assert!(matches!(run(&cloud), Err(RunError::CloudNeedsKey)));
        });
        assert_eq!(events.names(), ["command"]);
        assert_eq!(events.only("command")["outcome"], "error");
        let unknown = RunArgs {
            dataset: "/home/alice/private-suite.json".to_owned(),
            ..RunArgs::default()
        };
        let events = testing::record(|| {
            let error = run(&unknown).unwrap_err();
            assert!(error.to_string().contains("cannot read dataset"), "{error}");
        });
        let command = events.only("command");
        assert_eq!(
            command["dataset"],
            events.hash("/home/alice/private-suite.json")
        );
        assert!(!events.contains_text("alice"));
    }
}
