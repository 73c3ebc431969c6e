//! Structure-aware schedules for the ordering fuzz targets.
//!
//! A fuzz input is decoded with `arbitrary` into a [`Schedule`]: a
//! [`Setup`] (two or three streams, the window, up to three sessions) and a
//! list of [`Op`]s (deliver the next record of a link direction, let time
//! pass, migrate or drain from either side, kill a stream at both ends or at
//! one, connect a new one, reset, finish or close a session). Every mutation
//! of the input is again a valid schedule, so libFuzzer explores schedules
//! instead of failing to parse them. The schedule runs on the explorer's
//! [`World`] (real engines, every record a separate delivery); then the
//! world settles and the same oracle as the explorer's checks it.

use arbitrary::{Arbitrary, Unstructured};

use crate::explore::known::Situation;
use crate::explore::world::Counters;
use crate::explore::{Action, FlowPlan, KnownDefects, World, WorldConfig};

/// The ordering fuzz targets: which operations a schedule may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Deliveries, time, migrations from either side, session ends.
    Migration,
    /// As `Migration`, plus kills (both ends or one), new streams.
    Recovery,
    /// Everything: drains from either side with migrations and kills.
    Drain,
}

impl Target {
    /// All targets.
    pub const ALL: [Target; 3] = [Target::Migration, Target::Recovery, Target::Drain];

    /// The cargo-fuzz target name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Migration => "migration_ordering",
            Target::Recovery => "recovery_ordering",
            Target::Drain => "drain_ordering",
        }
    }

    /// Whether this target runs `op`.
    pub fn allows(self, op: &Op) -> bool {
        match op {
            Op::Kill { .. } | Op::KillOneSide { .. } | Op::Connect { .. } => {
                self != Target::Migration
            }
            Op::Drain { .. } => self == Target::Drain,
            _ => true,
        }
    }
}

/// A whole fuzz input: a [`Setup`], then operations until the input ends.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The world's shape.
    pub setup: Setup,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// Window sizes a setup may choose.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Window {
    /// 64 bytes: a record per 64 bytes, many credits.
    W64,
    /// 256 bytes.
    W256,
    /// 1 KiB.
    W1K,
    /// 4 KiB.
    W4K,
}

/// The world's shape.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct Setup {
    /// Three initial streams instead of two.
    pub third_stream: bool,
    /// Window (and send buffer) per session and direction.
    pub window: Window,
    /// 1 + `flows % 3` sessions are used.
    pub flows: u8,
    /// The sessions.
    pub flow: [FlowSetup; 3],
}

/// One session of the setup.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct FlowSetup {
    /// B opens it (else A).
    pub opened_by_b: bool,
    /// Bytes the opener sends (`% 8192`).
    pub up: u16,
    /// Bytes the acceptor sends (`% 8192`).
    pub down: u16,
    /// Write size: `1 + write × window / 256`.
    pub write: u8,
    /// Hold the Fins until the settle (the session stays open throughout).
    pub hold_fin: bool,
}

