//! `bench`: a small benchmark runner for computer-use agents, whose telemetry reproduces the
//! events cua-bench publishes, field by field, with stronger privacy.
//!
//! It runs the tasks of a dataset (built in, or a JSON file of the user's own) with a scripted
//! agent on simulated desktops, entirely in this process: no network, no waiting.
//!
//! - `bench run [--dataset bench-basic|FILE] [--tasks N] [--variants N] [--parallelism N]
//!   [--agent NAME] [--model NAME] [--provider local|docker|cloud] [--output DIR]
//!   [--api-key KEY]` runs each task in each variant on up to `--parallelism` threads; some
//!   tasks are scored, some fail, always the same ones. `--output DIR` writes
//!   `DIR/trace.jsonl`, one line per task.
//! - `bench interact --env NAME [--prompt TEXT]` lets the scripted agent take one step in a
//!   built-in environment.
//! - `bench trace FILE [--format text|json]` summarizes a trace written by `run --output`.
//! - `bench platform list [--json]` lists the providers and the operating systems they offer.
//! - `bench telemetry status|enable|disable|local|schema [--json]|reset` shows or changes
//!   what telemetry does; `schema` lists every event below with every property
//!   (`examples/bench.TELEMETRY.md`).
//!
//! # What is sent, against cua-bench's published telemetry
//!
//! | cua-bench | here |
//! | --- | --- |
//! | `cb_command_invoked`: `command`, `subcommand` | the `command` event of each instrumented command: `command` (`run`, `interact`, `trace`, `platform list`), with `duration_ms`, `outcome` and `error_type` added |
//! | `cb_command_invoked`: `args` (`agent`, `model`, `provider_type`, `max_parallel`, ...) | the command's own properties: `run` sends `dataset`, `agent`, `model` (in clear when built in, else keyed hashes), `tasks`, `variants`, `parallelism`, `provider`, and only whether `output` and `api_key` were given; `interact` sends `env` and whether `prompt` was given; `trace` its `format`; `platform list` `json` |
//! | `cb_task_execution_started`: `env_name`, `task_index`, `execution_mode`, `provider_type`, `os_type`, `agent`, `model`, `max_steps`, `run_id` | `task_started`, the same fields; `os_type` is the task desktop's OS (`linux`, `windows`, `android`, `macos`), an enum |
//! | `cb_task_evaluation_completed`: `env_name`, `task_index`, `success`, `reward`, `total_steps`, `duration_seconds`, `run_id`, `agent`, `model` | `evaluation_completed`, the same fields, `duration_ms` in milliseconds |
//! | `cb_task_execution_failed`: `env_name`, `task_index`, `error_type`, `error_message` (cut to 200 characters), `stage`, `run_id` | `task_failed`: `error_type` from a fixed list, `error_message` only for the program's own messages (built-in datasets), never with the API key, scrubbed of paths, URLs, e-mail addresses and keys, then cut to 200 bytes (`error_message_truncated` says whether it was); `null` for a dataset file's tasks, whose messages are the user's text |
//! | `cb_batch_job_started`: `dataset_name`, `task_count`, `variant_count`, `parallelism`, `agent`, `model`, `provider_type`, `run_id` | `batch_started`, the same fields |
//! | `cb_batch_task_completed`: `env_name`, `task_index`, `success`, `reward`, `total_steps`, `duration_seconds`, `error_type`, `run_id` | `batch_task_completed`, the same fields plus `batch_index`; `error_type` from the fixed list instead of the message's first 50 characters |
//! | `cb_task_step_executed`: `action_type`, `step_count`, `duration_ms`, `run_id` | `step_executed`, sent by `interact` for its step |
//! | every event: `bench_version`, `python_version`, `os`, `os_version`, `is_ci`, `timestamp` | sent by the library with every event: `$app_version`, `rustc_version`, `os_name`, `os_version`, `ci`, and the event's `timestamp` |
//!
//! cua-bench sends dataset, environment, agent and model names as given, so a private
//! dataset's or a fine-tuned model's name leaves the machine. Here only the built-in names and
//! public models are sent in clear; any other name is an HMAC under a key that never leaves
//! the machine. Failure messages are scrubbed, not only cut. Arguments are sent only where
//! annotated, prompts and keys never, and a command's error is sent as its type only, since
//! its message names the user's files.
//!
//! # Opting out
//!
//! - `BENCH_TELEMETRY_ENABLED=false` (cua-bench's `CUA_TELEMETRY_ENABLED=false`): `false`,
//!   `0`, `no` and `off`, in any case, turn telemetry off, and so does any value that is not
//!   one of `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` or `local`; `local` records on this
//!   machine only. It wins over any opt-in.
//! - The library's own: `BENCH_TELEMETRY=off`, `DO_NOT_TRACK=1`, `bench telemetry disable`,
//!   and CI (off unless turned on explicitly).
//! - `BENCH_TELEMETRY_DEBUG=on` (any value but `0`, `false`, `no` or `off`) prints to stderr
//!   every payload exactly as it is sent.
//!
//! # Running it
//!
//! ```text
//! cargo run -p examples --bin bench -- run --variants 2 --parallelism 4 --output /tmp/bench
//! cargo run -p examples --bin bench -- trace /tmp/bench/trace.jsonl
//! cargo run -p examples --bin bench -- interact --env fill-form
//! cargo run -p examples --bin bench -- platform list
//! cargo run -p examples --bin bench -- telemetry schema
//! ```
//!
//! Without `BENCH_TELEMETRY_ENDPOINT` at build or run time, events are recorded in the local
//! log of the state directory (`bench telemetry status` shows where), never uploaded.

