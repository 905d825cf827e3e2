//! Consent, identity and environment, in process: every opt-out source stops telemetry before
//! anything is written, the `telemetry` subcommand changes and reports the choice, the first
//! run holds its events, and events describe the system without identifying anyone.

#![deny(warnings, unused_qualifications)]

mod support;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use support::{Receiver, assert_accounted, builder, events, job};
use telemetry_runtime::{
    Builder, CiPolicy, DistinctId, FirstRun, IdentityState, Mode, Polarity, Source,
    TelemetryCommand,
};

const PATIENCE: Duration = Duration::from_secs(10);

/// Runs a `telemetry` subcommand and returns what it printed.
fn run(builder: &Builder, words: &[&str]) -> String {
    let mut out = Vec::new();
    TelemetryCommand::parse(words)
        .unwrap()
        .run_to(builder, &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// Every file under `dir` and its size, recursively, in order.
fn files_in(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_in(&path));
        } else {
            let size = entry.metadata().unwrap().len();
            found.push((path, size));
        }
    }
    found.sort();
    found
}

/// Starts, captures `n` events, shuts down, and returns the accounting and the mode.
fn session(builder: Builder, n: u32) -> (telemetry_runtime::Stats, Mode) {
    let telemetry = builder.start();
    for i in 0..n {
        telemetry.capture(&job(i));
    }
    let mode = telemetry.mode();
    let stats = telemetry.shutdown(PATIENCE);
    assert_accounted(&stats);
    (stats, mode)
}

#[test]
fn every_opt_out_source_stops_telemetry_before_anything_is_written() {
    let receiver = Receiver::healthy();
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join(".opt-out-from-anonymous-statistics");
    fs::write(&marker, "").unwrap();
    let cases: Vec<(&str, Builder)> = vec![
        (
            "code",
            builder(Some(&receiver.origin), root.path(), &[]).mode(Mode::Off),
        ),
        (
            "DO_NOT_TRACK",
            builder(
                Some(&receiver.origin),
                root.path(),
                &[("DO_NOT_TRACK", "1")],
            ),
        ),
        (
            "prefix variable",
            builder(
                Some(&receiver.origin),
                root.path(),
                &[("JOBS_TELEMETRY", "no")],
            ),
        ),
        (
            "disable-style variable",
            builder(
                Some(&receiver.origin),
                root.path(),
                &[("JOBS_DISABLEANALYTICS", "true")],
            )
            .opt_out_var("JOBS_DISABLEANALYTICS", Polarity::Disables),
        ),
        (
            "enable-style variable",
            builder(
                Some(&receiver.origin),
                root.path(),
                &[("API_ENABLE_TELEMETRY", "0")],
            )
            .opt_out_var("API_ENABLE_TELEMETRY", Polarity::Enables),
        ),
        (
            "any-value variable",
            builder(
                Some(&receiver.origin),
                root.path(),
                &[("DISABLE_TELEMETRY", "yes please")],
            )
            .opt_out_var("DISABLE_TELEMETRY", Polarity::AnyValueDisables),
        ),
        (
            "opt-out file",
            builder(Some(&receiver.origin), root.path(), &[]).opt_out_file(&marker),
        ),
        (
            "application config",
            builder(Some(&receiver.origin), root.path(), &[]).config_value(
                "disableanalytics in config.yaml",
                "true",
                Polarity::Disables,
            ),
        ),
        (
            "CI",
            builder(
                Some(&receiver.origin),
                root.path(),
                &[("GITLAB_CI", "true")],
            ),
        ),
        (
            "unreadable value",
            builder(
                Some(&receiver.origin),
                root.path(),
                &[("JOBS_TELEMETRY", "sometimes")],
            ),
        ),
    ];
    for (name, case) in cases {
        let telemetry = case.start();
        assert_eq!(telemetry.mode(), Mode::Off, "{name}");
        assert!(!telemetry.is_running(), "{name}");
        telemetry.capture(&job(1));
        let stats = telemetry.shutdown(PATIENCE);
        assert_eq!(stats, Default::default(), "{name}");
        assert!(
            !root.path().join("state").exists(),
            "{name}: the state directory was created"
        );
    }
    assert!(receiver.received().is_empty());
}

