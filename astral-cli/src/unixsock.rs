//! Unix socket paths the tool binds (the control socket, `-b unix:/path`)
//! without ever destroying what it did not make.
//!
//! Before binding, an existing path is replaced only if it is a socket,
//! owned by us, that nobody answers on (a stale socket of a process that
//! died); anything else (a file, a directory, a live socket, another user's
//! socket) is an error that says what is there. The socket is removed when
//! its [`SocketPath`] drops (clean exits, Ctrl-C, SIGTERM), and only if the
//! path still names the socket we bound.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::error::{err, AnyError};

/// A socket file we bound; removed on drop if it is still ours.
#[derive(Debug)]
pub struct SocketPath {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Makes `path` free for a bind, removing only a stale socket of ours.
async fn prepare(path: &Path, what: &str) -> Result<(), AnyError> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(dir) = parent {
                if !dir.is_dir() {
                    return Err(err(format!(
                        "cannot create the {what} {shown}: directory {} does not exist",
                        dir.display()
                    )));
                }
            }
            return Ok(());
        }
        Err(e) => return Err(err(format!("cannot use {shown} for the {what}: {e}"))),
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(err(format!(
            "{shown} is a directory: give the {what} a file name, e.g. {}",
            path.join("astral.sock").display()
        )));
    }
    if !ft.is_socket() {
        return Err(err(format!(
            "{shown} exists and is not a socket: refusing to replace it (choose another path for the {what})"
        )));
    }
    let me = rustix::process::getuid().as_raw();
    if meta.uid() != me {
        return Err(err(format!(
            "{shown} is a socket of another user (uid {}): refusing to replace it",
            meta.uid()
        )));
    }
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => Err(err(format!(
            "{shown} is in use by a running process: stop it, or choose another path for the {what}"
        ))),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // Ours, and nobody listens: left behind by a process that died.
            tracing::info!("removing the stale socket {shown}");
            std::fs::remove_file(path)
                .map_err(|e| err(format!("cannot remove the stale socket {shown}: {e}")))
        }
        Err(e) => Err(err(format!("cannot check the socket {shown}: {e}"))),
    }
}

/// Binds a Unix listener at `path`. `private` sockets (the control socket)
/// get mode 0600 from the start: the umask is tightened around the bind so
/// no other user can connect in between.
///
/// The path appears only once the socket accepts: a bind creates the file
/// before `listen`, so a client that waits for the file and connects at
/// once could be refused ("nothing listens there"). The socket is bound
/// under a temporary name beside `path` and then hard-linked to `path`
/// (which, unlike a rename, fails instead of replacing a socket another
/// process bound there meanwhile).
pub async fn bind(
    path: &Path,
    what: &str,
    private: bool,
) -> Result<(UnixListener, SocketPath), AnyError> {
    prepare(path, what).await?;
    let shown = path.display();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.bind", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = match bind_at(&tmp, private) {
        Ok(l) => l,
        // A temporary name too long for a socket address where `path` fits:
        // bind `path` itself (the race above comes back, nothing else).
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            return bind_in_place(path, what, private);
        }
        Err(e) => return Err(err(format!("cannot create the {what} {shown}: {e}"))),
    };
    let placed = (|| {
        if private {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| {
                    err(format!(
                        "cannot restrict the {what} {shown} to its owner: {e}"
                    ))
                },
            )?;
        }
        std::fs::hard_link(&tmp, path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => err(format!(
                "{shown} appeared while the {what} was being created: another process binds it"
            )),
            _ => err(format!("cannot create the {what} {shown}: {e}")),
        })
    })();
    let _ = std::fs::remove_file(&tmp);
    placed?;
    Ok((listener, guard_of(path, what)?))
}

/// The plain bind at `path` (no temporary name).
fn bind_in_place(
    path: &Path,
    what: &str,
    private: bool,
) -> Result<(UnixListener, SocketPath), AnyError> {
    let listener = bind_at(path, private)
        .map_err(|e| err(format!("cannot create the {what} {}: {e}", path.display())))?;
    let guard = guard_of(path, what)?;
    if private {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            err(format!(
                "cannot restrict the {what} {} to its owner: {e}",
                path.display()
            ))
        })?;
    }
    Ok((listener, guard))
}

/// Binds `at`; a `private` socket is created with mode 0600 (the umask is
/// tightened around the bind, so no other user can connect in between).
fn bind_at(at: &Path, private: bool) -> io::Result<UnixListener> {
    if !private {
        return UnixListener::bind(at);
    }
    // The umask is process-wide: this runs while the tool starts, before it
    // creates any other file.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let r = UnixListener::bind(at);
    rustix::process::umask(old);
    r
}

/// The guard that removes `path` on drop while it names this socket file.
fn guard_of(path: &Path, what: &str) -> Result<SocketPath, AnyError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| err(format!("cannot stat the {what} {}: {e}", path.display())))?;
    Ok(SocketPath {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A path that exists is a socket that accepts: a client that waits for
    /// the file and then connects is never refused (the bind used to create
    /// the file before `listen`, and a `ctl` that raced it was told "nothing
    /// listens there"; seen once in CI under load).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_path_appears_only_once_it_accepts() {
        let dir = std::env::temp_dir().join(format!("astral-unixsock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let refused = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        for _ in 0..2000 {
            let stop = Arc::new(AtomicBool::new(false));
            let watcher = {
                let (path, stop, refused, seen) =
                    (path.clone(), stop.clone(), refused.clone(), seen.clone());
                std::thread::spawn(move || {
                    // Spins until the file is there, then connects at once.
                    while !stop.load(Ordering::Relaxed) {
                        match std::os::unix::net::UnixStream::connect(&path) {
                            Ok(_) => {
                                seen.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            Err(_) => {}
                        }
                    }
                })
            };
            let (l, guard) = bind(&path, "test socket", true).await.unwrap();
            // Accept what the watcher may have queued, then let it go.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(20), l.accept()).await;
            stop.store(true, Ordering::Relaxed);
            watcher.join().unwrap();
            drop(l);
            drop(guard);
        }
        let _ = std::fs::remove_dir_all(&dir);
        println!(
            "connected {} times, refused {} times",
            seen.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed)
        );
        assert_eq!(
            refused.load(Ordering::Relaxed),
            0,
            "a client found the path before the socket listened"
        );
        assert!(
            seen.load(Ordering::Relaxed) > 0,
            "the watcher never connected: the test did not test"
        );
    }
}
