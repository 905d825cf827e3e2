//! Reporting panics: the panic hook that sends `app_fatal` through the global telemetry, the
//! part of a source path it may send, and what keeps it out of the library's own panics.
//!
//! A panic hook runs on the panicking thread before unwinding, in whatever state the panic
//! left that thread, and a panic inside it aborts the process. So the hook unwraps nothing,
//! indexes nothing and logs nothing (the application's logger may be what panicked, holding
//! its lock), and it leaves alone a panic raised inside the library's own code, where this
//! thread may hold the pipeline's locks: the library catches those itself, or they are its own
//! bug, and reporting them through the pipeline that failed could deadlock.

use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::builtin::{AppFatal, Sanitized};
use crate::pipeline::{Shared, after};

/// The most `app_fatal` events a pipeline sends. Each may hold its thread for the flush
/// deadline: a server where every request panics must not slow every request by it.
pub(crate) const MAX_FATAL_EVENTS: u64 = 16;

/// The message sent for a panic whose payload is not text.
const NOT_TEXT: &str = "Box<dyn Any>";

/// The longest source path sent; a longer one is cut to its file name.
const MAX_FILE_LEN: usize = 200;

thread_local! {
    /// How many calls into the library's own code are running on this thread.
    static INSIDE: Cell<u32> = const { Cell::new(0) };
    /// Whether this thread is running the panic hook.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as running the library's own code for as long as it lives: the panic hook
/// does nothing for a panic raised there.
pub(crate) struct Inside(());

impl Inside {
    pub(crate) fn enter() -> Inside {
        let _ = INSIDE.try_with(|depth| depth.set(depth.get().saturating_add(1)));
        Inside(())
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

/// Marks this thread as running the panic hook for as long as it lives.
struct InHook {
    was: bool,
}

impl InHook {
    fn enter() -> InHook {
        InHook {
            was: IN_HOOK.try_with(|flag| flag.replace(true)).unwrap_or(false),
        }
    }
}

impl Drop for InHook {
    fn drop(&mut self) {
        let _ = IN_HOOK.try_with(|flag| flag.set(self.was));
    }
}

/// Whether the library may log on this thread: not while it runs the panic hook.
pub(crate) fn may_log() -> bool {
    !IN_HOOK.try_with(Cell::get).unwrap_or(false)
}

/// What the panic hook keeps in a pipeline.
#[derive(Debug, Default)]
pub(crate) struct Panics {
    /// Panics reported to the pipeline, sent or not.
    seen: AtomicU64,
    /// When the hook's last flush ends, in nanoseconds after the pipeline started; 0 for none.
    flush_until: AtomicU64,
}

impl Panics {
    /// The panics reported to the pipeline so far, sent or not.
    pub(crate) fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// When the hook's last flush ends (or ended), if the last panic it saw was sent. A guard
    /// dropped by that panic's unwinding stops waiting then: the deadline is spent once.
    pub(crate) fn flush_until(&self, started: Instant) -> Option<Instant> {
        match self.flush_until.load(Ordering::Acquire) {
            0 => None,
            nanos => started.checked_add(Duration::from_nanos(nanos)),
        }
    }

    fn set_flush_until(&self, started: Instant, until: Option<Instant>) {
        let nanos = until.map_or(0, |until| {
            let nanos = until.saturating_duration_since(started).as_nanos();
            u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
        });
        self.flush_until.store(nanos, Ordering::Release);
    }
}

/// Reports every panic as an `app_fatal` event through the global telemetry (the first started
/// in the process, as for [`capture`](crate::capture)), and makes sure the event is kept. It
/// waits up to the flush deadline ([`Builder::flush_deadline`](crate::Builder::flush_deadline))
/// for delivery; the guard, dropped as the panic unwinds, then spools what is left without
/// waiting a second time. In a binary built with `panic = "abort"`, where the process ends right
/// after the hook, the hook itself shuts telemetry down within the deadline, spooling what was
/// not delivered.
///
/// The hook installed before still runs, first, so the panic's message is printed at once. At
/// most 16 panics per process are sent; `app_stopped` counts them all. The hook does nothing
/// when telemetry is off or not started yet, or for a panic inside the library's own code.
/// Installing it again, or from a panicking thread (where the standard library forbids
/// changing the hook), does nothing.
///
/// ```no_run
/// let _telemetry = telemetry_runtime::Telemetry::builder("jobs", env!("CARGO_PKG_VERSION"))
///     .endpoint(option_env!("JOBS_TELEMETRY_ENDPOINT"))
///     .start();
/// telemetry_runtime::install_panic_hook();
/// ```
pub fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if std::thread::panicking() || INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The previous hook first: the message reaches the user before any wait for delivery,
        // and is printed even if recording went wrong and aborted the process.
        previous(info);
        report(info);
    }));
}