#[test]
fn an_opt_in_never_beats_an_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let status = builder(
        None,
        dir.path(),
        &[
            ("BENCH_TELEMETRY_ENABLED", "true"),
            ("JOBS_TELEMETRY", "on"),
            ("DO_NOT_TRACK", "1"),
        ],
    )
    .opt_out_var("BENCH_TELEMETRY_ENABLED", Polarity::Enables)
    .mode(Mode::On)
    .status();
    assert_eq!(status.mode, Mode::Off);
    assert_eq!(status.decision.source, Source::DoNotTrack);
    // With the opt-out gone, the opt-ins decide.
    let status = builder(None, dir.path(), &[("BENCH_TELEMETRY_ENABLED", "local")])
        .opt_out_var("BENCH_TELEMETRY_ENABLED", Polarity::Enables)
        .mode(Mode::On)
        .status();
    assert_eq!(status.mode, Mode::Local);
    assert_eq!(
        status.decision.source,
        Source::Variable("BENCH_TELEMETRY_ENABLED".into())
    );
}

#[test]
fn status_says_what_decided_and_what_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::healthy();

    let off = builder(
        Some(&receiver.origin),
        dir.path(),
        &[("DO_NOT_TRACK", "true")],
    );
    let shown = run(&off, &["status"]);
    assert!(
        shown.contains("telemetry:        off (DO_NOT_TRACK=true)"),
        "{shown}"
    );
    assert!(shown.contains("installation id:  none yet"), "{shown}");
    assert!(
        shown.contains("endpoint:         none: telemetry is off"),
        "{shown}"
    );
    assert!(shown.contains("pending events:   0"), "{shown}");

    let bad = builder(None, dir.path(), &[("JOBS_TELEMETRY", "enabled-ish")]);
    let status = bad.status();
    assert_eq!(status.mode, Mode::Off);
    assert_eq!(status.decision.value.as_deref(), Some("enabled-ish"));
    let shown = status.to_string();
    assert!(shown.contains("JOBS_TELEMETRY=enabled-ish; not"), "{shown}");

    let local = builder(None, dir.path(), &[]);
    let shown = run(&local, &["status"]);
    assert!(
        shown.contains("telemetry:        local (decided on (the default)"),
        "{shown}"
    );
    assert!(
        shown.contains("endpoint:         none: local only"),
        "{shown}"
    );

    let ci = builder(None, dir.path(), &[("GITHUB_ACTIONS", "true")]).status();
    assert_eq!(ci.mode, Mode::Off);
    assert_eq!(ci.decision.source, Source::Ci("github-actions"));
    assert_eq!(ci.ci, Some("github-actions"));

    // A receiver that refuses everything leaves events in the spool: status counts them.
    let failing = Receiver::start(|_, _| support::Reply::status(503));
    let on = builder(Some(&failing.origin), dir.path(), &[]).max_attempts(1);
    let (stats, _) = session(on, 3);
    assert_eq!(stats.spooled, 3);
    let on = builder(Some(&receiver.origin), dir.path(), &[]);
    let status = on.status();
    assert_eq!(status.mode, Mode::On);
    assert_eq!(status.pending, 3);
    assert_eq!(status.identity, IdentityState::Saved);
    assert_eq!(
        status.endpoint.as_deref(),
        Some(format!("{}/batch/", receiver.origin).as_str())
    );
    let shown = status.to_string();
    assert!(shown.contains("pending events:   3"), "{shown}");
    assert!(
        shown.contains(status.installation_id.as_deref().unwrap()),
        "{shown}"
    );
    // A running pipeline reports the same, counting the events it took from the spool once.
    let telemetry = builder(Some(&failing.origin), dir.path(), &[])
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .start();
    assert!(!telemetry.flush(Duration::from_millis(300))); // it has restored them by now
    let running = telemetry.status();
    assert_eq!(running.installation_id, status.installation_id);
    assert_eq!((telemetry.stats().restored, running.pending), (3, 3));
    telemetry.shutdown(Duration::ZERO);
}

