//! A node registered into the application's own `mio::Poll` (token range,
//! `process` + `next_timeout`) next to the application's own socket,
//! talking to a node that owns its loop; a `Handle` command from another
//! thread wakes the shared poll.

use std::io::Write;
use std::time::{Duration, Instant};

use astral_core::{Config, Identity};
use astral_mio::{Event, MioNode};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

#[test]
fn node_in_the_applications_poll() {
    // Server: owns its loop, echoes one session.
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let mut node =
            MioNode::new(Identity::from_seed([9; 32]), Config::default(), 9).expect("node");
        let addr = node
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen");
        tx.send((node.local_id(), addr)).expect("send");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut closed = false;
        while !closed && Instant::now() < deadline {
            node.run_once(Some(Duration::from_millis(100)))
                .expect("run");
            while let Some(ev) = node.poll_event() {
                match ev {
                    Event::Query { session, .. } => node.accept_query(session).expect("accept"),
                    Event::Readable { session } => {
                        let mut s = node.session(session).expect("session");
                        let mut buf = [0u8; 1024];
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) => {
                                    s.finish();
                                    break;
                                }
                                Ok(n) => {
                                    s.write_all(&buf[..n]).expect("echo");
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    Event::SessionClosed { .. } => closed = true,
                    _ => {}
                }
            }
        }
        closed
    });
    let (server_id, addr) = rx.recv().expect("server up");

    // The application's poll: its own listener on token 0, the node on 100..200.
    let mut poll = Poll::new().expect("poll");
    let mut own = TcpListener::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    poll.registry()
        .register(&mut own, Token(0), Interest::READABLE)
        .expect("register");
    let mut node = MioNode::with_registry(
        poll.registry(),
        100..200,
        Identity::from_seed([8; 32]),
        Config::default(),
        8,
    )
    .expect("node");
    assert!(
        node.owns_token(Token(100)) && node.owns_token(Token(199)) && !node.owns_token(Token(0))
    );
    assert!(node.run_once(None).is_err(), "run_once needs an owned poll");
    node.connect(server_id, addr).expect("connect");
    let session = node.open_session(server_id, "echo").expect("open");
    node.session(session)
        .expect("session")
        .write_all(b"hello over the app's poll")
        .expect("write");
    node.session(session).expect("session").finish();

    // Another thread hands the loop work through the handle.
    let handle = node.handle();
    let poked = std::thread::spawn(move || handle.call(|n| n.local_id()).expect("call"));

    let mut events = Events::with_capacity(256);
    let mut got = Vec::new();
    let (mut eof, mut closed) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(eof && closed) {
        assert!(Instant::now() < deadline, "timed out");
        // Bounded so that a lost wake-up fails the test instead of hanging it.
        let cap = Duration::from_millis(200);
        let timeout = Some(node.next_timeout().map_or(cap, |t| t.min(cap)));
        poll.poll(&mut events, timeout).expect("poll");
        for ev in events.iter() {
            assert!(ev.token() == Token(0) || node.owns_token(ev.token()));
        }
        node.process(&events);
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::Readable { session: s } => {
                    let mut h = node.session(s).expect("session");
                    let mut buf = [0u8; 64];
                    loop {
                        match h.read(&mut buf) {
                            Ok(0) => {
                                eof = true;
                                break;
                            }
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
                Event::SessionClosed { session: s, reason } => {
                    assert_eq!(s, session);
                    assert_eq!(reason, astral_mio::CloseReason::Graceful);
                    closed = true;
                }
                _ => {}
            }
        }
    }
    assert_eq!(got, b"hello over the app's poll");
    // The other thread's call may not even have been sent yet (a loaded
    // machine): keep running the loop until it has been served.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !poked.is_finished() {
        assert!(Instant::now() < deadline, "handle call never served");
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .expect("poll");
        node.process(&events);
    }
    assert_eq!(poked.join().expect("poker"), node.local_id());
    assert!(
        server.join().expect("server"),
        "server saw the session close"
    );
}

#[test]
fn refused_connect_reports_stream_down() {
    // A port with nothing listening: bind, note the port, close.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut node = MioNode::new(Identity::from_seed([5; 32]), Config::default(), 5).expect("node");
    let peer = Identity::from_seed([6; 32]).node_id();
    let stream = node.connect(peer, addr).expect("connect starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "no StreamDown for a refused connect"
        );
        node.run_once(Some(Duration::from_millis(100)))
            .expect("run");
        if let Some(Event::StreamDown {
            stream: s, reason, ..
        }) = node.poll_event()
        {
            assert_eq!(s, stream);
            assert!(reason.to_string().contains("connect failed"), "{reason}");
            break;
        }
    }
    assert!(node.stream_addrs(stream).is_none());
}
