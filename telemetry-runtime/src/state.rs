//! The per-installation state directory: identity, hashing key, spool and local log.
//!
//! The directory is created with mode 0700 and every file in it with mode 0600, so on a shared
//! machine other users can read neither the key behind `#[hash]` nor pending events. Files
//! that other processes may read concurrently are written under a temporary name and then
//! renamed or linked into place, so a reader never sees half a file.
//!
//! Nothing in the directory is trusted to be what it should be. A state file is read only when
//! it is a regular file, and never past a few kilobytes; a symlink, FIFO or device where one
//! should be is replaced, never followed, opened or written through, so nothing outside the
//! directory is read or changed. A corrupt, truncated, empty, oversized or unreadable
//! installation id or key is replaced. A hashing key that other users may read (its mode allows
//! group or others anything) is replaced too: whoever read it could reverse `#[hash]` values by
//! trying likely inputs. On a file system that ignores modes, where a new key would be just as
//! open, the key is kept. The directory itself, and the path leading to it, are used as the OS
//! resolves them: a state directory that is a symlink (to a dotfiles checkout, say) is the
//! user's own arrangement and is followed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hashing::HashKey;

pub(crate) const ID_FILE: &str = "installation-id";
pub(crate) const KEY_FILE: &str = "hash-key";
/// Locked while a corrupt file is being replaced.
const LOCK_FILE: &str = ".lock";
/// Present once the first-run notice has been shown.
pub(crate) const NOTICE_FILE: &str = "notice-shown";
/// The local event log of `local` mode.
pub(crate) const LOG_FILE: &str = "events.jsonl";
/// Where the log goes when it reaches its size limit; the one before is discarded.
pub(crate) const OLD_LOG_FILE: &str = "events.1.jsonl";

/// Creates `dir` (and missing parents) with mode 0700. A `dir` that exists already, belongs to
/// this user and is open to others (made by hand, or by an older version) is made 0700.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let not_a_directory = || {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "it exists and is not a directory",
        )
    };
    if let Err(error) = builder.create(dir) {
        return Err(match fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => not_a_directory(),
            _ => error,
        });
    }
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(not_a_directory());
    }
    #[cfg(unix)]
    if owned_by_me(&meta) && open_to_others(&meta, 0o077) {
        // Best effort: a file system that ignores modes keeps what it has.
        let _ = fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    }
    Ok(())
}

/// Whether this process's user owns what `meta` describes.
#[cfg(unix)]
fn owned_by_me(meta: &fs::Metadata) -> bool {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    std::os::unix::fs::MetadataExt::uid(meta) == me
}

#[cfg(not(unix))]
fn owned_by_me(_: &fs::Metadata) -> bool {
    true
}

/// Whether new files can be created in `dir`: a state directory that cannot take them can keep
/// neither the spool, the local log nor a reset of the identity.
pub(crate) fn check_writable(dir: &Path) -> io::Result<()> {
    let temp = dir.join(unique_name(".tmp-", ""));
    private_options()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("new files cannot be created in it ({error})"),
            )
        })?;
    let _ = fs::remove_file(&temp);
    Ok(())
}

/// Makes way for a file at `path`: anything there that is not a regular file (a symlink, a
/// FIFO, a socket, a device node) is removed, so that opening the path neither follows a link
/// out of the state directory nor blocks. A directory in the way is an error.
fn clear_non_file(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) if meta.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is a directory", path.display()),
        )),
        Ok(_) => fs::remove_file(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Whether a file with these permissions lets users other than its owner in.
#[cfg(unix)]
fn open_to_others(meta: &fs::Metadata, bits: u32) -> bool {
    std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & bits != 0
}

#[cfg(not(unix))]
fn open_to_others(_: &fs::Metadata, _: u32) -> bool {
    false
}

/// Whether a file created in `dir` with mode 0600 keeps it: false on file systems that ignore
/// modes (some network and Windows mounts).
fn keeps_private_modes(dir: &Path) -> bool {
    let temp = dir.join(unique_name(".tmp-", ""));
    let kept = private_options()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|file| file.metadata())
        .is_ok_and(|meta| !open_to_others(&meta, 0o077));
    let _ = fs::remove_file(&temp);
    kept
}

