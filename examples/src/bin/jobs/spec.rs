//! Job specs in the shape of Bacalhau's, read from YAML or JSON, and their validation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use telemetry_runtime::TelemetryValue;

use super::events::{EngineType, GpuVendor, InputSourceType, JobType, NetworkType, PublisherType};

/// A job spec's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue, clap::ValueEnum)]
pub enum SpecFormat {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

impl SpecFormat {
    /// The format named by `path`'s extension, if it names one.
    pub fn from_extension(path: &Path) -> Option<SpecFormat> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "yaml" | "yml" => Some(SpecFormat::Yaml),
            "json" => Some(SpecFormat::Json),
            _ => None,
        }
    }

    /// JSON when the text starts with `{`, else YAML (of which JSON is nearly a subset).
    pub fn from_content(text: &str) -> SpecFormat {
        if text.trim_start().starts_with('{') {
            SpecFormat::Json
        } else {
            SpecFormat::Yaml
        }
    }
}

impl fmt::Display for SpecFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecFormat::Yaml => "YAML",
            SpecFormat::Json => "JSON",
        })
    }
}

/// A number or a text, as YAML and JSON write quantities (`CPU: 1`, `CPU: "500m"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Scalar {
    /// A number.
    Number(f64),
    /// A text.
    Text(String),
}

/// A job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Job {
    pub name: Option<String>,
    pub namespace: Option<String>,
    #[serde(rename = "Type")]
    pub job_type: Option<String>,
    pub count: Option<u64>,
    pub labels: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub tasks: Vec<Task>,
    /// Environment variables for every task of the job.
    pub env: BTreeMap<String, String>,
}

/// A task of a job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    pub name: Option<String>,
    pub engine: Option<Engine>,
    pub publisher: Option<Publisher>,
    pub input_sources: Vec<InputSource>,
    pub result_paths: Vec<ResultPath>,
    pub resources: Option<Resources>,
    pub network: Option<Network>,
    pub timeouts: Option<Timeouts>,
    pub env: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
}

/// A task's engine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Engine {
    #[serde(rename = "Type")]
    pub engine_type: String,
    pub params: EngineParams,
}

/// What the engine runs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EngineParams {
    pub image: Option<String>,
    pub entrypoint: Vec<String>,
    pub parameters: Vec<String>,
    /// `NAME=value` pairs.
    pub environment_variables: Vec<String>,
}

/// Where results go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Publisher {
    #[serde(rename = "Type")]
    pub publisher_type: String,
    pub params: BTreeMap<String, serde_json::Value>,
}

/// Data mounted into the task.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InputSource {
    pub alias: Option<String>,
    pub target: Option<String>,
    pub source: SourceSpec,
}

/// Where an input source comes from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SourceSpec {
    #[serde(rename = "Type")]
    pub source_type: String,
    pub params: BTreeMap<String, serde_json::Value>,
}

/// A path whose contents are results.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ResultPath {
    pub name: Option<String>,
    pub path: Option<String>,
}

/// What the task needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    #[serde(rename = "CPU")]
    pub cpu: Option<Scalar>,
    #[serde(rename = "Memory")]
    pub memory: Option<Scalar>,
    #[serde(rename = "Disk")]
    pub disk: Option<Scalar>,
    #[serde(rename = "GPU")]
    pub gpu: Option<Scalar>,
    /// The GPUs' vendor (`nvidia`, `amd`, `intel`); NVIDIA when not given.
    #[serde(rename = "GPUType")]
    pub gpu_type: Option<String>,
}

/// The network the task may reach.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Network {
    #[serde(rename = "Type")]
    pub network_type: Option<String>,
    pub domains: Vec<String>,
}

/// Timeouts, in seconds (0: none).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Timeouts {
    pub execution_timeout: u64,
    pub queue_timeout: u64,
    pub total_timeout: u64,
}

/// Why a spec could not be read. The text says what kind of problem it is and where, never
/// what the spec holds: it is also sent, scrubbed, as the `run` command's error message.
#[derive(Debug)]
pub enum SpecError {
    /// The file could not be read.
    Read(std::io::Error),
    /// The file is not valid YAML or JSON, or not shaped like a job.
    Parse {
        format: SpecFormat,
        line: Option<usize>,
        detail: String,
    },
}

