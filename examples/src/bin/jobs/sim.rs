//! Submitting a job and running it on this node, simulated: no container is started, no image
//! pulled and nothing slept, but every execution goes through the states a scheduler gives it,
//! deterministically, and each change is reported.
//!
//! How a task ends:
//! - an engine other than `docker`, `wasm` or `noop` fails (`unsupported_engine`);
//! - a Docker image from a registry other than the public ones (`docker.io`, `ghcr.io`,
//!   `quay.io`, `gcr.io`, `public.ecr.aws`, `mcr.microsoft.com`, `registry.k8s.io`) cannot be
//!   pulled (`image_pull_failed`), and is not retried;
//! - a command line with `exit N` (entrypoint and parameters) exits with `N`; a non-zero exit
//!   fails (`non_zero_exit`) and is retried once, by a new execution of a follow-up evaluation;
//! - a `daemon` or `service` job runs until stopped, which the local run does when the job has
//!   started: its executions are cancelled and the job is `stopped`;
//! - anything else completes with exit code 0 and its results are published.

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use telemetry_runtime::capture;
use uuid::Uuid;

use super::events::{
    ComputeState, DesiredState, EngineType, ErrorCode, ExecutionResources, ExecutionUpdated, Gpu,
    JobFinished, JobState, JobSubmitted,
};
use super::spec::{Job, Plan, SpecError, input_source_type};

/// The most output a task keeps, per stream.
const OUTPUT_LIMIT: usize = 4096;

/// Registries this node can pull from.
const REACHABLE_REGISTRIES: [&str; 8] = [
    "docker.io",
    "registry-1.docker.io",
    "ghcr.io",
    "quay.io",
    "gcr.io",
    "public.ecr.aws",
    "mcr.microsoft.com",
    "registry.k8s.io",
];

/// Why `jobs run` could not run a job. The text is the program's own words, never the spec's
/// values: it is also sent, scrubbed, as the command's error message.
#[derive(Debug)]
pub enum RunError {
    /// The spec could not be read.
    Spec(SpecError),
    /// The spec was read but cannot run.
    Invalid(String),
    /// The job ran and failed; its summary is already printed.
    JobFailed,
}

impl RunError {
    /// The whole explanation, for the user's terminal.
    pub fn detail(&self) -> String {
        match self {
            RunError::Spec(error) => error.detail(),
            RunError::Invalid(_) | RunError::JobFailed => self.to_string(),
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spec(error) => error.fmt(f),
            RunError::Invalid(reason) => write!(f, "invalid job spec: {reason}"),
            RunError::JobFailed => f.write_str("the job failed"),
        }
    }
}

impl std::error::Error for RunError {}

/// How one execution ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Completed {
        stdout_truncated: bool,
    },
    Failed {
        code: ErrorCode,
        message: String,
        exit_code: Option<i32>,
    },
    Stopped,
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4())
}

