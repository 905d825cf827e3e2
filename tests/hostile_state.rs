//! Hostile state: each file of the state directory (installation id, hashing key, spool files,
//! saved choice, local log) corrupt, cut short, empty, huge, unreadable, open to other users,
//! a link out of the directory or to a directory, or a FIFO; and the directory itself a file, a
//! link, read-only, or on a full disk.
//!
//! In every case: nothing panics, starting and capturing return at once, the accounting holds,
//! what is outside the state directory is neither sent nor changed, telemetry repairs the file
//! or degrades (a temporary identity, off, no spool) and its status says why, and a later run
//! with a healthy directory works.
//!
//! Permission bits do not stop root: run as root, the cases that rely on them say so on the
//! terminal and check only what still holds, and the whole suite runs once more as `nobody`
//! (through `setpriv`), where every check runs.

#![deny(warnings, unused_qualifications)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::{PATIENCE, Receiver, assert_accounted, builder, job, refused_origin};
use telemetry_runtime::{HashKey, IdentityState, Mode, Stats, Status, TelemetryCommand};

/// What starting, capturing [`EVENTS`] events and checking the status may take together. They
/// take milliseconds; a FIFO opened for reading or a huge file read whole would take forever.
const PROMPT: Duration = Duration::from_secs(5);
/// Events captured per run.
const EVENTS: u32 = 5;
/// How long shutting down may wait for delivery.
const DEADLINE: Duration = Duration::from_secs(10);
/// A huge file: sparse, so it takes no disk, and far too large to be read whole in time.
const HUGE: u64 = 100 << 30;
/// The installation id kept outside the state directory, where a link points.
const OUTSIDE_ID: &str = "0b6c7d0e-3f4a-4c55-9d1e-2f0c8a7b6e51";
/// Text kept outside the state directory, where a link points.
const OUTSIDE_TEXT: &str = "outside-the-state-directory-7f3a";

/// What can be wrong with a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostile {
    Corrupt,
    Truncated,
    Empty,
    /// Valid contents followed by 100 GB of holes.
    Huge,
    /// Valid contents, mode 0000.
    Unreadable,
    /// Valid contents, mode 0666.
    TooOpen,
    /// A symlink to a file outside the state directory with valid contents.
    LinkOut,
    /// A symlink to a directory outside the state directory.
    LinkToDir,
    Fifo,
}

const ALL: [Hostile; 9] = [
    Hostile::Corrupt,
    Hostile::Truncated,
    Hostile::Empty,
    Hostile::Huge,
    Hostile::Unreadable,
    Hostile::TooOpen,
    Hostile::LinkOut,
    Hostile::LinkToDir,
    Hostile::Fifo,
];

/// Whether permission bits stop this process (they do not stop root).
fn permissions_bind() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let sealed = dir.path().join("sealed");
    fs::create_dir(&sealed).unwrap();
    fs::set_permissions(&sealed, fs::Permissions::from_mode(0o500)).unwrap();
    let binds = fs::write(sealed.join("probe"), "").is_err();
    fs::set_permissions(&sealed, fs::Permissions::from_mode(0o700)).unwrap();
    binds
}

/// Says on the terminal what root skips.
fn skipped_as_root(what: &str) {
    tell(&format!(
        "skipped as root (permission bits do not stop root): {what}"
    ));
}

