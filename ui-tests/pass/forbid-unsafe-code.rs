#![forbid(unsafe_code)]
#![deny(warnings, unused_qualifications, missing_docs)]
//! An application that forbids unsafe code can still derive events.

use telemetry_runtime::TelemetryEvent;

/// Registered in the event registry like any other event.
#[derive(TelemetryEvent)]
pub struct PluginsLoaded {
    /// How many plugins were loaded.
    pub plugins: u16,
}

fn main() {
    let names: Vec<&str> = telemetry_runtime::schema::events().iter().map(|e| e.name).collect();
    // The library's own events are registered too.
    assert_eq!(
        names,
        [
            "app_fatal",
            "app_started",
            "app_stopped",
            "plugins_loaded",
            "telemetry_dropped"
        ]
    );
    let _ = PluginsLoaded { plugins: 0 }.plugins;
}