/// Submits `job` on the node named `node_name`, runs it, reports each step to `out` and as
/// events, and returns how it ended.
pub fn submit_and_run(
    job: &Job,
    node_name: &str,
    out: &mut dyn Write,
) -> Result<JobState, RunError> {
    let submitted_at = SystemTime::now();
    let started = Instant::now();
    let job_id = new_id("j");
    let validation = job.validate();
    let plan = &validation.plan;
    let task = job.task();
    let engine = task.and_then(|task| task.engine.as_ref());
    capture(&JobSubmitted {
        job_id: &job_id,
        namespace: job.namespace(),
        name: job.name.as_deref(),
        job_type: job.kind(),
        count: job.count.unwrap_or(1),
        labels_count: job.labels.len() as u64,
        meta_count: job.meta.len() as u64,
        version: 1,
        revision: 1,
        task_name: task.and_then(|task| task.name.as_deref()),
        engine_type: engine.map(|engine| super::spec::engine_type(&engine.engine_type)),
        publisher_type: plan.publisher,
        env_var_count: job.env_var_count(),
        task_meta_count: task.map_or(0, |task| task.meta.len() as u64),
        input_source_types: task.map_or_else(Vec::new, |task| {
            task.input_sources
                .iter()
                .map(|input| input_source_type(&input.source.source_type))
                .collect()
        }),
        result_path_count: task.map_or(0, |task| task.result_paths.len() as u64),
        docker_image: job.docker_image(),
        cpu: plan.cpu,
        memory: plan.memory,
        disk: plan.disk,
        gpu: plan.gpu,
        gpu_types: if plan.gpu > 0 {
            vec![plan.gpu_vendor]
        } else {
            Vec::new()
        },
        network_type: Some(plan.network),
        domain_count: task
            .and_then(|task| task.network.as_ref())
            .map_or(0, |network| network.domains.len() as u64),
        execution_timeout: plan.execution_timeout,
        queue_timeout: plan.queue_timeout,
        total_timeout: plan.total_timeout,
        warnings: validation.warnings.clone(),
        error: validation.error.clone(),
    });
    let _ = writeln!(out, "Job {job_id} submitted");
    for warning in &validation.warnings {
        let _ = writeln!(out, "  warning: {warning}");
    }
    if let Some(error) = validation.error {
        return Err(RunError::Invalid(error));
    }

    let outcome = simulate(job, plan);
    let mut executions = 0;
    let mut state = if plan.job_type.long_running() {
        JobState::Stopped
    } else {
        JobState::Completed
    };
    'slots: for _ in 0..plan.count {
        let mut evaluation = new_id("ev");
        let mut previous: Option<String> = None;
        let mut execution = new_id("e");
        for attempt in 0.. {
            executions += 1;
            let retry = matches!(
                outcome,
                Outcome::Failed {
                    code: ErrorCode::NonZeroExit,
                    ..
                }
            ) && attempt == 0;
            let next = retry.then(|| (new_id("e"), new_id("ev")));
            run_execution(
                &Execution {
                    job,
                    job_id: &job_id,
                    execution_id: &execution,
                    evaluation_id: &evaluation,
                    node_name,
                    previous: previous.as_deref(),
                    next: next.as_ref().map(|(execution, _)| execution.as_str()),
                    follow_up: next.as_ref().map(|(_, evaluation)| evaluation.as_str()),
                    plan,
                },
                &outcome,
                out,
            );
            match next {
                Some((next_execution, follow_up)) => {
                    previous = Some(std::mem::replace(&mut execution, next_execution));
                    evaluation = follow_up;
                }
                None if matches!(outcome, Outcome::Failed { .. }) => {
                    state = JobState::Failed;
                    break 'slots;
                }
                None => break,
            }
        }
    }
    let took = started.elapsed();
    capture(&JobFinished {
        job_id: &job_id,
        namespace: job.namespace(),
        state,
        executions,
        create_time: submitted_at,
        modify_time: SystemTime::now(),
        duration: took,
    });
    let word = match state {
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Stopped => "stopped",
    };
    let _ = writeln!(
        out,
        "Job {job_id} {word} after {executions} execution{} in {:.3} ms",
        if executions == 1 { "" } else { "s" },
        took.as_secs_f64() * 1000.0
    );
    Ok(state)
}

/// What an execution needs to know to report itself.
struct Execution<'a> {
    job: &'a Job,
    job_id: &'a str,
    execution_id: &'a str,
    evaluation_id: &'a str,
    node_name: &'a str,
    previous: Option<&'a str>,
    next: Option<&'a str>,
    follow_up: Option<&'a str>,
    plan: &'a Plan,
}

