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
pub async fn bind(
    path: &Path,
    what: &str,
    private: bool,
) -> Result<(UnixListener, SocketPath), AnyError> {
    prepare(path, what).await?;
    let bound = if private {
        // The umask is process-wide: this runs while the tool starts, before
        // it creates any other file.
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
        let r = UnixListener::bind(path);
        rustix::process::umask(old);
        r
    } else {
        UnixListener::bind(path)
    };
    let listener =
        bound.map_err(|e| err(format!("cannot create the {what} {}: {e}", path.display())))?;
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| err(format!("cannot stat the {what} {}: {e}", path.display())))?;
    let guard = SocketPath {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
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
