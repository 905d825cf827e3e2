//! Everything `jobs` sends: the node's attributes (with every event), and the events of a job's
//! life, field by field after Bacalhau's published telemetry, with what each field may reveal
//! decided on the field.

use std::time::{Duration, SystemTime};

use telemetry_runtime::{TelemetryEvent, TelemetryValue};

/// The role of the node running `jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue, clap::ValueEnum)]
pub enum NodeType {
    /// Accepts jobs and runs them.
    Hybrid,
    /// Accepts and schedules jobs.
    Orchestrator,
    /// Runs jobs.
    Compute,
}

impl NodeType {
    /// The node type as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Hybrid => "hybrid",
            NodeType::Orchestrator => "orchestrator",
            NodeType::Compute => "compute",
        }
    }

    /// The node type written as `text`, in any case.
    pub fn parse(text: &str) -> Option<NodeType> {
        match text.trim().to_ascii_lowercase().as_str() {
            "hybrid" => Some(NodeType::Hybrid),
            "orchestrator" => Some(NodeType::Orchestrator),
            "compute" => Some(NodeType::Compute),
            _ => None,
        }
    }
}

/// Where the node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum NodeEnvironment {
    /// Inside a Docker container (`/.dockerenv` exists).
    Docker,
    /// Anywhere else.
    Local,
}

impl NodeEnvironment {
    /// Docker when `/.dockerenv` exists: one `stat`, no parsing.
    pub fn detect() -> NodeEnvironment {
        if std::path::Path::new("/.dockerenv").exists() {
            NodeEnvironment::Docker
        } else {
            NodeEnvironment::Local
        }
    }
}

/// The attributes of the node, sent with every event (Bacalhau's resource attributes).
#[derive(Debug, Clone, TelemetryEvent)]
#[telemetry(nested)]
pub struct Node {
    /// The node's role: `hybrid`, `orchestrator` or `compute`.
    pub node_type: NodeType,
    /// The node's name (`nodename` in the configuration, by default a generated `n-<uuid>`),
    /// as a keyed hash: the same for every event of this installation, unreadable.
    #[hash]
    pub node_id: String,
    /// A random id generated once for this node's network and kept in the configuration
    /// (`networkid`), sent as is; null when the configuration holds something else than a
    /// generated id.
    #[plain]
    pub network_id: Option<String>,
    /// `docker` when the node runs in a Docker container, else `local`.
    pub node_environment: NodeEnvironment,
}

/// The kind of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum JobType {
    /// Runs to completion on `Count` nodes.
    Batch,
    /// Runs to completion on every matching node.
    Ops,
    /// Runs on every matching node until stopped.
    Daemon,
    /// Runs on `Count` nodes until stopped.
    Service,
}

impl JobType {
    /// Whether jobs of this type run until they are stopped.
    pub fn long_running(self) -> bool {
        matches!(self, JobType::Daemon | JobType::Service)
    }
}

/// The engine that runs a task. Engines this node does not know are sent as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum EngineType {
    /// Docker containers.
    Docker,
    /// WebAssembly modules.
    Wasm,
    /// Does nothing, successfully.
    Noop,
    /// Any other engine.
    Other,
}

/// Where results are published. Publishers this node does not know are sent as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum PublisherType {
    /// The node's local disk.
    Local,
    /// An S3 bucket.
    S3,
    /// IPFS.
    Ipfs,
    /// Nowhere.
    Noop,
    /// Any other publisher.
    Other,
}

/// The kind of an input source. Kinds this node does not know are sent as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum InputSourceType {
    /// A file downloaded from a URL.
    UrlDownload,
    /// An S3 object or prefix.
    S3,
    /// An IPFS CID.
    Ipfs,
    /// A directory of the node.
    LocalDirectory,
    /// Data written in the spec.
    Inline,
    /// Any other kind.
    Other,
}

/// The network access a task asks for. Kinds this node does not know are sent as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum NetworkType {
    /// No network.
    None,
    /// HTTP(S) to the listed domains only.
    Http,
    /// Unrestricted.
    Full,
    /// The host's network.
    Host,
    /// A bridge network.
    Bridge,
    /// Any other kind.
    Other,
}

/// A GPU's maker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum GpuVendor {
    /// NVIDIA.
    Nvidia,
    /// AMD.
    Amd,
    /// Intel.
    Intel,
}

