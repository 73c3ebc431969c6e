//! `astral-hostile`: hostile clients against an `astral listen` process on
//! loopback, and whether a legitimate client still gets through.
//!
//! For each attack ([`attack`]) the harness starts a fresh listener (or
//! uses one given), reads its memory, starts the attack, waits until it is
//! at full size, then makes legitimate tries from another source address
//! while it lasts ("during"), stops it, lets the listener settle and tries
//! again ("after"). Each try ([`legit`]) must connect, open `echo` and get
//! 32 bytes back within the deadline (1 s by default).
//!
//! Loopback only: every address is in 127.0.0.0/8 (attackers 127.0.1.x and
//! up, the legitimate client 127.0.0.2).

pub mod attack;
pub mod legit;
pub mod listener;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use attack::{Attack, CounterSnapshot, Counters, Kind};
pub use legit::LegitResult;
pub use listener::{Control, Listener, Memory, NodeState, Target};

/// How each attack is run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// How long the attack holds after reaching full size.
    pub duration: Duration,
    /// Longest wait for the attack to reach full size.
    pub ramp_max: Duration,
    /// Legitimate tries during and after.
    pub tries: usize,
    /// Deadline of each try.
    pub try_timeout: Duration,
    /// Pause between stopping the attack and the tries "after".
    pub settle: Duration,
    /// Bytes of a well-behaved peer's bulk upload (to `discard`), timed
    /// before the attack and while it holds (`None`: not run).
    pub bulk: Option<u64>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            duration: Duration::from_secs(10),
            ramp_max: Duration::from_secs(30),
            tries: 100,
            try_timeout: Duration::from_secs(1),
            settle: Duration::from_secs(1),
            bulk: None,
        }
    }
}

/// One attack's results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttackReport {
    /// The attack and its size.
    pub attack: Attack,
    /// `attack.describe()`.
    pub load: String,
    /// Time from start to full size, s.
    pub ramp_s: f64,
    /// Whether it reached full size before `ramp_max`.
    pub ramped: bool,
    /// Listener memory before the attack.
    pub mem_before: Option<Memory>,
    /// Highest RSS seen while the attack ran (sampled every 100 ms), KiB.
    pub rss_peak_kib: Option<u64>,
    /// Listener memory after the attack stopped and the listener settled.
    pub mem_after: Option<Memory>,
    /// Legitimate tries while the attack held.
    pub legit_during: LegitResult,
    /// Legitimate tries after it stopped.
    pub legit_after: LegitResult,
    /// A well-behaved peer's bulk goodput before the attack, Mbit/s (or
    /// why it failed).
    pub bulk_before_mbit: Option<Result<f64, String>>,
    /// The same while the attack holds (right after it reached full size).
    pub bulk_during_mbit: Option<Result<f64, String>>,
    /// What the attacker did (as of the end of the attack).
    pub attacker: CounterSnapshot,
    /// What the listener held at the end of the attack, from its control
    /// socket (when the harness started it).
    pub held: Option<NodeState>,
    /// Whether the listener process was still alive at the end.
    pub listener_alive: bool,
}

