//! `astral bench` end to end: a tiny run prints the machine, the load and
//! the commit, one row per contender with the same cipher, and its JSON
//! carries the same; bad options are refused before anything runs.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_astral");

/// Runs `astral ARGS` (at most two minutes); (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start astral");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("astral {args:?} did not finish in 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.success(),
        out.join().unwrap().unwrap(),
        err.join().unwrap().unwrap(),
    )
}

const SMALL: &[&str] = &[
    "bench",
    "--bytes",
    "1M",
    "--rounds",
    "20",
    "--reps",
    "1",
    "--sessions",
    "4",
    "--parallel",
    "2",
    "--handshakes",
    "2",
];

#[test]
fn table_names_machine_load_commit_and_every_contender() {
    let (ok, out, err) = run(SMALL);
    assert!(ok, "bench failed:\n{out}\n{err}");
    for want in [
        "2 CPUs",
        "load average (1/5/15 min): ",
        "commit: ",
        "ChaChaPoly",
        "1 repetition,",
        "== 1 session × 1 MiB",
        "== 4 sessions over one connection",
        "== 2 peers (connections)",
        "goodput MiB/s",
        "snow-tcp",
        "astral-tokio ",
    ] {
        if want == "2 CPUs" && std::thread::available_parallelism().map_or(0, |n| n.get()) != 2 {
            continue;
        }
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    assert!(!out.contains("MB/s") && !out.contains("target"), "{out}");
    assert!(!out.contains("1 repetitions"), "{out}");
}

#[test]
fn json_has_machine_commit_and_results() {
    let mut args = SMALL.to_vec();
    args.push("--json");
    let (ok, out, err) = run(&args);
    assert!(ok, "bench --json failed:\n{out}\n{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("stdout is one JSON document");
    assert!(doc["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert!(doc["machine"]["commit"].is_string());
    assert!(doc["machine"].get("loadavg").is_some());
    assert_eq!(
        doc["config"]["ciphers"],
        serde_json::json!(["chacha20-poly1305"])
    );
    let results = doc["results"].as_array().unwrap();
    let contenders: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|r| r["contender"].as_str().unwrap())
        .collect();
    assert!(contenders.contains("snow-tcp") && contenders.contains("astral-tokio"));
    assert!(results
        .iter()
        .all(|r| r["errors"].as_array().unwrap().is_empty()));
}

#[test]
fn bad_options_are_refused() {
    for (args, want) in [
        (&["bench", "--parallel", "0"][..], "at least 1"),
        (&["bench", "--bytes", "0"][..], "at least 1 byte"),
        (&["bench", "--reps", "0"][..], "reps"),
    ] {
        let (ok, _, err) = run(args);
        assert!(!ok, "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// `--default-flow` reaches the harness: the report says astral ran the
/// core's default flow control, and the JSON carries it (the variable alone
/// never reached `astral bench`, which takes flags).
#[test]
fn default_flow_is_a_flag_and_is_labelled() {
    // SMALL's sizes, one session only (the flag changes astral's window).
    let plain = [
        &SMALL[..7],
        &["--sessions", "1", "--parallel", "--handshakes", "0"],
    ]
    .concat();
    let plain = &plain[..];
    let with = [plain, &["--default-flow"]].concat();
    let (ok, out, err) = run(&with);
    assert!(ok, "bench failed:\n{out}\n{err}");
    assert!(
        out.contains("astral: the core's default flow control"),
        "no default-flow label in:\n{out}"
    );
    let (ok, out, err) = run(plain);
    assert!(ok, "bench failed:\n{out}\n{err}");
    assert!(
        !out.contains("the core's default flow control"),
        "labelled without the flag:\n{out}"
    );
    let json = [&with[..], &["--json"]].concat();
    let (ok, out, err) = run(&json);
    assert!(ok, "bench failed:\n{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(
        v.pointer("/config/astral_default_flow"),
        Some(&serde_json::Value::Bool(true)),
        "{out}"
    );
}
