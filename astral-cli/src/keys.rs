//! `astral keygen` and `astral id`, and key-file loading.
//!
//! A key file holds a private key: like ssh, the tool refuses one that
//! group or others may read (`--insecure-key-perms` turns the refusal into
//! a warning), and `keygen` creates files with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use astral_tokio::Identity;

use crate::error::{err, AnyError};

/// How to load a key file.
#[derive(clap::Args, Clone, Debug)]
pub struct KeyArgs {
    /// Key file (from `astral keygen`).
    #[arg(short, long, value_name = "FILE")]
    pub key: PathBuf,
    /// Use a key file that group or others can read (warn instead of refusing).
    #[arg(long)]
    pub insecure_key_perms: bool,
}

impl KeyArgs {
    /// Loads the identity, checking the file's permissions.
    pub fn load(&self) -> Result<Identity, AnyError> {
        load(&self.key, self.insecure_key_perms)
    }
}

/// A fresh identity from OS randomness.
pub fn random_identity() -> Result<Identity, AnyError> {
    let mut private = [0u8; 32];
    getrandom::getrandom(&mut private).map_err(|e| err(format!("no OS randomness: {e}")))?;
    Ok(Identity::from_private(private))
}

/// Reads and parses a key file; refuses (or, when `insecure`, warns about)
/// a file that group or others can read.
pub fn load(path: &Path, insecure: bool) -> Result<Identity, AnyError> {
    check_perms(path, insecure)?;
    read(path)
}

fn read(path: &Path) -> Result<Identity, AnyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("cannot read key file {}: {e}", path.display())))?;
    Identity::parse_key_file(&text).map_err(|e| {
        err(format!(
            "{} is not an astral key file ({e}); create one with `astral keygen -o FILE`",
            path.display()
        ))
    })
}

/// A file whose mode must not grant group or others some access (as ssh
/// insists for private keys): what is forbidden, and how to say so.
pub(crate) struct FileModeRule {
    /// What the file is, for the message ("key file", "allow file").
    pub what: &'static str,
    /// Bits for group and others that are refused (`0o077`: any access;
    /// `0o022`: write).
    pub forbidden: u32,
    /// The access those bits grant ("readable", "writable").
    pub access: &'static str,
    /// Why it matters and how to fix it; `{}` is replaced by the path.
    pub advice: &'static str,
}

fn check_perms(path: &Path, insecure: bool) -> Result<(), AnyError> {
    check_file_mode(
        path,
        insecure,
        &FileModeRule {
            what: "key file",
            forbidden: 0o077,
            access: "readable",
            advice: "a private key must be private; run `chmod 600 {}`",
        },
    )
}

/// Refuses (or with `--insecure-key-perms`, warns about) a file whose mode
/// breaks `rule`. A missing file passes: the read that follows reports it.
#[cfg(unix)]
pub(crate) fn check_file_mode(
    path: &Path,
    insecure: bool,
    rule: &FileModeRule,
) -> Result<(), AnyError> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & rule.forbidden == 0 {
        return Ok(());
    }
    let what = format!(
        "{} {} is {} by {} (mode {mode:04o})",
        rule.what,
        path.display(),
        rule.access,
        if mode & rule.forbidden & 0o007 != 0 {
            "others"
        } else {
            "its group"
        }
    );
    if insecure {
        tracing::warn!("{what}: using it anyway (--insecure-key-perms)");
        Ok(())
    } else {
        let advice = rule.advice.replace("{}", &path.display().to_string());
        Err(err(format!(
            "{what}: {advice} (or pass --insecure-key-perms)"
        )))
    }
}

#[cfg(not(unix))]
pub(crate) fn check_file_mode(_: &Path, _: bool, _: &FileModeRule) -> Result<(), AnyError> {
    Ok(())
}

/// `astral keygen [-o FILE]`.
pub fn keygen(output: Option<PathBuf>) -> Result<ExitCode, AnyError> {
    let id = random_identity()?;
    let text = id.to_key_file();
    match output {
        Some(path) => {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    err(format!(
                        "cannot create {}: it exists (keygen never overwrites a key; pick another name)",
                        path.display()
                    ))
                } else {
                    err(format!("cannot create {}: {e}", path.display()))
                }
            })?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| err(format!("cannot write {}: {e}", path.display())))?;
            println!("{}", id.node_id());
        }
        None => {
            print!("{text}");
            eprintln!("id: {}", id.node_id());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `astral id FILE`: prints the id of a key file. Reading the public part
/// needs no secrecy, so permissions are not checked here.
pub fn id(key: &Path) -> Result<ExitCode, AnyError> {
    println!("{}", read(key)?.node_id());
    Ok(ExitCode::SUCCESS)
}