/// Writes `line` to the terminal, past the test harness's capture of `println!`.
fn tell(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Set in the environment of the suite's run as an unprivileged user.
const UNPRIVILEGED: &str = "TELEMETRY_TESTS_UNPRIVILEGED";

/// Run as root, this runs the whole suite again as `nobody`, so that the checks permission
/// bits decide are made too. Where `setpriv` is missing or `nobody` cannot run this binary
/// (a checkout in a private directory), it says so instead.
#[test]
fn the_checks_root_skips_run_as_an_unprivileged_user() {
    if std::env::var_os(UNPRIVILEGED).is_some() || permissions_bind() {
        return;
    }
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let as_nobody = || {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        command
    };
    // A checkout in a directory only root may enter cannot be run by anyone else.
    let reachable = as_nobody()
        .args(["/bin/sh", "-c", "test -x \"$0\" && test -x \"$1\""])
        .arg(&test_binary)
        .arg(env!("CARGO_BIN_EXE_telemetry-probe"))
        .status()
        .is_ok_and(|status| status.success());
    if !reachable {
        skipped_as_root(
            "running the suite as nobody: nobody cannot reach this checkout's programs",
        );
        return;
    }
    let ran = as_nobody()
        .arg(&test_binary)
        .env(UNPRIVILEGED, "1")
        .env_remove("TMPDIR")
        .output();
    match ran {
        Ok(output) if output.status.success() => {}
        // The test harness's exit code for failed tests.
        Ok(output) if output.status.code() == Some(101) => panic!(
            "as nobody, the suite failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Ok(output) => skipped_as_root(&format!(
            "running the suite as nobody: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => skipped_as_root(&format!("running the suite as nobody: setpriv: {error}")),
    }
}

/// A file and a directory outside the state directory, with contents that must stay as they
/// are and never be sent.
struct Outside {
    _root: tempfile::TempDir,
    file: PathBuf,
    dir: PathBuf,
    before: (Vec<u8>, SystemTime, Vec<String>),
}

impl Outside {
    fn new(contents: &[u8]) -> Outside {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("precious");
        fs::write(&file, contents).unwrap();
        let dir = root.path().join("precious-dir");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("inside.jsonl"), OUTSIDE_TEXT).unwrap();
        let mut outside = Outside {
            _root: root,
            file,
            dir,
            before: (Vec::new(), SystemTime::UNIX_EPOCH, Vec::new()),
        };
        outside.before = outside.snapshot();
        outside
    }

    fn snapshot(&self) -> (Vec<u8>, SystemTime, Vec<String>) {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        (
            fs::read(&self.file).unwrap(),
            fs::metadata(&self.file).unwrap().modified().unwrap(),
            names,
        )
    }

    fn assert_intact(&self, case: &str) {
        assert_eq!(self.snapshot(), self.before, "{case}: outside was changed");
        assert_eq!(
            fs::read_to_string(self.dir.join("inside.jsonl")).unwrap(),
            OUTSIDE_TEXT,
            "{case}"
        );
    }
}

/// Makes `path` hostile in the way `how` says; `valid` is what a good file holds. False when
/// this machine cannot (no `mkfifo`).
fn plant(path: &Path, how: Hostile, valid: &[u8], outside: &Outside) -> bool {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
    match how {
        Hostile::Corrupt => fs::write(path, b"\xff\xfe{not: valid\x00\n").unwrap(),
        Hostile::Truncated => fs::write(path, &valid[..valid.len() / 2]).unwrap(),
        Hostile::Empty => fs::write(path, b"").unwrap(),
        Hostile::Huge => {
            fs::write(path, valid).unwrap();
            fs::OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(HUGE)
                .unwrap();
        }
        Hostile::Unreadable | Hostile::TooOpen => {
            fs::write(path, valid).unwrap();
            let mode = if how == Hostile::Unreadable {
                0o000
            } else {
                0o666
            };
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }
        Hostile::LinkOut => std::os::unix::fs::symlink(&outside.file, path).unwrap(),
        Hostile::LinkToDir => std::os::unix::fs::symlink(&outside.dir, path).unwrap(),
        Hostile::Fifo => {
            let made = Command::new("mkfifo").arg(path).status();
            if !made.is_ok_and(|status| status.success()) {
                println!("skipped: no mkfifo here");
                return false;
            }
        }
    }
    true
}

/// What one run did.
struct Run {
    stats: Stats,
    status: Status,
    installation_id: Option<String>,
    /// Every request body the receiver got during the run.
    bodies: Vec<String>,
    /// The events sent, in order.
    sent: Vec<Value>,
}

/// Starts telemetry for the state directory `root/state`, captures [`EVENTS`] events, reads
/// the status, and shuts down. Start, capture and status run on a thread of their own, so that
/// one that blocks fails the test instead of hanging it.
fn run(root: &Path, endpoint: Option<&Receiver>, vars: &[(&str, &str)]) -> Run {
    let builder = builder(endpoint.map(|r| r.origin.as_str()), root, vars);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let started = Instant::now();
        let guard = builder.start();
        for n in 0..EVENTS {
            guard.capture(&job(n));
        }
        let status = guard.status();
        let took = started.elapsed();
        let stats = guard.shutdown(DEADLINE);
        let installation_id = guard.installation_id().map(str::to_owned);
        let _ = tx.send((took, stats, status, installation_id));
    });
    let (took, stats, status, installation_id) = rx
        .recv_timeout(PATIENCE)
        .expect("start, capture and shutdown finished (nothing blocked or panicked)");
    assert!(took < PROMPT, "start and capture took {took:?}");
    assert_accounted(&stats);
    let requests = endpoint.map(Receiver::received).unwrap_or_default();
    Run {
        stats,
        status,
        installation_id,
        bodies: requests
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect(),
        sent: support::events(&requests),
    }
}

impl Run {
    /// The hashed namespace of the events sent: which key hashed them.
    fn namespace_hash(&self) -> String {
        let hashes: Vec<&str> = self
            .sent
            .iter()
            .map(|e| e["properties"]["namespace"].as_str().unwrap())
            .collect();
        assert!(!hashes.is_empty(), "nothing was sent");
        assert!(hashes.iter().all(|h| *h == hashes[0]));
        hashes[0].to_owned()
    }

    fn assert_not_sent(&self, text: &str, case: &str) {
        for body in &self.bodies {
            assert!(!body.contains(text), "{case}: `{text}` was sent");
        }
    }
}

