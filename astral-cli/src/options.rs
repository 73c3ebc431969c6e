//! Flags shared by `listen` and `connect`: the node's timers, windows and
//! placement policy, turned into a validated core `Config`.

use std::time::Duration;

use astral_tokio::Config;

use crate::error::{usage, AnyError};

/// Timers, windows and policy of the node (defaults are the library's).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NodeOpts {
    /// Interval between keep-alive pings on each stream [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Node")]
    pub keepalive: Option<Duration>,
    /// A stream that hears nothing from the peer for this long is dead [default: 20s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Node")]
    pub dead_timeout: Option<Duration>,
    /// A session that lost its stream waits this long for another one [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Node")]
    pub recovery_timeout: Option<Duration>,
    /// Receive window per session and direction, in bytes (K, M, G suffixes) [default: 256K].
    #[arg(long, value_name = "BYTES", value_parser = parse_window, help_heading = "Node")]
    pub recv_window: Option<u32>,
    /// Bytes a session may queue beyond the peer's window [default: 256K].
    #[arg(long, value_name = "BYTES", value_parser = parse_window, help_heading = "Node")]
    pub send_buffer: Option<u32>,
    /// Move sessions to clearly faster streams by themselves [default: on].
    #[arg(long, value_name = "on|off", value_parser = parse_on_off, help_heading = "Node")]
    pub auto_migrate: Option<bool>,
    /// Automatic placement: another stream must be this much faster than the
    /// current one's path delay, as a fraction or percentage (0.3, 30%) [default: 30%].
    #[arg(long, value_name = "FRACTION", value_parser = parse_gain, help_heading = "Node")]
    pub migrate_gain: Option<f64>,
    /// ...for this long before sessions move [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Node")]
    pub migrate_sustain: Option<Duration>,
    /// A session that moved stays where it is for this long [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Node")]
    pub migrate_cooldown: Option<Duration>,
    /// Unsent bytes the kernel may hold per TCP stream (TCP_NOTSENT_LOWAT,
    /// Linux; K, M suffixes; `off` or 0 leaves the system default) [default: 128K].
    #[arg(long, value_name = "BYTES|off", value_parser = parse_lowat, help_heading = "Node")]
    pub tcp_notsent_lowat: Option<u32>,
}

impl NodeOpts {
    /// The core configuration these flags ask for, checked: a mistake is a
    /// usage error naming the flags.
    pub fn config(&self) -> Result<Config, AnyError> {
        let mut c = Config::default();
        if let Some(d) = self.keepalive {
            c.keepalive_interval = d;
        }
        if let Some(d) = self.dead_timeout {
            c.dead_timeout = d;
        }
        if let Some(d) = self.recovery_timeout {
            c.recovery_timeout = d;
        }
        if let Some(w) = self.recv_window {
            c.recv_window = w;
        }
        if let Some(b) = self.send_buffer {
            c.send_buffer = b;
        }
        if let Some(on) = self.auto_migrate {
            c.auto_migrate = on;
        }
        if let Some(g) = self.migrate_gain {
            c.migrate_rtt_gain = g;
        }
        if let Some(d) = self.migrate_sustain {
            c.migrate_sustain = d;
        }
        if let Some(d) = self.migrate_cooldown {
            c.migrate_cooldown = d;
        }
        if let Some(b) = self.tcp_notsent_lowat {
            c.tcp_notsent_lowat = (b > 0).then_some(b);
        }
        if c.dead_timeout <= c.keepalive_interval {
            return Err(usage(format!(
                "--dead-timeout ({}) must be longer than --keepalive ({}): a stream is declared dead only after missing pings",
                humantime::format_duration(c.dead_timeout),
                humantime::format_duration(c.keepalive_interval)
            )));
        }
        c.validate()
            .map_err(|e| usage(format!("invalid node settings: {}", e.0)))?;
        Ok(c)
    }
}