/// Takes one execution through its states (created, running, ended as `outcome` says) and
/// reports each change.
fn run_execution(execution: &Execution<'_>, outcome: &Outcome, out: &mut dyn Write) {
    let plan = execution.plan;
    let resources = ExecutionResources {
        cpu: plan.cpu,
        memory: plan.memory,
        disk: plan.disk,
        gpu: plan.gpu,
        gpus: (0..plan.gpu)
            .map(|_| Gpu {
                name: plan.gpu_vendor.model(),
                vendor: plan.gpu_vendor,
            })
            .collect(),
    };
    let created_at = SystemTime::now();
    let created = Instant::now();
    let report = |revision: u64,
                  desired_state: DesiredState,
                  compute_state: ComputeState,
                  queued: Duration,
                  ran: Duration,
                  end: Option<&Outcome>| {
        let (message, error_code, exit_code, stdout_truncated) = match end {
            Some(Outcome::Completed { stdout_truncated }) => {
                (None, None, Some(0), *stdout_truncated)
            }
            Some(Outcome::Failed {
                code,
                message,
                exit_code,
            }) => (Some(message.clone()), Some(*code), *exit_code, false),
            Some(Outcome::Stopped) => (
                Some("stopped at the end of the local run".to_owned()),
                None,
                None,
                false,
            ),
            None => (None, None, None, false),
        };
        let completed = matches!(end, Some(Outcome::Completed { .. }));
        capture(&ExecutionUpdated {
            execution_id: execution.execution_id,
            job_id: execution.job_id,
            evaluation_id: execution.evaluation_id,
            node_name: execution.node_name,
            namespace: execution.job.namespace(),
            name: execution.job.name.as_deref(),
            previous_execution: execution.previous,
            next_execution: end.and(execution.next),
            follow_up_evaluation: end.and(execution.follow_up),
            revision,
            create_time: created_at,
            modify_time: SystemTime::now(),
            queued,
            ran,
            resources: resources.clone(),
            desired_state,
            compute_state,
            compute_message: message,
            error_code,
            published_result_type: if completed { plan.publisher } else { None },
            exit_code,
            stdout_truncated,
            stderr_truncated: false,
        });
    };
    report(
        1,
        DesiredState::Pending,
        ComputeState::New,
        Duration::ZERO,
        Duration::ZERO,
        None,
    );
    let queued = created.elapsed();
    let running = Instant::now();
    report(
        2,
        DesiredState::Running,
        ComputeState::BidAccepted,
        queued,
        Duration::ZERO,
        None,
    );
    let (compute_state, line) = match outcome {
        Outcome::Completed { .. } => (ComputeState::Completed, "completed (exit code 0)".into()),
        Outcome::Failed { message, .. } => (ComputeState::Failed, format!("failed: {message}")),
        Outcome::Stopped => (ComputeState::Cancelled, "stopped".into()),
    };
    report(
        3,
        DesiredState::Stopped,
        compute_state,
        queued,
        running.elapsed(),
        Some(outcome),
    );
    let _ = writeln!(out, "  execution {}: {line}", execution.execution_id);
}

/// How the job's task ends on this node.
fn simulate(job: &Job, plan: &Plan) -> Outcome {
    let Some(engine) = job.task().and_then(|task| task.engine.as_ref()) else {
        return Outcome::Failed {
            code: ErrorCode::UnsupportedEngine,
            message: "the task has no engine".into(),
            exit_code: None,
        };
    };
    match plan.engine {
        EngineType::Other => {
            return Outcome::Failed {
                code: ErrorCode::UnsupportedEngine,
                message: "this node has no engine of the task's type".into(),
                exit_code: None,
            };
        }
        EngineType::Docker => {
            let image = engine.params.image.as_deref().unwrap_or_default();
            if !pullable(image) {
                return Outcome::Failed {
                    code: ErrorCode::ImagePullFailed,
                    message: "cannot pull the image: its registry is not reachable from this node"
                        .into(),
                    exit_code: None,
                };
            }
        }
        EngineType::Wasm | EngineType::Noop => {}
    }
    let words: Vec<&str> = engine
        .params
        .entrypoint
        .iter()
        .chain(&engine.params.parameters)
        .flat_map(|argument| argument.split_whitespace())
        .collect();
    let exit_code = words
        .windows(2)
        .find(|pair| pair[0] == "exit")
        .and_then(|pair| pair[1].trim_end_matches(';').parse::<i32>().ok())
        .unwrap_or(0);
    if exit_code != 0 {
        return Outcome::Failed {
            code: ErrorCode::NonZeroExit,
            message: format!("the task exited with code {exit_code}"),
            exit_code: Some(exit_code),
        };
    }
    if plan.job_type.long_running() {
        return Outcome::Stopped;
    }
    let printed: usize = words
        .iter()
        .skip_while(|word| **word != "echo")
        .skip(1)
        .map(|word| word.len() + 1)
        .sum();
    Outcome::Completed {
        stdout_truncated: printed > OUTPUT_LIMIT,
    }
}

/// Whether this node can pull `image`: its registry (the first part of its name when that
/// looks like a host, else Docker Hub) is a public one.
fn pullable(image: &str) -> bool {
    let registry = match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_ascii_lowercase()
        }
        _ => "docker.io".to_owned(),
    };
    REACHABLE_REGISTRIES.contains(&registry.as_str())
}

#[cfg(test)]
mod tests {
    use telemetry_runtime::testing;

    use super::super::spec::{SpecFormat, parse};
    use super::*;