impl SpecError {
    /// The whole explanation, for the user's terminal only: a parser's message may quote the
    /// spec.
    pub fn detail(&self) -> String {
        match self {
            SpecError::Read(error) => format!("cannot read the job spec: {error}"),
            SpecError::Parse { format, detail, .. } => {
                format!("the job spec is not a valid {format} job: {detail}")
            }
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Read(error) => write!(f, "cannot read the job spec: {}", error.kind()),
            SpecError::Parse {
                format,
                line: Some(line),
                ..
            } => write!(f, "the job spec is not a valid {format} job (line {line})"),
            SpecError::Parse { format, .. } => {
                write!(f, "the job spec is not a valid {format} job")
            }
        }
    }
}

impl std::error::Error for SpecError {}

/// Reads the spec at `path`, in `format` or, when `None`, the format its content looks like.
pub fn read(path: &Path, format: Option<SpecFormat>) -> Result<(Job, SpecFormat), SpecError> {
    let text = std::fs::read_to_string(path).map_err(SpecError::Read)?;
    let format = format.unwrap_or_else(|| SpecFormat::from_content(&text));
    parse(&text, format).map(|job| (job, format))
}

/// Parses a spec written in `format`.
pub fn parse(text: &str, format: SpecFormat) -> Result<Job, SpecError> {
    match format {
        SpecFormat::Json => serde_json::from_str(text).map_err(|error| SpecError::Parse {
            format,
            line: Some(error.line()),
            detail: error.to_string(),
        }),
        SpecFormat::Yaml => {
            if text.trim().is_empty() {
                return Err(SpecError::Parse {
                    format,
                    line: None,
                    detail: "the file is empty".to_owned(),
                });
            }
            serde_saphyr::from_str(text).map_err(|error| SpecError::Parse {
                format,
                line: None,
                detail: error.to_string(),
            })
        }
    }
}

/// What a valid spec asks for, in the terms the scheduler and its events use.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub job_type: JobType,
    pub count: u64,
    pub engine: EngineType,
    pub publisher: Option<PublisherType>,
    pub cpu: f64,
    pub memory: u64,
    pub disk: u64,
    pub gpu: u64,
    pub gpu_vendor: GpuVendor,
    pub network: NetworkType,
    pub execution_timeout: Duration,
    pub queue_timeout: Duration,
    pub total_timeout: Duration,
}

/// The outcome of validating a spec: what it asks for as far as it could be read, what looked
/// suspicious, and why it is refused, if it is. Messages are the program's own words, never
/// values from the spec, so they can be sent.
#[derive(Debug, Clone)]
pub struct Validation {
    pub plan: Plan,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

impl Job {
    /// The namespace, `default` when the spec gives none.
    pub fn namespace(&self) -> &str {
        match self.namespace.as_deref() {
            Some(namespace) if !namespace.trim().is_empty() => namespace,
            _ => "default",
        }
    }

    /// The job's type, when it is one of the known ones.
    pub fn kind(&self) -> Option<JobType> {
        match self
            .job_type
            .as_deref()?
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "batch" => Some(JobType::Batch),
            "ops" => Some(JobType::Ops),
            "daemon" => Some(JobType::Daemon),
            "service" => Some(JobType::Service),
            _ => None,
        }
    }

    /// The job's one task, if it has any.
    pub fn task(&self) -> Option<&Task> {
        self.tasks.first()
    }

    /// How many environment variables the job and its task set.
    pub fn env_var_count(&self) -> u64 {
        let task = self.task().map_or(0, |task| {
            task.env.len()
                + task
                    .engine
                    .as_ref()
                    .map_or(0, |engine| engine.params.environment_variables.len())
        });
        (self.env.len() + task) as u64
    }

    /// The Docker image, for a Docker task.
    pub fn docker_image(&self) -> Option<&str> {
        let engine = self.task()?.engine.as_ref()?;
        (engine_type(&engine.engine_type) == EngineType::Docker)
            .then_some(engine.params.image.as_deref())
            .flatten()
    }