/// Options that open a new file readable and writable by its owner only, and never through
/// a symlink.
pub(crate) fn private_options() -> OpenOptions {
    let mut options = no_follow_options();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Options that refuse to open a symlink (`O_NOFOLLOW`) and never wait for a writer to a FIFO
/// (`O_NONBLOCK`, which changes nothing for regular files). Checking a path before opening it
/// leaves a moment in which another process could swap in a link to a file outside the state
/// directory; these make the open itself refuse.
pub(crate) fn no_follow_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    options
}

/// Opens `path` for reading, refusing a symlink and never blocking on a FIFO.
pub(crate) fn open_no_follow(path: &Path) -> io::Result<File> {
    no_follow_options().read(true).open(path)
}

/// A name no other process or thread will pick: `<prefix><millis>-<pid>-<random><suffix>`.
pub(crate) fn unique_name(prefix: &str, suffix: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut random = [0; 8];
    fill_random(&mut random);
    let random = u64::from_le_bytes(random);
    format!(
        "{prefix}{millis:013}-{}-{random:016x}{suffix}",
        std::process::id()
    )
}

/// Fills `buf` from the OS's random source. Without one (a broken sandbox), falls back to a
/// digest of the time, process, thread and a counter: not secret, but still unique, so ids do
/// not collide and hashes are still not a plain, dictionary-reversible digest. Never panics.
pub(crate) fn fill_random(buf: &mut [u8]) {
    if getrandom::getrandom(buf).is_ok() {
        return;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for chunk in buf.chunks_mut(32) {
        let seed = format!(
            "{:?}{}{:?}{}",
            std::time::SystemTime::now(),
            std::process::id(),
            std::thread::current().id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(seed.as_bytes()).into();
        chunk.copy_from_slice(&digest[..chunk.len()]);
    }
}

/// A new random id (a v4 uuid): an installation's, or a process's.
pub(crate) fn new_installation_id() -> String {
    let mut bytes = [0; 16];
    fill_random(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Writes `contents` to a new private temporary file in `dir`, then puts it at `dir/name` with
/// `place`: a rename replaces what is there, a hard link refuses to. Either way the name
/// appears with all of its contents at once, and the temporary file does not remain.
fn put_private(
    dir: &Path,
    name: &str,
    contents: &[u8],
    place: fn(&Path, &Path) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let temp = dir.join(unique_name(".tmp-", ""));
    let target = dir.join(name);
    let result = (|| {
        let mut file = private_options().write(true).create_new(true).open(&temp)?;
        file.write_all(contents)?;
        file.sync_data()?;
        place(&temp, &target)
    })();
    let _ = fs::remove_file(&temp);
    result.map(|()| target)
}

/// Writes `contents` to a new private file `dir/name` that appears all at once.
pub(crate) fn write_new_private(dir: &Path, name: &str, contents: &[u8]) -> io::Result<PathBuf> {
    put_private(dir, name, contents, |from, to| fs::rename(from, to))
}

/// Creates `dir/name` with `contents` unless it exists; either way returns what it holds, and
/// whether this call created it. Two processes racing agree on one value: the file is linked
/// into place, which fails if another process got there first.
fn create_or_read(
    dir: &Path,
    name: &str,
    contents: &[u8],
    secret: bool,
) -> io::Result<(Vec<u8>, bool)> {
    let target = dir.join(name);
    if let Ok(existing) = read_state_file(&target, secret) {
        return Ok((existing, false));
    }
    match put_private(dir, name, contents, |from, to| fs::hard_link(from, to)) {
        Ok(_) => Ok((contents.to_vec(), true)),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            read_state_file(&target, secret).map(|existing| (existing, false))
        }
        Err(error) => Err(error),
    }
}

/// Reads a state file that is expected to be small; a larger one is an error, not a memory
/// spike.
pub(crate) fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    read_small_checked(path, 0)
}

/// Reads a state file as [`read_small`] does, refusing a `secret` one that other users may
/// read.
fn read_state_file(path: &Path, secret: bool) -> io::Result<Vec<u8>> {
    read_small_checked(path, if secret { 0o077 } else { 0 })
}

/// Reads a small state file, refusing it when its mode has any of `refused_bits` (checked on
/// the file that was opened, so the answer and the contents belong together).
pub(crate) fn read_small_checked(path: &Path, refused_bits: u32) -> io::Result<Vec<u8>> {
    const LIMIT: u64 = 4096;
    // A symlink could lead out of the state directory and a FIFO would have nothing to read:
    // only regular files are read. The open itself refuses a link swapped in after this
    // check, and the file opened is checked again.
    if !fs::symlink_metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = open_no_follow(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    let meta = file.metadata()?;
    // Another user's file could say anything: that this user opted in, or which key to hash
    // with.
    if !owned_by_me(&meta) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "another user owns it",
        ));
    }
    if refused_bits != 0 && open_to_others(&meta, refused_bits) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            if refused_bits & 0o044 != 0 {
                "other users may read it"
            } else {
                "other users may change it"
            },
        ));
    }
    let mut contents = Vec::new();
    file.take(LIMIT + 1).read_to_end(&mut contents)?;
    if contents.len() as u64 > LIMIT {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
    }
    Ok(contents)
}

