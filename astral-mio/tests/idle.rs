//! No busy loop: two nodes with a stream up and an open session, left
//! idle for 2 s, use (almost) no CPU. Alone in its test binary so that
//! process CPU time measures only these two event loops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use astral_core::{Config, Identity};
use astral_mio::{Event, Handle, MioNode};

/// CPU time (user + system) of the whole process.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass; zeroed is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage, RUSAGE_SELF is a valid target.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

struct Running {
    handle: Handle,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// A node in its own thread that accepts every query and counts its turns.
fn spawn(seed: u8, setup: impl FnOnce(&mut MioNode) + Send + 'static) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut node = MioNode::new(
            Identity::from_seed([seed; 32]),
            Config::default(),
            u64::from(seed),
        )
        .expect("node");
        setup(&mut node);
        tx.send(node.handle()).expect("test thread");
        while !stop2.load(Ordering::SeqCst) {
            node.run_once(None).expect("run_once");
            while let Some(ev) = node.poll_event() {
                if let Event::Query { session, .. } = ev {
                    node.accept_query(session).expect("accept");
                }
            }
        }
    });
    Running {
        handle: rx.recv().expect("node up"),
        stop,
        thread,
    }
}

#[test]
fn idle_node_uses_no_cpu() {
    let (atx, arx) = mpsc::channel();
    let a = spawn(1, move |n| {
        let addr = n
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen");
        atx.send((n.local_id(), addr)).expect("send");
    });
    let (a_id, addr) = arx.recv().expect("a");
    let b = spawn(2, |_| {});
    b.handle
        .call(move |n| n.connect(a_id, addr).expect("connect"))
        .expect("b alive");
    // Wait until the stream is up on both sides and a session is open.
    let session = loop {
        let up = |h: &Handle| h.call(|n| n.core().linked_peers().len()).expect("alive") == 1;
        if up(&a.handle) && up(&b.handle) {
            break b
                .handle
                .call(move |n| n.open_session(a_id, "idle").expect("open"))
                .expect("alive");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    loop {
        let open = b
            .handle
            .call(move |n| {
                n.session_info(session)
                    .is_some_and(|i| i.state.is_established())
            })
            .expect("alive");
        if open {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));

    let (a0, b0) = (
        a.handle.call(|_| thread_cpu()).expect("a"),
        b.handle.call(|_| thread_cpu()).expect("b"),
    );
    let p0 = process_cpu();
    std::thread::sleep(Duration::from_secs(2));
    let p1 = process_cpu();
    let (a1, b1) = (
        a.handle.call(|_| thread_cpu()).expect("a"),
        b.handle.call(|_| thread_cpu()).expect("b"),
    );
    let (da, db, dp) = (a1 - a0, b1 - b0, p1 - p0);
    eprintln!("idle 2 s with a stream up and a session open: process CPU {dp:?}, loop threads {da:?} + {db:?}");
    assert!(
        da < Duration::from_millis(20) && db < Duration::from_millis(20),
        "loops busy: {da:?} {db:?}"
    );
    assert!(dp < Duration::from_millis(50), "process busy: {dp:?}");

    for r in [a, b] {
        r.stop.store(true, Ordering::SeqCst);
        r.handle.wake().expect("wake");
        r.thread.join().expect("node thread");
    }
}