    /// Checks the spec: warnings for what is accepted but suspicious, an error for what
    /// cannot run. Stops at the first error.
    pub fn validate(&self) -> Validation {
        let mut warnings = Vec::new();
        let mut plan = Plan {
            job_type: JobType::Batch,
            count: 1,
            engine: EngineType::Other,
            publisher: None,
            cpu: 0.0,
            memory: 0,
            disk: 0,
            gpu: 0,
            gpu_vendor: GpuVendor::Nvidia,
            network: NetworkType::None,
            execution_timeout: Duration::ZERO,
            queue_timeout: Duration::ZERO,
            total_timeout: Duration::ZERO,
        };
        let error = self.check(&mut plan, &mut warnings).err();
        Validation {
            plan,
            warnings,
            error,
        }
    }

    fn check(&self, plan: &mut Plan, warnings: &mut Vec<String>) -> Result<(), String> {
        plan.job_type = match (self.job_type.as_deref(), self.kind()) {
            (_, Some(kind)) => kind,
            (None, None) => {
                return Err("the job has no Type (batch, ops, daemon or service)".into());
            }
            (Some(_), None) => {
                return Err("the job's Type is not batch, ops, daemon or service".into());
            }
        };
        plan.count = self.count.unwrap_or(1);
        if plan.count == 0 {
            return Err("the job's Count is 0: nothing would run".into());
        }
        if plan.count > 1 {
            warnings.push(format!(
                "Count {} on a single node: the executions run one after the other",
                plan.count
            ));
        }
        if self
            .name
            .as_deref()
            .is_none_or(|name| name.trim().is_empty())
        {
            warnings.push("the job has no Name: it can only be found by its id".into());
        }
        let task = match self.tasks.as_slice() {
            [] => return Err("the job has no task".into()),
            [task] => task,
            _ => return Err("the job has more than one task; jobs have exactly one".into()),
        };
        if task
            .name
            .as_deref()
            .is_none_or(|name| name.trim().is_empty())
        {
            return Err("the task has no Name".into());
        }
        let Some(engine) = &task.engine else {
            return Err("the task has no Engine".into());
        };
        plan.engine = engine_type(&engine.engine_type);
        if plan.engine == EngineType::Docker {
            match engine.params.image.as_deref().map(str::trim) {
                None | Some("") => return Err("the Docker task has no Image".into()),
                Some(image) if !has_pinned_tag(image) => {
                    warnings.push("the image has no tag or uses latest: runs may differ".into());
                }
                Some(_) => {}
            }
        }
        for variable in &engine.params.environment_variables {
            if !variable.contains('=') {
                return Err("an EnvironmentVariables entry is not NAME=value".into());
            }
        }
        let names = self
            .env
            .keys()
            .chain(task.env.keys())
            .map(String::as_str)
            .chain(
                engine
                    .params
                    .environment_variables
                    .iter()
                    .filter_map(|pair| pair.split_once('=').map(|(name, _)| name)),
            );
        let secret_like = names.filter(|name| looks_secret(name)).count();
        if secret_like > 0 {
            warnings.push(format!(
                "{secret_like} environment variables look like secrets: they are stored with the job"
            ));
        }
        plan.publisher = task.publisher.as_ref().map(|publisher| {
            match publisher.publisher_type.to_ascii_lowercase().as_str() {
                "local" => PublisherType::Local,
                "s3" => PublisherType::S3,
                "ipfs" => PublisherType::Ipfs,
                "noop" => PublisherType::Noop,
                _ => PublisherType::Other,
            }
        });
        if plan.publisher.is_none() && !task.result_paths.is_empty() {
            warnings.push("result paths without a Publisher: the results are not kept".into());
        }
        if task.result_paths.iter().any(|result| {
            result
                .path
                .as_deref()
                .is_none_or(|path| !path.starts_with('/'))
        }) {
            return Err("a result path is missing or not absolute".into());
        }
        if let Some(resources) = &task.resources {
            if let Some(cpu) = &resources.cpu {
                plan.cpu = cpu_cores(cpu)
                    .ok_or("the task's CPU is not a number of cores such as 500m or 2")?;
            }
            if let Some(memory) = &resources.memory {
                plan.memory =
                    bytes(memory).ok_or("the task's Memory is not a size such as 512Mi or 2GB")?;
            }
            if let Some(disk) = &resources.disk {
                plan.disk =
                    bytes(disk).ok_or("the task's Disk is not a size such as 10Gi or 500MB")?;
            }
            if let Some(gpu) = &resources.gpu {
                plan.gpu = whole(gpu).ok_or("the task's GPU is not a whole number")?;
            }
            if let Some(vendor) = &resources.gpu_type {
                plan.gpu_vendor = GpuVendor::parse(vendor)
                    .ok_or("the task's GPUType is not nvidia, amd or intel")?;
            }
        } else {
            warnings.push("the task requests no resources: the node's defaults apply".into());
        }
        if let Some(network) = &task.network {
            plan.network = match network.network_type.as_deref().map(str::to_ascii_lowercase) {
                None => NetworkType::None,
                Some(kind) => match kind.as_str() {
                    "none" => NetworkType::None,
                    "http" => NetworkType::Http,
                    "full" => NetworkType::Full,
                    "host" => NetworkType::Host,
                    "bridge" => NetworkType::Bridge,
                    _ => NetworkType::Other,
                },
            };
            if plan.network == NetworkType::Full {
                warnings.push("the task has full network access".into());
            }
            if plan.network == NetworkType::None && !network.domains.is_empty() {
                warnings
                    .push("domains are listed but the network is none: they are ignored".into());
            }
        }
        let timeouts = task.timeouts.clone().unwrap_or_default();
        plan.execution_timeout = Duration::from_secs(timeouts.execution_timeout);
        plan.queue_timeout = Duration::from_secs(timeouts.queue_timeout);
        plan.total_timeout = Duration::from_secs(timeouts.total_timeout);
        if timeouts.execution_timeout == 0 && !plan.job_type.long_running() {
            warnings.push("no ExecutionTimeout: a stuck task runs forever".into());
        }
        if timeouts.total_timeout > 0 && timeouts.execution_timeout > timeouts.total_timeout {
            return Err("the ExecutionTimeout is longer than the TotalTimeout".into());
        }
        Ok(())
    }
}

