//! `astral connect ID@ADDR QUERY` opens its session with the dial: the
//! Query rides right behind the handshake's message 3 (docs/PROTOCOL.md,
//! "Handshake"), so the first echo comes back one round trip sooner than
//! when the session is opened after the dial completed.
//!
//! Counted in one-way delays through a forwarder that holds every chunk
//! for `D` each way (a path far slower than anything the processes do):
//! from the TCP connection to the echo of a line that was on stdin before
//! the session opened,
//!
//! - with the dial: msg 1, msg 2, msg 3 + Query, Response, the line, its
//!   echo: 6 D;
//! - opened after the dial (the old way): msg 1, msg 2, msg 3, the
//!   listener's first record (which completes `connect`), then Query,
//!   Response, the line, its echo: 8 D.
//!
//! The assertion sits between the two (below 7 D, and at least 6 D so the
//! forwarder is known to delay). It is a count of round trips, not a
//! performance figure: the processes' own time is a few ms against D.

mod common;

use std::time::{Duration, Instant};

use common::*;

const D: Duration = Duration::from_millis(250);

#[test]
fn connect_opens_its_session_with_the_dial_six_one_way_delays_to_the_first_echo() {
    let dir = Dir::new("opening");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let l = Listener::start(&ka, 1, &["--serve", "echo=echo"]);
    let fwd = Forwarder::start_delayed(l.addrs[0].parse().unwrap(), D);
    let mut c = Echo::spawn(&[
        "connect",
        "-k",
        kb.to_str().unwrap(),
        &fwd.target(&ida),
        "echo",
    ]);
    c.echo("first line");
    let done = Instant::now();
    let start = fwd.first_accepted().expect("connect dialed the forwarder");
    let took = done - start;
    let delays = took.as_secs_f64() / D.as_secs_f64();
    println!("first echo {took:?} after the TCP connection: {delays:.2} one-way delays of {D:?}");
    assert!(
        delays >= 6.0,
        "{delays:.2} one-way delays: the forwarder did not delay every hop?"
    );
    assert!(
        delays < 7.0,
        "{delays:.2} one-way delays ({took:?}) to the first echo: the session was not opened with the dial (6 expected, 8 when opened after it); stderr: {:#?}",
        c.log()
    );
    drop(c.stdin);
    let st = c.child.wait(Duration::from_secs(20));
    assert!(st.success(), "{st:?}");
}