/// The installation's identity: the `distinct_id` events are sent under and the key that
/// `#[hash]` uses. Neither says anything about the user; the key never leaves the process.
pub(crate) struct Identity {
    pub installation_id: String,
    pub key: HashKey,
    /// Whether this process wrote the saved installation id (it was missing, or unreadable and
    /// replaced): the first run of an installation. False for a temporary identity.
    pub created: bool,
}

impl Identity {
    /// A fresh identity that lives only as long as the process.
    pub(crate) fn ephemeral() -> Identity {
        Identity {
            installation_id: new_installation_id(),
            key: HashKey::from_bytes(random_key()),
            created: false,
        }
    }

    /// The identity stored in `dir`, created on first use. A file that is corrupt or cannot
    /// be read is replaced, so one bad byte does not turn every later run ephemeral.
    pub(crate) fn load_or_create(dir: &Path) -> io::Result<Identity> {
        let (id, created) = load_or_replace(
            dir,
            ID_FILE,
            false,
            || new_installation_id().into_bytes(),
            |bytes| {
                let text = std::str::from_utf8(bytes).ok()?;
                let id = uuid::Uuid::try_parse(text.trim()).ok()?;
                Some(id.hyphenated().to_string())
            },
        )?;
        let (key, _) = load_or_replace(
            dir,
            KEY_FILE,
            true,
            || {
                let mut hex = Vec::with_capacity(2 * HashKey::LEN);
                crate::json::push_hex(&mut hex, &random_key());
                hex
            },
            parse_key,
        )?;
        Ok(Identity {
            installation_id: id,
            key: HashKey::from_bytes(key),
            created,
        })
    }

    /// The installation id stored in `dir`, if there is a valid one; nothing is created.
    pub(crate) fn read_installation_id(dir: &Path) -> Option<String> {
        let bytes = read_small(&dir.join(ID_FILE)).ok()?;
        let id = uuid::Uuid::try_parse(std::str::from_utf8(&bytes).ok()?.trim()).ok()?;
        Some(id.hyphenated().to_string())
    }
}

