//! Events that could not be delivered before the process ended, kept on disk for the next
//! process that starts telemetry.
//!
//! Each spool file holds complete event objects, one per line, with the uuids they were first
//! sent with, so PostHog counts a replayed event once even if an earlier attempt did arrive.
//!
//! A file is claimed before it is read: the claimer takes an exclusive lock on it and then
//! renames it to a name of its own. The lock is held until the file's events are delivered or
//! written to a new spool file, and then the file is deleted. Two processes starting at once
//! therefore never both send one file, and a file whose claimer was killed becomes claimable
//! again when the kernel releases the dead process's lock.

use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::state::{create_private_dir, unique_name, write_new_private};

const PENDING: &str = ".jsonl";
const CLAIMED: &str = ".claimed";
/// Temporary files older than this were left by a process that died while writing them.
const ABANDONED_TEMP: Duration = Duration::from_secs(3600);

/// The spool directory and its limits.
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    max_age: Duration,
}

/// A spool file this process has claimed. Dropping it deletes the file, which is done once
/// every event read from it has been delivered, dropped or spooled anew.
#[derive(Debug)]
pub(crate) struct Claim {
    path: PathBuf,
    // Holds the lock until the file is deleted.
    _file: File,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_file(&self.path) {
            log::debug!("could not remove a delivered spool file: {error}");
        }
    }
}

/// What claiming found.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    /// Event lines, each with the claim it came from.
    pub lines: Vec<(String, Arc<Claim>)>,
    /// Lines that were not events (a file cut short by a crash, or edited), and lines from
    /// files older than the age limit: read, and dropped.
    pub discarded: u64,
}

/// The fields every event line must have for PostHog to accept the batch it is in.
#[derive(Deserialize)]
struct EventShape {
    #[serde(rename = "event")]
    _event: IgnoredAny,
    #[serde(rename = "distinct_id")]
    _distinct_id: IgnoredAny,
    #[serde(rename = "uuid")]
    _uuid: IgnoredAny,
    #[serde(rename = "properties")]
    _properties: IgnoredAny,
}

impl Spool {
    pub(crate) fn new(dir: PathBuf, max_bytes: u64, max_age: Duration) -> Spool {
        Spool {
            dir,
            max_bytes,
            max_age,
        }
    }

    /// Whether any spool file, claimed or not, is present.
    pub(crate) fn has_files(&self) -> bool {
        fs::read_dir(&self.dir).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.ends_with(PENDING) || name.ends_with(CLAIMED)
            })
        })
    }

    /// Bytes held by spool files now.
    fn used_bytes(&self) -> u64 {
        fs::read_dir(&self.dir).map_or(0, |entries| {
            entries
                .flatten()
                .filter(|entry| {
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    name.ends_with(PENDING) || name.ends_with(CLAIMED)
                })
                .filter_map(|entry| entry.metadata().ok())
                .map(|meta| meta.len())
                .sum()
        })
    }

    /// Writes the first of `lines` that fit within the size limit to a new spool file and
    /// returns how many were written. The spool keeps the oldest events when it is full.
    pub(crate) fn write<'a>(&self, lines: impl IntoIterator<Item = &'a str>) -> io::Result<usize> {
        create_private_dir(&self.dir)?;
        let room = self.max_bytes.saturating_sub(self.used_bytes());
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
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return claimed;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            if claimed.lines.len() >= want {
                break;
            }
            let path = self.dir.join(&name);
            if name.starts_with(".tmp-") {
                remove_if_older(&path, ABANDONED_TEMP);
            } else if name.ends_with(PENDING) || name.ends_with(CLAIMED) {
                if let Err(error) = self.claim_file(&path, &mut claimed) {
                    log::debug!("skipped spool file {name}: {error}");
                }
            }
        }
        claimed
    }

    fn claim_file(&self, path: &Path, claimed: &mut Claimed) -> io::Result<()> {
        let mut file = File::open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            // Another live process holds it.
            Err(fs::TryLockError::WouldBlock) => return Ok(()),
            Err(fs::TryLockError::Error(error)) => return Err(error),
        }
        // Whoever held the lock before may have delivered the file and deleted it, or renamed
        // it; the rename below only succeeds while the path still names this file.
        let own = self.dir.join(unique_name("", CLAIMED));
        fs::rename(path, &own)?;
        let meta = file.metadata()?;
        let expired = meta
            .modified()
            .ok()
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .is_some_and(|age| age >= self.max_age);
        let mut contents = Vec::new();
        // A file larger than the whole spool limit was not written by this library.
        (&mut file)
            .take(self.max_bytes.max(1 << 20))
            .read_to_end(&mut contents)?;
        let claim = Arc::new(Claim {
            path: own,
            _file: file,
        });
        for line in contents.split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            match std::str::from_utf8(line) {
                Ok(text) if !expired && serde_json::from_str::<EventShape>(text).is_ok() => {
                    claimed.lines.push((text.to_owned(), Arc::clone(&claim)));
                }
                _ => claimed.discarded += 1,
            }
        }
        Ok(())
    }
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

    const EVENT: &str = r#"{"event":"e","distinct_id":"d","properties":{},"uuid":"u"}"#;

    fn spool(dir: &Path) -> Spool {
        Spool::new(dir.join("spool"), 1 << 20, Duration::from_secs(3600))
    }

    #[test]
    fn written_lines_are_claimed_once_and_deleted_when_released() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        assert!(!spool.has_files());
        assert_eq!(spool.write([EVENT, EVENT]).unwrap(), 2);
        assert!(spool.has_files());
        let first = spool.claim(10);
        assert_eq!(first.lines.len(), 2);
        // Claimed by a live holder: nobody else gets the lines.
        assert!(spool.claim(10).lines.is_empty());
        drop(first);
        assert!(!spool.has_files());
    }

    #[test]
    fn a_claim_whose_holder_is_gone_can_be_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        spool.write([EVENT]).unwrap();
        let claimed = spool.claim(10);
        let (_, claim) = &claimed.lines[0];
        // Simulate a holder that died: its lock is released but its file is still there.
        let path = claim.path.clone();
        let copy = dir.path().join("copy");
        fs::copy(&path, &copy).unwrap();
        std::mem::forget(claimed);
        // The leaked claim still holds the lock on the original inode; replace the file by an
        // unlocked copy, as the kernel would release a dead process's lock.
        fs::rename(&copy, &path).unwrap();
        assert_eq!(spool.claim(10).lines.len(), 1);
    }

    #[test]
    fn the_size_limit_keeps_the_oldest_lines() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 3 * (EVENT.len() as u64 + 1);
        let spool = Spool::new(dir.path().join("spool"), limit, Duration::from_secs(60));
        assert_eq!(spool.write([EVENT, EVENT]).unwrap(), 2);
        assert_eq!(spool.write([EVENT, EVENT]).unwrap(), 1);
        assert_eq!(spool.write([EVENT]).unwrap(), 0);
        assert_eq!(spool.claim(100).lines.len(), 3);
    }

    #[test]
    fn lines_that_are_not_events_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        spool.write([EVENT, "{\"event\":\"cut sh", "{}", EVENT]).unwrap();
        let claimed = spool.claim(10);
        assert_eq!(claimed.lines.len(), 2);
        assert_eq!(claimed.discarded, 2);
    }

    #[test]
    fn expired_files_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"), 1 << 20, Duration::ZERO);
        spool.write([EVENT]).unwrap();
        let claimed = spool.claim(10);
        assert!(claimed.lines.is_empty());
        assert_eq!(claimed.discarded, 1);
        drop(claimed);
        assert!(!spool.has_files());
    }
}