/// The engine named `text`, in any case.
pub fn engine_type(text: &str) -> EngineType {
    match text.to_ascii_lowercase().as_str() {
        "docker" => EngineType::Docker,
        "wasm" => EngineType::Wasm,
        "noop" => EngineType::Noop,
        _ => EngineType::Other,
    }
}

/// The kind of input source named `text`.
pub fn input_source_type(text: &str) -> InputSourceType {
    match text.to_ascii_lowercase().as_str() {
        "urldownload" | "url" => InputSourceType::UrlDownload,
        "s3" => InputSourceType::S3,
        "ipfs" => InputSourceType::Ipfs,
        "localdirectory" | "localdir" => InputSourceType::LocalDirectory,
        "inline" => InputSourceType::Inline,
        _ => InputSourceType::Other,
    }
}

/// Whether an image names a tag other than `latest`, or a digest.
fn has_pinned_tag(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    matches!(last.split_once(':'), Some((_, tag)) if !tag.is_empty() && tag != "latest")
}

/// Whether a variable's name suggests it holds a secret.
fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "KEY", "CREDENTIAL"]
        .iter()
        .any(|word| name.contains(word))
}

/// CPU cores from `2`, `1.5`, `"500m"`.
fn cpu_cores(value: &Scalar) -> Option<f64> {
    let cores = match value {
        Scalar::Number(number) => *number,
        Scalar::Text(text) => {
            let text = text.trim();
            match text.strip_suffix('m') {
                Some(millis) => millis.parse::<f64>().ok()? / 1000.0,
                None => text.parse().ok()?,
            }
        }
    };
    (cores.is_finite() && cores >= 0.0).then_some(cores)
}

