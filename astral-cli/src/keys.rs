//! `astral keygen` and `astral id`, and key-file loading.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use astral_tokio::Identity;

use crate::{err, AnyError};

/// A fresh identity from OS randomness.
pub fn random_identity() -> Result<Identity, AnyError> {
    let mut private = [0u8; 32];
    getrandom::getrandom(&mut private).map_err(|e| err(format!("no OS randomness: {e}")))?;
    Ok(Identity::from_private(private))
}

/// Reads and parses a key file.
pub fn load(path: &Path) -> Result<Identity, AnyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("cannot read key file {}: {e}", path.display())))?;
    Identity::parse_key_file(&text)
        .map_err(|e| err(format!("bad key file {}: {e}", path.display())))
}

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
            let mut f = opts
                .open(&path)
                .map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
            f.write_all(text.as_bytes())
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

pub fn id(key: &Path) -> Result<ExitCode, AnyError> {
    println!("{}", load(key)?.node_id());
    Ok(ExitCode::SUCCESS)
}
