//! The emulator's command language: one line per command, the same on the
//! control socket, on stdin, in a schedule file and in the library.
//!
//! ```text
//! [up|down] delay 100ms        one-way delay (both directions unless up/down)
//! [up|down] jitter 10ms        ± uniform jitter, order preserved
//! [up|down] rate 8mbit|off     bottleneck rate (token bucket)
//! [up|down] queue 256kb        bottleneck buffer
//! [up|down] burst 16kb         token bucket depth
//! [up|down] inflight 4mb|off   bytes in flight at most (forwarder)
//! [up|down] loss 1%            random packet loss (TUN bridge only)
//! [up|down] blackhole on|drop|off
//! partition | heal             blackhole (hold) both directions / end it
//! reset                        RST every forwarded connection (forwarder)
//! show | stats                 print the parameters / the counters
//! ```
//!
//! `up` is the direction from the dialer to the target (forwarder) or from
//! device A to device B (TUN bridge); `down` is the reverse.
//!
//! A schedule is a list of `OFFSET COMMAND` lines (`10s blackhole on`),
//! offsets from the start; `#` starts a comment.

use std::time::Duration;

use crate::units::{parse_duration, parse_fraction, parse_rate, parse_size, UnitError};
use crate::wan::link::{Blackhole, LinkParams};

/// Which direction a setting applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Dialer → target (forwarder), A → B (TUN bridge).
    Up,
    /// Target → dialer, B → A.
    Down,
    /// Both.
    Both,
}

/// One parameter change.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    /// One-way delay.
    Delay(Duration),
    /// Jitter half-width.
    Jitter(Duration),
    /// Rate (`None` = unlimited).
    Rate(Option<crate::units::Rate>),
    /// Bottleneck buffer bytes.
    Queue(usize),
    /// Token bucket depth.
    Burst(usize),
    /// In-flight cap (`None` = unlimited).
    Inflight(Option<usize>),
    /// Loss probability.
    Loss(f64),
    /// Blackhole state.
    Blackhole(Blackhole),
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Change a parameter.
    Set(Direction, Setting),
    /// Both directions blackholed (held).
    Partition,
    /// Both directions' blackholes off.
    Heal,
    /// Reset every current connection (forwarder only).
    Reset,
    /// Report the parameters.
    Show,
    /// Report the counters.
    Stats,
}

/// A command that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Nothing to do.
    #[error("empty command")]
    Empty,
    /// The first word is no command.
    #[error("unknown command {0:?} (delay, jitter, rate, queue, burst, inflight, loss, blackhole, partition, heal, reset, show, stats)")]
    Unknown(String),
    /// A value is missing or extra words follow.
    #[error("{0}")]
    Usage(&'static str),
    /// A value did not parse.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// This emulator cannot do it (e.g. `loss` on a TCP forwarder).
    #[error("{0}")]
    Unsupported(&'static str),
}

impl std::str::FromStr for Command {
    type Err = CommandError;

    /// ```
    /// use astral_harness::wan::{Command, Direction, Setting};
    /// use std::time::Duration;
    /// let c: Command = "up delay 30ms".parse().unwrap();
    /// assert_eq!(c, Command::Set(Direction::Up, Setting::Delay(Duration::from_millis(30))));
    /// assert!("delay".parse::<Command>().is_err());
    /// ```
    fn from_str(line: &str) -> Result<Command, CommandError> {
        let mut words = line.split_whitespace().peekable();
        let mut dir = Direction::Both;
        match words.peek().copied() {
            Some("up") => {
                dir = Direction::Up;
                words.next();
            }
            Some("down") => {
                dir = Direction::Down;
                words.next();
            }
            Some("both") => {
                words.next();
            }
            _ => {}
        }
        let verb = words.next().ok_or(CommandError::Empty)?;
        let rest: Vec<&str> = words.collect();
        // Values may hold a space ("1m 30s"): join what is left.
        let value = rest.join(" ");
        let need = |usage: &'static str| -> Result<&str, CommandError> {
            if value.is_empty() {
                Err(CommandError::Usage(usage))
            } else {
                Ok(value.as_str())
            }
        };
        let none = |c: Command| -> Result<Command, CommandError> {
            if !value.is_empty() {
                return Err(CommandError::Usage("this command takes no value"));
            }
            if dir != Direction::Both {
                return Err(CommandError::Usage(
                    "this command applies to both directions",
                ));
            }
            Ok(c)
        };
        let set = |s: Setting| Ok(Command::Set(dir, s));
        match verb {
            "delay" => set(Setting::Delay(parse_duration(need("delay DURATION")?)?)),
            "jitter" => set(Setting::Jitter(parse_duration(need("jitter DURATION")?)?)),
            "rate" => set(Setting::Rate(parse_rate(need("rate RATE|off")?)?)),
            "queue" => set(Setting::Queue(parse_size(need("queue SIZE")?)?)),
            "burst" => set(Setting::Burst(parse_size(need("burst SIZE")?)?)),
            "inflight" => {
                let v = need("inflight SIZE|off")?;
                set(Setting::Inflight(if v == "off" {
                    None
                } else {
                    Some(parse_size(v)?)
                }))
            }
            "loss" => set(Setting::Loss(parse_fraction(need("loss PERCENT")?)?)),
            "blackhole" => set(Setting::Blackhole(match need("blackhole on|drop|off")? {
                "on" | "hold" => Blackhole::Hold,
                "drop" => Blackhole::Drop,
                "off" => Blackhole::Off,
                _ => return Err(CommandError::Usage("blackhole on|drop|off")),
            })),
            "partition" => none(Command::Partition),
            "heal" => none(Command::Heal),
            "reset" => none(Command::Reset),
            "show" => none(Command::Show),
            "stats" => none(Command::Stats),
            other => Err(CommandError::Unknown(other.to_string())),
        }
    }
}

