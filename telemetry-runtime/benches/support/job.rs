//! The event the benchmarks send: a Bacalhau-sized `job_submitted` with 31 properties (three
//! keyed hashes, one trusted-or-hash image, four counts, nested resources with a GPU list and a
//! scrubbed message). The comparison harness in `bench-compare/` includes this file too, so
//! both measure the same event.

// Not every variant is sent: they are there to give the enums their usual shape.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use serde::Serialize;
use telemetry_runtime::{TelemetryEvent, TelemetryValue};

/// What kind of job it is.
#[derive(Debug, Clone, Copy, TelemetryValue, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// Runs once to completion.
    Batch,
    /// Runs on every node.
    Ops,
}

/// What runs the task.
#[derive(Debug, Clone, Copy, TelemetryValue, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// A container image.
    Docker,
    /// A WebAssembly module.
    Wasm,
}

/// Where the results go.
#[derive(Debug, Clone, Copy, TelemetryValue, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Publisher {
    /// An S3 bucket.
    S3,
    /// The node's disk.
    Local,
}

/// The network the task may use.
#[derive(Debug, Clone, Copy, TelemetryValue, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// None at all.
    None,
    /// Listed domains over HTTP.
    Http,
}

/// Where an input comes from.
#[derive(Debug, Clone, Copy, TelemetryValue, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An S3 object.
    S3,
    /// A URL.
    Url,
    /// A directory on the node.
    LocalDirectory,
}

/// Who made a GPU.
#[derive(Debug, Clone, Copy, TelemetryValue, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vendor {
    /// NVIDIA.
    Nvidia,
    /// AMD.
    Amd,
}

/// One GPU the job asks for.
#[derive(Debug, Clone, TelemetryEvent, Serialize)]
#[telemetry(nested)]
pub struct Gpu {
    /// Its maker.
    pub vendor: Vendor,
    /// Its model, one of a known list.
    #[plain]
    pub model: &'static str,
    /// Its memory in MiB.
    pub memory_mib: u64,
}

/// What the job asks for.
#[derive(Debug, Clone, TelemetryEvent, Serialize)]
#[telemetry(nested)]
pub struct Resources {
    /// CPU cores.
    pub cpu: f64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Disk in bytes.
    pub disk_bytes: u64,
    /// The GPUs.
    pub gpus: Vec<Gpu>,
}

/// A job was submitted.
#[derive(Debug, Clone, TelemetryEvent)]
#[telemetry(name = "job_submitted")]
pub struct JobSubmitted {
    /// The job's random id.
    #[plain]
    pub job_id: String,
    /// The namespace, hashed.
    #[hash]
    pub namespace: String,
    /// The task's name, hashed.
    #[hash]
    pub task_name: String,
    /// The node's id, hashed.
    #[hash]
    pub node_id: String,
    /// The image: in clear for the project's own, hashed otherwise.
    #[trusted_or_hash(prefixes = ["ghcr.io/bacalhau-project/", "expanso/"])]
    pub docker_image: String,
    /// How many labels.
    #[count]
    #[telemetry(rename = "labels_count")]
    pub labels: Vec<String>,
    /// How many metadata entries.
    #[count]
    #[telemetry(rename = "meta_count")]
    pub meta: Vec<String>,
    /// How many environment variables.
    #[count]
    #[telemetry(rename = "env_var_count")]
    pub env: Vec<String>,
    /// How many inputs.
    #[count]
    #[telemetry(rename = "input_count")]
    pub inputs: Vec<String>,
    /// The job's type.
    pub job_type: JobType,
    /// The task's engine.
    pub engine: Engine,
    /// The publisher.
    pub publisher: Publisher,
    /// The network.
    pub network: Network,
    /// The kind of each input.
    pub input_types: Vec<Source>,
    /// Executions asked for.
    pub count: u64,
    /// The priority.
    pub priority: u64,
    /// The job's version.
    pub version: u64,
    /// The job's revision.
    pub revision: u64,
    /// Executions that may run at once.
    pub max_parallel: u64,
    /// Node constraints.
    pub constraint_count: u64,
    /// Result paths.
    pub result_path_count: u64,
    /// Retries allowed.
    pub retries: u32,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// The resources.
    pub resources: Resources,
    /// The execution timeout.
    pub execution_timeout: Duration,
    /// The queueing timeout.
    pub queue_timeout: Duration,
    /// When it was submitted.
    pub submitted_at: SystemTime,
    /// Why validation warned, scrubbed.
    #[scrub(max_len = 120)]
    pub warning: String,
}

impl JobSubmitted {
    /// A typical job, with a warning that names a host and a user's path.
    pub fn sample() -> JobSubmitted {
        let strings = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect();
        JobSubmitted {
            job_id: "j-5f0c5a8e-7a51-4e43-9d2c-1b7f4c1d2e3f".into(),
            namespace: "research-prod".into(),
            task_name: "nightly-embeddings".into(),
            node_id: "n-8b1f2c3d-7e6f-4a5b-9c8d-0e1f2a3b4c5d".into(),
            docker_image: "ghcr.io/bacalhau-project/examples/embed:1.4.2".into(),
            labels: strings("label-", 4),
            meta: strings("meta-", 2),
            env: strings("ENV_", 6),
            inputs: strings("s3://bucket/key-", 3),
            job_type: JobType::Batch,
            engine: Engine::Docker,
            publisher: Publisher::S3,
            network: Network::Http,
            input_types: vec![Source::S3, Source::Url, Source::LocalDirectory],
            count: 4,
            priority: 50,
            version: 1,
            revision: 1,
            max_parallel: 2,
            constraint_count: 1,
            result_path_count: 2,
            retries: 3,
            dry_run: false,
            resources: Resources {
                cpu: 2.5,
                memory_bytes: 8 << 30,
                disk_bytes: 40 << 30,
                gpus: vec![
                    Gpu {
                        vendor: Vendor::Nvidia,
                        model: "A100",
                        memory_mib: 40_960,
                    },
                    Gpu {
                        vendor: Vendor::Amd,
                        model: "MI250",
                        memory_mib: 65_536,
                    },
                ],
            },
            execution_timeout: Duration::from_secs(1800),
            queue_timeout: Duration::from_secs(600),
            submitted_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
            warning: "image pulled from 10.0.3.17:5000 into /home/alice/jobs/cache was stale"
                .into(),
        }
    }
}
