//! Events that could not be delivered before the process ended, kept on disk for the next
//! process that starts telemetry.
//!
//! Each spool file holds complete event objects, one per line, with the uuids they were first
//! sent with, so PostHog counts a replayed event once even if an earlier attempt did arrive.
//!
//! A file is claimed before it is read: the claimer takes an exclusive lock on it and then
//! renames it to a name of its own. The lock is held until each of the file's events is
//! settled (delivered, dropped, or written to a new spool file), and then the file is deleted.
//! Two processes starting at once therefore never both send one file. A file whose claimer
//! died, or dropped its lines without settling them, stays on disk and becomes claimable again
//! when the lock is released.
//!
//! The spool directory is never followed out of the state directory: a symlink, file or FIFO
//! where it should be is replaced by a directory before anything is written, and nothing is
//! read from it until then. Inside it only regular files are read; a symlink or FIFO with a
//! spool file's name is removed. No file is read whole into memory: claiming reads at most the
//! spool's size limit of a file, and counting streams at most [`COUNT_LIMIT`] bytes of each.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead as _, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;

use crate::state::{create_private_dir, unique_name, write_new_private};

/// The spool's directory inside the state directory.
pub(crate) const SPOOL_DIR: &str = "spool";
const PENDING: &str = ".jsonl";
/// PostHog refuses a whole batch when one event in it is larger than about 1 MB.
const MAX_LINE_BYTES: usize = 1_000_000;
const CLAIMED: &str = ".claimed";
/// Temporary files older than this were left by a process that died while writing them.
const ABANDONED_TEMP: Duration = Duration::from_secs(3600);
/// Counting the events of a file reads no more of it than this: a larger file was not written
/// by this library, whatever its limits.
pub(crate) const COUNT_LIMIT: u64 = 64 << 20;

/// The spool directory and its limits.
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    max_age: Duration,
    /// Why the last write failed, if it did; shared by clones.
    problem: Arc<crate::state::Problem>,
}

/// The name of the pipeline's own report of dropped events, which is not counted as one of
/// the application's events.
const DROP_REPORT: &str = "telemetry_dropped";

/// A spool file this process has claimed. The file is deleted when the last of its lines is
/// settled; dropping the claim before that only releases the lock.
#[derive(Debug)]
pub(crate) struct Claim {
    path: PathBuf,
    /// The file's size, which stops counting against the spool limit once it is settled.
    pub bytes: u64,
    unsettled: AtomicUsize,
    // Holds the lock for as long as the claim lives.
    _file: File,
}

impl Claim {
    /// Records that one of the file's lines reached its end; the last one deletes the file.
    pub(crate) fn settle_one(&self) {
        if self.unsettled.fetch_sub(1, Ordering::AcqRel) == 1
            && let Err(error) = fs::remove_file(&self.path)
            && crate::crash::may_log()
        {
            log::debug!("could not remove a settled spool file: {error}");
        }
    }
}

/// One line read from a claimed file.
#[derive(Debug)]
pub(crate) struct Restored {
    pub json: String,
    /// False for the pipeline's own drop reports.
    pub counted: bool,
    pub claim: Arc<Claim>,
}

/// What claiming found.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub lines: Vec<Restored>,
    /// Bytes of the files claimed.
    pub bytes: u64,
    /// Counted lines that were not valid events (a file cut short by a crash, or edited), too
    /// large, or older than the age limit: read, and dropped.
    pub discarded: u64,
}

/// The fields every event line must have for PostHog to accept the batch it is in.
struct EventShape {
    event: String,
    timestamp: String,
}

impl EventShape {
    /// The shape of `text`, if it is an object with every field PostHog requires.
    fn of(text: &str) -> Option<EventShape> {
        let members: BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
        let string = |key: &str| serde_json::from_str::<String>(members.get(key)?.get()).ok();
        if !["distinct_id", "uuid", "properties"]
            .iter()
            .all(|key| members.contains_key(*key))
        {
            return None;
        }
        Some(EventShape {
            event: string("event")?,
            timestamp: string("timestamp")?,
        })
    }
}

impl Spool {
    pub(crate) fn new(dir: PathBuf, max_bytes: u64, max_age: Duration) -> Spool {
        Spool {
            dir,
            max_bytes,
            max_age,
            problem: Arc::default(),
        }
    }

