//! Coverage counters: what a run (or a whole randomised suite) really
//! exercised, so a suite can fail when its schedules stop reaching the hard
//! cases instead of passing while barely migrating.

use std::collections::BTreeMap;
use std::fmt;

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// What the simulator saw happen. Counted from action outcomes
        /// (successful calls only) and from the nodes' events; merged over
        /// the runs of a suite with [`Coverage::merge`].
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct Coverage {
            $( $(#[$doc])* pub $name: u64, )*
            /// Refused actions by kind and reason (e.g. `"migrate:
            /// TargetIsCurrent"`), to see why a schedule did less than it
            /// asked for.
            pub refusals: BTreeMap<String, u64>,
        }

        impl Coverage {
            /// Every counter with its name, in declaration order.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name), )*]
            }

            /// Adds `other`'s counts to these.
            pub fn merge(&mut self, other: &Coverage) {
                $( self.$name += other.$name; )*
                for (k, v) in &other.refusals {
                    *self.refusals.entry(k.clone()).or_default() += v;
                }
            }
        }
    };
}

counters! {
    /// Runs merged into these counts.
    runs,
    /// Actions applied (whatever their outcome).
    actions,
    /// Actions whose call failed or did not apply (typed error recorded).
    actions_refused,
    /// `migrate()` calls that succeeded.
    migrations_started,
    /// ... while either end of the session had bytes sent and not yet
    /// credited.
    migrations_with_bytes_in_flight,
    /// ... started by one end less than one RTT after the other end
    /// started one for the same session.
    concurrent_migrations,
    /// `migrate()` calls whose target stream was being drained (the core
    /// refuses them: bytes bound to a drained stream died with it).
    migrations_onto_draining,
    /// `Event::Migrated` reported (by either end, any cause).
    migrations_completed,
    /// `drain_stream()` calls that succeeded, from the dialer's end.
    drains_from_dialer,
    /// ... from the acceptor's end.
    drains_from_acceptor,
    /// Streams that ended `Drained` (counted once per link).
    drains_completed,
    /// Links killed at both ends.
    kills,
    /// Links killed at one end only (the other end must time out).
    one_sided_kills,
    /// Kills (either kind) while a session between the two nodes was
    /// migrating.
    kills_during_migration,
    /// Kills while a stream between the two nodes was draining.
    kills_during_drain,
    /// Kills while a session between the two nodes was recovering.
    kills_during_recovery,
    /// Links brought up during the run.
    connects,
    /// Streams closed by the application (`close_stream`).
    stream_closes,
    /// Partitions (both directions silent).
    partitions,
    /// One-way silences (half-open paths).
    silences,
    /// Heals.
    heals,
    /// Latency, jitter or bandwidth changes.
    link_changes,
    /// `Event::Recovering` reported.
    recoveries_started,
    /// `Event::Recovered` reported.
    recoveries_completed,
    /// ... of which retransmitted bytes.
    resumes_with_retransmit,
    /// Sessions opened by an action during the run.
    sessions_opened,
    /// Sessions reset by an action.
    resets,
    /// Directions half-closed early by an action.
    half_closes,
    /// Queries for a workload session the acceptor already had (refused;
    /// the oracle reports each as an error).
    duplicate_queries,
    /// Session ends reported as `Graceful`.
    closed_graceful,
    /// Session ends reported with another reason.
    closed_other,
    /// Times a receiver's auto-tuning grew a session's window (read from
    /// the session's statistics by its reader).
    window_growths,
    /// Times it shrank one (memory pressure, or a migration to a faster
    /// stream).
    window_shrinks,
}

impl Coverage {
    /// Checks `minimums` (counter name, least value): the error lists every
    /// counter below its threshold, and every unknown name.
    pub fn require(&self, minimums: &[(&str, u64)]) -> Result<(), String> {
        let counters = self.counters();
        let mut short = Vec::new();
        for (name, min) in minimums {
            match counters.iter().find(|(n, _)| n == name) {
                Some((_, v)) if v >= min => {}
                Some((_, v)) => short.push(format!("{name} = {v} < {min}")),
                None => short.push(format!("{name}: no such counter")),
            }
        }
        if short.is_empty() {
            Ok(())
        } else {
            Err(format!("coverage below threshold: {}", short.join(", ")))
        }
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, v) in self.counters() {
            writeln!(f, "  {name:<32} {v}")?;
        }
        for (why, v) in &self.refusals {
            writeln!(f, "  refused {why:<40} {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_names_every_short_counter() {
        let mut c = Coverage {
            kills: 3,
            ..Coverage::default()
        };
        c.merge(&Coverage {
            kills: 2,
            resets: 1,
            ..Coverage::default()
        });
        assert_eq!(c.kills, 5);
        assert!(c.require(&[("kills", 5), ("resets", 1)]).is_ok());
        let err = c
            .require(&[("kills", 6), ("resets", 1), ("bogus", 0)])
            .unwrap_err();
        assert!(err.contains("kills = 5 < 6"), "{err}");
        assert!(err.contains("bogus: no such counter"), "{err}");
        assert!(!err.contains("resets"), "{err}");
    }
}
