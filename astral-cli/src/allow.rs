//! `astral listen --allow FILE`: who may connect, like OpenSSH's
//! `authorized_keys`.
//!
//! The file holds one node id (64 hex digits) per line, optionally followed
//! by whitespace and a comment; blank lines and lines starting with `#` are
//! ignored. The list becomes the node's accept policy: the core asks it as
//! soon as message 3 of the handshake authenticates the dialer, and a
//! dialer not on the list is hung up on before any peer state exists.
//! SIGHUP re-reads the file; a file that no longer parses keeps the list in
//! force (and says why). Like sshd's `StrictModes`, a file that group or
//! others may write is refused (`--insecure-key-perms` warns instead).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use astral_tokio::{AllowList, Node, NodeId};

use crate::error::{err, AnyError};
use crate::logging::escape;

/// The `--allow` file of a listener.
pub struct AllowFile {
    path: PathBuf,
    insecure_perms: bool,
}

impl AllowFile {
    /// A file to read (nothing is read yet).
    pub fn new(path: PathBuf, insecure_perms: bool) -> AllowFile {
        AllowFile {
            path,
            insecure_perms,
        }
    }

    /// Reads and parses the file, checking its permissions.
    pub fn load(&self) -> Result<AllowList, AnyError> {
        check_perms(&self.path, self.insecure_perms)?;
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            err(format!(
                "cannot read the allow file {}: {e}",
                self.path.display()
            ))
        })?;
        parse(&text).map_err(|e| err(format!("allow file {}: {e}", self.path.display())))
    }

    /// Reads the file and makes it the node's accept policy. Returns the
    /// number of ids.
    pub fn apply(&self, node: &Node) -> Result<usize, AnyError> {
        let list = self.load()?;
        let n = list.len();
        if n == 0 {
            tracing::warn!(
                "allow file {} lists no id: every dialer is refused",
                self.path.display()
            );
        }
        node.set_accept_policy(Some(Arc::new(list)));
        Ok(n)
    }

    /// SIGHUP: re-reads the file. On success the new list replaces the old
    /// one for handshakes that complete from now on (established streams
    /// stay, as with sshd); on failure the old list stays in force.
    pub fn reload(&self, node: &Node) {
        match self.apply(node) {
            Ok(n) => tracing::info!(
                "SIGHUP: allow file {} re-read: {n} id{} may connect",
                self.path.display(),
                if n == 1 { "" } else { "s" }
            ),
            Err(e) => tracing::error!("SIGHUP: {e}; the previous allow list stays in force"),
        }
    }
}

/// Why a line of an allow file is not an id.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, with the offending text escaped.
    pub what: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

/// Parses the text of an allow file (see the module doc).
pub fn parse(text: &str) -> Result<AllowList, ParseError> {
    let mut list = AllowList::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The id, then an optional comment after whitespace.
        let id = line.split_whitespace().next().unwrap_or(line);
        let id: NodeId = id.parse().map_err(|e| ParseError {
            line: i + 1,
            what: format!(
                "{} is not a node id ({e}); write one full id per line, as `astral id KEYFILE` prints it",
                escape(id)
            ),
        })?;
        list.insert(id);
    }
    Ok(list)
}

fn check_perms(path: &Path, insecure: bool) -> Result<(), AnyError> {
    crate::keys::check_file_mode(
        path,
        insecure,
        &crate::keys::FileModeRule {
            what: "allow file",
            forbidden: 0o022,
            access: "writable",
            advice: "whoever can write it decides who may connect; run `chmod go-w {}`",
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use astral_tokio::Identity;

    fn id(n: u8) -> NodeId {
        Identity::from_seed([n; 32]).node_id()
    }

    #[test]
    fn ids_comments_and_blank_lines() {
        let text = format!(
            "# friends\n\n{}\n  {} laptop (added 2026-12-01)\n#{}\n{}\n",
            id(1),
            id(2).to_string().to_uppercase(),
            id(3),
            id(1)
        );
        let list = parse(&text).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.contains(&id(1)) && list.contains(&id(2)));
        assert!(!list.contains(&id(3)), "a commented-out id is not allowed");
    }

    #[test]
    fn an_empty_file_allows_nobody() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# nobody yet\n").unwrap().is_empty());
    }

    #[test]
    fn a_bad_line_names_its_number_and_escapes_the_text() {
        let text = format!("{}\n8f3a2b1c\n", id(1));
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.what.contains("8f3a2b1c is not a node id"), "{e}");
        let e = parse("\u{1b}[31mevil\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(!e.what.contains('\u{1b}'), "escaped: {e}");
        assert!(e.what.contains("\\u{1b}"), "{e}");
    }
}