#[test]
fn disable_deletes_what_is_pending_sends_nothing_and_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Receiver::start(|_, _| support::Reply::status(503));
    let (stats, _) = session(
        builder(Some(&failing.origin), dir.path(), &[]).max_attempts(1),
        4,
    );
    assert_eq!(stats.spooled, 4);
    let state = dir.path().join("state");
    fs::write(state.join("events.jsonl"), "{}\n").unwrap();
    assert!(!failing.received().is_empty()); // `received` drains: later calls see new ones.

    let receiver = Receiver::healthy();
    let app = || builder(Some(&receiver.origin), dir.path(), &[]);
    // A spool that is not a directory is in the way, not an error.
    fs::rename(state.join("spool"), dir.path().join("kept")).unwrap();
    fs::write(state.join("spool"), "not a directory").unwrap();
    let said = run(&app(), &["disable"]);
    assert!(!said.contains("unsent events"), "{said}");
    fs::rename(dir.path().join("kept"), state.join("spool")).unwrap();
    let said = run(&app(), &["disable"]);
    assert!(said.contains("Telemetry is disabled"), "{said}");
    assert!(said.contains("4 unsent events were deleted"), "{said}");
    assert!(!state.join("spool").exists());
    assert!(!state.join("events.jsonl").exists());
    assert_eq!(
        fs::read_to_string(state.join("consent")).unwrap().trim(),
        "off"
    );

    let (stats, mode) = session(app(), 2);
    assert_eq!(mode, Mode::Off);
    assert_eq!(stats.captured, 0);
    let status = app().status();
    assert_eq!(
        status.decision.source,
        Source::SavedChoice(state.join("consent"))
    );
    // Nothing was sent to announce it, anywhere.
    assert!(receiver.received().is_empty());
    assert!(failing.received().is_empty());

    // `local` is remembered too; `enable` turns it back on, unless another opt-out says no:
    // then it is refused, and nothing is written.
    run(&app(), &["local"]);
    assert_eq!(session(app(), 1).1, Mode::Local);
    let files_before = files_in(&state);
    for words in [["enable"], ["local"]] {
        let mut out = Vec::new();
        let refused = TelemetryCommand::parse(words)
            .unwrap()
            .run_to(
                &builder(Some(&receiver.origin), dir.path(), &[("DO_NOT_TRACK", "1")]),
                &mut out,
            )
            .unwrap_err();
        assert!(out.is_empty());
        let said = refused.to_string();
        assert!(
            said.starts_with("telemetry stays off (DO_NOT_TRACK=1), which wins over"),
            "{said}"
        );
        assert_eq!(files_in(&state), files_before, "{words:?}");
        assert_eq!(
            fs::read_to_string(state.join("consent")).unwrap().trim(),
            "local"
        );
    }
    // Without an endpoint `on` runs as local: that is no other setting's doing.
    let said = run(&builder(None, dir.path(), &[]), &["enable"]);
    assert!(!said.contains("Another setting"), "{said}");
    let (stats, mode) = session(app(), 2);
    assert_eq!((mode, stats.delivered), (Mode::On, 2));
    assert_eq!(events(&receiver.received()).len(), 2);
}

#[test]
fn reset_makes_a_new_identity_and_clears_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Receiver::start(|_, _| support::Reply::status(500));
    let app = || builder(Some(&failing.origin), dir.path(), &[]).max_attempts(1);
    let telemetry = app().start();
    let first = telemetry.installation_id().unwrap().to_owned();
    telemetry.capture(&job(1));
    assert_eq!(telemetry.shutdown(PATIENCE).spooled, 1);

    let said = run(&app(), &["reset"]);
    assert!(said.contains("1 unsent events were deleted"), "{said}");
    assert_eq!(app().status().installation_id, None);
    assert_eq!(app().status().pending, 0);

    let receiver = Receiver::healthy();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
    let second = telemetry.installation_id().unwrap().to_owned();
    assert_ne!(first, second);
    let stats = telemetry.shutdown(PATIENCE);
    assert_eq!(stats.restored, 0);
    assert!(receiver.received().is_empty());
}