/// Names in `dir` left by an interrupted write.
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir).map_or(Vec::new(), |entries| {
        entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".tmp-"))
            .collect()
    })
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn assert_saved(run: &Run, case: &str) {
    assert_eq!(run.status.identity, IdentityState::Saved, "{case}");
}

/// A valid hashing key, as the file holds it.
fn outside_key_hex() -> String {
    "ab".repeat(32)
}

#[test]
fn a_hostile_installation_id_is_replaced_and_nothing_outside_is_read() {
    let binds = permissions_bind();
    for how in ALL {
        let case = format!("installation id {how:?}");
        let receiver = Receiver::healthy();
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        let first = run(root.path(), Some(&receiver), &[]);
        let id_file = state.join("installation-id");
        let outside = Outside::new(OUTSIDE_ID.as_bytes());
        let valid = fs::read(&id_file).unwrap();
        if !plant(&id_file, how, &valid, &outside) {
            continue;
        }
        let second = run(root.path(), Some(&receiver), &[]);
        assert_eq!(second.stats.delivered, u64::from(EVENTS), "{case}");
        assert_saved(&second, &case);
        let id = second.installation_id.clone().unwrap();
        // Unreadable only stops those that permission bits stop; open is harmless, the id is
        // no secret.
        let kept = how == Hostile::TooOpen || (how == Hostile::Unreadable && !binds);
        assert_eq!(id == first.installation_id.clone().unwrap(), kept, "{case}");
        assert_ne!(id, OUTSIDE_ID, "{case}");
        second.assert_not_sent(OUTSIDE_ID, &case);
        outside.assert_intact(&case);
        if !kept {
            assert!(fs::symlink_metadata(&id_file).unwrap().is_file(), "{case}");
            assert_eq!(mode_of(&id_file), 0o600, "{case}");
            assert!(fs::metadata(&id_file).unwrap().len() < 100, "{case}");
        }
        // And it stays: the next run is the same installation.
        let third = run(root.path(), Some(&receiver), &[]);
        assert_eq!(third.installation_id.unwrap(), id, "{case}");
        assert_eq!(third.stats.delivered, u64::from(EVENTS), "{case}");
        assert!(leftovers(&state).is_empty(), "{case}");
    }
    if !binds {
        skipped_as_root("an installation id of mode 0000 is read, not replaced");
    }
}

#[test]
fn a_hostile_or_exposed_key_is_replaced_and_a_key_outside_is_never_used() {
    let binds = permissions_bind();
    let outside_key = HashKey::from_bytes([0xab; 32]);
    for how in ALL {
        let case = format!("hash key {how:?}");
        let receiver = Receiver::healthy();
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        let first = run(root.path(), Some(&receiver), &[]);
        let key_file = state.join("hash-key");
        let outside = Outside::new(outside_key_hex().as_bytes());
        let valid = fs::read(&key_file).unwrap();
        if !plant(&key_file, how, &valid, &outside) {
            continue;
        }
        let second = run(root.path(), Some(&receiver), &[]);
        assert_eq!(second.stats.delivered, u64::from(EVENTS), "{case}");
        assert_saved(&second, &case);
        // A new key is not a new installation.
        assert_eq!(second.installation_id, first.installation_id, "{case}");
        let hash = second.namespace_hash();
        // A key others may read is replaced: whoever read it could reverse the hashes.
        let kept = how == Hostile::Unreadable && !binds;
        assert_eq!(hash == first.namespace_hash(), kept, "{case}");
        assert_ne!(hash, outside_key.hash_hex("payroll-team"), "{case}");
        second.assert_not_sent(&outside_key_hex(), &case);
        outside.assert_intact(&case);
        assert!(fs::symlink_metadata(&key_file).unwrap().is_file(), "{case}");
        if !kept {
            assert_eq!(mode_of(&key_file), 0o600, "{case}");
        }
        let third = run(root.path(), Some(&receiver), &[]);
        assert_eq!(third.namespace_hash(), hash, "{case}: the new key is kept");
        assert!(leftovers(&state).is_empty(), "{case}");
    }
    if !binds {
        skipped_as_root("a key of mode 0000 is read, not replaced");
    }
}

/// A spooled event line as the library writes it, with `uuid`: one event spooled by a run
/// against an endpoint where nothing listens.
fn spool_line(uuid: &str) -> String {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let line = LINE.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        let refused = refused_origin();
        let guard = builder(Some(&refused), root.path(), &[]).start();
        guard.capture(&job(99));
        assert_eq!(guard.shutdown(DEADLINE).spooled, 1);
        let spool = root.path().join("state/spool");
        let file = fs::read_dir(&spool)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        fs::read_to_string(file).unwrap().trim_end().to_owned()
    });
    let mut event: Value = serde_json::from_str(line).unwrap();
    event["uuid"] = Value::from(uuid);
    event.to_string()
}

