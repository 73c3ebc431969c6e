//! Options from the environment, shared by the `loopback` and `compare`
//! benches (`cargo bench` takes no flags of ours).
//!
//! ```text
//! BENCH_BYTES=256M BENCH_SESSIONS=64 BENCH_PARALLEL=2,4 BENCH_WRITE=64K
//! BENCH_WINDOW=256K BENCH_ROUNDS=N BENCH_HANDSHAKES=N BENCH_REPS=N
//! BENCH_AES=1 (an AES-GCM row for every contender) BENCH_ONLY=snow,astral
//! BENCH_ASTRAL_AES_ROW=0 (no separate astral AES-GCM row)
//! BENCH_IDLE=10K,100K (compare only) BENCH_PINNED=0 (compare only)
//! BENCH_QUICK=1 (64 MiB, 2,000 rounds, 100 set-ups, 1 repetition)
//! BENCH_JSON=1 (or `-- --json`): JSON on stdout, the table on stderr
//! BENCH_DEFAULT_FLOW=1 (astral with the core's default, auto-tuned flow
//! control instead of the fixed BENCH_WINDOW)
//! ```
//!
//! Without cargo bench's `--bench` flag (`cargo test --benches`) a bench is
//! a smoke test: 1 MiB, 50 rounds, 5 set-ups, 1 repetition.

use astral_bench::Options;

/// What the environment asks for, and the bench's mode.
pub struct Env {
    pub opts: Options,
    pub only: Vec<String>,
    pub json: bool,
    pub smoke: bool,
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A count with an optional decimal K suffix (10K = 10,000).
fn parse_count(s: &str) -> Option<usize> {
    let s = s.trim();
    match s.strip_suffix(['k', 'K']) {
        Some(n) => n.trim().parse::<usize>().ok()?.checked_mul(1000),
        None => s.parse().ok(),
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn size(name: &str, default: u64) -> u64 {
    var(name).map_or(default, |v| {
        parse_size(&v).unwrap_or_else(|| panic!("{name}={v:?}: expected e.g. 64K, 256M, 1G"))
    })
}

fn counts(name: &str, default: Vec<usize>) -> Vec<usize> {
    match var(name) {
        None => default,
        Some(v) => v
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_count(s).unwrap_or_else(|| panic!("{name}={v:?}: e.g. 2,4 or 10K")))
            .filter(|&n| n > 0)
            .collect(),
    }
}

fn flag(name: &str) -> bool {
    var(name).is_some_and(|v| v != "0")
}

impl Env {
    /// `idle`: the idle-session counts of a full run (empty: none).
    pub fn read(idle: Vec<usize>) -> Env {
        let smoke = !std::env::args().any(|a| a == "--bench");
        let quick = flag("BENCH_QUICK");
        let d = Options::default();
        let (bytes, rounds, handshakes, reps, idle) = if smoke {
            (
                1 << 20,
                50,
                5,
                1,
                if idle.is_empty() { vec![] } else { vec![100] },
            )
        } else if quick {
            (64 << 20, 2_000, 100, 1, idle.into_iter().take(1).collect())
        } else {
            (d.bytes, d.rounds, d.handshakes, d.reps, idle)
        };
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let opts = Options {
            bytes: size("BENCH_BYTES", bytes),
            sessions: to_usize(size("BENCH_SESSIONS", d.sessions as u64)).max(1),
            parallel: counts("BENCH_PARALLEL", d.parallel),
            write_size: to_usize(size("BENCH_WRITE", d.write_size as u64)).max(1),
            window: u32::try_from(size("BENCH_WINDOW", u64::from(d.window)))
                .expect("BENCH_WINDOW fits in u32"),
            rounds: to_usize(size("BENCH_ROUNDS", rounds as u64)).max(1),
            handshakes: to_usize(size("BENCH_HANDSHAKES", handshakes as u64)),
            reps: to_usize(size("BENCH_REPS", reps as u64)).max(1),
            aes: flag("BENCH_AES"),
            astral_aes_row: var("BENCH_ASTRAL_AES_ROW").is_none_or(|v| v != "0"),
            idle: counts("BENCH_IDLE", idle),
            pinned_echo: var("BENCH_PINNED").is_none_or(|v| v != "0"),
            // BENCH_NOTSENT_LOWAT: bytes, or 0 for the system default.
            notsent_lowat: match var("BENCH_NOTSENT_LOWAT") {
                Some(_) => Some(size("BENCH_NOTSENT_LOWAT", 0))
                    .filter(|&b| b > 0)
                    .map(|b| u32::try_from(b).expect("BENCH_NOTSENT_LOWAT fits in u32")),
                None => d.notsent_lowat,
            },
            default_flow: flag("BENCH_DEFAULT_FLOW"),
        };
        if let Err(e) = opts.validate() {
            panic!("bench options: {e}");
        }
        Env {
            opts,
            only: var("BENCH_ONLY")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            // `cargo bench -- --json` also passes `--bench`: ignore unknown args.
            json: flag("BENCH_JSON") || std::env::args().skip(1).any(|a| a == "--json"),
            smoke,
        }
    }

    /// Whether a contender named `name` is selected by `BENCH_ONLY`.
    pub fn selected(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| name.contains(o.as_str()))
    }
}

/// Runs `contenders` and prints the report: the table on stdout, or JSON
/// on stdout and the table on stderr. Progress goes to stderr.
pub fn run_and_print(
    env: &Env,
    rt: &tokio::runtime::Runtime,
    contenders: Vec<Box<dyn astral_bench::contender::Contender>>,
) {
    let contenders: Vec<_> = contenders
        .into_iter()
        .filter(|c| env.selected(&c.name()))
        .collect();
    let report = astral_bench::harness::run(&env.opts, &contenders, rt, &mut |step| match &step
        .outcome
    {
        None => {}
        Some(Ok(line)) => eprintln!(
            "  [{}/{}] rep {} {:<20} {:<16} {line}",
            step.index,
            step.total,
            step.rep + 1,
            step.workload.key(),
            step.contender
        ),
        Some(Err(e)) => eprintln!(
            "  [{}/{}] rep {} {:<20} {:<16} ERROR {e}",
            step.index,
            step.total,
            step.rep + 1,
            step.workload.key(),
            step.contender
        ),
    });
    if env.json {
        eprint!("{}", report.table());
        println!("{:#}", report.to_json());
    } else {
        print!("{}", report.table());
    }
    if env.smoke {
        // A smoke run is a test: every step must have worked.
        let errors: Vec<&String> = report
            .cells
            .iter()
            .flatten()
            .flat_map(|c| &c.errors)
            .collect();
        assert!(errors.is_empty(), "smoke run failed: {errors:?}");
    }
}
