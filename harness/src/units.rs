//! Human units on the command line and in control commands: durations
//! (`100ms`, `2s`), bit rates (`8mbit`, `1gbit`, `10MB/s`) and byte sizes
//! (`256kb`, `4MiB`).
//!
//! Rates follow `tc`: `bit`, `kbit`, `mbit`, `gbit` are bits per second in
//! powers of 1000; `bps`, `kbps`, `mbps`, `gbps` (or `B/s`, `KB/s`, `MB/s`,
//! `GB/s`) are *bytes* per second. Sizes are bytes in powers of 1024
//! (`kb` = `KiB` = 1024 bytes), as `tc`'s `limit` and `burst` are.

use std::fmt;
use std::time::Duration;

/// A unit parse failure, with the text that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: cannot parse {text:?} ({hint})")]
pub struct UnitError {
    what: &'static str,
    text: String,
    hint: &'static str,
}

/// A link rate in bits per second (never zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(u64);

impl Rate {
    /// `bits` per second; `None` for 0.
    ///
    /// ```
    /// use astral_harness::units::Rate;
    /// assert_eq!(Rate::from_bits_per_sec(8_000_000).unwrap().bytes_per_sec(), 1_000_000.0);
    /// assert!(Rate::from_bits_per_sec(0).is_none());
    /// ```
    pub fn from_bits_per_sec(bits: u64) -> Option<Rate> {
        (bits > 0).then_some(Rate(bits))
    }

    /// `megabits` per second (10^6 bits).
    pub fn mbit(megabits: u64) -> Rate {
        Rate(megabits.max(1) * 1_000_000)
    }

    /// Bits per second.
    pub fn bits_per_sec(self) -> u64 {
        self.0
    }

    /// Bytes per second, as a float for the token bucket.
    pub fn bytes_per_sec(self) -> f64 {
        self.0 as f64 / 8.0
    }

    /// How long `bytes` take at this rate.
    ///
    /// ```
    /// use astral_harness::units::Rate;
    /// use std::time::Duration;
    /// assert_eq!(Rate::mbit(8).time_for(1_000_000), Duration::from_secs(1));
    /// ```
    pub fn time_for(self, bytes: usize) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec())
    }

    /// Bytes sent in `d` at this rate.
    pub fn bytes_in(self, d: Duration) -> usize {
        (d.as_secs_f64() * self.bytes_per_sec()) as usize
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b % 1_000_000_000 == 0 {
            write!(f, "{}gbit", b / 1_000_000_000)
        } else if b % 1_000_000 == 0 {
            write!(f, "{}mbit", b / 1_000_000)
        } else if b % 1_000 == 0 {
            write!(f, "{}kbit", b / 1_000)
        } else {
            write!(f, "{b}bit")
        }
    }
}

/// Splits `"8mbit"` into `(8.0, "mbit")`.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..end].parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some((n, s[end..].trim()))
}

/// Parses a rate; `off`, `none`, `0` and `unlimited` mean no limit (`None`).
///
/// ```
/// use astral_harness::units::{parse_rate, Rate};
/// assert_eq!(parse_rate("8mbit").unwrap(), Some(Rate::mbit(8)));
/// assert_eq!(parse_rate("1MB/s").unwrap(), Some(Rate::mbit(8)));
/// assert_eq!(parse_rate("off").unwrap(), None);
/// assert!(parse_rate("fast").is_err());
/// ```
pub fn parse_rate(s: &str) -> Result<Option<Rate>, UnitError> {
    let err = || UnitError {
        what: "rate",
        text: s.to_string(),
        hint: "e.g. 8mbit, 1gbit, 500kbit, 10MB/s, off",
    };
    let t = s.trim();
    if matches!(t, "off" | "none" | "unlimited" | "0") {
        return Ok(None);
    }
    let (n, unit) = split_number(t).ok_or_else(err)?;
    let bits_per_unit: f64 = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" | "b/s" => 8.0,
        "kbps" | "kb/s" => 8e3,
        "mbps" | "mb/s" => 8e6,
        "gbps" | "gb/s" => 8e9,
        _ => return Err(err()),
    };
    let bits = (n * bits_per_unit).round();
    if bits < 1.0 || bits > u64::MAX as f64 {
        return Err(err());
    }
    Ok(Rate::from_bits_per_sec(bits as u64))
}

