//! The peer comparison: every contender of the library (raw TCP, snow over
//! TCP, astral over astral-tokio) plus yamux over the same snow baseline,
//! quinn with rustls, and astral over astral-mio, with the same cipher,
//! window and write size on every one.
//!
//! ```text
//! cargo bench -p astral-bench --features peers --bench compare            table on stdout
//! cargo bench -p astral-bench --features peers --bench compare -- --json  JSON on stdout
//! ```
//!
//! Options from the environment: see `benches/env.rs`. Adding a contender:
//! implement `astral_bench::contender::Transport` (a byte-stream transport;
//! all workloads are then shared) or `Contender` (anything else), and add
//! it to `contenders` below.

#[path = "../env.rs"]
mod env;
mod mio;
mod peers;

use astral_bench::contender::{streamed, Contender, Res};
use astral_bench::snow::SnowTcp;
use astral_bench::{Cipher, Options};

// The idle workload reads the live heap.
#[global_allocator]
static GLOBAL: astral_bench::heap::Counting = astral_bench::heap::Counting;

/// Every contender, in report order. Call inside the runtime.
fn contenders(o: &Options) -> Res<Vec<Box<dyn Contender>>> {
    let mut v: Vec<Box<dyn Contender>> = vec![streamed(astral_bench::tcp::RawTcp)];
    for c in o.ciphers() {
        let snow = SnowTcp::new(c)?;
        v.push(streamed(snow.clone()));
        v.push(streamed(peers::YamuxSnow::new(snow, o.window, o.sessions)));
        v.push(streamed(peers::Quinn::new(c, o.window)?));
        v.push(streamed(astral_bench::astral::AstralTokio::new(
            o.window, c,
        )));
        v.push(Box::new(mio::AstralMio::new(o.window, c)));
    }
    if o.extra_astral_aes() {
        v.push(streamed(astral_bench::astral::AstralTokio::new(
            o.window,
            Cipher::AesGcm,
        )));
        v.push(Box::new(mio::AstralMio::new(o.window, Cipher::AesGcm)));
    }
    Ok(v)
}

fn main() {
    let env = env::Env::read(vec![10_000, 100_000]);
    let rt = astral_bench::harness::runtime().expect("tokio runtime");
    let all = {
        let _in_runtime = rt.enter();
        contenders(&env.opts).expect("building contenders")
    };
    env::run_and_print(&env, &rt, all);
}