/// Sends `app_fatal` for the panic described by `info`, unless there is nothing to send it
/// through or it was raised inside the library.
fn report(info: &PanicHookInfo<'_>) {
    if INSIDE.try_with(|depth| depth.get() > 0).unwrap_or(true) {
        return;
    }
    let Some(shared) = crate::telemetry::current_global() else {
        return;
    };
    let _in_hook = InHook::enter();
    // Handles to the current thread outlive every thread-local destructor that could panic.
    let thread = std::thread::current();
    let frame = crate::instrument::current();
    let location = info.location();
    let file = location.map(|location| source_file(location.file()));
    let process = process_name(&shared.settings.app);
    let event = AppFatal {
        process: Some(&process),
        thread: thread.name(),
        file: file.as_deref().map(Sanitized),
        line: location.map(|location| location.line()),
        column: location.map(|location| location.column()),
        command: frame.map(|frame| Sanitized(frame.command)),
        function: frame.map(|frame| Sanitized(frame.function)),
        message: payload_text(info.payload()),
    };
    record(shared, &event, cfg!(panic = "abort"));
}

/// The program's file name when it is the application's name, or the name of one of its helper
/// programs (`agent`, `agent-plugin`, `agent.exe`); else the application's name. A program
/// can be run under any name (a symlink `alice-agent`), and that name is not the program's to
/// send.
fn process_name(app: &str) -> String {
    let program = std::env::args_os().next().map(std::path::PathBuf::from);
    let file = program
        .as_deref()
        .and_then(std::path::Path::file_name)
        .and_then(std::ffi::OsStr::to_str);
    match file {
        Some(file) if is_helper_of(file, app) => file.to_owned(),
        _ => app.to_owned(),
    }
}

fn is_helper_of(file: &str, app: &str) -> bool {
    let Some(rest) = file.strip_prefix(app) else {
        return false;
    };
    rest.is_empty()
        || (rest.len() <= 32
            && rest.starts_with(['-', '_', '.'])
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)))
}

/// The text a panic carries: `panic!` makes a `&'static str` or a `String`; anything else
/// (`panic_any`) has no text to send.
fn payload_text(payload: &(dyn std::any::Any + Send)) -> &str {
    match payload.downcast_ref::<&'static str>() {
        Some(text) => text,
        None => payload
            .downcast_ref::<String>()
            .map_or(NOT_TEXT, String::as_str),
    }
}

/// Captures `event` and keeps it: delivered within the flush deadline if possible, and, when the
/// process ends right after (`process_ends`), spooled by a shutdown within that deadline.
fn record(shared: &Shared, event: &AppFatal<'_>, process_ends: bool) {
    if !shared.is_open() {
        return;
    }
    let seen = shared
        .panics
        .seen
        .fetch_add(1, Ordering::AcqRel)
        .saturating_add(1);
    if seen > MAX_FATAL_EVENTS {
        // Nothing waits for this one, so a guard it drops keeps its own deadline.
        shared.panics.set_flush_until(shared.started, None);
        return;
    }
    shared.capture(event);
    let until = after(shared.settings.limits.flush_deadline);
    shared.panics.set_flush_until(shared.started, Some(until));
    if process_ends {
        shared.shutdown(until, false);
    } else {
        shared.flush(until);
    }
}

/// The part of a panic's source path that may leave the machine. A relative path (as the
/// compiler sees the files of the package it builds) says nothing about the user and is kept.
/// An absolute one may hold a user name or a project's directory, so only a tail that names no
/// one is kept: from the crate for a registry's crates, from after the revision for git
/// dependencies, from `library` for the standard library, else from the last `src` directory,
/// else the file name alone.
pub(crate) fn source_file(path: &str) -> String {
    let parts: Vec<&str> = path
        .split(['/', '\\'])
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    let absolute = path.starts_with(['/', '\\'])
        || path.as_bytes().get(1) == Some(&b':')
        || parts.contains(&"..");
    let kept = if absolute {
        safe_tail(&parts)
    } else {
        &parts[..]
    };
    let joined = kept.join("/");
    if joined.len() <= MAX_FILE_LEN {
        return joined;
    }
    let name = parts.last().copied().unwrap_or_default();
    name.get(..crate::scrub::floor_boundary(name, MAX_FILE_LEN))
        .unwrap_or_default()
        .to_owned()
}