/// Parses a byte size (`b`, `kb`/`KiB`/`k`, `mb`/`MiB`/`m`, `gb`/`GiB`/`g`;
/// powers of 1024; a bare number is bytes).
///
/// ```
/// use astral_harness::units::parse_size;
/// assert_eq!(parse_size("256kb").unwrap(), 256 * 1024);
/// assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
/// assert_eq!(parse_size("1500").unwrap(), 1500);
/// ```
pub fn parse_size(s: &str) -> Result<usize, UnitError> {
    let err = || UnitError {
        what: "size",
        text: s.to_string(),
        hint: "e.g. 1500, 64kb, 4MiB, 1g",
    };
    let (n, unit) = split_number(s).ok_or_else(err)?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let v = (n * mult).round();
    if v > usize::MAX as f64 {
        return Err(err());
    }
    Ok(v as usize)
}

/// Parses a duration (`100ms`, `2s`, `1m 30s`, `0`).
///
/// ```
/// use astral_harness::units::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
/// assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|_| UnitError {
        what: "duration",
        text: s.to_string(),
        hint: "e.g. 100ms, 2s, 1m",
    })
}

/// Parses a loss probability: `1%`, `0.01`, `0`.
///
/// ```
/// use astral_harness::units::parse_fraction;
/// assert_eq!(parse_fraction("1%").unwrap(), 0.01);
/// assert_eq!(parse_fraction("0.5").unwrap(), 0.5);
/// assert!(parse_fraction("150%").is_err());
/// ```
pub fn parse_fraction(s: &str) -> Result<f64, UnitError> {
    let err = || UnitError {
        what: "probability",
        text: s.to_string(),
        hint: "e.g. 1%, 0.01, 0",
    };
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| err())? / 100.0,
        None => t.parse::<f64>().map_err(|_| err())?,
    };
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(err())
    }
}

/// Formats a duration for humans (`50ms`, `1.5s`, `250µs`).
pub fn fmt_duration(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else if d < Duration::from_millis(1) {
        format!("{}µs", d.as_micros())
    } else if d < Duration::from_secs(10) && d.subsec_micros() % 1000 != 0 {
        format!("{:.3}ms", d.as_secs_f64() * 1e3)
    } else if d < Duration::from_secs(1) || d.subsec_millis() != 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// Formats a byte count in KiB/MiB/GiB.
pub fn fmt_size(b: usize) -> String {
    const K: usize = 1024;
    let unit = |div: usize, name: &str| {
        if b % div == 0 {
            format!("{}{name}", b / div)
        } else {
            format!("{:.1}{name}", b as f64 / div as f64)
        }
    };
    if b >= K * K * K {
        unit(K * K * K, "GiB")
    } else if b >= K * K {
        unit(K * K, "MiB")
    } else if b >= K {
        unit(K, "KiB")
    } else {
        format!("{b}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100mbit").unwrap(), Some(Rate::mbit(100)));
        assert_eq!(
            parse_rate("1gbit").unwrap().unwrap().bits_per_sec(),
            1e9 as u64
        );
        assert_eq!(
            parse_rate("500kbit").unwrap().unwrap().bits_per_sec(),
            500_000
        );
        assert_eq!(
            parse_rate("2.5mbit").unwrap().unwrap().bits_per_sec(),
            2_500_000
        );
        assert_eq!(parse_rate("1000bit").unwrap().unwrap().bits_per_sec(), 1000);
        assert_eq!(
            parse_rate("125kbps").unwrap().unwrap().bits_per_sec(),
            1_000_000
        );
        assert_eq!(
            parse_rate("10MB/s").unwrap().unwrap().bits_per_sec(),
            80_000_000
        );
        for bad in ["", "mbit", "-1mbit", "8 furlongs", "0.0001bit"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Rate::mbit(8).to_string(), "8mbit");
        assert_eq!(
            Rate::from_bits_per_sec(1500).unwrap().to_string(),
            "1500bit"
        );
        assert_eq!(
            parse_rate(&Rate::mbit(250).to_string()).unwrap(),
            Some(Rate::mbit(250))
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5kb").unwrap(), 1536);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
        assert_eq!(fmt_duration(Duration::from_millis(50)), "50ms");
        assert_eq!(fmt_duration(Duration::from_secs(3)), "3s");
        assert_eq!(fmt_size(256 * 1024), "256KiB");
        assert_eq!(fmt_size(1500), "1.5KiB");
        assert_eq!(fmt_size(1000), "1000B");
        assert_eq!(parse_fraction("0").unwrap(), 0.0);
        assert!(parse_fraction("-1%").is_err());
    }
}
