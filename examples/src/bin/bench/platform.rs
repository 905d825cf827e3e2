//! `bench platform list`: the providers a task's desktop can run on and the operating systems
//! each offers.

use std::fmt::Write as _;

use telemetry_runtime::instrument_command;

use crate::catalog::Provider;

/// Lists the built-in providers and their platforms, as text or as JSON.
#[instrument_command(name = "platform list", args(json))]
pub fn list(json: bool) -> String {
    if json {
        let providers: Vec<_> = Provider::ALL
            .iter()
            .map(|provider| {
                serde_json::json!({
                    "provider": provider.name(),
                    "description": provider.description(),
                    "platforms": provider
                        .platforms()
                        .iter()
                        .map(|os| os.name())
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        return serde_json::to_string_pretty(&providers).expect("JSON values print") + "\n";
    }
    let mut out = String::new();
    for provider in Provider::ALL {
        let platforms: Vec<_> = provider.platforms().iter().map(|os| os.name()).collect();
        let _ = writeln!(
            out,
            "{:<8} {:<50} {}",
            provider.name(),
            provider.description(),
            platforms.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use telemetry_runtime::testing;

    use super::*;

    #[test]
    fn the_listing_sends_only_whether_it_was_json() {
        let mut printed = String::new();
        let events = testing::record(|| printed = list(true));
        let providers: serde_json::Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(providers.as_array().unwrap().len(), 3);
        assert_eq!(providers[1]["provider"], "docker");
        assert_eq!(
            providers[1]["platforms"],
            serde_json::json!(["linux", "android"])
        );
        let command = events.only("command");
        assert_eq!(
            command.property_names(),
            ["command", "duration_ms", "outcome", "error_type", "json"]
        );
        assert_eq!(command["command"], "platform list");
        assert_eq!(command["json"], true);
    }
}