    /// Why the last write failed, in words for `status`; `None` once one succeeds again.
    pub(crate) fn problem(&self) -> Option<String> {
        self.problem.get()
    }

    /// The spool directory's entries; none when it is missing or not a directory of its own
    /// (a symlink is not followed).
    fn entries(&self) -> Option<fs::ReadDir> {
        let meta = fs::symlink_metadata(&self.dir).ok()?;
        if meta.is_dir() {
            fs::read_dir(&self.dir).ok()
        } else {
            None
        }
    }

    /// Creates the spool directory, first removing whatever else is in its place.
    fn prepare_dir(&self) -> io::Result<()> {
        match fs::symlink_metadata(&self.dir) {
            // Made private if it is not.
            Ok(meta) if meta.is_dir() => return create_private_dir(&self.dir),
            Ok(_) => {
                log::warn!(
                    "telemetry: {} is not a directory; replacing it",
                    self.dir.display()
                );
                fs::remove_file(&self.dir)?;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        create_private_dir(&self.dir)
    }

    /// The spool of the state directory `state_dir`, to count or clear (its limits do not
    /// matter for that).
    pub(crate) fn in_state_dir(state_dir: &Path) -> Spool {
        Spool::new(state_dir.join(SPOOL_DIR), u64::MAX, Duration::MAX)
    }

    /// Whether any spool file, claimed or not, is present.
    pub(crate) fn has_files(&self) -> bool {
        self.entries().is_some_and(|entries| {
            entries
                .flatten()
                .any(|entry| is_spool_file(&entry.file_name().to_string_lossy()))
        })
    }

    /// How many of the application's events the spool files hold now (the library's drop
    /// reports are not counted), including files another process has claimed when
    /// `include_claimed`.
    pub(crate) fn count_events(&self, include_claimed: bool) -> u64 {
        let Some(entries) = self.entries() else {
            return 0;
        };
        let report_prefix = format!("{{\"event\":\"{DROP_REPORT}\"");
        let limit = self
            .max_bytes
            .max(MAX_LINE_BYTES as u64)
            .saturating_add(1)
            .min(COUNT_LIMIT);
        let mut events = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let wanted = name.ends_with(PENDING) || (include_claimed && name.ends_with(CLAIMED));
            if !wanted || !entry.file_type().is_ok_and(|kind| kind.is_file()) {
                continue;
            }
            // Streamed, and only as far as the spool's limit: a larger file is not ours.
            if let Ok(file) = crate::state::open_no_follow(&entry.path()) {
                events += count_lines(file.take(limit), report_prefix.as_bytes());
            }
        }
        events
    }

    /// Deletes every spool file. A process running at the same time still sends what it has
    /// already read into memory.
    pub(crate) fn clear(&self) -> io::Result<()> {
        let result = match fs::symlink_metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&self.dir),
            // Not ours to descend into (a symlink is removed, not followed), but in the way.
            Ok(_) => fs::remove_file(&self.dir),
            Err(error) => Err(error),
        };
        match result {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Bytes held by spool files now.
    fn used_bytes(&self) -> u64 {
        self.entries().map_or(0, |entries| {
            entries
                .flatten()
                .filter(|entry| is_spool_file(&entry.file_name().to_string_lossy()))
                .filter_map(|entry| entry.metadata().ok())
                .map(|meta| meta.len())
                .sum()
        })
    }

    /// How many more bytes the spool takes, counting `reclaimable` bytes of its files as
    /// free.
    pub(crate) fn room(&self, reclaimable: u64) -> u64 {
        let used = self.used_bytes().saturating_sub(reclaimable);
        self.max_bytes.saturating_sub(used)
    }

    /// Writes the first of `lines` that fit within the size limit to a new spool file and
    /// returns how many were written. The spool keeps the oldest events when it is full.
    /// `reclaimable` bytes of the spool belong to files that these lines came from, which are
    /// deleted once the lines are written, so they do not count against the limit.
    pub(crate) fn write<'a>(
        &self,
        lines: impl IntoIterator<Item = &'a str>,
        reclaimable: u64,
    ) -> io::Result<usize> {
        self.problem.record(
            self.write_lines(lines, reclaimable),
            format_args!("cannot write to {}", self.dir.display()),
            "events that cannot be sent now are not kept",
        )
    }