mod catalog;
mod events;
mod interact;
mod platform;
mod run;
mod trace;

use std::process::ExitCode;

use clap::Parser as _;
use telemetry_runtime::{Builder, Polarity, Telemetry, TelemetryCommand};

/// Runs computer-use tasks with a scripted agent on simulated desktops.
#[derive(Debug, clap::Parser)]
#[command(name = "bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run a dataset's tasks and score them.
    Run(run::RunArgs),
    /// Let the agent take one step in an environment.
    Interact(interact::InteractArgs),
    /// Summarize a trace written by `run --output`.
    Trace(trace::TraceArgs),
    /// The providers tasks can run on.
    #[command(subcommand)]
    Platform(PlatformCommand),
    /// Show or change what telemetry does.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
}

#[derive(Debug, clap::Subcommand)]
enum PlatformCommand {
    /// List the providers and the operating systems each offers.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The telemetry of `bench`, not started.
fn telemetry() -> Builder {
    Telemetry::builder("bench", env!("CARGO_PKG_VERSION"))
        .api_key("phc_bench_example")
        .endpoint(option_env!("BENCH_TELEMETRY_ENDPOINT"))
        .opt_out_var("BENCH_TELEMETRY_ENABLED", Polarity::Enables)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let builder = telemetry();
    if let Command::Telemetry(command) = &cli.command {
        return command.run_and_report(&builder);
    }
    let _telemetry = builder.start();
    telemetry_runtime::install_panic_hook();
    let failed = match &cli.command {
        Command::Run(args) => run::run(args).err().map(|error| error.to_string()),
        Command::Interact(args) => interact::interact(args)
            .err()
            .map(|error| error.to_string()),
        Command::Trace(args) => match trace::trace(args) {
            Ok(summary) => {
                print!("{summary}");
                None
            }
            Err(error) => Some(error.to_string()),
        },
        Command::Platform(PlatformCommand::List { json }) => {
            print!("{}", platform::list(*json));
            None
        }
        Command::Telemetry(_) => None,
    };
    match failed {
        Some(error) => {
            eprintln!("bench: {error}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}