/// The parameters of both directions of one path.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct PathParams {
    /// Dialer → target, A → B.
    pub up: LinkParams,
    /// Target → dialer, B → A.
    pub down: LinkParams,
}

impl PathParams {
    /// The same parameters both ways.
    ///
    /// ```
    /// use astral_harness::wan::{LinkParams, PathParams};
    /// use std::time::Duration;
    /// let p = PathParams::symmetric(LinkParams::with_delay(Duration::from_millis(25)));
    /// assert_eq!(p.up, p.down); // RTT 50 ms
    /// ```
    pub fn symmetric(p: LinkParams) -> PathParams {
        PathParams {
            up: p.clone(),
            down: p,
        }
    }

    /// Applies a parameter command; `Ok(false)` for commands that change
    /// no parameter (`reset`, `show`, `stats`: the caller handles them).
    pub fn apply(&mut self, cmd: &Command) -> Result<bool, CommandError> {
        match cmd {
            Command::Set(dir, s) => {
                let links: Vec<&mut LinkParams> = match dir {
                    Direction::Up => vec![&mut self.up],
                    Direction::Down => vec![&mut self.down],
                    Direction::Both => vec![&mut self.up, &mut self.down],
                };
                for l in links {
                    match s {
                        Setting::Delay(d) => l.delay = *d,
                        Setting::Jitter(d) => l.jitter = *d,
                        Setting::Rate(r) => l.rate = *r,
                        Setting::Queue(q) => l.queue = *q,
                        Setting::Burst(b) => l.burst = *b,
                        Setting::Inflight(i) => l.inflight = *i,
                        Setting::Loss(p) => l.loss = *p,
                        Setting::Blackhole(b) => l.blackhole = *b,
                    }
                }
                Ok(true)
            }
            Command::Partition | Command::Heal => {
                let b = if *cmd == Command::Partition {
                    Blackhole::Hold
                } else {
                    Blackhole::Off
                };
                self.up.blackhole = b;
                self.down.blackhole = b;
                Ok(true)
            }
            Command::Reset | Command::Show | Command::Stats => Ok(false),
        }
    }

    /// Two lines for humans.
    pub fn describe(&self) -> String {
        format!("up   {}\ndown {}", self.up.describe(), self.down.describe())
    }
}

/// Commands at offsets from a start time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedule {
    /// `(offset, command)`, sorted by offset (stable for equal offsets).
    pub steps: Vec<(Duration, Command)>,
}

/// A schedule line that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule line {line}: {error}")]
pub struct ScheduleError {
    line: usize,
    error: String,
}