#[test]
fn schema_lists_every_event_the_binary_can_send() {
    let dir = tempfile::tempdir().unwrap();
    let app = builder(None, dir.path(), &[]);
    let markdown = run(&app, &["schema"]);
    assert!(markdown.contains("job_submitted"), "{markdown}");
    let json: serde_json::Value = serde_json::from_str(&run(&app, &["schema", "--json"])).unwrap();
    let text = json.to_string();
    assert!(text.contains("\"job_submitted\""), "{text}");
    assert!(text.contains("\"namespace\""), "{text}");
    assert!(
        json["common_properties"]["properties"]
            .as_array()
            .unwrap()
            .len()
            > 10
    );
    assert!(markdown.contains("## Sent with every event"), "{markdown}");
    assert!(markdown.contains("| `os_name` |"), "{markdown}");
    let missing = TelemetryCommand::parse::<[&str; 0]>([])
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("a telemetry command is missing"),
        "{missing}"
    );
    let usage = TelemetryCommand::parse(["frobnicate"])
        .unwrap_err()
        .to_string();
    assert!(
        usage.contains("unknown telemetry command: `frobnicate`"),
        "{usage}"
    );
    assert!(usage.contains("schema [--json]"), "{usage}");
}

#[test]
fn the_first_run_holds_its_events_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::healthy();
    let app = || builder(Some(&receiver.origin), dir.path(), &[]).first_run(FirstRun::Hold);
    assert!(app().status().holding);
    let telemetry = app().start();
    assert!(telemetry.status().holding);
    for i in 0..3 {
        telemetry.capture(&job(i));
    }
    // Flushing sends nothing: the first run's events wait for the next run.
    assert!(!telemetry.flush(Duration::from_millis(200)));
    let stats = telemetry.shutdown(PATIENCE);
    assert_eq!((stats.delivered, stats.spooled), (0, 3));
    assert!(receiver.received().is_empty());
    let held = support::spooled_uuids(&dir.path().join("state"));
    assert_eq!(held.len(), 3);

    // The next run sends them, with the uuids they were captured with.
    assert!(!app().status().holding);
    let (stats, _) = session(app(), 1);
    assert_eq!((stats.restored, stats.delivered), (3, 4));
    let sent: HashSet<String> = receiver
        .received()
        .iter()
        .flat_map(|request| request.app_uuids())
        .collect();
    assert!(
        held.iter().all(|uuid| sent.contains(uuid)),
        "{held:?} {sent:?}"
    );
}

#[test]
fn the_first_runs_events_are_dropped_if_the_user_opts_out_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::healthy();
    let app = |vars: &[(&str, &str)]| {
        builder(Some(&receiver.origin), dir.path(), vars).first_run(FirstRun::Hold)
    };
    assert_eq!(session(app(&[]), 2).0.spooled, 2);
    // One run with an opt-out is enough: what was held is deleted unsent.
    assert_eq!(session(app(&[("DO_NOT_TRACK", "1")]), 2).1, Mode::Off);
    assert!(!dir.path().join("state/spool").exists());
    let (stats, _) = session(app(&[]), 0);
    assert_eq!(stats.restored, 0);
    assert!(receiver.received().is_empty());
}

#[test]
fn an_explicit_opt_in_or_notify_sends_on_the_first_run() {
    let receiver = Receiver::healthy();
    for (vars, first_run) in [
        (&[("JOBS_TELEMETRY", "on")][..], FirstRun::Hold),
        (&[][..], FirstRun::Notify),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (stats, _) = session(
            builder(Some(&receiver.origin), dir.path(), vars).first_run(first_run),
            1,
        );
        assert_eq!(stats.delivered, 1, "{vars:?} {first_run:?}");
    }
}

#[test]
fn corrupt_identity_files_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir_all(&state).unwrap();
    fs::write(state.join("installation-id"), "not a uuid\n").unwrap();
    fs::write(state.join("hash-key"), [0u8; 10]).unwrap();
    let telemetry = builder(None, dir.path(), &[]).start();
    let id = telemetry.installation_id().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(telemetry.status().identity, IdentityState::Saved);
    assert_eq!(
        fs::read_to_string(state.join("installation-id"))
            .unwrap()
            .trim(),
        id
    );
    telemetry.shutdown(PATIENCE);
}