#[test]
fn hostile_spool_files_are_discarded_or_removed_unread() {
    let binds = permissions_bind();
    const OURS: &str = "5a5e1f6c-1111-4222-8333-444455556666";
    const THEIRS: &str = "0ff51de0-1111-4222-8333-444455556666";
    for how in ALL {
        let case = format!("spool file {how:?}");
        let receiver = Receiver::healthy();
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        run(root.path(), Some(&receiver), &[]);
        let spool = state.join("spool");
        fs::create_dir_all(&spool).unwrap();
        let file = spool.join("0000000000001-1-0000000000000000.jsonl");
        let outside = Outside::new(format!("{}\n", spool_line(THEIRS)).as_bytes());
        let valid = format!("{}\n", spool_line(OURS));
        if !plant(&file, how, valid.as_bytes(), &outside) {
            continue;
        }
        let second = run(root.path(), Some(&receiver), &[]);
        let stats = second.stats;
        // The spooled line is sent when it is a regular file this process may read, whole or
        // with holes after it.
        let readable = matches!(how, Hostile::Huge | Hostile::TooOpen)
            || (how == Hostile::Unreadable && !binds);
        let sent = second.bodies.iter().any(|body| body.contains(OURS));
        assert_eq!(sent, readable, "{case}");
        assert_eq!(
            stats.restored,
            stats.dropped.discarded + u64::from(readable),
            "{case}: {stats:?}"
        );
        assert_eq!(
            stats.delivered,
            u64::from(EVENTS) + u64::from(readable),
            "{case}: {stats:?}"
        );
        second.assert_not_sent(THEIRS, &case);
        second.assert_not_sent(OUTSIDE_TEXT, &case);
        outside.assert_intact(&case);
        let left = fs::symlink_metadata(&file).is_ok();
        // Only a file this process may not open stays (and is tried again by later runs).
        assert_eq!(left, how == Hostile::Unreadable && binds, "{case}");
        let third = run(root.path(), Some(&receiver), &[]);
        assert_eq!(third.stats.delivered, u64::from(EVENTS), "{case}");
        assert!(leftovers(&spool).is_empty(), "{case}");
    }
    if !binds {
        skipped_as_root("a spool file of mode 0000 is read and sent");
    }
}

#[test]
fn a_spool_directory_that_is_a_link_file_or_fifo_is_replaced_not_followed() {
    for how in [Hostile::LinkToDir, Hostile::Corrupt, Hostile::Fifo] {
        let case = format!("spool directory {how:?}");
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        fs::create_dir_all(&state).unwrap();
        let outside = Outside::new(b"");
        // Events waiting outside, where the link leads: not ours to send.
        fs::write(
            outside.dir.join("0000000000001-1-0000000000000000.jsonl"),
            format!("{}\n", spool_line("0ff51de0-1111-4222-8333-444455556666")),
        )
        .unwrap();
        let outside = Outside {
            before: outside.snapshot(),
            ..outside
        };
        let spool = state.join("spool");
        if !plant(&spool, how, b"", &outside) {
            continue;
        }
        // Nothing listens: the events go to the spool.
        let refused = refused_origin();
        let b = builder(Some(&refused), root.path(), &[]);
        let guard = b.start();
        for n in 0..EVENTS {
            guard.capture(&job(n));
        }
        let stats = guard.shutdown(DEADLINE);
        assert_accounted(&stats);
        assert_eq!(stats.restored, 0, "{case}");
        assert_eq!(stats.spooled, u64::from(EVENTS), "{case}");
        assert!(fs::symlink_metadata(&spool).unwrap().is_dir(), "{case}");
        assert_eq!(mode_of(&spool), 0o700, "{case}");
        outside.assert_intact(&case);
        // The next run sends them, and only them.
        let receiver = Receiver::healthy();
        let next = run(root.path(), Some(&receiver), &[]);
        assert_eq!(next.stats.restored, u64::from(EVENTS), "{case}");
        next.assert_not_sent("0ff51de0", &case);
        assert!(support::spooled_uuids(&state).is_empty(), "{case}");
    }
}