/// Runs one attack against `target` (whose pid, if known, is sampled).
pub async fn run_attack(attack: &Attack, target: &Target, cfg: &RunConfig) -> AttackReport {
    let mem = || target.pid.and_then(listener::memory);
    let bulk_deadline = Duration::from_secs(120);
    let bulk_before_mbit = match cfg.bulk {
        Some(b) => Some(legit::bulk(target, legit::BULK_SEED, b, bulk_deadline).await),
        None => None,
    };
    let mem_before = mem();
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(attack::run(
        attack.clone(),
        target.clone(),
        stop_rx,
        counters.clone(),
    ));
    let (peak_stop, mut peak_rx) = watch::channel(false);
    let sampler = {
        let pid = target.pid;
        tokio::spawn(async move {
            let mut peak = None::<u64>;
            loop {
                if let Some(m) = pid.and_then(listener::memory) {
                    peak = Some(peak.map_or(m.rss_kib, |p| p.max(m.rss_kib)));
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = peak_rx.changed() => return peak,
                }
            }
        })
    };

    let start = Instant::now();
    let mut ramped = false;
    while start.elapsed() < cfg.ramp_max {
        if attack.ready(&counters) {
            ramped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp_s = start.elapsed().as_secs_f64();
    let hold_until = Instant::now() + cfg.duration;
    let bulk_during_mbit = match cfg.bulk {
        Some(b) => Some(legit::bulk(target, legit::BULK_SEED + 1, b, bulk_deadline).await),
        None => None,
    };
    let legit_during = legit::tries(
        target,
        cfg.tries,
        cfg.try_timeout,
        Some(hold_until),
        legit::DURING_SEED,
    )
    .await;
    tokio::time::sleep_until(hold_until.into()).await;
    let attacker = counters.snapshot();
    let held = match &target.control {
        Some(c) => c.node_state().await,
        None => None,
    };
    stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    let _ = peak_stop.send(true);
    let rss_peak_kib = sampler.await.ok().flatten();
    tokio::time::sleep(cfg.settle).await;
    let legit_after =
        legit::tries(target, cfg.tries, cfg.try_timeout, None, legit::AFTER_SEED).await;
    let mem_after = mem();
    AttackReport {
        load: attack.describe(),
        attack: attack.clone(),
        ramp_s,
        ramped,
        mem_before,
        rss_peak_kib,
        mem_after,
        legit_during,
        legit_after,
        bulk_before_mbit,
        bulk_during_mbit,
        attacker,
        held,
        listener_alive: target.pid.is_none_or(|p| listener::memory(p).is_some()),
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// The reports as a table (one line each, then the failure reasons).
pub fn table(reports: &[AttackReport]) -> String {
    let mut s = format!(
        "{:<24} {:<36} {:>22} {:<22} {:<22} {:<34} {}\n",
        "attack",
        "load",
        "RSS MiB before/peak/after",
        "legit during",
        "legit after",
        "listener held (end of attack)",
        "attacker"
    );
    for r in reports {
        let rss = format!(
            "{} / {} / {}",
            mib(r.mem_before.map(|m| m.rss_kib)),
            mib(r.rss_peak_kib),
            mib(r.mem_after.map(|m| m.rss_kib))
        );
        s += &format!(
            "{:<24} {:<36} {:>22} {:<22} {:<22} {:<34} {}{}{}\n",
            r.attack.name,
            r.load,
            rss,
            r.legit_during.cell(),
            r.legit_after.cell(),
            r.held.as_ref().map_or("-".into(), NodeState::cell),
            r.attacker.summary(),
            if r.ramped {
                ""
            } else {
                " (did not reach full size)"
            },
            if r.listener_alive {
                ""
            } else {
                " LISTENER DIED"
            },
        );
    }
    let mut notes = String::new();
    let mut bulk = String::new();
    for r in reports {
        if let (Some(b), Some(d)) = (&r.bulk_before_mbit, &r.bulk_during_mbit) {
            let show = |x: &Result<f64, String>| match x {
                Ok(m) => format!("{m:.1} Mbit/s"),
                Err(e) => format!("failed ({e})"),
            };
            let ratio = match (b, d) {
                (Ok(b), Ok(d)) if *b > 0.0 => format!(" = {:.0} %", d / b * 100.0),
                _ => String::new(),
            };
            bulk += &format!(
                "  {} well-behaved bulk: before {}, during {}{ratio}\n",
                r.attack.name,
                show(b),
                show(d)
            );
        }
        for (phase, l) in [("during", &r.legit_during), ("after", &r.legit_after)] {
            for (why, n) in &l.failures {
                notes += &format!("  {} legit {phase}: {n}× {why}\n", r.attack.name);
            }
        }
        for (why, n) in &r.attacker.failures {
            notes += &format!("  {} attacker: {n}× {why}\n", r.attack.name);
        }
    }
    if !notes.is_empty() {
        s += "failures:\n";
        s += &notes;
    }
    s += &bulk;
    s
}