    fn write_lines<'a>(
        &self,
        lines: impl IntoIterator<Item = &'a str>,
        reclaimable: u64,
    ) -> io::Result<usize> {
        self.prepare_dir()?;
        let room = self.room(reclaimable);
        let mut contents = Vec::new();
        let mut written = 0;
        for line in lines {
            if (contents.len() + line.len() + 1) as u64 > room {
                break;
            }
            contents.extend_from_slice(line.as_bytes());
            contents.push(b'\n');
            written += 1;
        }
        if written > 0 {
            write_new_private(&self.dir, &unique_name("", PENDING), &contents)?;
        }
        Ok(written)
    }

    /// Claims spool files, oldest first, until at least `want` lines are held or none are left.
    pub(crate) fn claim(&self, want: usize) -> Claimed {
        let mut claimed = Claimed::default();
        let Some(entries) = self.entries() else {
            return claimed;
        };
        let mut names: Vec<String> = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            match entry.file_type() {
                Ok(kind) if kind.is_file() => names.push(name),
                // Not a file this library wrote (a symlink, a FIFO): removed unread, so it
                // costs nothing at the next start.
                Ok(kind) if !kind.is_dir() && is_spool_file(&name) => {
                    let _ = fs::remove_file(entry.path());
                }
                _ => {}
            }
        }
        names.sort();
        for name in names {
            // Files this library wrote add up to at most the spool's limit: beyond that, more
            // files (put there by something else) wait, so memory stays bounded.
            if claimed.lines.len() >= want || claimed.bytes >= self.max_bytes.max(1 << 20) {
                break;
            }
            let path = self.dir.join(&name);
            if name.starts_with(".tmp-") {
                remove_if_older(&path, ABANDONED_TEMP);
            } else if is_spool_file(&name)
                && let Err(error) = self.claim_file(&path, &mut claimed)
            {
                log::debug!("skipped spool file {name}: {error}");
            }
        }
        claimed
    }

    fn claim_file(&self, path: &Path, claimed: &mut Claimed) -> io::Result<()> {
        // Opened for writing too: where `flock` is emulated with `fcntl` (NFS), an exclusive
        // lock needs a writable descriptor.
        let mut file = crate::state::no_follow_options()
            .read(true)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            // Another live process holds it.
            Err(fs::TryLockError::WouldBlock) => return Ok(()),
            Err(fs::TryLockError::Error(error)) => return Err(error),
        }
        // Whoever held the lock before may have settled the file and deleted it, or renamed
        // it; the rename below only succeeds while the path still names this file.
        // The new name keeps the original one's time prefix, so files are still claimed
        // oldest first.
        let original = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let stem = original.split(['~', '.']).next().unwrap_or_default();
        let own = self
            .dir
            .join(format!("{stem}~{}", unique_name("", CLAIMED)));
        fs::rename(path, &own)?;
        let mut contents = Vec::new();
        // A file larger than the whole spool limit was not written by this library.
        (&mut file)
            .take(self.max_bytes.max(1 << 20))
            .read_to_end(&mut contents)?;
        claimed.bytes += contents.len() as u64;
        let claim = Arc::new(Claim {
            path: own,
            bytes: contents.len() as u64,
            unsettled: AtomicUsize::new(0),
            _file: file,
        });
        let oldest = SystemTime::now()
            .checked_sub(self.max_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let first = claimed.lines.len();
        for line in contents.split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let text = std::str::from_utf8(line).ok();
            let shape = text.and_then(EventShape::of);
            let Some((text, shape)) = text.zip(shape) else {
                claimed.discarded += 1;
                continue;
            };
            let counted = shape.event != DROP_REPORT;

            let fresh = crate::time::parse_rfc3339(&shape.timestamp).is_some_and(|at| at >= oldest);
            if !fresh || text.len() > MAX_LINE_BYTES {
                claimed.discarded += u64::from(counted);
                continue;
            }
            claimed.lines.push(Restored {
                json: text.to_owned(),
                counted,
                claim: Arc::clone(&claim),
            });
        }
        let held = claimed.lines.len() - first;
        claim.unsettled.store(held, Ordering::Release);
        if held == 0 {
            let _ = fs::remove_file(&claim.path);
        }
        Ok(())
    }
}