/// A fraction in [0, 1): `0.3` or `30%`.
pub fn parse_gain(s: &str) -> Result<f64, String> {
    let (num, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a fraction: {s:?}; use e.g. 0.3 or 30%"))?;
    let v = v / scale;
    if !(0.0..1.0).contains(&v) {
        return Err(format!("{s} is outside [0, 1) (0%..100%)"));
    }
    Ok(v)
}

/// A duration such as `5s`, `250ms`, `2m` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        Duration::from_secs(s.parse().map_err(|_| format!("not a duration: {s:?}"))?)
    } else {
        humantime::parse_duration(s)
            .map_err(|e| format!("not a duration: {s:?} ({e}); use e.g. 5s or 250ms"))?
    };
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

/// `on`/`off` (also `true`/`false`, `yes`/`no`, `1`/`0`).
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

/// A byte count with an optional K, M or G suffix (KiB, MiB, GiB).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let mul = match s[i..]
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                other => return Err(format!("unknown size suffix {other:?} (use K, M or G)")),
            };
            (&s[..i], mul)
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("not a size: {s:?} (e.g. 256K, 4M)"))?;
    let v = n.checked_mul(mul).ok_or("size too large")?;
    if v == 0 {
        return Err("size must be at least 1 byte".into());
    }
    Ok(v)
}

fn parse_window(s: &str) -> Result<u32, String> {
    let v = parse_size(s)?;
    u32::try_from(v).map_err(|_| format!("{s} is too large: at most 4G - 1 bytes"))
}

/// A byte count, or `off` (0: the kernel's default).
pub fn parse_lowat(s: &str) -> Result<u32, String> {
    if s.eq_ignore_ascii_case("off") || s.trim() == "0" {
        return Ok(0);
    }
    parse_window(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").unwrap_err().contains("5s"));
        assert_eq!(parse_size("256K").unwrap(), 256 << 10);
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert!(parse_window("4G").is_err());
        assert!(parse_on_off("maybe").is_err());
    }

    #[test]
    fn config_checks_name_the_flags() {
        let o = NodeOpts {
            keepalive: Some(Duration::from_secs(30)),
            ..NodeOpts::default()
        };
        let e = o.config().unwrap_err().to_string();
        assert!(
            e.contains("--dead-timeout") && e.contains("--keepalive"),
            "{e}"
        );
        let o = NodeOpts {
            keepalive: Some(Duration::from_secs(1)),
            dead_timeout: Some(Duration::from_secs(3)),
            recv_window: Some(1 << 20),
            auto_migrate: Some(false),
            ..NodeOpts::default()
        };
        let c = o.config().unwrap();
        assert_eq!(c.dead_timeout, Duration::from_secs(3));
        assert_eq!(c.recv_window, 1 << 20);
        assert!(!c.auto_migrate);
    }

    #[test]
    fn placement_flags_reach_the_config() {
        assert_eq!(parse_gain("0.3").unwrap(), 0.3);
        assert_eq!(parse_gain("50%").unwrap(), 0.5);
        assert!(parse_gain("100%").is_err());
        assert!(parse_gain("-0.1").is_err());
        assert!(parse_gain("fast").unwrap_err().contains("30%"));
        let o = NodeOpts {
            migrate_gain: Some(0.5),
            migrate_sustain: Some(Duration::from_millis(500)),
            migrate_cooldown: Some(Duration::from_secs(60)),
            ..NodeOpts::default()
        };
        let c = o.config().unwrap();
        assert_eq!(c.migrate_rtt_gain, 0.5);
        assert_eq!(c.migrate_sustain, Duration::from_millis(500));
        assert_eq!(c.migrate_cooldown, Duration::from_secs(60));
    }

    #[test]
    fn notsent_lowat_flag_sets_or_clears_the_bound() {
        assert_eq!(
            NodeOpts::default().config().unwrap().tcp_notsent_lowat,
            Some(128 << 10)
        );
        for (arg, want) in [("64K", Some(64 << 10)), ("off", None), ("0", None)] {
            let o = NodeOpts {
                tcp_notsent_lowat: Some(parse_lowat(arg).unwrap()),
                ..NodeOpts::default()
            };
            assert_eq!(o.config().unwrap().tcp_notsent_lowat, want, "{arg}");
        }
        assert!(parse_lowat("lots").is_err());
    }
}
