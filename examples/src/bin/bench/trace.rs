//! `bench trace FILE`: reads the JSON lines `bench run --output DIR` writes to
//! `DIR/trace.jsonl`, one per task, and summarizes them. Only the format is sent, never the
//! file's path or anything read from it.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use telemetry_runtime::{TelemetryEvent, TelemetryValue, instrument_command};

use crate::catalog::{ErrorType, OsType, Stage};

/// How `bench trace` prints its summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, TelemetryValue)]
pub enum TraceFormat {
    Text,
    Json,
}

/// What `bench trace` is given.
#[derive(Debug, clap::Args, TelemetryEvent)]
#[telemetry(nested)]
pub struct TraceArgs {
    /// The trace file, as written by `bench run --output DIR` (`DIR/trace.jsonl`). Never sent.
    #[skip]
    pub file: PathBuf,
    /// How to print the summary.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TraceFormat,
}

/// One task of a run, as `bench run --output` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRecord {
    pub env: String,
    pub task_index: u32,
    pub batch_index: u32,
    pub os: OsType,
    pub success: bool,
    pub reward: Option<f64>,
    pub steps: u32,
    pub duration_ms: u64,
    pub error_type: Option<ErrorType>,
    pub stage: Option<Stage>,
    pub error: Option<String>,
}

/// What a trace adds up to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceSummary {
    pub tasks: usize,
    pub succeeded: usize,
    pub scored_below_one: usize,
    pub failed: usize,
    pub mean_reward: Option<f64>,
    pub total_steps: u64,
}

/// Why a trace could not be summarized.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("trace {path}, line {line}: not a task record: {source}")]
    Malformed {
        path: String,
        line: usize,
        source: serde_json::Error,
    },
}

/// Adds up the records of a trace file's text.
pub fn summarize(path: &str, text: &str) -> Result<TraceSummary, TraceError> {
    let mut summary = TraceSummary {
        tasks: 0,
        succeeded: 0,
        scored_below_one: 0,
        failed: 0,
        mean_reward: None,
        total_steps: 0,
    };
    let mut rewards = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: TraceRecord =
            serde_json::from_str(line).map_err(|source| TraceError::Malformed {
                path: path.to_owned(),
                line: number + 1,
                source,
            })?;
        summary.tasks += 1;
        summary.total_steps += u64::from(record.steps);
        match record.reward {
            Some(reward) => {
                rewards.push(reward);
                if record.success {
                    summary.succeeded += 1;
                } else {
                    summary.scored_below_one += 1;
                }
            }
            None => summary.failed += 1,
        }
    }
    if !rewards.is_empty() {
        summary.mean_reward = Some(rewards.iter().sum::<f64>() / rewards.len() as f64);
    }
    Ok(summary)
}

/// Summarizes a trace file, printing the summary in `format`.
#[instrument_command(name = "trace")]
pub fn trace(#[telemetry] args: &TraceArgs) -> Result<String, TraceError> {
    let path = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).map_err(|source| TraceError::Read {
        path: path.clone(),
        source,
    })?;
    let summary = summarize(&path, &text)?;
    Ok(match args.format {
        TraceFormat::Json => {
            serde_json::to_string_pretty(&summary).expect("a summary always serializes") + "\n"
        }
        TraceFormat::Text => {
            let mut out = String::new();
            let _ = writeln!(out, "tasks:            {}", summary.tasks);
            let _ = writeln!(out, "succeeded:        {}", summary.succeeded);
            let _ = writeln!(out, "scored below 1:   {}", summary.scored_below_one);
            let _ = writeln!(out, "failed:           {}", summary.failed);
            match summary.mean_reward {
                Some(mean) => {
                    let _ = writeln!(out, "mean reward:      {mean:.3}");
                }
                None => out.push_str("mean reward:      none scored\n"),
            }
            let _ = writeln!(out, "steps:            {}", summary.total_steps);
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use telemetry_runtime::testing;

    use super::*;

    fn record(env: &str, reward: Option<f64>, steps: u32) -> String {
        serde_json::to_string(&TraceRecord {
            env: env.to_owned(),
            task_index: 0,
            batch_index: 0,
            os: OsType::Linux,
            success: reward == Some(1.0),
            reward,
            steps,
            duration_ms: 1,
            error_type: reward.is_none().then_some(ErrorType::Timeout),
            stage: reward.is_none().then_some(Stage::Step),
            error: reward.is_none().then(|| "too slow".to_owned()),
        })
        .unwrap()
    }

    #[test]
    fn a_trace_is_summarized_and_only_its_format_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alice-private").join("trace.jsonl");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let lines = [
            record("payroll-portal", Some(1.0), 3),
            record("click-button", Some(0.5), 4),
            record("crm", None, 1),
        ];
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let args = TraceArgs {
            file,
            format: TraceFormat::Json,
        };
        let mut printed = None;
        let events = testing::record(|| printed = Some(trace(&args).unwrap()));
        let summary: serde_json::Value = serde_json::from_str(&printed.unwrap()).unwrap();
        assert_eq!(summary["tasks"], 3);
        assert_eq!(summary["succeeded"], 1);
        assert_eq!(summary["scored_below_one"], 1);
        assert_eq!(summary["failed"], 1);
        assert_eq!(summary["mean_reward"], 0.75);
        assert_eq!(summary["total_steps"], 8);

        let command = events.only("command");
        assert_eq!(
            command.property_names(),
            ["command", "duration_ms", "outcome", "error_type", "format"]
        );
        assert_eq!(command["command"], "trace");
        assert_eq!(command["outcome"], "ok");
        assert_eq!(command["format"], "json");
        assert!(!events.contains_text("alice"));
        assert!(!events.contains_text("payroll"));
    }

    #[test]
    fn a_malformed_trace_is_an_error_naming_the_line_without_sending_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alice-private.jsonl");
        std::fs::write(&file, record("crm", None, 1) + "\n{\"env\": 3}\n").unwrap();
        let args = TraceArgs {
            file,
            format: TraceFormat::Text,
        };
        let mut result = None;
        let events = testing::record(|| result = Some(trace(&args)));
        let error = result.unwrap().unwrap_err();
        assert!(
            matches!(error, TraceError::Malformed { line: 2, .. }),
            "{error}"
        );
        let command = events.only("command");
        assert_eq!(command["outcome"], "error");
        // The error's message names the file: only its type is sent.
        assert_eq!(command["error_message"], serde_json::Value::Null);
        assert!(
            command["error_type"]
                .as_str()
                .unwrap()
                .ends_with("TraceError")
        );
        assert!(!events.contains_text("alice"));
    }
}
