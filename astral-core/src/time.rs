//! Injected time. The core never reads a clock: every input carries `now`.

use std::fmt;
use std::ops::{Add, AddAssign};
use std::time::Duration;

/// A point in time, in nanoseconds since an epoch chosen by the driver.
///
/// Drivers map their clock onto it (e.g. `Instant` minus a start instant);
/// the simulator uses virtual time. Only differences between timestamps are
/// meaningful, which is what keeps the core deterministic.
///
/// ```
/// use astral_core::Timestamp;
/// use std::time::Duration;
/// let t = Timestamp::ZERO + Duration::from_millis(5);
/// assert_eq!(t.as_nanos(), 5_000_000);
/// assert_eq!(t.saturating_duration_since(Timestamp::ZERO), Duration::from_millis(5));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The largest representable time; used as "never".
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// A timestamp `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(nanos))
    }
}

impl AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Timestamp {
    /// `self - d`, or the epoch if that would be earlier.
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(nanos))
    }
}

/// Maps a driver's monotonic clock onto [`Timestamp`]s and back.
///
/// The core never reads a clock; a driver creates one `Clock` at start-up
/// and converts the `Instant`s it reads (`Instant::now()`, timer deadlines).
///
/// ```
/// use astral_core::Clock;
/// use std::time::{Duration, Instant};
/// let start = Instant::now();
/// let clock = Clock::new(start);
/// let t = clock.timestamp(start + Duration::from_millis(3));
/// assert_eq!(t.as_nanos(), 3_000_000);
/// assert_eq!(clock.instant(t), start + Duration::from_millis(3));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    /// A clock whose epoch ([`Timestamp::ZERO`]) is `origin`.
    pub fn new(origin: std::time::Instant) -> Clock {
        Clock { origin }
    }

    /// The timestamp of `at` (the epoch for instants before it).
    pub fn timestamp(&self, at: std::time::Instant) -> Timestamp {
        Timestamp::ZERO + at.saturating_duration_since(self.origin)
    }

    /// The instant of `t` (saturating far in the future for [`Timestamp::MAX`]).
    pub fn instant(&self, t: Timestamp) -> std::time::Instant {
        let d = Duration::from_nanos(t.as_nanos());
        self.origin
            .checked_add(d)
            .unwrap_or_else(|| self.origin + Duration::from_secs(86_400 * 365 * 30))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:.6}s", self.0 as f64 / 1e9)
    }
}