/// Another user's file in the state directory (one that could write to it, or root) is never
/// believed: a saved choice it holds is off, and an id or key it holds is replaced. Only root
/// can give a file away, so only root makes these cases.
#[test]
fn state_files_another_user_owns_are_not_believed() {
    use std::os::unix::fs::MetadataExt as _;
    if permissions_bind() {
        tell("skipped unless root: only root can give a file to another user");
        return;
    }
    const NOBODY: u32 = 65534;
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    fs::create_dir_all(&state).unwrap();
    let first = run(root.path(), None, &[]);
    let key_before = fs::read(state.join("hash-key")).unwrap();
    for name in ["installation-id", "hash-key"] {
        std::os::unix::fs::chown(state.join(name), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let choice = state.join("consent");
    fs::write(&choice, "on\n").unwrap();
    std::os::unix::fs::chown(&choice, Some(NOBODY), Some(NOBODY)).unwrap();
    let receiver = Receiver::healthy();
    let foreign = run(root.path(), Some(&receiver), &[]);
    assert_eq!(foreign.status.mode, Mode::Off);
    let summary = foreign.status.summary();
    assert!(summary.contains("another user owns it"), "{summary}");
    assert!(foreign.bodies.is_empty());

    // Without the foreign choice, the id and key are this user's own again, and new.
    fs::remove_file(&choice).unwrap();
    let replaced = run(root.path(), Some(&receiver), &[]);
    assert_eq!(replaced.status.mode, Mode::On);
    assert_ne!(replaced.installation_id, first.installation_id);
    for name in ["installation-id", "hash-key"] {
        let meta = fs::metadata(state.join(name)).unwrap();
        assert_ne!(meta.uid(), NOBODY, "{name}");
    }
    assert_ne!(fs::read(state.join("hash-key")).unwrap(), key_before);
}

/// A state directory that exists already, open to others (made by hand or by an older
/// version), is made private, and so is its spool.
#[test]
fn an_existing_state_directory_open_to_others_is_made_private() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let spool = state.join("spool");
    fs::create_dir_all(&spool).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o777)).unwrap();
    let refused = refused_origin();
    let guard = builder(Some(&refused), root.path(), &[])
        .max_attempts(1)
        .start();
    guard.capture(&job(1));
    let stats = guard.shutdown(PATIENCE);
    assert_eq!(stats.spooled, 1, "{stats:?}");
    for dir in [&state, &spool] {
        let mode = fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}

#[test]
fn a_hostile_saved_choice_is_off_says_why_and_a_new_choice_replaces_it() {
    let binds = permissions_bind();
    for how in ALL {
        let case = format!("saved choice {how:?}");
        let receiver = Receiver::healthy();
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        fs::create_dir_all(&state).unwrap();
        let choice = state.join("consent");
        // Where a link leads, `local`: were it followed, telemetry would run.
        let outside = Outside::new(b"local\n");
        if !plant(&choice, how, b"on\n", &outside) {
            continue;
        }
        let hostile = run(root.path(), Some(&receiver), &[]);
        if how == Hostile::Unreadable && !binds {
            // Root reads it: a valid `on`.
            assert_eq!(hostile.status.mode, Mode::On, "{case}");
            continue;
        }
        let status = &hostile.status;
        assert_eq!(status.mode, Mode::Off, "{case}");
        assert_eq!(hostile.stats, Stats::default(), "{case}");
        assert!(hostile.bodies.is_empty(), "{case}");
        let summary = status.summary();
        let expected = format!(
            "off (saved choice in {}; cannot be read (",
            choice.display()
        );
        assert!(summary.starts_with(&expected), "{case}: {summary}");
        assert!(summary.ends_with("), so off)"), "{case}: {summary}");
        let why = match how {
            Hostile::Corrupt | Hostile::Truncated | Hostile::Empty => "not off, local or on",
            Hostile::Huge => "too large",
            Hostile::Unreadable => "ermission denied",
            Hostile::TooOpen => "other users may change it",
            Hostile::LinkOut | Hostile::LinkToDir | Hostile::Fifo => "not a regular file",
        };
        assert!(summary.contains(why), "{case}: {summary}");
        // Off writes nothing: no identity was made.
        assert!(!state.join("installation-id").exists(), "{case}");
        outside.assert_intact(&case);

        // The user saves a choice again; it replaces what was there.
        let b = builder(Some(&receiver.origin), root.path(), &[]);
        let mut out = Vec::new();
        TelemetryCommand::Enable.run_to(&b, &mut out).unwrap();
        outside.assert_intact(&case);
        assert!(fs::symlink_metadata(&choice).unwrap().is_file(), "{case}");
        assert_eq!(fs::read_to_string(&choice).unwrap(), "on\n", "{case}");
        assert_eq!(mode_of(&choice), 0o600, "{case}");
        let healthy = run(root.path(), Some(&receiver), &[]);
        assert_eq!(healthy.status.mode, Mode::On, "{case}");
        assert_eq!(healthy.stats.delivered, u64::from(EVENTS), "{case}");
    }
    if !binds {
        skipped_as_root("a saved choice of mode 0000 is read");
    }
}

/// The lines of the local log after the first `skip` bytes, each parsed.
fn log_events(log: &Path, skip: usize) -> Vec<Value> {
    let text = fs::read(log).unwrap();
    String::from_utf8(text[skip.min(text.len())..].to_vec())
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_str(line).expect("whole JSON lines"))
        .collect()
}