impl Schedule {
    /// Parses `OFFSET COMMAND` lines (`#` comments, blank lines allowed).
    ///
    /// ```
    /// use astral_harness::wan::{Command, Schedule};
    /// use std::time::Duration;
    /// let s = Schedule::parse("# fail over\n5s blackhole on\n10s heal\n").unwrap();
    /// assert_eq!(s.steps.len(), 2);
    /// assert_eq!(s.steps[1], (Duration::from_secs(10), Command::Heal));
    /// ```
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let mut steps = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            steps.push(
                Self::parse_step(line).map_err(|error| ScheduleError { line: i + 1, error })?,
            );
        }
        steps.sort_by_key(|(t, _)| *t);
        Ok(Schedule { steps })
    }

    /// Parses one `OFFSET COMMAND` step.
    ///
    /// ```
    /// use astral_harness::wan::Schedule;
    /// assert!(Schedule::parse_step("2s rate 8mbit").is_ok());
    /// assert!(Schedule::parse_step("rate 8mbit").is_err());
    /// ```
    pub fn parse_step(line: &str) -> Result<(Duration, Command), String> {
        let (at, cmd) = line
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("expected OFFSET COMMAND, got {line:?}"))?;
        let at = parse_duration(at).map_err(|e| e.to_string())?;
        let cmd: Command = cmd.parse().map_err(|e: CommandError| e.to_string())?;
        Ok((at, cmd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Rate;

    #[test]
    fn parses_every_command() {
        let ok = [
            (
                "delay 100ms",
                Command::Set(Direction::Both, Setting::Delay(Duration::from_millis(100))),
            ),
            (
                "down jitter 5ms",
                Command::Set(Direction::Down, Setting::Jitter(Duration::from_millis(5))),
            ),
            (
                "rate 8mbit",
                Command::Set(Direction::Both, Setting::Rate(Some(Rate::mbit(8)))),
            ),
            (
                "up rate off",
                Command::Set(Direction::Up, Setting::Rate(None)),
            ),
            (
                "queue 256kb",
                Command::Set(Direction::Both, Setting::Queue(256 << 10)),
            ),
            (
                "burst 3000",
                Command::Set(Direction::Both, Setting::Burst(3000)),
            ),
            (
                "inflight off",
                Command::Set(Direction::Both, Setting::Inflight(None)),
            ),
            (
                "loss 1%",
                Command::Set(Direction::Both, Setting::Loss(0.01)),
            ),
            (
                "blackhole on",
                Command::Set(Direction::Both, Setting::Blackhole(Blackhole::Hold)),
            ),
            (
                "up blackhole drop",
                Command::Set(Direction::Up, Setting::Blackhole(Blackhole::Drop)),
            ),
            (
                "blackhole off",
                Command::Set(Direction::Both, Setting::Blackhole(Blackhole::Off)),
            ),
            ("partition", Command::Partition),
            ("  heal  ", Command::Heal),
            ("reset", Command::Reset),
            ("show", Command::Show),
            ("stats", Command::Stats),
        ];
        for (text, want) in ok {
            assert_eq!(text.parse::<Command>().unwrap(), want, "{text}");
        }
        for bad in [
            "",
            "up",
            "delay",
            "delay fast",
            "blackhole maybe",
            "heal now",
            "up partition",
            "teleport 3",
        ] {
            assert!(bad.parse::<Command>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn apply_changes_the_right_direction() {
        let mut p = PathParams::default();
        p.apply(&"up delay 30ms".parse().unwrap()).unwrap();
        assert_eq!(p.up.delay, Duration::from_millis(30));
        assert_eq!(p.down.delay, Duration::ZERO);
        p.apply(&"delay 10ms".parse().unwrap()).unwrap();
        assert_eq!(
            (p.up.delay, p.down.delay),
            (Duration::from_millis(10), Duration::from_millis(10))
        );
        p.apply(&Command::Partition).unwrap();
        assert_eq!(
            (p.up.blackhole, p.down.blackhole),
            (Blackhole::Hold, Blackhole::Hold)
        );
        p.apply(&Command::Heal).unwrap();
        assert_eq!(
            (p.up.blackhole, p.down.blackhole),
            (Blackhole::Off, Blackhole::Off)
        );
        assert!(!p.apply(&Command::Show).unwrap());
        assert!(p.describe().contains("delay 10ms"));
    }

    #[test]
    fn schedule_sorts_and_reports_bad_lines() {
        let s = Schedule::parse("10s heal\n2s partition  # cut\n\n").unwrap();
        assert_eq!(s.steps[0], (Duration::from_secs(2), Command::Partition));
        let e = Schedule::parse("1s delay 5ms\n2s fly\n").unwrap_err();
        assert!(e.to_string().starts_with("schedule line 2"), "{e}");
    }
}