/// Bytes from `1024`, `"512Mi"`, `"2GB"`, `"1gb"`.
fn bytes(value: &Scalar) -> Option<u64> {
    let (number, unit) = match value {
        Scalar::Number(number) => (*number, 1.0),
        Scalar::Text(text) => {
            let text = text.trim();
            let split = text
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(text.len());
            let (number, unit) = text.split_at(split);
            let unit = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1.0,
                "k" | "kb" => 1e3,
                "ki" | "kib" => 1024.0,
                "m" | "mb" => 1e6,
                "mi" | "mib" => 1024.0 * 1024.0,
                "g" | "gb" => 1e9,
                "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
                "t" | "tb" => 1e12,
                "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
                _ => return None,
            };
            (number.parse().ok()?, unit)
        }
    };
    let bytes = number * unit;
    (0.0..1.8e19)
        .contains(&bytes)
        .then_some(bytes.round() as u64)
}

/// A whole number from `1` or `"1"`.
fn whole(value: &Scalar) -> Option<u64> {
    match value {
        Scalar::Number(number) if number.fract() == 0.0 && *number >= 0.0 && *number < 1e15 => {
            Some(*number as u64)
        }
        Scalar::Number(_) => None,
        Scalar::Text(text) => text.trim().parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "\
Name: nightly
Type: batch
Tasks:
  - Name: main
    Engine:
      Type: docker
      Params:
        Image: ubuntu:24.04
        Entrypoint: [echo, hello]
    Resources:
      CPU: 500m
      Memory: 1Gi
    Timeouts:
      ExecutionTimeout: 60
";

    #[test]
    fn a_yaml_spec_is_read_and_planned() {
        let job = parse(MINIMAL, SpecFormat::Yaml).unwrap();
        let validation = job.validate();
        assert_eq!(validation.error, None);
        assert!(validation.warnings.is_empty(), "{:?}", validation.warnings);
        assert_eq!(validation.plan.engine, EngineType::Docker);
        assert_eq!(validation.plan.cpu, 0.5);
        assert_eq!(validation.plan.memory, 1 << 30);
        assert_eq!(validation.plan.execution_timeout, Duration::from_secs(60));
        assert_eq!(job.namespace(), "default");
    }

    #[test]
    fn json_is_recognised_by_its_content() {
        let text = r#"{"Type": "ops", "Tasks": [{"Name": "t", "Engine": {"Type": "noop"}}]}"#;
        assert_eq!(SpecFormat::from_content(text), SpecFormat::Json);
        let job = parse(text, SpecFormat::Json).unwrap();
        assert_eq!(job.validate().plan.job_type, JobType::Ops);
    }

    #[test]
    fn invalid_specs_are_refused_without_quoting_them() {
        let bad_cpu = MINIMAL.replace("500m", "lots-of-alice");
        let validation = parse(&bad_cpu, SpecFormat::Yaml).unwrap().validate();
        let error = validation.error.unwrap();
        assert!(error.contains("CPU"), "{error}");
        assert!(!error.contains("alice"), "{error}");

        let no_tasks = parse("Type: batch\n", SpecFormat::Yaml).unwrap();
        assert_eq!(no_tasks.validate().error.unwrap(), "the job has no task");
    }

    #[test]
    fn malformed_text_is_an_error_not_a_panic() {
        for (text, format) in [
            ("Tasks: [unclosed", SpecFormat::Yaml),
            ("", SpecFormat::Yaml),
            ("- a list\n- not a job\n", SpecFormat::Yaml),
            ("{\"Tasks\": 3}", SpecFormat::Json),
        ] {
            let error = parse(text, format).unwrap_err();
            assert!(error.to_string().contains(&format.to_string()), "{error}");
        }
    }

    #[test]
    fn quantities_are_read_in_their_usual_units() {
        assert_eq!(bytes(&Scalar::Text("2GB".into())), Some(2_000_000_000));
        assert_eq!(bytes(&Scalar::Text("512Mi".into())), Some(512 << 20));
        assert_eq!(bytes(&Scalar::Number(100.0)), Some(100));
        assert_eq!(bytes(&Scalar::Text("12 parsecs".into())), None);
        assert_eq!(cpu_cores(&Scalar::Text("250m".into())), Some(0.25));
        assert_eq!(whole(&Scalar::Text("2".into())), Some(2));
        assert_eq!(whole(&Scalar::Number(1.5)), None);
    }
}