/// The lines of `reader` that are not empty and do not start with `skipped`, read in chunks so
/// that a file without newlines takes no more memory than one with them.
fn count_lines(reader: impl io::Read, skipped: &[u8]) -> u64 {
    let mut reader = io::BufReader::new(reader);
    let mut lines = 0;
    // Bytes of the current line so far, and whether they all matched `skipped`.
    let mut length = 0;
    let mut matching = true;
    let mut end_line = |length: usize, matching: bool| {
        if length > 0 && !(matching && length >= skipped.len()) {
            lines += 1;
        }
    };
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        for &byte in chunk {
            if byte == b'\n' {
                end_line(length, matching);
                (length, matching) = (0, true);
            } else {
                if skipped
                    .get(length)
                    .is_some_and(|&expected| expected != byte)
                {
                    matching = false;
                }
                length += 1;
            }
        }
        let read = chunk.len();
        reader.consume(read);
    }
    end_line(length, matching);
    lines
}

/// Whether a file in the spool directory holds events, pending or claimed.
fn is_spool_file(name: &str) -> bool {
    name.ends_with(PENDING) || name.ends_with(CLAIMED)
}

fn remove_if_older(path: &Path, age: Duration) {
    let old = fs::symlink_metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .is_some_and(|elapsed| elapsed > age);
    if old {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_report_is_recognised_by_its_name() {
        assert_eq!(
            DROP_REPORT,
            <crate::builtin::TelemetryDropped as crate::TelemetryEvent>::SCHEMA.name
        );
    }

    fn event(at: SystemTime) -> String {
        format!(
            r#"{{"event":"e","distinct_id":"d","properties":{{}},"timestamp":"{}","uuid":"u"}}"#,
            crate::time::rfc3339_string(at, true)
        )
    }

    fn spool(dir: &Path) -> Spool {
        Spool::new(dir.join("spool"), 1 << 20, Duration::from_secs(3600))
    }

    fn settle(claimed: Claimed) {
        for line in claimed.lines {
            line.claim.settle_one();
        }
    }

    #[test]
    fn written_lines_are_claimed_once_and_deleted_when_settled() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let now = event(SystemTime::now());
        assert!(!spool.has_files());
        assert_eq!(spool.write([now.as_str(), now.as_str()], 0).unwrap(), 2);
        assert!(spool.has_files());
        let first = spool.claim(10);
        assert_eq!(first.lines.len(), 2);
        // Claimed by a live holder: nobody else gets the lines.
        assert!(spool.claim(10).lines.is_empty());
        settle(first);
        assert!(!spool.has_files());
    }

    #[test]
    fn lines_dropped_unsettled_stay_for_the_next_claimer() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let now = event(SystemTime::now());
        spool.write([now.as_str(), now.as_str()], 0).unwrap();
        let mut claimed = spool.claim(10);
        // One line is settled, then the holder goes away (as a killed process would).
        claimed.lines.pop().unwrap().claim.settle_one();
        drop(claimed);
        assert_eq!(
            spool.claim(10).lines.len(),
            2,
            "the file is claimable again, whole"
        );
    }

    #[test]
    fn the_size_limit_keeps_the_oldest_lines() {
        let dir = tempfile::tempdir().unwrap();
        let line = event(SystemTime::now());
        let limit = 3 * (line.len() as u64 + 1);
        let spool = Spool::new(dir.path().join("spool"), limit, Duration::from_secs(60));
        let l = line.as_str();
        assert_eq!(spool.write([l, l], 0).unwrap(), 2);
        assert_eq!(spool.write([l, l], 0).unwrap(), 1);
        assert_eq!(spool.write([l], 0).unwrap(), 0);
        let claimed = spool.claim(100);
        assert_eq!(claimed.lines.len(), 3);
        // Lines re-spooled from claimed files do not compete with their own old copies.
        let bytes: u64 = claimed.lines[0].claim.bytes + claimed.lines[2].claim.bytes;
        assert_eq!(spool.write([l, l, l], bytes).unwrap(), 3);
    }

    #[test]
    fn lines_that_are_not_events_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let now = event(SystemTime::now());
        spool
            .write([now.as_str(), "{\"event\":\"cut sh", "{}", now.as_str()], 0)
            .unwrap();
        let claimed = spool.claim(10);
        assert_eq!(claimed.lines.len(), 2);
        assert_eq!(claimed.discarded, 2);
    }

    #[test]
    fn events_older_than_the_age_limit_are_discarded_whatever_the_file_age() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let old = event(SystemTime::now() - Duration::from_secs(7200));
        let new = event(SystemTime::now());
        spool.write([old.as_str(), new.as_str()], 0).unwrap();
        let claimed = spool.claim(10);
        assert_eq!(claimed.lines.len(), 1);
        assert_eq!(claimed.discarded, 1);
        settle(claimed);
        assert!(!spool.has_files());
    }

    /// Many files, each within the limit, put there by something else: one claim takes no
    /// more than about the spool's limit of them, and leaves the rest for later.
    #[test]
    fn one_claim_holds_at_most_about_the_spool_limit() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path()); // a limit of 1 MiB
        fs::create_dir_all(dir.path().join("spool")).unwrap();
        let line = event(SystemTime::now());
        let file: String =
            std::iter::repeat_n(format!("{line}\n"), (256 << 10) / line.len()).collect();
        for n in 0..40 {
            fs::write(
                dir.path().join("spool").join(format!("{n:04}-x.jsonl")),
                &file,
            )
            .unwrap();
        }
        let claimed = spool.claim(usize::MAX);
        assert!(claimed.bytes >= 1 << 20, "{}", claimed.bytes);
        assert!(
            claimed.bytes <= (1 << 20) + file.len() as u64,
            "{}",
            claimed.bytes
        );
        let left = fs::read_dir(dir.path().join("spool"))
            .unwrap()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".jsonl"))
            .count();
        assert!(left >= 30, "{left} files left");
    }

    #[test]
    fn drop_reports_are_restored_uncounted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let report =
            event(SystemTime::now()).replace(r#""event":"e""#, r#""event":"telemetry_dropped""#);
        spool.write([report.as_str()], 0).unwrap();
        let claimed = spool.claim(10);
        assert!(!claimed.lines[0].counted);
    }

    #[cfg(unix)]
    #[test]
    fn a_linked_spool_directory_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let now = event(SystemTime::now());
        // Events someone left outside, where the link leads.
        fs::write(elsewhere.path().join("0-x.jsonl"), format!("{now}\n")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("spool")).unwrap();
        let spool = spool(dir.path());
        assert!(!spool.has_files());
        assert_eq!(spool.count_events(true), 0);
        assert!(spool.claim(10).lines.is_empty());
        assert_eq!(spool.write([now.as_str()], 0).unwrap(), 1);
        assert!(
            fs::symlink_metadata(dir.path().join("spool"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 1);
        assert_eq!(spool.claim(10).lines.len(), 1);
        // A file in its place is replaced too.
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join("spool"), "x").unwrap();
        let spool = Spool::new(other.path().join("spool"), 1 << 20, Duration::from_secs(60));
        assert_eq!(spool.write([now.as_str()], 0).unwrap(), 1);
        assert!(spool.problem().is_none());
    }

    #[cfg(unix)]
    #[test]
    fn entries_that_are_not_files_are_removed_unread() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let outside = elsewhere.path().join("events");
        let now = event(SystemTime::now());
        fs::write(&outside, format!("{now}\n")).unwrap();
        let spool = spool(dir.path());
        spool.write([now.as_str()], 0).unwrap();
        let link = dir.path().join("spool/0000000000000-link.jsonl");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert_eq!(spool.count_events(true), 1);
        assert_eq!(spool.claim(10).lines.len(), 1);
        assert!(fs::symlink_metadata(&link).is_err());
        assert_eq!(fs::read_to_string(&outside).unwrap(), format!("{now}\n"));
    }

    #[test]
    fn counting_a_huge_file_streams_a_bounded_part_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::in_state_dir(dir.path());
        fs::create_dir(dir.path().join("spool")).unwrap();
        let now = event(SystemTime::now());
        let path = dir.path().join("spool/0-big.jsonl");
        fs::write(&path, format!("{now}\n{now}\n")).unwrap();
        // Sparse: no disk is used, and none of its 100 GB may be read into memory.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100 << 30)
            .unwrap();
        // Its two events, and one line of zeros, cut at the limit.
        assert_eq!(spool.count_events(true), 3);
    }

    #[test]
    fn lines_are_counted_without_the_drop_reports() {
        let report = b"{\"event\":\"telemetry_dropped\"";
        for (text, lines) in [
            (&b""[..], 0),
            (b"a", 1),
            (b"a\n\nb\n", 2),
            (b"{\"event\":\"telemetry_dropped\",\"x\":1}\na\n", 1),
            (b"{\"event\":\"telemetry_dropped\"", 0),
            (b"{\"event\":\"telemetry_drop\na", 2),
        ] {
            assert_eq!(
                count_lines(text, report),
                lines,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