impl GpuVendor {
    /// The vendor written as `text`, in any case.
    pub fn parse(text: &str) -> Option<GpuVendor> {
        match text.trim().to_ascii_lowercase().as_str() {
            "nvidia" => Some(GpuVendor::Nvidia),
            "amd" => Some(GpuVendor::Amd),
            "intel" => Some(GpuVendor::Intel),
            _ => None,
        }
    }

    /// The model this node has of this vendor's GPUs.
    pub fn model(self) -> &'static str {
        match self {
            GpuVendor::Nvidia => "Tesla T4",
            GpuVendor::Amd => "Instinct MI210",
            GpuVendor::Intel => "Data Center GPU Max 1100",
        }
    }
}

/// A job was submitted: what it asks for, in counts, kinds and hashes. Sent also when the spec
/// is invalid, with the error.
#[derive(Debug, TelemetryEvent)]
#[telemetry(name = "job_submitted")]
pub struct JobSubmitted<'a> {
    /// The job's random id, generated at submission.
    #[plain]
    pub job_id: &'a str,
    /// The job's namespace (`default` when the spec has none), as a keyed hash.
    #[hash]
    pub namespace: &'a str,
    /// Whether the job has a name; never the name.
    #[is_set]
    #[telemetry(rename = "name_set")]
    pub name: Option<&'a str>,
    /// The job's type; null when the spec's type is unknown.
    pub job_type: Option<JobType>,
    /// How many executions the job asks for.
    pub count: u64,
    /// How many labels the job has; never their keys or values.
    pub labels_count: u64,
    /// How many metadata entries the job has; never their keys or values.
    pub meta_count: u64,
    /// The job's version, 1 at submission.
    pub version: u64,
    /// The job's revision, 1 at submission.
    pub revision: u64,
    /// The task's name, as a keyed hash; null without a task.
    #[hash]
    pub task_name: Option<&'a str>,
    /// The task's engine; null without a task.
    pub engine_type: Option<EngineType>,
    /// Where the task publishes its results; null when it does not.
    pub publisher_type: Option<PublisherType>,
    /// How many environment variables the job and its task set (job `Env`, task `Env` and
    /// the engine's `EnvironmentVariables`); never their names or values.
    pub env_var_count: u64,
    /// How many metadata entries the task has.
    pub task_meta_count: u64,
    /// The kind of each input source, in order; never their locations.
    pub input_source_types: Vec<InputSourceType>,
    /// How many result paths the task declares; never the paths.
    pub result_path_count: u64,
    /// The Docker image: in clear for the project's public images, a keyed hash otherwise;
    /// null for other engines.
    #[trusted_or_hash(prefixes = ["ghcr.io/bacalhau-project/", "expanso/", "bacalhauproject/"])]
    pub docker_image: Option<&'a str>,
    /// CPU cores requested (0 when not given).
    pub cpu: f64,
    /// Memory requested, in bytes (0 when not given).
    #[telemetry(rename = "memory_bytes")]
    pub memory: u64,
    /// Disk requested, in bytes (0 when not given).
    #[telemetry(rename = "disk_bytes")]
    pub disk: u64,
    /// GPUs requested.
    pub gpu: u64,
    /// The vendor of the GPUs requested, once per vendor; empty without GPUs.
    pub gpu_types: Vec<GpuVendor>,
    /// The network access the task asks for (`none` when not given).
    pub network_type: Option<NetworkType>,
    /// How many domains the task may reach; never the domains.
    pub domain_count: u64,
    /// The execution timeout (0: none).
    #[telemetry(rename = "execution_timeout_ms")]
    pub execution_timeout: Duration,
    /// The queue timeout (0: none).
    #[telemetry(rename = "queue_timeout_ms")]
    pub queue_timeout: Duration,
    /// The total timeout (0: none).
    #[telemetry(rename = "total_timeout_ms")]
    pub total_timeout: Duration,
    /// What looked suspicious but was accepted, in the program's own words, scrubbed.
    #[scrub(max_len = 120)]
    pub warnings: Vec<String>,
    /// Why the spec was refused, scrubbed; null when it was accepted.
    #[scrub(max_len = 200)]
    pub error: Option<String>,
}

/// What the scheduler wants of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum DesiredState {
    /// Waiting to be started.
    Pending,
    /// Should run.
    Running,
    /// Should be, or is, stopped.
    Stopped,
}

/// Where an execution is on the compute node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum ComputeState {
    /// Just created.
    New,
    /// The node accepted it and runs it.
    BidAccepted,
    /// It ended successfully.
    Completed,
    /// It ended in failure.
    Failed,
    /// It was stopped before it ended.
    Cancelled,
}

