//! Graceful departure with the real binary (issue 12.2): Ctrl-C or SIGTERM
//! on `listen` or `connect` shuts the node down (its Goodbye reaches the
//! peer), the signalled side exits 130 / 143, and the other side's stdio
//! session ends at once: it exits within a second saying that the peer
//! left, instead of after the recovery timeout ("peer unreachable").

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The peer's exit must follow the signalled side's within this.
const WITHIN: Duration = Duration::from_secs(1);

/// A `listen --stdio q` and a `connect … q` with a session up between them
/// (the connect's stdin stays open, so nothing ends it but a signal).
fn pair(dir: &Dir) -> (Listener, Connect) {
    let (ka, ida) = keygen(dir, "a.key");
    let (kb, _) = keygen(dir, "b.key");
    let control = dir.path("c.sock");
    let l = Listener::start(
        &ka,
        1,
        &["--stdio", "q", "--control", control.to_str().unwrap()],
    );
    let c = Connect::spawn(&[
        "connect",
        "-k",
        kb.to_str().unwrap(),
        &format!("{ida}@{}", l.addrs[0]),
        "q",
    ]);
    // The control socket is created after the "listening on" lines.
    wait_for(Duration::from_secs(20), || control.exists().then_some(()));
    wait_for(Duration::from_secs(20), || {
        (ctl(&control, &["sessions"])
            .as_array()
            .map_or(0, |a| a.len())
            == 1)
            .then_some(())
    });
    (l, c)
}

#[test]
fn a_signalled_connect_says_goodbye_and_the_listener_exits_at_once() {
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let dir = Dir::new(&format!("bye-c-{sig}"));
        let (l, mut c) = pair(&dir);
        let t0 = Instant::now();
        c.child.signal(sig);
        let st = c.child.wait(Duration::from_secs(10));
        let signalled_exit = t0.elapsed();
        assert_eq!(st.code(), Some(code), "connect on SIG{sig}");
        let (lst, _, log) = l.finish(Duration::from_secs(10));
        let peer_exit = t0.elapsed();
        println!(
            "SIG{sig} on connect: it exited after {signalled_exit:?}, the listener after {peer_exit:?}"
        );
        assert_eq!(lst.code(), Some(1), "{log}");
        assert!(log.contains("the peer left"), "{log}");
        assert!(
            peer_exit <= signalled_exit + WITHIN,
            "listener exited {peer_exit:?} after the signal (connect: {signalled_exit:?}): {log}"
        );
    }
}

#[test]
fn a_signalled_listener_says_goodbye_and_the_connect_exits_at_once() {
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let dir = Dir::new(&format!("bye-l-{sig}"));
        let (mut l, c) = pair(&dir);
        let t0 = Instant::now();
        l.child.signal(sig);
        let st = l.child.wait(Duration::from_secs(10));
        let signalled_exit = t0.elapsed();
        assert_eq!(st.code(), Some(code), "listen on SIG{sig}");
        let mut c = c;
        let cst = c.child.wait(Duration::from_secs(10));
        let peer_exit = t0.elapsed();
        let err = String::from_utf8_lossy(&c.err.recv().unwrap()).into_owned();
        println!(
            "SIG{sig} on listen: it exited after {signalled_exit:?}, the connect after {peer_exit:?}"
        );
        assert_eq!(cst.code(), Some(1), "{err}");
        assert!(err.contains("the peer left"), "{err}");
        assert!(
            peer_exit <= signalled_exit + WITHIN,
            "connect exited {peer_exit:?} after the signal (listen: {signalled_exit:?}): {err}"
        );
    }
}