    fn job(image: &str, command: &str) -> Job {
        parse(
            &format!(
                "Name: payroll for alice\nNamespace: alice-team\nType: batch\nLabels: {{owner: alice}}\n\
                 Tasks:\n  - Name: alice-task\n    Engine:\n      Type: docker\n      Params:\n\
                 \x20       Image: {image}\n        Entrypoint: [sh, -c, \"{command}\"]\n\
                 \x20   Publisher: {{Type: local}}\n    Timeouts: {{ExecutionTimeout: 30}}\n"
            ),
            SpecFormat::Yaml,
        )
        .unwrap()
    }

    #[test]
    fn a_successful_job_reports_its_submission_each_state_and_its_end() {
        let job = job("ghcr.io/bacalhau-project/hello:1.0", "echo hi");
        let mut out = Vec::new();
        let mut state = None;
        let events = testing::record(|| state = Some(submit_and_run(&job, "n-alice", &mut out)));
        assert_eq!(state.unwrap().unwrap(), JobState::Completed);
        assert_eq!(
            events.names(),
            [
                "job_submitted",
                "execution_updated",
                "execution_updated",
                "execution_updated",
                "job_finished"
            ]
        );
        let submitted = events.only("job_submitted");
        assert_eq!(submitted["namespace"], events.hash("alice-team"));
        assert_eq!(submitted["task_name"], events.hash("alice-task"));
        assert_eq!(
            submitted["docker_image"],
            "ghcr.io/bacalhau-project/hello:1.0"
        );
        assert_eq!(submitted["name_set"], true);
        assert_eq!(submitted["labels_count"], 1);
        assert_eq!(submitted["publisher_type"], "local");
        let states: Vec<_> = events
            .named("execution_updated")
            .map(|event| event["compute_state"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(states, ["new", "bid_accepted", "completed"]);
        let last = events.named("execution_updated").last().unwrap();
        assert_eq!(last["node_name"], events.hash("n-alice"));
        assert_eq!(last["exit_code"], 0);
        assert_eq!(last["published_result_type"], "local");
        assert_eq!(events.only("job_finished")["state"], "completed");
        assert!(!events.contains_text("alice"));
    }

    #[test]
    fn a_non_zero_exit_is_retried_once_then_fails_the_job() {
        let job = job("docker.io/alicecorp/payroll:2", "exit 3");
        let mut out = Vec::new();
        let mut state = None;
        let events = testing::record(|| state = Some(submit_and_run(&job, "n-1", &mut out)));
        assert_eq!(state.unwrap().unwrap(), JobState::Failed);
        let ends: Vec<_> = events
            .named("execution_updated")
            .filter(|event| event["compute_state"] == "failed")
            .collect();
        assert_eq!(ends.len(), 2);
        assert_eq!(ends[0]["exit_code"], 3);
        assert_eq!(ends[0]["error_code"], "non_zero_exit");
        assert_eq!(ends[0]["next_execution"], ends[1]["execution_id"]);
        assert_eq!(ends[1]["previous_execution"], ends[0]["execution_id"]);
        assert_eq!(ends[0]["follow_up_evaluation"], ends[1]["evaluation_id"]);
        assert_eq!(ends[1]["next_execution"], serde_json::Value::Null);
        let submitted = events.only("job_submitted");
        assert_eq!(
            submitted["docker_image"],
            events.hash("docker.io/alicecorp/payroll:2")
        );
        let finished = events.only("job_finished");
        assert_eq!(finished["state"], "failed");
        assert_eq!(finished["executions"], 2);
    }

    #[test]
    fn an_image_from_a_private_registry_cannot_be_pulled() {
        let job = job("registry.alice.example:5000/payroll:1", "echo hi");
        let events = testing::record(|| {
            let state = submit_and_run(&job, "n-1", &mut Vec::new()).unwrap();
            assert_eq!(state, JobState::Failed);
        });
        let end = events.named("execution_updated").last().unwrap();
        assert_eq!(end["error_code"], "image_pull_failed");
        assert_eq!(end["exit_code"], serde_json::Value::Null);
        assert_eq!(events.named("execution_updated").count(), 3);
        assert!(!events.contains_text("alice"));
    }

    #[test]
    fn an_invalid_spec_is_reported_with_its_error_and_not_run() {
        let mut job = job("ubuntu:24.04", "echo hi");
        job.tasks[0].name = None;
        let events = testing::record(|| {
            let error = submit_and_run(&job, "n-1", &mut Vec::new()).unwrap_err();
            assert_eq!(error.to_string(), "invalid job spec: the task has no Name");
        });
        assert_eq!(events.names(), ["job_submitted"]);
        assert_eq!(
            events.only("job_submitted")["error"],
            "the task has no Name"
        );
    }
}
