//! The library's contenders (raw TCP, snow over TCP, astral over
//! astral-tokio), as `astral bench` runs them:
//! `cargo bench -p astral-bench --bench loopback`. Options from the
//! environment: see `benches/env.rs`.

#[path = "env.rs"]
mod env;

fn main() {
    let env = env::Env::read(Vec::new());
    let rt = astral_bench::harness::runtime().expect("tokio runtime");
    let contenders = {
        let _in_runtime = rt.enter();
        astral_bench::harness::library_contenders(&env.opts).expect("building contenders")
    };
    env::run_and_print(&env, &rt, contenders);
}
