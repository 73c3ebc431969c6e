//! Log set-up, escaping of peer-controlled text, and rate limits for log
//! lines a peer can trigger.
//!
//! Policy (docs/CLI.md): `RUST_LOG`, when set, always decides the filter;
//! otherwise `--quiet` shows errors only and each `-v` raises the
//! subcommand's default level (`info` for `listen`, `warn` otherwise).
//! Colours only when stderr is a terminal and `NO_COLOR` is unset.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use tracing_subscriber::EnvFilter;

/// Levels in order, for `-v` steps.
const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// The filter directive for a default level raised by `verbose` steps, or
/// `error` when quiet.
pub fn level(default: &str, verbose: u8, quiet: bool) -> &'static str {
    if quiet {
        return "error";
    }
    let base = LEVELS.iter().position(|l| *l == default).unwrap_or(1);
    LEVELS[(base + usize::from(verbose)).min(LEVELS.len() - 1)]
}

/// Installs the subscriber on stderr. Returns a warning to log once the
/// subscriber is up (an invalid `RUST_LOG`).
pub fn init(default: &str, verbose: u8, quiet: bool) {
    let mut warning = None;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => f,
            Err(e) => {
                warning = Some(format!("ignoring RUST_LOG={v:?}: {e}"));
                EnvFilter::new(level(default, verbose, quiet))
            }
        },
        _ => EnvFilter::new(level(default, verbose, quiet)),
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
}

/// Longest peer-controlled string put in a log line (in characters).
const ESCAPE_MAX: usize = 200;

/// A peer-controlled string made safe for a log line: control characters,
/// quotes and backslashes escaped as Rust does (`\n`, `\u{1b}`), so a peer
/// can neither forge lines nor send terminal escapes; long strings are cut.
///
/// ```ignore
/// assert_eq!(escape("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
/// ```
pub fn escape(s: &str) -> String {
    // Rust's debug escaping covers C0/C1 controls (ESC, CSI), line and
    // paragraph separators, and invisible format characters (bidi
    // overrides, zero-width spaces).
    let cut = s.char_indices().nth(ESCAPE_MAX).map(|(i, _)| i);
    let mut out: String = s[..cut.unwrap_or(s.len())].escape_debug().collect();
    if let Some(i) = cut {
        out.push_str(&format!("…(+{} bytes)", s.len() - i));
    }
    out
}

/// Log lines that peers can cause, limited per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Noisy {
    /// Failed handshakes (anyone who can reach a listener).
    Handshake,
    /// Streams up and down.
    Stream,
    /// Queries rejected or failed services.
    Query,
    /// Session life (migrations, recoveries, ends).
    Session,
}

/// Lines per second allowed per kind, after a burst.
const RATE_PER_SEC: f64 = 5.0;
/// Burst allowed per kind.
const BURST: f64 = 20.0;

struct Bucket {
    tokens: f64,
    at: Instant,
    suppressed: u64,
}

fn buckets() -> &'static Mutex<HashMap<Noisy, Bucket>> {
    static B: OnceLock<Mutex<HashMap<Noisy, Bucket>>> = OnceLock::new();
    B.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Token bucket per kind of line: `Some(n)` when a line may be logged now
/// (`n` lines of the kind were suppressed since the last one), `None` when
/// this one must be dropped.
pub fn allow(kind: Noisy) -> Option<u64> {
    allow_at(kind, Instant::now())
}

fn allow_at(kind: Noisy, now: Instant) -> Option<u64> {
    let mut map = buckets().lock().unwrap_or_else(|p| p.into_inner());
    let b = map.entry(kind).or_insert(Bucket {
        tokens: BURST,
        at: now,
        suppressed: 0,
    });
    let dt = now.saturating_duration_since(b.at).as_secs_f64();
    b.tokens = (b.tokens + dt * RATE_PER_SEC).min(BURST);
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Some(std::mem::take(&mut b.suppressed))
    } else {
        b.suppressed += 1;
        None
    }
}

/// " (N similar lines suppressed)" or "".
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar lines suppressed)")
    }
}

/// Logs at the given level, rate-limited per kind, with a note of what was
/// suppressed before.
#[macro_export]
macro_rules! limited {
    ($kind:expr, $lvl:ident, $($fmt:tt)+) => {
        if let Some(n) = $crate::logging::allow($kind) {
            tracing::$lvl!("{}{}", format_args!($($fmt)+), $crate::logging::suppressed_note(n));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn escape_neutralises_newlines_and_terminal_escapes() {
        assert_eq!(escape("echo"), "echo");
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape("\x1b[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape("q\"\\"), "q\\\"\\\\");
        let long = "x".repeat(500);
        let e = escape(&long);
        assert!(e.starts_with(&"x".repeat(ESCAPE_MAX)));
        assert!(e.ends_with("…(+300 bytes)"), "{e}");
        for c in ['\u{7f}', '\u{9b}', '\u{202e}', '\u{2028}', '\u{200b}'] {
            assert!(!escape(&format!("é{c}")).contains(c), "{:?}", c);
        }
        assert_eq!(escape("é"), "é");
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let kind = Noisy::Handshake;
        let mut allowed = 0;
        for _ in 0..100 {
            if allow_at(kind, t0).is_some() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, BURST as usize);
        // One second later: RATE_PER_SEC more, and the first one reports
        // what was dropped.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(allow_at(kind, t1), Some(100 - BURST as u64));
        let mut more = 1;
        while allow_at(kind, t1).is_some() {
            more += 1;
        }
        assert_eq!(more, RATE_PER_SEC as usize);
    }

    #[test]
    fn levels() {
        assert_eq!(level("info", 0, false), "info");
        assert_eq!(level("warn", 1, false), "info");
        assert_eq!(level("warn", 9, false), "trace");
        assert_eq!(level("info", 2, true), "error");
    }
}