/// Why an execution failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum ErrorCode {
    /// The node does not have the task's engine.
    UnsupportedEngine,
    /// The image could not be pulled.
    ImagePullFailed,
    /// The task's process exited with a non-zero code.
    NonZeroExit,
}

/// The resources an execution was given.
#[derive(Debug, Clone, TelemetryEvent)]
#[telemetry(nested)]
pub struct ExecutionResources {
    /// CPU cores.
    pub cpu: f64,
    /// Memory, in bytes.
    #[telemetry(rename = "memory_bytes")]
    pub memory: u64,
    /// Disk, in bytes.
    #[telemetry(rename = "disk_bytes")]
    pub disk: u64,
    /// How many GPUs.
    pub gpu: u64,
    /// The GPUs given, one entry each.
    pub gpus: Vec<Gpu>,
}

/// A GPU given to an execution.
#[derive(Debug, Clone, TelemetryEvent)]
#[telemetry(nested)]
pub struct Gpu {
    /// The GPU's model, from the node's own inventory (`Tesla T4`, ...).
    #[plain]
    pub name: &'static str,
    /// The GPU's maker.
    pub vendor: GpuVendor,
}

/// An execution of a job changed state: created, started, then completed, failed or stopped.
#[derive(Debug, TelemetryEvent)]
#[telemetry(name = "execution_updated")]
pub struct ExecutionUpdated<'a> {
    /// The execution's random id.
    #[plain]
    pub execution_id: &'a str,
    /// The job's random id.
    #[plain]
    pub job_id: &'a str,
    /// The random id of the evaluation that created the execution.
    #[plain]
    pub evaluation_id: &'a str,
    /// The name of the node running it, as a keyed hash (equal to `node_id`).
    #[hash]
    pub node_name: &'a str,
    /// The job's namespace, as a keyed hash.
    #[hash]
    pub namespace: &'a str,
    /// Whether the job has a name; never the name.
    #[is_set]
    #[telemetry(rename = "name_set")]
    pub name: Option<&'a str>,
    /// The id of the execution this one retries, or null.
    #[plain]
    pub previous_execution: Option<&'a str>,
    /// The id of the execution that retries this one, or null.
    #[plain]
    pub next_execution: Option<&'a str>,
    /// The id of the evaluation scheduled after this execution ended (to retry it), or null.
    #[plain]
    pub follow_up_evaluation: Option<&'a str>,
    /// The execution's revision: 1 when created, one more at each change.
    pub revision: u64,
    /// When the execution was created.
    pub create_time: SystemTime,
    /// When it last changed.
    pub modify_time: SystemTime,
    /// How long it waited between creation and start (0 until it starts).
    #[telemetry(rename = "queued_ms")]
    pub queued: Duration,
    /// How long it ran (0 until it ends).
    #[telemetry(rename = "run_ms")]
    pub ran: Duration,
    /// The resources it was given.
    pub resources: ExecutionResources,
    /// What the scheduler wants of it.
    pub desired_state: DesiredState,
    /// Where it is on the compute node.
    pub compute_state: ComputeState,
    /// The compute node's message about the change, scrubbed; null when there is none.
    #[scrub(max_len = 200)]
    pub compute_message: Option<String>,
    /// Why it failed; null unless it failed.
    pub error_code: Option<ErrorCode>,
    /// Where its results were published; null unless it completed and has a publisher.
    pub published_result_type: Option<PublisherType>,
    /// Its process's exit code; null until it exits, or when it never ran.
    pub exit_code: Option<i32>,
    /// Whether its standard output was cut to the node's limit.
    pub stdout_truncated: bool,
    /// Whether its standard error was cut to the node's limit.
    pub stderr_truncated: bool,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum JobState {
    /// Every execution completed.
    Completed,
    /// An execution failed, retries included.
    Failed,
    /// A long-running job (daemon, service) was stopped.
    Stopped,
}

/// A job reached its terminal state.
#[derive(Debug, TelemetryEvent)]
#[telemetry(name = "job_finished")]
pub struct JobFinished<'a> {
    /// The job's random id.
    #[plain]
    pub job_id: &'a str,
    /// The job's namespace, as a keyed hash.
    #[hash]
    pub namespace: &'a str,
    /// How the job ended.
    pub state: JobState,
    /// How many executions it had, retries included.
    pub executions: u64,
    /// When the job was submitted.
    pub create_time: SystemTime,
    /// When it reached this state.
    pub modify_time: SystemTime,
    /// From submission to this state.
    #[telemetry(rename = "duration_ms")]
    pub duration: Duration,
}