/// One operation. Link and flow numbers wrap around what exists. Decoded
/// from an opcode byte that makes deliveries common and the operations
/// that end things (kills, resets, long waits) rare, so that a schedule of a
/// few hundred operations still moves data between its events.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// The next record on `link` towards A (or B).
    Deliver {
        /// Link number.
        link: u8,
        /// Towards B.
        to_b: bool,
    },
    /// Up to 16 records on one link direction.
    DeliverMany {
        /// Link number.
        link: u8,
        /// Towards B.
        to_b: bool,
        /// `1 + count % 16` records.
        count: u8,
    },
    /// Everything in flight, until quiet.
    DeliverAll,
    /// Time passes.
    Wait {
        /// Milliseconds.
        millis: u16,
    },
    /// Time jumps to the next timer.
    AdvanceToTimer,
    /// A migration.
    Migrate {
        /// Flow number.
        flow: u8,
        /// Started by B.
        by_b: bool,
        /// Target link number.
        link: u8,
    },
    /// A drain.
    Drain {
        /// Link number.
        link: u8,
        /// Started by B.
        by_b: bool,
    },
    /// Both ends die.
    Kill {
        /// Link number.
        link: u8,
    },
    /// One end dies (half-open).
    KillOneSide {
        /// Link number.
        link: u8,
        /// B's end.
        b_side: bool,
    },
    /// A new stream (real handshake).
    Connect {
        /// B dials.
        by_b: bool,
    },
    /// The application resets a session.
    Reset {
        /// Flow number.
        flow: u8,
        /// At B.
        by_b: bool,
    },
    /// The application finishes its direction now.
    Finish {
        /// Flow number.
        flow: u8,
        /// At B.
        by_b: bool,
    },
    /// The application closes the session gracefully.
    Close {
        /// Flow number.
        flow: u8,
        /// At B.
        by_b: bool,
    },
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Op> {
        let code: u8 = u.arbitrary()?;
        let (small, b): (u8, bool) = (u.arbitrary()?, u.arbitrary()?);
        Ok(match code {
            0..=119 => Op::Deliver {
                link: small,
                to_b: b,
            },
            120..=149 => Op::DeliverMany {
                link: small,
                to_b: b,
                count: u.arbitrary()?,
            },
            150..=157 => Op::DeliverAll,
            // Mostly below the credit delay and far below the timeouts.
            158..=169 => Op::Wait {
                millis: u16::from(small) * 4,
            },
            170..=172 => Op::Wait {
                millis: u.arbitrary()?,
            },
            173..=176 => Op::AdvanceToTimer,
            177..=201 => Op::Migrate {
                flow: small,
                by_b: b,
                link: u.arbitrary()?,
            },
            202..=213 => Op::Drain {
                link: small,
                by_b: b,
            },
            214..=221 => Op::Kill { link: small },
            222..=226 => Op::KillOneSide {
                link: small,
                b_side: b,
            },
            227..=235 => Op::Connect { by_b: b },
            236..=240 => Op::Reset {
                flow: small,
                by_b: b,
            },
            241..=247 => Op::Finish {
                flow: small,
                by_b: b,
            },
            _ => Op::Close {
                flow: small,
                by_b: b,
            },
        })
    }
}

impl Schedule {
    /// Decodes a fuzz input: every input decodes, and every byte after the
    /// setup belongs to an operation (`arbitrary`'s own `Vec` decoding
    /// spends a "one more?" byte per element, which ends random or mutated
    /// inputs after a couple of operations).
    pub fn decode(data: &[u8]) -> Option<Schedule> {
        let mut u = Unstructured::new(data);
        let setup = Setup::arbitrary(&mut u).ok()?;
        let mut ops = Vec::new();
        while !u.is_empty() {
            ops.push(Op::arbitrary(&mut u).ok()?);
        }
        Some(Schedule { setup, ops })
    }

    /// The world the setup describes.
    pub fn world(&self) -> WorldConfig {
        let s = &self.setup;
        let window: u32 = match s.window {
            Window::W64 => 64,
            Window::W256 => 256,
            Window::W1K => 1024,
            Window::W4K => 4096,
        };
        let flows = s.flow[..1 + usize::from(s.flows % 3)]
            .iter()
            .map(|f| FlowPlan {
                opener: usize::from(f.opened_by_b),
                up: u64::from(f.up % 8192),
                down: u64::from(f.down % 8192),
                write: 1 + usize::from(f.write) * window as usize / 256,
                hold_fin: f.hold_fin,
            })
            .collect();
        WorldConfig::small(2 + usize::from(s.third_stream), window, flows)
    }
}

/// What a schedule did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    /// Operations applied (after the target's and the exclusions' filter).
    pub applied: usize,
    /// Operations left out by the known-defect exclusions.
    pub excluded: usize,
    /// Operations the engine refused (e.g. a migration to an unconfirmed
    /// stream).
    pub refused: usize,
    /// The world's event counters at the end.
    pub counters: Counters,
}

/// Runs the schedule in `data` for `target`: the operations the target
/// allows and `known` does not exclude, then the settle and the oracle.
/// `Err` describes the violation (the fuzz target panics with it).
pub fn run(target: Target, data: &[u8], known: KnownDefects) -> Result<RunStats, String> {
    let Some(schedule) = Schedule::decode(data) else {
        return Ok(RunStats::default());
    };
    run_schedule(target, &schedule, known)
}