/// Reads `dir/name` with `parse`, creating it from `fresh` if it is missing, and replacing it
/// if it does not parse or cannot be read, or when it is `secret` and others may read it; also
/// whether this call wrote it.
fn load_or_replace<T>(
    dir: &Path,
    name: &str,
    secret: bool,
    fresh: impl Fn() -> Vec<u8>,
    parse: impl Fn(&[u8]) -> Option<T>,
) -> io::Result<(T, bool)> {
    match create_or_read(dir, name, &fresh(), secret) {
        Ok((bytes, created)) => {
            if let Some(value) = parse(&bytes) {
                return Ok((value, created));
            }
            log::warn!("telemetry: `{name}` in the state directory is corrupt; replacing it");
        }
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidData
            ) =>
        {
            log::warn!(
                "telemetry: cannot read `{name}` in the state directory ({error}); replacing it"
            );
        }
        Err(error) => return Err(error),
    }
    // Repairs are serialised by a lock, and each repairer looks again once it holds it: the
    // first one replaces the file (a rename, so readers never find it missing), the others read
    // what it wrote. All agree on one value.
    let _lock = lock_dir(dir)?;
    let path = dir.join(name);
    if let Ok(bytes) = read_state_file(&path, secret)
        && let Some(value) = parse(&bytes)
    {
        return Ok((value, false));
    }
    // Where modes are ignored a new file would be as open as this one, and replacing it at
    // every start would change every hash: it is kept.
    if secret
        && let Ok(bytes) = read_small(&path)
        && let Some(value) = parse(&bytes)
        && !keeps_private_modes(dir)
    {
        return Ok((value, false));
    }
    let contents = fresh();
    write_new_private(dir, name, &contents)?;
    parse(&contents)
        .map(|value| (value, true))
        .ok_or_else(|| invalid(name))
}

/// Takes the state directory's lock, waiting at most a second for another process to release
/// it. Released when the file is dropped.
fn lock_dir(dir: &Path) -> io::Result<File> {
    clear_non_file(&dir.join(LOCK_FILE))?;
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))?;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another process holds the state directory's lock",
                ));
            }
            Err(fs::TryLockError::Error(error)) => return Err(error),
        }
    }
}

/// Records that the first-run notice was shown; `Ok(true)` if this call recorded it, `Ok(false)`
/// if it was recorded before (by this or another process).
pub(crate) fn record_notice(dir: &Path) -> io::Result<bool> {
    let stamp = crate::time::rfc3339_string(std::time::SystemTime::now(), false);
    match put_private(dir, NOTICE_FILE, stamp.as_bytes(), |from, to| {
        fs::hard_link(from, to)
    }) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error),
    }
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not a regular file")
}

fn invalid(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("`{name}` in the state directory is corrupt"),
    )
}

fn random_key() -> [u8; HashKey::LEN] {
    let mut key = [0; HashKey::LEN];
    fill_random(&mut key);
    key
}

