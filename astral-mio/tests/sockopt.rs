//! `Config::tcp_notsent_lowat` reaches the kernel on dialed and accepted
//! streams (Linux: read back with getsockopt from the process's own
//! sockets).
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use astral_core::{Config, Identity};
use astral_mio::{Event, MioNode};

/// Two nodes, one stream between them, up (both ends saw `StreamUp`);
/// returns the nodes and the listener's port.
fn pair(config: Config) -> (MioNode, MioNode, u16) {
    let mut a = MioNode::new(Identity::from_seed([1; 32]), config.clone(), 1).expect("node a");
    let mut b = MioNode::new(Identity::from_seed([2; 32]), config, 2).expect("node b");
    let addr = b
        .listen("127.0.0.1:0".parse().expect("addr"))
        .expect("listen");
    a.connect(b.local_id(), addr).expect("connect");
    let (mut up_a, mut up_b) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(up_a && up_b) {
        assert!(Instant::now() < deadline, "stream did not come up");
        a.run_once(Some(Duration::from_millis(5))).expect("run a");
        b.run_once(Some(Duration::from_millis(5))).expect("run b");
        while let Some(ev) = a.poll_event() {
            up_a |= matches!(ev, Event::StreamUp { .. });
        }
        while let Some(ev) = b.poll_event() {
            up_b |= matches!(ev, Event::StreamUp { .. });
        }
    }
    (a, b, addr.port())
}

#[test]
fn dialed_and_accepted_streams_get_the_configured_bound() {
    let cfg = Config {
        tcp_notsent_lowat: Some(96 * 1024),
        ..Config::default()
    };
    let (_a, _b, port) = pair(cfg);
    let ends = lowat_of_sockets_on(port);
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert!(
        ends.iter().any(|&(local, _)| local == port),
        "accepted: {ends:?}"
    );
    assert!(
        ends.iter().any(|&(local, _)| local != port),
        "dialed: {ends:?}"
    );
    for (local, v) in &ends {
        assert_eq!(*v, 96 * 1024, "socket on local port {local}");
    }
}

#[test]
fn the_default_is_128_kib_and_none_leaves_the_socket_unset() {
    let (_a, _b, port) = pair(Config::default());
    let ends = lowat_of_sockets_on(port);
    assert_eq!(ends.len(), 2, "{ends:?}");
    for (_, v) in ends {
        assert_eq!(v, 128 * 1024);
    }
    let cfg = Config {
        tcp_notsent_lowat: None,
        ..Config::default()
    };
    let (_a, _b, port) = pair(cfg);
    let ends = lowat_of_sockets_on(port);
    assert_eq!(ends.len(), 2, "{ends:?}");
    for (_, v) in ends {
        // Linux reads back 0 for "not set on this socket": the system-wide
        // net.ipv4.tcp_notsent_lowat (unbounded by default) applies.
        assert_eq!(v, 0, "None must leave the socket unset");
    }
}

/// `TCP_NOTSENT_LOWAT` of every TCP socket of this process with `port` as
/// its local or remote port: (local port, value). Reads the process's own
/// descriptor table, so it sees the sockets the driver dialed and accepted.
#[cfg(target_os = "linux")]
fn lowat_of_sockets_on(port: u16) -> Vec<(u16, u32)> {
    use std::os::fd::BorrowedFd;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let entry = entry.expect("fd entry");
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !link.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: `fd` is open in this process (just listed); the nodes own
        // it and keep it open while the test holds them, and the borrow
        // ends in this iteration (only getsockopt calls use it).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let s = socket2::SockRef::from(&fd);
        let (Ok(local), Ok(peer)) = (s.local_addr(), s.peer_addr()) else {
            continue; // a listener, or not an inet socket
        };
        let (Some(local), Some(peer)) = (local.as_socket(), peer.as_socket()) else {
            continue;
        };
        if local.port() != port && peer.port() != port {
            continue;
        }
        let Ok(v) = s.tcp_notsent_lowat() else {
            continue; // not TCP
        };
        found.push((local.port(), v));
    }
    found
}