#[test]
fn a_hostile_local_log_is_appended_to_or_replaced_never_written_through() {
    let binds = permissions_bind();
    for how in ALL {
        let case = format!("local log {how:?}");
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        run(root.path(), None, &[]);
        let log = state.join("events.jsonl");
        let valid = fs::read(&log).unwrap();
        let outside = Outside::new(OUTSIDE_TEXT.as_bytes());
        if !plant(&log, how, &valid, &outside) {
            continue;
        }
        // What stays in front of the new lines: the file, when it is one to append to.
        let kept = match how {
            Hostile::Corrupt | Hostile::Truncated | Hostile::Empty | Hostile::TooOpen => {
                fs::read(&log).unwrap().len()
            }
            Hostile::Unreadable if !binds => valid.len(),
            _ => 0,
        };
        let second = run(root.path(), None, &[]);
        assert_eq!(second.status.mode, Mode::Local, "{case}");
        assert_eq!(second.stats.delivered, u64::from(EVENTS), "{case}");
        assert!(second.status.state_problem.is_none(), "{case}");
        outside.assert_intact(&case);
        assert!(fs::symlink_metadata(&log).unwrap().is_file(), "{case}");
        assert_eq!(mode_of(&log), 0o600, "{case}");
        // The new events are whole lines of their own, each once.
        let events = log_events(&log, kept);
        let tasks: Vec<u64> = events
            .iter()
            .map(|e| e["properties"]["tasks"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (0..u64::from(EVENTS)).collect();
        assert_eq!(tasks, expected, "{case}");
        let third = run(root.path(), None, &[]);
        assert_eq!(third.stats.delivered, u64::from(EVENTS), "{case}");
        assert_eq!(log_events(&log, kept).len(), 2 * EVENTS as usize, "{case}");
    }
    if !binds {
        skipped_as_root("a local log of mode 0000 is appended to, not set aside");
    }
}

#[test]
fn a_file_where_the_state_directory_belongs_means_a_temporary_identity_that_says_why() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    fs::write(&state, OUTSIDE_TEXT).unwrap();
    let receiver = Receiver::healthy();
    for endpoint in [Some(&receiver), None] {
        let run = run(root.path(), endpoint, &[]);
        let IdentityState::Temporary { reason } = &run.status.identity else {
            panic!("not temporary: {:?}", run.status);
        };
        assert_eq!(
            reason,
            &format!(
                "cannot use {}: it exists and is not a directory",
                state.display()
            )
        );
        assert!(run.status.to_string().contains(reason.as_str()));
        assert_eq!(run.status.state_dir, None);
        if endpoint.is_some() {
            // Sent under the temporary identity.
            assert_eq!(run.stats.delivered, u64::from(EVENTS));
        } else {
            // `local` with nowhere to record: counted as not stored.
            assert_eq!(run.stats.dropped.unstorable, u64::from(EVENTS));
        }
    }
    assert_eq!(fs::read_to_string(&state).unwrap(), OUTSIDE_TEXT);
    fs::remove_file(&state).unwrap();
    let healthy = run(root.path(), Some(&receiver), &[]);
    assert_saved(&healthy, "after the file is gone");
    assert_eq!(healthy.stats.delivered, u64::from(EVENTS));
}

#[test]
fn a_state_directory_that_is_a_link_is_followed_as_the_users_own_arrangement() {
    let root = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let real = target.path().join("dotfiles-telemetry");
    fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, root.path().join("state")).unwrap();
    let receiver = Receiver::healthy();
    let first = run(root.path(), Some(&receiver), &[]);
    assert_saved(&first, "linked");
    assert_eq!(first.stats.delivered, u64::from(EVENTS));
    assert_eq!(mode_of(&real.join("installation-id")), 0o600);
    assert_eq!(mode_of(&real.join("hash-key")), 0o600);
    let second = run(root.path(), Some(&receiver), &[]);
    assert_eq!(second.installation_id, first.installation_id);
    assert_eq!(second.namespace_hash(), first.namespace_hash());
}