#[test]
fn an_unusable_state_directory_gives_a_temporary_identity_and_status_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // A file where a directory should be: unwritable for everyone, root included.
    fs::write(dir.path().join("blocked"), "").unwrap();
    let app = || {
        builder(None, dir.path(), &[])
            .state_dir(dir.path().join("blocked/state"))
            .first_run(FirstRun::Notify)
    };
    let telemetry = app().start();
    assert_eq!(telemetry.mode(), Mode::Local);
    assert_eq!(telemetry.state_dir(), None);
    let status = telemetry.status();
    match &status.identity {
        IdentityState::Temporary { reason } => assert!(reason.contains("blocked"), "{reason}"),
        other => panic!("expected a temporary identity, got {other:?}"),
    }
    assert!(
        status.to_string().contains("(temporary: cannot use"),
        "{status}"
    );
    let again = app().start();
    assert_ne!(telemetry.installation_id(), again.installation_id());
    telemetry.shutdown(PATIENCE);
    again.shutdown(PATIENCE);
    read_only_directory_case(dir.path());
}

#[test]
fn a_first_run_that_cannot_record_its_notice_sends_nothing() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("blocked"), "").unwrap();
    let app = |first_run| {
        builder(Some(&receiver.origin), dir.path(), &[])
            .state_dir(dir.path().join("blocked/state"))
            .first_run(first_run)
    };
    // Holding needs a record of the notice: without one, every run would hold forever.
    let predicted = app(FirstRun::Hold).status();
    assert_eq!(predicted.mode, Mode::Off);
    let telemetry = app(FirstRun::Hold).start();
    assert_eq!(telemetry.mode(), Mode::Off);
    let status = telemetry.status();
    let problem = status.decision.problem.clone().unwrap();
    assert!(
        problem.contains("first-run notice cannot be recorded"),
        "{problem}"
    );
    assert!(
        status.to_string().contains("so nothing is sent"),
        "{status}"
    );
    telemetry.capture(&job(1));
    assert_eq!(telemetry.shutdown(PATIENCE).captured, 0);
    // An application that chose to send after the notice still sends; status, which writes
    // nothing, can still tell that the identity will be temporary.
    let predicted = app(FirstRun::Notify).status();
    assert_eq!(predicted.mode, Mode::On);
    assert!(matches!(
        predicted.identity,
        IdentityState::Temporary { .. }
    ));
    let (stats, mode) = session(app(FirstRun::Notify), 1);
    assert_eq!((mode, stats.delivered), (Mode::On, 1));
    assert_eq!(events(&receiver.received()).len(), 1);
}

/// The same with a read-only directory, where permissions apply (not to root).
#[cfg(unix)]
fn read_only_directory_case(root: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let locked = root.join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o500)).unwrap();
    let writable = fs::write(locked.join("probe"), "").is_ok();
    if !writable {
        let telemetry = builder(None, root, &[])
            .state_dir(locked.join("state"))
            .start();
        assert!(matches!(
            telemetry.status().identity,
            IdentityState::Temporary { .. }
        ));
        telemetry.shutdown(PATIENCE);
    }
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).unwrap();
}

#[cfg(not(unix))]
fn read_only_directory_case(_: &Path) {}

