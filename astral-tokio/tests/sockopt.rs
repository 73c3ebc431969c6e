//! `Config::tcp_notsent_lowat` and `TCP_NODELAY` reach the kernel on
//! dialed and accepted streams (Linux: read back with getsockopt from the
//! process's own sockets). The driver sets them before a dial connects and
//! on the listener (accepted sockets inherit them), not on each registered
//! socket: perf-profile §17.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use astral_tokio::Config;
use common::*;

/// Waits until both ends of the stream to `port` are visible (the dialer's
/// socket and the accepted one) and returns their values.
async fn both_ends(port: u16) -> Vec<(u16, u32, bool)> {
    for _ in 0..200 {
        let v = lowat_of_sockets_on(port);
        if v.len() >= 2 {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "no connected pair on port {port}: {:?}",
        lowat_of_sockets_on(port)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialed_and_accepted_streams_get_the_configured_bound() {
    let cfg = Config {
        tcp_notsent_lowat: Some(96 * 1024),
        ..config()
    };
    let (_a, _b, addr) = pair(cfg, 1).await;
    let ends = both_ends(addr.port()).await;
    // One socket has the listener's port as its own (accepted), the other
    // as its peer's (dialed).
    assert!(
        ends.iter().any(|&(local, _, _)| local == addr.port()),
        "{ends:?}"
    );
    assert!(
        ends.iter().any(|&(local, _, _)| local != addr.port()),
        "{ends:?}"
    );
    for (local, v, nodelay) in &ends {
        assert_eq!(*v, 96 * 1024, "socket on local port {local}");
        assert!(*nodelay, "TCP_NODELAY on local port {local}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_is_128_kib_and_none_leaves_the_socket_unset() {
    assert_eq!(Config::default().tcp_notsent_lowat, Some(128 * 1024));
    let (_a, _b, addr) = pair(config(), 1).await;
    for (_, v, nodelay) in both_ends(addr.port()).await {
        assert_eq!(v, 128 * 1024);
        assert!(nodelay);
    }
    let cfg = Config {
        tcp_notsent_lowat: None,
        ..config()
    };
    let (_a, _b, addr) = pair(cfg, 1).await;
    for (_, v, nodelay) in both_ends(addr.port()).await {
        assert!(nodelay);
        // Linux reads back 0 for "not set on this socket": the system-wide
        // net.ipv4.tcp_notsent_lowat (unbounded by default) applies.
        assert_eq!(v, 0, "None must leave the socket unset");
    }
}

/// `TCP_NOTSENT_LOWAT` and `TCP_NODELAY` of every TCP socket of this
/// process with `port` as its local or remote port: (local port, value,
/// no delay). Reads the process's own
/// descriptor table, so it sees the sockets the driver dialed and accepted.
#[cfg(target_os = "linux")]
fn lowat_of_sockets_on(port: u16) -> Vec<(u16, u32, bool)> {
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
        found.push((local.port(), v, s.tcp_nodelay().unwrap_or(false)));
    }
    found
}