#[test]
fn a_read_only_state_directory_means_a_temporary_identity_that_says_why() {
    if !permissions_bind() {
        skipped_as_root("a state directory of mode 0500 is written to");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let receiver = Receiver::healthy();
    let first = run(root.path(), Some(&receiver), &[]);
    fs::set_permissions(&state, fs::Permissions::from_mode(0o500)).unwrap();
    let names = |dir: &Path| {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = names(&state);
    let refused = refused_origin();
    let b = builder(Some(&refused), root.path(), &[]);
    let guard = b.start();
    for n in 0..EVENTS {
        guard.capture(&job(n));
    }
    let status = guard.status();
    let stats = guard.shutdown(DEADLINE);
    assert_accounted(&stats);
    let IdentityState::Temporary { reason } = &status.identity else {
        panic!("not temporary: {status:?}");
    };
    assert!(
        reason.starts_with(&format!("cannot use {}: ", state.display())),
        "{reason}"
    );
    assert!(reason.contains("Permission denied"), "{reason}");
    assert_ne!(guard.installation_id(), first.installation_id.as_deref());
    // No spool: what could not be sent is dropped and counted.
    assert_eq!(stats.dropped.unstorable, u64::from(EVENTS));
    assert_eq!(names(&state), before);
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let healthy = run(root.path(), Some(&receiver), &[]);
    assert_eq!(healthy.installation_id, first.installation_id);
}

// Whole processes: a read-only home, a full disk, and what `telemetry status` prints.

/// The probe, with only the given environment, home in `home`.
fn probe_command(args: &[&str], home: &Path, vars: &[(&str, &str)]) -> Command {
    support::hermetic(env!("CARGO_BIN_EXE_telemetry-probe"), args, home, vars)
}

/// Runs the probe under a file size limit of `blocks` 512-byte blocks: with `SIGXFSZ` ignored,
/// a write past it fails with `EFBIG`, as on a full disk.
fn probe_on_full_disk(blocks: u32, args: &[&str], home: &Path, vars: &[(&str, &str)]) -> Output {
    let script = format!("trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\"");
    let mut all = vec!["-c", script.as_str(), env!("CARGO_BIN_EXE_telemetry-probe")];
    all.extend_from_slice(args);
    timed(support::hermetic("/bin/sh", &all, home, vars))
}

/// Runs `command`, asserting that it succeeds promptly.
fn timed(mut command: Command) -> Output {
    let started = Instant::now();
    let output = command.output().expect("run the probe");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "the probe failed: {output:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(took < PROMPT + DEADLINE, "took {took:?}");
    output
}

/// The status the probe printed.
fn probe_status(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let start = stderr.find("--- status ---\n").expect("a status") + 15;
    let end = stderr[start..].find("\n--- end ---").expect("its end") + start;
    stderr[start..end].to_owned()
}

fn assert_probe_accounted(stats: &Value) {
    let n = |key: &str| stats[key].as_u64().unwrap();
    assert_eq!(
        n("captured") + n("restored"),
        n("delivered") + n("dropped") + n("spooled"),
        "{stats}"
    );
}

#[test]
fn a_full_disk_before_the_identity_is_saved_means_a_temporary_one_that_says_why() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let state_text = state.display().to_string();
    let receiver = Receiver::healthy();
    let vars = [
        ("PROBE_TELEMETRY_DIR", state_text.as_str()),
        ("PROBE_TELEMETRY_ENDPOINT", receiver.origin.as_str()),
        ("PROBE_STATUS", "1"),
    ];
    let output = probe_on_full_disk(0, &["5"], home.path(), &vars);
    let stats = support::probe_stats(&output);
    assert_probe_accounted(&stats);
    // Sent, under an identity of this process only.
    assert_eq!(stats["delivered"], 5, "{stats}");
    let status = probe_status(&output);
    let temporary = format!("(temporary: cannot use {state_text}: ");
    assert!(status.contains(&temporary), "{status}");
    assert!(status.contains("File too large"), "{status}");
    assert!(leftovers(&state).is_empty());
    // With room again, the identity is saved.
    let output = timed(probe_command(&["1"], home.path(), &vars));
    let status = probe_status(&output);
    assert!(!status.contains("temporary"), "{status}");
    let saved = fs::read_to_string(state.join("installation-id")).unwrap();
    assert_eq!(
        support::probe_stats(&output)["installation_id"],
        saved.trim()
    );
}

#[test]
fn a_full_disk_at_spooling_drops_and_counts_says_why_and_leaves_nothing_behind() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let state_text = state.display().to_string();
    let refused = refused_origin();
    let vars = [
        ("PROBE_TELEMETRY_DIR", state_text.as_str()),
        ("PROBE_TELEMETRY_ENDPOINT", refused.as_str()),
        ("PROBE_STATUS", "1"),
    ];
    let first = timed(probe_command(&["0"], home.path(), &vars));
    let id = support::probe_stats(&first)["installation_id"].clone();
    // 512 bytes: the identity fits, 20 events do not.
    let output = probe_on_full_disk(1, &["20"], home.path(), &vars);
    let stats = support::probe_stats(&output);
    assert_probe_accounted(&stats);
    assert_eq!(
        (stats["spooled"].as_u64(), stats["dropped"].as_u64()),
        (Some(0), Some(20))
    );
    assert_eq!(stats["installation_id"], id);
    let status = probe_status(&output);
    let spool = state.join("spool");
    let expected = format!(
        "state problem:    events that cannot be sent now are not kept: cannot write to {}: ",
        spool.display()
    );
    assert!(status.contains(&expected), "{status}");
    assert!(status.contains("File too large"), "{status}");
    assert!(leftovers(&state).is_empty());
    assert!(leftovers(&spool).is_empty());
    assert!(support::spooled_uuids(&state).is_empty());
    // With room again, it spools, and a healthy endpoint then gets what was spooled.
    let output = timed(probe_command(&["3"], home.path(), &vars));
    assert_eq!(support::probe_stats(&output)["spooled"], 3);
    assert!(!probe_status(&output).contains("state problem"));
    let receiver = Receiver::healthy();
    let vars = [
        ("PROBE_TELEMETRY_DIR", state_text.as_str()),
        ("PROBE_TELEMETRY_ENDPOINT", receiver.origin.as_str()),
    ];
    let output = timed(probe_command(&["0"], home.path(), &vars));
    assert_eq!(support::probe_stats(&output)["delivered"], 3);
}

