//! The global `capture`, in a process of its own: nothing else here starts telemetry.

#![deny(warnings, unused_qualifications)]

mod support;

use std::time::Duration;

use support::{Receiver, builder, job};

#[test]
fn the_global_capture_follows_the_first_start() {
    telemetry_runtime::capture(&job(0));
    assert_eq!(telemetry_runtime::ignored_before_start(), 1);
    assert_eq!(
        telemetry_runtime::global().mode(),
        telemetry_runtime::Mode::Off
    );

    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let guard = builder(Some(&receiver.origin), dir.path(), &[]).start();
    telemetry_runtime::capture(&job(1));
    let global = telemetry_runtime::global();
    assert_eq!(global.installation_id(), guard.installation_id());

    // A second pipeline works through its handle but does not take over the global one.
    let other_dir = tempfile::tempdir().unwrap();
    let other = builder(Some(&receiver.origin), other_dir.path(), &[]).start();
    telemetry_runtime::capture(&job(2));
    assert_eq!(other.shutdown(Duration::from_secs(10)).captured, 0);

    drop(guard);
    telemetry_runtime::capture(&job(3));
    let stats = global.stats();
    assert_eq!((stats.captured, stats.delivered, stats.ignored), (2, 2, 1));
    assert_eq!(telemetry_runtime::ignored_before_start(), 1);
}