/// The tail of an absolute path's `parts` that names no one.
fn safe_tail<'p, 'a>(parts: &'p [&'a str]) -> &'p [&'a str] {
    let after_last = |pair: [&str; 2], skip: usize| {
        parts
            .windows(2)
            .rposition(|window| window == pair)
            .and_then(|at| parts.get(at + skip..))
            .filter(|tail| tail.len() > 1)
    };
    // `<cargo home>/registry/src/<index>/<crate>-<version>/...`
    if let Some(tail) = after_last(["registry", "src"], 3) {
        return tail;
    }
    // `<cargo home>/git/checkouts/<repository>/<revision>/...`
    if let Some(tail) = after_last(["git", "checkouts"], 4) {
        return tail;
    }
    // `/rustc/<commit>/library/...`: the standard library as the Rust project builds it.
    if parts.first() == Some(&"rustc")
        && parts.get(2) == Some(&"library")
        && let Some(tail) = parts.get(2..)
    {
        return tail;
    }
    let directories = parts.len().saturating_sub(1);
    let src = parts
        .get(..directories)
        .and_then(|directories| directories.iter().rposition(|part| *part == "src"));
    match src {
        Some(at) => parts.get(at..).unwrap_or_default(),
        None => parts.get(directories..).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    /// A pipeline in local mode recording to `dir`.
    fn local_pipeline(dir: &Path) -> Arc<Shared> {
        Shared::new(crate::pipeline::Settings::local_for_tests(dir))
    }

    #[test]
    fn only_the_application_s_own_program_names_are_sent() {
        for helper in ["agent", "agent-plugin", "agent.exe", "agent_go.d"] {
            assert!(is_helper_of(helper, "agent"), "{helper}");
        }
        for other in [
            "alice-agent",
            "agent-of-Alice",
            "agent alice",
            "agentx",
            "agent-alice.martin@example.com",
            "",
        ] {
            assert!(!is_helper_of(other, "agent"), "{other}");
        }
    }

    fn fatal(message: &str) -> AppFatal<'_> {
        AppFatal {
            process: Some("jobs"),
            thread: Some("worker-1"),
            file: Some(Sanitized("src/main.rs")),
            line: Some(7),
            column: Some(5),
            command: None,
            function: None,
            message,
        }
    }

    /// The names of the events in the local log of `dir`.
    fn logged(dir: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(dir.join(crate::state::LOG_FILE)).unwrap_or_default();
        text.lines()
            .map(|line| {
                let event: serde_json::Value = serde_json::from_str(line).unwrap();
                event["event"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn a_panic_that_ends_the_process_stops_telemetry_with_its_event_kept() {
        let dir = tempfile::tempdir().unwrap();
        let shared = local_pipeline(dir.path());
        record(&shared, &fatal("boom"), true);
        assert!(!shared.is_open());
        assert_eq!(logged(dir.path()), ["app_fatal"]);
        assert_eq!(shared.counters.delivered.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_panic_the_process_survives_is_delivered_and_telemetry_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let shared = local_pipeline(dir.path());
        let before = Instant::now();
        record(&shared, &fatal("boom"), false);
        assert!(shared.is_open());
        assert_eq!(logged(dir.path()), ["app_fatal"]);
        let until = shared.panics.flush_until(shared.started).unwrap();
        assert!(until >= before + shared.settings.limits.flush_deadline);
        shared.shutdown(after(Duration::from_secs(10)), true);
        assert_eq!(shared.counters.captured.load(Ordering::Relaxed), 1);
        // After shutdown a panic is not even counted.
        record(&shared, &fatal("later"), false);
        assert_eq!(shared.panics.seen(), 1);
    }

    #[test]
    fn past_sixteen_panics_are_only_counted() {
        let dir = tempfile::tempdir().unwrap();
        let shared = local_pipeline(dir.path());
        for _ in 0..MAX_FATAL_EVENTS + 4 {
            record(&shared, &fatal("again"), false);
        }
        assert_eq!(shared.panics.seen(), MAX_FATAL_EVENTS + 4);
        assert_eq!(
            shared.counters.captured.load(Ordering::Relaxed),
            MAX_FATAL_EVENTS
        );
        assert_eq!(shared.panics.flush_until(shared.started), None);
        shared.shutdown(after(Duration::from_secs(10)), true);
        assert_eq!(logged(dir.path()).len() as u64, MAX_FATAL_EVENTS);
    }

    #[test]
    fn relative_paths_are_kept() {
        assert_eq!(source_file("src/main.rs"), "src/main.rs");
        assert_eq!(source_file("tests/panic_hook.rs"), "tests/panic_hook.rs");
        assert_eq!(
            source_file("crates/jobs/src/bin/run.rs"),
            "crates/jobs/src/bin/run.rs"
        );
        assert_eq!(source_file("./src/lib.rs"), "src/lib.rs");
        assert_eq!(source_file(r"src\windows\mod.rs"), "src/windows/mod.rs");
    }

    #[test]
    fn registry_crates_keep_the_crate_and_its_version() {
        assert_eq!(
            source_file(
                "/home/alice/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.200/src/de/mod.rs"
            ),
            "serde-1.0.200/src/de/mod.rs"
        );
        assert_eq!(
            source_file(
                r"C:\Users\alice\.cargo\registry\src\index.crates.io-6f17d22bba15001f\tokio-1.40.0\src\runtime\task\mod.rs"
            ),
            "tokio-1.40.0/src/runtime/task/mod.rs"
        );
        // Wherever the cargo home is.
        assert_eq!(
            source_file("/opt/alice-cargo/registry/src/mirror.example-0a1b/anyhow-1.0.0/build.rs"),
            "anyhow-1.0.0/build.rs"
        );
    }

    #[test]
    fn git_dependencies_keep_what_follows_the_revision() {
        assert_eq!(
            source_file(
                "/home/alice/.cargo/git/checkouts/acme-tools-1a2b3c4d/5e6f7a8/crates/io/src/lib.rs"
            ),
            "crates/io/src/lib.rs"
        );
        assert_eq!(
            source_file(r"D:\alice\cargo\git\checkouts\acme-1a2b\5e6f7a8\src\lib.rs"),
            "src/lib.rs"
        );
    }

    #[test]
    fn the_standard_library_keeps_library() {
        assert_eq!(
            source_file(
                "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/option.rs"
            ),
            "library/core/src/option.rs"
        );
        // A commit directory alone is not the standard library.
        assert_eq!(source_file("/rustc/abc/alice.rs"), "alice.rs");
    }

    #[test]
    fn other_absolute_paths_keep_only_their_last_src_on() {
        assert_eq!(
            source_file("/home/alice/src/payroll/src/main.rs"),
            "src/main.rs"
        );
        assert_eq!(
            source_file("/Users/alice/work/payroll/crates/db/src/pool/mod.rs"),
            "src/pool/mod.rs"
        );
        assert_eq!(
            source_file(r"C:\Users\alice\payroll\src\main.rs"),
            "src/main.rs"
        );
        assert_eq!(
            source_file(r"\\fileserver\alice\payroll\src\lib.rs"),
            "src/lib.rs"
        );
        assert_eq!(
            source_file(r"\\?\C:\Users\alice\payroll\src\lib.rs"),
            "src/lib.rs"
        );
        // A relative path that climbs out of the package is treated as absolute.
        assert_eq!(
            source_file("../../alice/payroll/src/main.rs"),
            "src/main.rs"
        );
    }

    #[test]
    fn without_src_only_the_file_name_is_kept() {
        assert_eq!(source_file("/home/alice/payroll/build.rs"), "build.rs");
        assert_eq!(source_file(r"C:\Users\alice\main.rs"), "main.rs");
        // A file named `src` is no `src` directory.
        assert_eq!(source_file("/home/alice/src"), "src");
        assert_eq!(source_file("/"), "");
        assert_eq!(source_file(""), "");
    }

    #[test]
    fn long_paths_are_cut_to_their_file_name() {
        let deep = format!("{}/lib.rs", "d/".repeat(150));
        assert_eq!(source_file(&deep), "lib.rs");
        let name = format!("/{}é.rs", "a".repeat(MAX_FILE_LEN - 1));
        let sent = source_file(&name);
        assert!(
            sent.len() <= MAX_FILE_LEN && sent.starts_with("aaa"),
            "{sent}"
        );
    }
}
