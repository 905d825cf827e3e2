//! The costs a host application pays: `capture` with telemetry off and on, encoding the job
//! event, the keyed hash, and building a batch with and without gzip.
//!
//! Run with `cargo bench -p telemetry-runtime`. The comparison with posthog-rs is in
//! `bench-compare/` (see BENCHMARKS.md).

#[path = "support/job.rs"]
mod job;

use std::sync::LazyLock;
use std::time::Duration;

use divan::counter::BytesCount;
use divan::{AllocProfiler, Bencher, black_box};
use telemetry_runtime::{HashKey, Mode, Telemetry, TelemetryGuard, anonymize};

use job::JobSubmitted;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

/// Telemetry that is on and keeps everything on this machine: its background thread appends
/// to a local log under the target directory (a static is never dropped, so a temporary
/// directory would be left behind by every run), so nothing is sent and the queue is what is
/// timed.
static ON: LazyLock<TelemetryGuard> = LazyLock::new(|| {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-pipeline");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a directory under the target directory");
    Telemetry::builder("bench", "1.0.0")
        .environment([("HOME", dir.display().to_string())])
        .state_dir(dir.join("state"))
        .mode(Mode::Local)
        .lifecycle_events(false)
        .queue_capacity(1_000_000)
        .local_log_limit(64 << 20)
        .flush_interval(Duration::from_secs(3600))
        .start()
});

mod capture {
    use super::*;

    /// The global `capture` when telemetry was never started: what every call costs in a
    /// program whose user opted out. (A fixed sample size: left to itself, divan times its
    /// first, cold call and then one call per sample, which measures the timer.)
    #[divan::bench(sample_size = 10_000)]
    fn off_global(bencher: Bencher) {
        let job = JobSubmitted::sample();
        bencher.bench_local(|| telemetry_runtime::capture(black_box(&job)));
    }

    /// `capture` on a handle of telemetry that is off.
    #[divan::bench]
    fn off_handle(bencher: Bencher) {
        let job = JobSubmitted::sample();
        let off = Telemetry::off();
        bencher.bench_local(|| off.capture(black_box(&job)));
    }

    /// `capture` of the job event with telemetry on: recording it on the caller's thread, then
    /// one non-blocking send to the background thread (which hashes, scrubs and encodes it).
    #[divan::bench]
    fn on_job_event(bencher: Bencher) {
        let job = JobSubmitted::sample();
        let telemetry = ON.handle();
        assert!(telemetry.is_running());
        bencher.bench_local(|| telemetry.capture(black_box(&job)));
    }
}

/// Encoding alone: the job event's properties as JSON, hashed and scrubbed.
#[divan::bench]
fn encode_job_event(bencher: Bencher) {
    let job = JobSubmitted::sample();
    let key = HashKey::from_bytes([7; 32]);
    bencher.bench_local(|| anonymize(black_box(&job), &key));
}

/// The two halves of that work as the pipeline splits it: recording the properties on the
/// caller's thread, and replaying them (hashing, scrubbing, encoding) on the background one.
mod split {
    use super::*;
    use telemetry_runtime::__private::bench;

    /// On a reused tape, as `capture` records on a pooled one.
    #[divan::bench]
    fn record_job_event(bencher: Bencher) {
        let job = JobSubmitted::sample();
        let key = HashKey::from_bytes([7; 32]);
        let mut recorded = bench::record(&job, &key);
        bencher.bench_local(|| bench::record_into(black_box(&job), &key, &mut recorded));
    }

    #[divan::bench]
    fn replay_job_event(bencher: Bencher) {
        let key = HashKey::from_bytes([7; 32]);
        let recorded = bench::record(&JobSubmitted::sample(), &key);
        let mut out = Vec::with_capacity(4096);
        bencher.bench_local(|| {
            out.clear();
            bench::replay(black_box(&recorded), &key, &mut out);
        });
    }
}

mod hash {
    use super::*;

    /// HMAC-SHA-256 of a short value, as 64 hex digits: one `#[hash]` field.
    #[divan::bench(args = [8, 32, 128])]
    fn hash_hex(bencher: Bencher, len: usize) {
        let key = HashKey::from_bytes([7; 32]);
        let value = "n".repeat(len);
        bencher
            .counter(BytesCount::new(len))
            .bench_local(|| key.hash_hex(black_box(&value)));
    }
}

mod batch {
    use super::*;
    use telemetry_runtime::__private::bench;

    /// A batch of `n` job events as the background thread holds them: complete event
    /// objects with the library's common properties.
    fn lines(n: usize) -> Vec<String> {
        let key = HashKey::from_bytes([7; 32]);
        let properties = anonymize(&JobSubmitted::sample(), &key).expect("the job event encodes");
        let properties = properties.as_json();
        let common = r#""$lib":"telemetry-runtime","$lib_version":"0.1.0","$ip":"0.0.0.0","$process_person_profile":false,"app":"jobs","app_version":"1.4.0","os":"linux","os_version":"12","os_id":"debian","arch":"x86_64","kernel":"6.1.0","virtualization":"kvm","container":"none","cpu_count":2,"memory_gb":"16-32","rust_version":"1.91.0","ci":false,"installation_id":"0190f1c2-7b7a-7c3e-9a4b-5c6d7e8f9a0b""#;
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"event":"job_submitted","uuid":"0190f1c2-7b7a-7c3e-9a4b-{i:012x}","distinct_id":"0190f1c2-7b7a-7c3e-9a4b-5c6d7e8f9a0b","timestamp":"2026-11-22T06:00:00.000Z","properties":{{{},{common}}}}}"#,
                    &properties[1..properties.len() - 1]
                )
            })
            .collect()
    }

    /// Times `make` building the body of a request of `n` events, counting the body's bytes.
    fn bench_body(bencher: Bencher, n: usize, make: impl Fn(&[&str]) -> Vec<u8>) {
        let lines = lines(n);
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let size = bench::batch_body("phc_bench", &lines).len();
        bencher
            .counter(BytesCount::new(size))
            .bench_local(|| make(black_box(&lines)));
    }

    /// The JSON body of a request of `n` events, uncompressed (below the gzip threshold).
    #[divan::bench(args = [1, 100])]
    fn body(bencher: Bencher, n: usize) {
        bench_body(bencher, n, |lines| bench::batch_body("phc_bench", lines));
    }

    /// The same body, gzip-compressed as it is sent.
    #[divan::bench(args = [1, 100])]
    fn body_gzip(bencher: Bencher, n: usize) {
        bench_body(bencher, n, |lines| {
            bench::gzip(&bench::batch_body("phc_bench", lines))
        });
    }
}

/// `#[scrub]` of the job event's warning, which names an address and a user's path.
#[divan::bench]
fn scrub_message(bencher: Bencher) {
    let warning = JobSubmitted::sample().warning;
    bencher.bench_local(|| telemetry_runtime::scrub(black_box(&warning), 120));
}
