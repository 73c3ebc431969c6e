//! Records the commit the bench was built from (`ASTRAL_BENCH_COMMIT`), so
//! every report names the code it measured: `git rev-parse HEAD` when this
//! crate sits at the top of a git checkout, else "unknown" (a crates.io
//! download, a tarball, or a copy inside some other repository).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let ours = Path::new(&manifest)
        .parent()
        .and_then(|p| p.canonicalize().ok());
    let top =
        git(&["rev-parse", "--show-toplevel"]).and_then(|t| Path::new(&t).canonicalize().ok());
    let commit = if ours.is_some() && ours == top {
        // Rebuild when HEAD moves: HEAD itself (a branch switch) and the
        // branch it points at (a commit), wherever git keeps them.
        let mut watch = vec!["HEAD".to_string()];
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(r);
        }
        watch.push("packed-refs".into());
        for w in watch {
            if let Some(p) = git(&["rev-parse", "--git-path", &w]) {
                if Path::new(&p).exists() {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
        }
        git(&["rev-parse", "HEAD"])
    } else {
        None
    };
    println!(
        "cargo:rustc-env=ASTRAL_BENCH_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}
