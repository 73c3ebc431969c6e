//! The first ordering harness: bytes read one by one as a schedule over
//! the [`crate::Sim`] (links with latency). Kept for the regressions it
//! found; the fuzz targets now use the structure-aware [`super::schedule`].

use std::time::Duration;

use astral_core::Config;

use crate::{Action, FlowSpec, LinkConfig, Sim};

/// Interprets `data` as a schedule: which stream delivers its next chunk,
/// when migrations start and from which side, when time passes (and, with
/// `kills`, when streams die or new ones come up). Then lets the run
/// finish and checks the oracle. Never panics on any input.
pub fn run_ordering(data: &[u8], streams: usize, kills: bool) -> Result<(), String> {
    let mut it = data.iter().copied();
    let seed = u64::from(it.next().unwrap_or(0));
    let config = Config {
        recv_window: 2048,
        send_buffer: 2048,
        keepalive_interval: Duration::from_millis(300),
        dead_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    let mut sim = Sim::new(seed, 2, config);
    let trace = std::env::var("ASTRAL_SIM_TRACE").is_ok();
    sim.keep_log = trace;
    let streams = streams.clamp(2, 3);
    for i in 0..streams {
        let (a, b) = if i == 2 { (1, 0) } else { (0, 1) };
        sim.link(
            a,
            b,
            LinkConfig {
                latency: Duration::from_millis(1),
                bandwidth: None,
                buffer: 1 << 20,
                ..LinkConfig::default()
            },
        );
    }
    // Small flows with a small window: many records, many interleavings,
    // and fast enough for a fuzzer to try thousands of schedules.
    let up = u64::from(it.next().unwrap_or(7)) * 64;
    let down = u64::from(it.next().unwrap_or(3)) * 48;
    let mut f1 = FlowSpec::new(0, 1, up, down);
    f1.max_write = 1 + usize::from(it.next().unwrap_or(0)) * 8;
    let mut f2 = FlowSpec::new(1, 0, down / 2, up / 3);
    f2.max_read = 1 + usize::from(it.next().unwrap_or(0)) * 8;
    sim.open_flows(&[f1, f2]);
    let mut links = streams;
    while let Some(op) = it.next() {
        let arg = it.next().unwrap_or(0);
        match op % 8 {
            0..=3 => {
                let link = usize::from(arg) % links;
                sim.deliver_one(link, op % 2 == 1);
            }
            4 => {
                let flow = usize::from(arg & 1);
                let responder = arg & 2 != 0;
                let link = usize::from(arg >> 2) % links;
                sim.act(Action::Migrate {
                    flow,
                    responder,
                    link,
                });
            }
            5 => sim.advance(Duration::from_millis(u64::from(arg % 50))),
            6 if kills => {
                if arg & 0x80 != 0 && links < 6 {
                    sim.act(Action::Connect(
                        usize::from(arg & 1),
                        1 - usize::from(arg & 1),
                        LinkConfig::default(),
                    ));
                    links += 1;
                } else {
                    sim.act(Action::Kill(usize::from(arg) % links));
                }
            }
            _ => {
                let link = usize::from(arg) % links;
                for _ in 0..4 {
                    sim.deliver_one(link, arg & 1 == 0);
                }
            }
        }
    }
    // Heal: a fresh stream guarantees a path (the schedule may have let
    // every stream die of silence, and a dying stream's close may still
    // be in flight), then let the run finish on its own.
    sim.act(Action::Connect(0, 1, LinkConfig::default()));
    let settled = sim.run_until_done(Duration::from_secs(300));
    let result = if settled {
        sim.check()
    } else {
        Err(format!(
            "did not settle: {}",
            sim.check().err().unwrap_or_default()
        ))
    };
    if trace && result.is_err() {
        for (t, n, e) in &sim.log {
            eprintln!("{t:?} node{n} {e:?}");
        }
        for (i, node) in sim.nodes.iter().enumerate() {
            for st in node.streams() {
                eprintln!("node{i} {st:?}");
            }
            for se in node.sessions() {
                eprintln!("node{i} {se:?}");
            }
        }
    }
    result
}