fn parse_key(text: &[u8]) -> Option<[u8; HashKey::LEN]> {
    let text = text.trim_ascii();
    if text.len() != 2 * HashKey::LEN {
        return None;
    }
    let mut key = [0; HashKey::LEN];
    for (byte, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(key)
}

/// Why the last write of a state file failed, in words for `status`; cleared by the next
/// write that succeeds.
#[derive(Debug, Default)]
pub(crate) struct Problem(std::sync::Mutex<Option<String>>);

impl Problem {
    pub(crate) fn get(&self) -> Option<String> {
        crate::pipeline::lock(&self.0).clone()
    }

    /// Passes `result` on, its error saying what was being done (`doing`, naming the path),
    /// and remembers it as `consequence: error`, or forgets the last one if `result` is `Ok`.
    pub(crate) fn record<T>(
        &self,
        result: io::Result<T>,
        doing: impl std::fmt::Display,
        consequence: &str,
    ) -> io::Result<T> {
        let result =
            result.map_err(|error| io::Error::new(error.kind(), format!("{doing}: {error}")));
        *crate::pipeline::lock(&self.0) = result
            .as_ref()
            .err()
            .map(|error| format!("{consequence}: {error}"));
        result
    }
}

/// The local log of `local` mode: JSON lines, bounded by rotating into one older file.
pub(crate) struct LocalLog {
    path: PathBuf,
    old: PathBuf,
    max_bytes: u64,
    /// Why the last append failed, if it did.
    problem: Problem,
}

impl LocalLog {
    pub(crate) fn new(dir: &Path, max_bytes: u64) -> LocalLog {
        LocalLog {
            path: dir.join(LOG_FILE),
            old: dir.join(OLD_LOG_FILE),
            max_bytes,
            problem: Problem::default(),
        }
    }

    /// Why the last append failed, in words for `status`; `None` once one succeeds again.
    pub(crate) fn problem(&self) -> Option<String> {
        self.problem.get()
    }

    /// The current log file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `lines`, each followed by a newline, all or none of them. The two files
    /// together stay within twice the limit.
    pub(crate) fn append<'a>(&self, lines: impl Iterator<Item = &'a str>) -> io::Result<()> {
        let mut chunk = Vec::new();
        for line in lines {
            chunk.extend_from_slice(line.as_bytes());
            chunk.push(b'\n');
        }
        self.problem.record(
            self.append_chunk(&chunk),
            format_args!("cannot write {}", self.path.display()),
            "events are not recorded",
        )
    }

    fn append_chunk(&self, chunk: &[u8]) -> io::Result<()> {
        // A link, FIFO or device where the log belongs is replaced: writing through it could
        // change a file outside the state directory, or block.
        clear_non_file(&self.path)?;
        let current = fs::symlink_metadata(&self.path).map_or(0, |m| m.len());
        if current > 0 && current + chunk.len() as u64 > self.max_bytes {
            fs::rename(&self.path, &self.old)?;
        }
        let open = || {
            private_options()
                .read(true)
                .append(true)
                .create(true)
                .open(&self.path)
        };
        let mut file = match open() {
            // A log whose mode no longer lets its owner in is set aside as the older log, so
            // that it does not stop every later append.
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                fs::rename(&self.path, &self.old)?;
                open()?
            }
            result => result?,
        };
        let meta = file.metadata()?;
        // A log cut short (by a crash, or an edit) would run its last line into the first
        // new one: the new lines start on a line of their own.
        let mut last = [b'\n'];
        if meta.len() > 0 {
            file.seek(io::SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
        }
        let chunk = if last[0] == b'\n' {
            std::borrow::Cow::Borrowed(chunk)
        } else {
            std::borrow::Cow::Owned([&b"\n"[..], chunk].concat())
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // Private like every state file, whatever mode it was given since.
            if meta.permissions().mode() & 0o777 != 0o600 {
                let _ = file.set_permissions(fs::Permissions::from_mode(0o600));
            }
        }
        if let Err(error) = file.write_all(&chunk) {
            // A disk that filled up part way leaves no half line for the next append to run
            // on from: the lines are counted as not stored, so none of them stays.
            let _ = file.set_len(meta.len());
            return Err(error);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let second = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.installation_id, second.installation_id);
        assert_eq!(first.key.hash(b"x"), second.key.hash(b"x"));
        assert!(first.created && !second.created);
        assert!(!Identity::ephemeral().created);
        let other = tempfile::tempdir().unwrap();
        let third = Identity::load_or_create(other.path()).unwrap();
        assert_ne!(first.installation_id, third.installation_id);
        assert_ne!(first.key.hash(b"x"), third.key.hash(b"x"));
    }

    #[cfg(unix)]
    #[test]
    fn state_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        Identity::load_or_create(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(ID_FILE)), 0o600);
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn corrupt_files_are_replaced_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        for (name, junk) in [
            (KEY_FILE, &b"not hex"[..]),
            (ID_FILE, b""),
            (ID_FILE, &[0xff; 8000]),
        ] {
            fs::write(dir.path().join(name), junk).unwrap();
            let repaired = Identity::load_or_create(dir.path()).unwrap();
            assert_ne!(fs::read(dir.path().join(name)).unwrap(), junk);
            // A new id is a new installation as far as anyone can tell; a new key is not.
            assert_eq!(repaired.created, name == ID_FILE, "{name}");
            let again = Identity::load_or_create(dir.path()).unwrap();
            assert!(!again.created);
            assert_eq!(repaired.installation_id, again.installation_id);
            assert_eq!(repaired.key.hash(b"x"), again.key.hash(b"x"));
        }
    }

    #[test]
    fn threads_repairing_a_corrupt_file_at_once_agree() {
        for _ in 0..200 {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(ID_FILE), "corrupt").unwrap();
            let barrier = std::sync::Barrier::new(8);
            let ids: Vec<(String, bool)> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            let identity = Identity::load_or_create(dir.path()).unwrap();
                            (identity.installation_id, identity.created)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let saved = Identity::read_installation_id(dir.path()).unwrap();
            assert!(ids.iter().all(|(id, _)| *id == saved), "{ids:?} vs {saved}");
            let creators = ids.iter().filter(|(_, created)| *created).count();
            assert_eq!(creators, 1, "one of them wrote the id: {ids:?}");
        }
    }

    /// A link swapped in after a path was checked: the open itself refuses it, for reading
    /// and for writing, and a FIFO does not block the read.
    #[test]
    #[cfg(unix)]
    fn opening_refuses_links_and_never_waits_on_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, "keep me").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(open_no_follow(&link).is_err());
        assert!(private_options().append(true).open(&link).is_err());
        assert!(
            private_options()
                .write(true)
                .create(true)
                .open(&link)
                .is_err()
        );
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep me");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Without O_NONBLOCK this would wait for a writer forever.
        let mut contents = Vec::new();
        open_no_follow(&fifo)
            .unwrap()
            .read_to_end(&mut contents)
            .unwrap();
        assert!(contents.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_replaced_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let outside = elsewhere.path().join("id");
        fs::write(&outside, "0b6c7d0e-3f4a-4c55-9d1e-2f0c8a7b6e51").unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join(ID_FILE)).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(dir.path().join(KEY_FILE))
            .status();
        if !status.is_ok_and(|s| s.success()) {
            return; // No mkfifo here.
        }
        let identity = Identity::load_or_create(dir.path()).unwrap();
        assert_ne!(
            identity.installation_id,
            "0b6c7d0e-3f4a-4c55-9d1e-2f0c8a7b6e51"
        );
        assert!(
            fs::symlink_metadata(dir.path().join(ID_FILE))
                .unwrap()
                .is_file()
        );
        assert!(
            fs::symlink_metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .is_file()
        );
        // The file the link pointed to is untouched.
        assert_eq!(
            fs::read_to_string(&outside).unwrap(),
            "0b6c7d0e-3f4a-4c55-9d1e-2f0c8a7b6e51"
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_unreadable_file_is_replaced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(ID_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read(&path).is_ok() {
            return; // Running as root: permissions do not stop reading.
        }
        let second = Identity::load_or_create(dir.path()).unwrap();
        assert_ne!(first.installation_id, second.installation_id);
        assert_eq!(
            Identity::read_installation_id(dir.path()),
            Some(second.installation_id)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_may_read_is_replaced_and_an_open_id_is_kept() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        for name in [KEY_FILE, ID_FILE] {
            fs::set_permissions(dir.path().join(name), fs::Permissions::from_mode(0o644)).unwrap();
        }
        let second = Identity::load_or_create(dir.path()).unwrap();
        assert_ne!(first.key.hash(b"x"), second.key.hash(b"x"));
        assert!(!second.created, "a new key is not a new installation");
        // The id is sent with every event anyway: nothing to hide, so it is kept.
        assert_eq!(first.installation_id, second.installation_id);
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let third = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(second.key.hash(b"x"), third.key.hash(b"x"));
        assert!(keeps_private_modes(dir.path()));
    }

    #[cfg(unix)]
    #[test]
    fn the_lock_file_is_not_followed_out_of_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let outside = elsewhere.path().join("precious");
        fs::write(&outside, "keep me").unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join(LOCK_FILE)).unwrap();
        drop(lock_dir(dir.path()).unwrap());
        assert!(
            fs::symlink_metadata(dir.path().join(LOCK_FILE))
                .unwrap()
                .is_file()
        );
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep me");
    }

    #[cfg(unix)]
    #[test]
    fn the_local_log_replaces_links_and_fifos_instead_of_writing_through_them() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let outside = elsewhere.path().join("precious");
        fs::write(&outside, "keep me").unwrap();
        let log = LocalLog::new(dir.path(), 1 << 20);
        let path = dir.path().join(LOG_FILE);
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        log.append(["{}"].into_iter()).unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep me");
        assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &path).unwrap();
        log.append(["{}"].into_iter()).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 1);
        fs::remove_file(&path).unwrap();
        // Opening a FIFO for writing would wait for a reader forever.
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if made.is_ok_and(|status| status.success()) {
            log.append(["{}"].into_iter()).unwrap();
            assert!(fs::symlink_metadata(&path).unwrap().is_file());
        }
        // A log someone opened up is private again.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        log.append(["{}"].into_iter()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(log.problem().is_none());
    }

    #[test]
    fn an_append_after_a_cut_short_line_starts_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::new(dir.path(), 1 << 20);
        fs::write(dir.path().join(LOG_FILE), "{\"event\":\"cu").unwrap();
        log.append(["{}", "{}"].into_iter()).unwrap();
        log.append(["{}"].into_iter()).unwrap();
        let text = fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(text, "{\"event\":\"cu\n{}\n{}\n{}\n");
    }

    #[cfg(unix)]
    #[test]
    fn an_unwritable_log_is_set_aside() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::new(dir.path(), 1 << 20);
        let path = dir.path().join(LOG_FILE);
        fs::write(&path, "{\"old\":1}\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read(&path).is_ok() {
            return; // Running as root: permissions do not stop writing.
        }
        log.append(["{}"].into_iter()).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
        assert!(dir.path().join(OLD_LOG_FILE).exists());
    }

    #[test]
    fn a_failed_append_is_reported_and_then_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::new(dir.path(), 1 << 20);
        let path = dir.path().join(LOG_FILE);
        fs::create_dir(&path).unwrap();
        assert!(log.append(["{}"].into_iter()).is_err());
        let problem = log.problem().unwrap();
        assert!(problem.contains(&path.display().to_string()), "{problem}");
        assert!(problem.contains("is a directory"), "{problem}");
        fs::remove_dir(&path).unwrap();
        log.append(["{}"].into_iter()).unwrap();
        assert!(log.problem().is_none());
    }

    #[test]
    fn a_file_where_the_directory_belongs_is_named_as_such() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state");
        fs::write(&path, "").unwrap();
        let error = create_private_dir(&path).unwrap_err();
        assert_eq!(error.to_string(), "it exists and is not a directory");
        assert!(check_writable(root.path()).is_ok());
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1, "no leftover");
    }

    #[test]
    fn the_notice_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(record_notice(dir.path()).unwrap());
        assert!(!record_notice(dir.path()).unwrap());
        assert!(dir.path().join(NOTICE_FILE).exists());
    }

    #[test]
    fn the_local_log_rotates_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::new(dir.path(), 100);
        for i in 0..50 {
            log.append([format!("{{\"n\":{i}}}").as_str()].into_iter())
                .unwrap();
        }
        let size = |name| fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(size(LOG_FILE) <= 100);
        assert!(size(OLD_LOG_FILE) <= 100);
        let last = fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        assert!(last.ends_with("{\"n\":49}\n"), "{last}");
    }
}