/// The readable trace of the schedule in `data` (actions, records, events,
/// the settle and what the oracle found), for a crash report.
pub fn render(target: Target, data: &[u8], known: KnownDefects) -> String {
    let Some(schedule) = Schedule::decode(data) else {
        return "(no schedule)".into();
    };
    let mut w = World::with_tracing(&schedule.world(), true);
    let result = drive(&mut w, target, &schedule, known);
    let mut out = format!("{:?}\n{:#?}\n", schedule.setup, schedule.world().flows);
    out.push_str(&w.trace.join("\n"));
    if let Err(e) = result {
        out.push_str(&format!("\n!! {e}"));
    }
    out
}

/// [`run`] for a decoded schedule.
pub fn run_schedule(
    target: Target,
    schedule: &Schedule,
    known: KnownDefects,
) -> Result<RunStats, String> {
    let mut w = World::new(&schedule.world());
    drive(&mut w, target, schedule, known)
}

fn drive(
    w: &mut World,
    target: Target,
    schedule: &Schedule,
    known: KnownDefects,
) -> Result<RunStats, String> {
    let mut stats = RunStats::default();
    for (i, op) in schedule.ops.iter().enumerate() {
        if !target.allows(op) {
            continue;
        }
        for action in actions(w, op) {
            if known.any() && known.excludes(&Situation::of(w), &action) {
                stats.excluded += 1;
                continue;
            }
            match w.apply(action) {
                crate::explore::Outcome::Done => stats.applied += 1,
                crate::explore::Outcome::Refused(_) => stats.refused += 1,
                crate::explore::Outcome::Nothing => {}
            }
            if !w.violations.is_empty() {
                return Err(format!("after operation {i} ({op:?}): {:#?}", w.violations));
            }
        }
        if matches!(op, Op::DeliverAll) {
            w.deliver_all();
        }
    }
    if w.tracing {
        w.trace.push("» settle".into());
    }
    let settled = w.settle_and_check();
    let mut problems = settled.problems;
    problems.extend(settled.crossed);
    stats.counters = w.counters;
    if problems.is_empty() {
        Ok(stats)
    } else {
        Err(format!("after the settle time: {problems:#?}"))
    }
}

/// The world actions of one operation, with its numbers wrapped around the
/// links and flows that exist now.
fn actions(w: &World, op: &Op) -> Vec<Action> {
    let link = |l: u8| usize::from(l) % w.links.len().max(1);
    let flow = |f: u8| usize::from(f) % w.flows.len().max(1);
    let node = |b: bool| usize::from(b);
    match *op {
        Op::Deliver { link: l, to_b } => vec![Action::Deliver {
            link: link(l),
            to: node(to_b),
        }],
        Op::DeliverMany {
            link: l,
            to_b,
            count,
        } => vec![
            Action::Deliver {
                link: link(l),
                to: node(to_b),
            };
            1 + usize::from(count % 16)
        ],
        // Done by `World::deliver_all` (the number of records is not known
        // in advance).
        Op::DeliverAll => Vec::new(),
        Op::Wait { millis } => vec![Action::Wait {
            millis: u32::from(millis),
        }],
        Op::AdvanceToTimer => vec![Action::AdvanceToTimer],
        Op::Migrate {
            flow: f,
            by_b,
            link: l,
        } => vec![Action::Migrate {
            flow: flow(f),
            node: node(by_b),
            link: link(l),
        }],
        Op::Drain { link: l, by_b } => vec![Action::Drain {
            link: link(l),
            node: node(by_b),
        }],
        Op::Kill { link: l } => vec![Action::Kill { link: link(l) }],
        Op::KillOneSide { link: l, b_side } => vec![Action::KillOneSide {
            link: link(l),
            node: node(b_side),
        }],
        Op::Connect { by_b } => vec![Action::Connect { dialer: node(by_b) }],
        Op::Reset { flow: f, by_b } => vec![Action::Reset {
            flow: flow(f),
            node: node(by_b),
        }],
        Op::Finish { flow: f, by_b } => vec![Action::Finish {
            flow: flow(f),
            node: node(by_b),
        }],
        Op::Close { flow: f, by_b } => vec![Action::Close {
            flow: flow(f),
            node: node(by_b),
        }],
    }
}