#[test]
fn a_full_disk_in_local_mode_leaves_only_whole_lines_in_the_log() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let state_text = state.display().to_string();
    let vars = [
        ("PROBE_TELEMETRY_DIR", state_text.as_str()),
        ("PROBE_STATUS", "1"),
    ];
    timed(probe_command(&["0"], home.path(), &vars));
    let log = state.join("events.jsonl");
    assert!(!log.exists());
    // 4 KiB: a few events fit, 40 do not; the write that fills it stops part way.
    let output = probe_on_full_disk(8, &["40"], home.path(), &vars);
    let stats = support::probe_stats(&output);
    assert_probe_accounted(&stats);
    assert_eq!(stats["mode"], "local");
    let delivered = stats["delivered"].as_u64().unwrap();
    assert!(stats["dropped"].as_u64().unwrap() > 0, "{stats}");
    // What counts as recorded is exactly what the log holds, in whole lines.
    let recorded = if log.exists() {
        log_events(&log, 0).len()
    } else {
        0
    };
    assert_eq!(recorded as u64, delivered, "{stats}");
    let status = probe_status(&output);
    let expected = format!(
        "state problem:    events are not recorded: cannot write {}: ",
        log.display()
    );
    assert!(status.contains(&expected), "{status}");
    // With room again, the log goes on in whole lines.
    let output = timed(probe_command(&["2"], home.path(), &vars));
    assert_eq!(support::probe_stats(&output)["delivered"], 2);
    assert_eq!(log_events(&log, 0).len() as u64, delivered + 2);
}

#[test]
fn a_read_only_home_means_a_temporary_identity_that_says_why() {
    if !permissions_bind() {
        skipped_as_root("a home of mode 0500 is written to");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o500)).unwrap();
    let output = timed(probe_command(&["3"], home.path(), &[("PROBE_STATUS", "1")]));
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let stats = support::probe_stats(&output);
    assert_probe_accounted(&stats);
    assert_eq!(stats["mode"], "local");
    let status = probe_status(&output);
    let state = home.path().join(".config/probe/telemetry");
    assert!(
        status.contains(&format!("(temporary: cannot use {}: ", state.display())),
        "{status}"
    );
    assert!(status.contains("Permission denied"), "{status}");
    assert_eq!(fs::read_dir(home.path()).unwrap().count(), 0);
}

#[test]
fn telemetry_status_says_why_a_corrupt_saved_choice_turns_telemetry_off() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::write(state.join("consent"), "enabled\n").unwrap();
    let state_text = state.display().to_string();
    let vars = [("PROBE_TELEMETRY_DIR", state_text.as_str())];
    let output = timed(probe_command(&["telemetry", "status"], home.path(), &vars));
    let shown = String::from_utf8(output.stdout).unwrap();
    let expected = format!(
        "telemetry:        off (saved choice in {}/consent; cannot be read (it is not off, \
         local or on), so off)",
        state_text
    );
    assert!(shown.contains(&expected), "{shown}");
    // Saving a choice replaces it.
    timed(probe_command(&["telemetry", "local"], home.path(), &vars));
    let output = timed(probe_command(&["telemetry", "status"], home.path(), &vars));
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(
        shown.contains("telemetry:        local (saved choice in"),
        "{shown}"
    );
}

#[test]
fn a_notice_marker_that_is_a_dangling_link_does_not_hold_every_run() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let receiver = Receiver::healthy();
    run(root.path(), Some(&receiver), &[]);
    let nowhere = root.path().join("nowhere");
    let marker = state.join("notice-shown");
    let _ = fs::remove_file(&marker);
    std::os::unix::fs::symlink(&nowhere, &marker).unwrap();
    for _ in 0..2 {
        let guard = builder(Some(&receiver.origin), root.path(), &[])
            .first_run(telemetry_runtime::FirstRun::Hold)
            .start();
        assert!(!guard.status().holding);
        for n in 0..EVENTS {
            guard.capture(&job(n));
        }
        let stats = guard.shutdown(DEADLINE);
        assert_accounted(&stats);
        assert_eq!(stats.delivered, u64::from(EVENTS), "{stats:?}");
    }
    // The link was neither followed nor replaced.
    assert!(!nowhere.exists());
    assert!(fs::symlink_metadata(&marker).unwrap().is_symlink());
}
