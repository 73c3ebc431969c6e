//! The host-local record of the process running with a key:
//! `KEY.incarnation`, next to the key file (docs/MIGRATION.md, "Restarts
//! and twins").
//!
//! A `listen` or `connect` opens the record and tries to take an exclusive
//! `flock` on it, which it holds until it exits (the kernel drops it when
//! the process dies, however it dies). A process that takes the lock knows
//! that no other process on this host runs with the key now, so the
//! incarnation written in the record belongs to an instance that is gone:
//! it states in its handshakes that it supersedes that incarnation (its
//! peers end that instance's sessions at once, `PeerRestarted`), then
//! writes its own. A process that finds the lock held is a *twin* (a second
//! live process with the key): it states nothing and leaves the record
//! alone, and its peers treat it as a new incarnation that may be a twin
//! (the other process's sessions are probed, never cut off).
//!
//! The record is a hint, never a requirement: a record that cannot be
//! created, locked or read makes the process state nothing (as a twin),
//! with a warning. It is a two-line text file:
//! `astral-incarnation-v1\n<16 lowercase hex digits>\n`, mode 0600.
//!
//! What the lock cannot see: a process with the same key on another host
//! (a copy of the key), which has its own record there; and a record on a
//! file system without working `flock` (some network file systems), where
//! two processes might both take it. Keep a key on local storage, or give
//! each host its own key.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER: &str = "astral-incarnation-v1";

/// What the record said when this process started.
#[derive(Debug)]
pub enum Claim {
    /// This process holds the lock (no other process on this host runs
    /// with the key); `previous` is the incarnation of the last instance
    /// that held it, if the record named one.
    Sole {
        previous: Option<u64>,
        record: Record,
    },
    /// Another live process holds the lock: this one is its twin.
    Twin,
    /// No record could be used (`why`): state nothing.
    Unknown(String),
}

/// The locked record; the lock lasts as long as this value (keep it until
/// the process exits).
#[derive(Debug)]
pub struct Record {
    file: File,
    path: PathBuf,
}

/// `KEY.incarnation` for the key file `key`.
pub fn record_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".incarnation");
    PathBuf::from(name)
}

/// Opens and tries to lock the record next to `key`.
pub fn claim(key: &Path) -> Claim {
    let path = record_path(key);
    let file = match open(&path) {
        Ok(f) => f,
        Err(e) => return Claim::Unknown(format!("cannot open {}: {e}", path.display())),
    };
    match try_lock(&file) {
        Ok(true) => {}
        Ok(false) => return Claim::Twin,
        Err(e) => return Claim::Unknown(format!("cannot lock {}: {e}", path.display())),
    }
    let mut record = Record { file, path };
    let previous = record.read();
    Claim::Sole { previous, record }
}

impl Record {
    /// The incarnation the record names (`None` if empty or unreadable).
    fn read(&mut self) -> Option<u64> {
        let mut text = String::new();
        self.file.seek(SeekFrom::Start(0)).ok()?;
        self.file.read_to_string(&mut text).ok()?;
        parse(&text)
    }

    /// Replaces the record's content by `incarnation` (this process's).
    pub fn write(&mut self, incarnation: u64) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file
            .write_all(format!("{HEADER}\n{incarnation:016x}\n").as_bytes())?;
        self.file.sync_data()
    }

    /// Where the record is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The incarnation a record's text names.
fn parse(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let hex = lines.next()?.trim();
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn open(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    // Readable by its owner only, like the key it sits next to.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Takes the exclusive lock without waiting: false if another process
/// holds it.
#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use rustix::fs::{flock, FlockOperation};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<bool> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no flock on this platform",
    ))
}

/// Claims the record next to `key` for `node` before its first stream:
/// states what it supersedes when it holds the lock, writes its own
/// incarnation, and returns the record (keep it until exit) or nothing.
pub fn announce(key: &Path, node: &astral_tokio::Node) -> Option<Record> {
    match claim(key) {
        Claim::Sole {
            previous,
            mut record,
        } => {
            let own = node.incarnation();
            node.set_supersedes(previous);
            match previous {
                Some(p) => tracing::info!(
                    "instance {own:016x} supersedes {p:016x} (recorded in {}): \
                     peers end that instance's sessions at once",
                    record.path().display()
                ),
                None => tracing::debug!("instance {own:016x}: no earlier instance recorded"),
            }
            if let Err(e) = record.write(own) {
                tracing::warn!("cannot write {}: {e}", record.path().display());
            }
            Some(record)
        }
        Claim::Twin => {
            tracing::info!(
                "another process runs with this key ({} is locked): this one is its twin; \
                 peers keep the other's sessions",
                record_path(key).display()
            );
            None
        }
        Claim::Unknown(why) => {
            tracing::warn!("{why}: a restart will not be announced to peers");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("astral-instance-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("a.key")
    }

    #[test]
    fn records_parse_exactly() {
        assert_eq!(
            parse("astral-incarnation-v1\n00000000000000ff\n"),
            Some(255)
        );
        assert_eq!(
            parse("astral-incarnation-v1\nffffffffffffffff"),
            Some(u64::MAX)
        );
        assert_eq!(parse(""), None);
        assert_eq!(parse("astral-incarnation-v1\n"), None);
        assert_eq!(parse("astral-incarnation-v1\nff\n"), None);
        assert_eq!(parse("astral-incarnation-v2\n00000000000000ff\n"), None);
        assert_eq!(parse("astral-incarnation-v1\n00000000000000fg\n"), None);
    }

    #[cfg(unix)]
    #[test]
    fn the_lock_holder_reads_the_previous_instance_and_a_twin_finds_it_locked() {
        let key = temp("lock");
        // A first instance: nothing recorded yet.
        let Claim::Sole {
            previous,
            mut record,
        } = claim(&key)
        else {
            panic!("the first claim holds the lock");
        };
        assert_eq!(previous, None);
        record.write(0xabc).unwrap();
        // While it holds the lock, a second open file description cannot
        // take it (flock locks are per open file, so this stands for a
        // second process).
        assert!(matches!(claim(&key), Claim::Twin));
        // It exits: the next instance learns its incarnation.
        drop(record);
        let Claim::Sole {
            previous,
            mut record,
        } = claim(&key)
        else {
            panic!("the lock is free again");
        };
        assert_eq!(previous, Some(0xabc));
        record.write(0xdef).unwrap();
        drop(record);
        let text = std::fs::read_to_string(record_path(&key)).unwrap();
        assert_eq!(text, "astral-incarnation-v1\n0000000000000def\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(record_path(&key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
}
