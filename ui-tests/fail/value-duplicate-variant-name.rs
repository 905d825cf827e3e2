use telemetry_runtime::TelemetryValue;

#[derive(TelemetryValue)]
enum Engine {
    Docker,
    #[telemetry(rename = "docker")]
    DockerCompose,
}

fn main() {}