#[test]
fn events_describe_the_system_and_never_the_person() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
    telemetry.capture(&job(1));
    telemetry.capture(&job(2));
    let installation = telemetry.installation_id().unwrap().to_owned();
    telemetry.shutdown(PATIENCE);
    let sent = events(&receiver.received());
    assert_eq!(sent.len(), 2);
    let properties = &sent[0]["properties"];
    assert_eq!(properties["installation_id"], installation.as_str());
    let instance = properties["instance_id"].as_str().unwrap();
    assert_ne!(instance, installation);
    assert_eq!(sent[1]["properties"]["instance_id"], instance);
    assert_eq!(properties["ci"], false);
    assert_eq!(properties["ci_provider"], serde_json::Value::Null);
    assert_eq!(properties["arch"], std::env::consts::ARCH);
    for key in [
        "os_name",
        "kernel_name",
        "virtualization",
        "container",
        "environment",
        "memory",
        "rustc_version",
    ] {
        assert!(properties[key].is_string(), "{key}: {properties}");
    }
    assert!(properties["cpu_count"].as_u64().unwrap() >= 1);
    // What is sent besides the event's own properties is exactly what the schema discloses.
    let own: HashSet<&str> = ["namespace", "labels", "engine", "tasks"].into();
    let mut sent_common: Vec<&str> = properties
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|key| !key.starts_with('$') && !own.contains(key))
        .collect();
    let mut disclosed: Vec<&str> = telemetry_runtime::schema::common_properties()
        .fields
        .iter()
        .map(|field| field.name)
        .collect();
    sent_common.sort_unstable();
    disclosed.sort_unstable();
    assert_eq!(sent_common, disclosed);
    let raw: String = receiver
        .received()
        .iter()
        .map(|request| String::from_utf8_lossy(&request.body).into_owned())
        .collect();
    for private in [
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default(),
        std::env::var("USER").unwrap_or_default(),
        std::env::var("HOME").unwrap_or_default(),
        std::env::current_dir().unwrap().display().to_string(),
        dir.path().display().to_string(),
    ] {
        let private = private.trim();
        if private.len() >= 3 {
            assert!(!raw.contains(private), "{private:?} was sent");
        }
    }
}

#[test]
fn ci_runs_can_be_included_and_say_so() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let (stats, _) = session(
        builder(Some(&receiver.origin), dir.path(), &[("BUILDKITE", "true")])
            .ci_policy(CiPolicy::Include)
            // No first-run hold under CI: nobody reads the notice, and no next run comes.
            .first_run(FirstRun::Hold),
        1,
    );
    assert_eq!(stats.delivered, 1);
    let sent = events(&receiver.received());
    assert_eq!(sent[0]["properties"]["ci"], true);
    assert_eq!(sent[0]["properties"]["ci_provider"], "buildkite");
}

#[test]
fn the_distinct_id_follows_the_applications_order() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let account: Option<String> = None;
    let order = account.map(DistinctId::Value).into_iter().chain([
        DistinctId::Value("network-7f3a".into()),
        DistinctId::Installation,
        DistinctId::Instance,
    ]);
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .distinct_id(order)
        .start();
    telemetry.capture(&job(1));
    let installation = telemetry.installation_id().unwrap().to_owned();
    telemetry.shutdown(PATIENCE);
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .distinct_id([DistinctId::Value(String::new()), DistinctId::Installation])
        .start();
    telemetry.capture(&job(2));
    telemetry.shutdown(PATIENCE);
    let sent = events(&receiver.received());
    assert_eq!(sent[0]["distinct_id"], "network-7f3a");
    assert_eq!(
        sent[0]["properties"]["installation_id"],
        installation.as_str()
    );
    assert_eq!(sent[1]["distinct_id"], installation.as_str());
}

#[test]
fn the_subcommand_plugs_into_clap() {
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        /// Show or change what telemetry does.
        #[command(subcommand)]
        Telemetry(TelemetryCommand),
    }

    for (words, expected) in [
        (
            &["jobs", "telemetry", "status"][..],
            TelemetryCommand::Status,
        ),
        (&["jobs", "telemetry", "disable"], TelemetryCommand::Disable),
        (
            &["jobs", "telemetry", "schema", "--json"],
            TelemetryCommand::Schema { json: true },
        ),
        (&["jobs", "telemetry", "reset"], TelemetryCommand::Reset),
    ] {
        let Command::Telemetry(parsed) = Cli::try_parse_from(words).unwrap().command;
        assert_eq!(parsed, expected);
        let plain = TelemetryCommand::parse(&words[2..]).unwrap();
        assert_eq!(plain, expected);
    }
    assert!(Cli::try_parse_from(["jobs", "telemetry", "frobnicate"]).is_err());
}
