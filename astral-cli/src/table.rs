//! Plain-text tables for `astral ctl`, like `ss` and `wg show`: a fixed
//! column order (id first), `-` for none, bytes in IEC units (KiB, MiB),
//! times in ms. Peer-controlled text (queries) is escaped.

use crate::logging::escape;
use crate::view::{NodeRow, PeerRow, SessionRow, StreamRow};

/// Left- or right-aligned column.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A table under construction.
struct Table {
    head: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[(&'static str, Align)]) -> Table {
        Table {
            head: head.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.head.iter().map(|(h, _)| h.len()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, (c, ((_, align), w))) in
                cells.iter().zip(self.head.iter().zip(&widths)).enumerate()
            {
                let pad = w.saturating_sub(c.chars().count());
                let last = i + 1 == cells.len();
                match align {
                    Align::Right => {
                        out.push_str(&" ".repeat(pad));
                        out.push_str(c);
                    }
                    Align::Left => {
                        out.push_str(c);
                        if !last {
                            out.push_str(&" ".repeat(pad));
                        }
                    }
                }
                if !last {
                    out.push_str("  ");
                }
            }
            out.push('\n');
            out
        };
        let mut s = line(self.head.iter().map(|(h, _)| *h).collect());
        for r in &self.rows {
            s.push_str(&line(r.iter().map(String::as_str).collect()));
        }
        s
    }
}

/// Bytes in IEC units: `512 B`, `1.5 KiB`, `20.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn rtt(v: Option<f64>) -> String {
    v.map_or("-".into(), |ms| format!("{ms:.1} ms"))
}

fn short_peer(hex: &str) -> String {
    hex.get(..8).unwrap_or(hex).to_string()
}

/// `ctl streams`.
pub fn streams(rows: &[StreamRow]) -> String {
    use Align::*;
    if rows.is_empty() {
        return "no streams\n".into();
    }
    let mut t = Table::new(&[
        ("ID", Left),
        ("PEER", Left),
        ("DIR", Left),
        ("TRANSPORT", Left),
        ("LOCAL", Left),
        ("REMOTE", Left),
        ("STATE", Left),
        ("RTT", Right),
        ("SESSIONS", Right),
        ("IN", Right),
        ("OUT", Right),
    ]);
    for r in rows {
        t.row(vec![
            r.id.clone(),
            r.peer.as_deref().map_or("-".into(), short_peer),
            r.direction.clone(),
            opt(&r.transport),
            opt(&r.local),
            opt(&r.remote),
            r.state.clone(),
            rtt(r.rtt_ms),
            r.sessions.to_string(),
            bytes(r.bytes_in),
            bytes(r.bytes_out),
        ]);
    }
    t.render()
}

/// `ctl sessions`.
pub fn sessions(rows: &[SessionRow]) -> String {
    use Align::*;
    if rows.is_empty() {
        return "no sessions\n".into();
    }
    let mut t = Table::new(&[
        ("ID", Left),
        ("PEER", Left),
        ("DIR", Left),
        ("QUERY", Left),
        ("STATE", Left),
        ("STREAM", Left),
        ("WRITTEN", Right),
        ("ACKED", Right),
        ("READ", Right),
        ("IN-FLIGHT", Right),
        ("BUFFERED", Right),
        ("SEND-WIN", Right),
        ("RECV-WIN", Right),
        ("MIGR", Right),
        ("RECOV", Right),
    ]);
    for r in rows {
        t.row(vec![
            r.id.clone(),
            short_peer(&r.peer),
            r.direction.clone(),
            r.query
                .as_deref()
                .map_or("-".into(), |q| format!("\"{}\"", escape(q))),
            r.state.clone(),
            opt(&r.stream),
            bytes(r.bytes_written),
            bytes(r.bytes_acked),
            bytes(r.bytes_read),
            bytes(r.bytes_in_flight),
            bytes(r.bytes_buffered),
            bytes(r.send_window),
            bytes(r.recv_window),
            r.migrations.to_string(),
            r.recoveries.to_string(),
        ]);
    }
    t.render()
}

/// `ctl peers`.
pub fn peers(rows: &[PeerRow]) -> String {
    use Align::*;
    if rows.is_empty() {
        return "no peers\n".into();
    }
    let mut t = Table::new(&[
        ("ID", Left),
        ("PEER", Left),
        ("STREAMS", Right),
        ("SESSIONS", Right),
        ("RTT", Right),
        ("IN", Right),
        ("OUT", Right),
        ("REMOTES", Left),
    ]);
    for r in rows {
        t.row(vec![
            r.id.clone(),
            short_peer(&r.peer),
            r.streams.to_string(),
            r.sessions.to_string(),
            rtt(r.rtt_ms),
            bytes(r.bytes_in),
            bytes(r.bytes_out),
            if r.remotes.is_empty() {
                "-".into()
            } else {
                r.remotes.join(", ")
            },
        ]);
    }
    t.render()
}

/// `ctl node`.
pub fn node(n: &NodeRow) -> String {
    let c = &n.config;
    let mut s = String::new();
    s.push_str(&format!("node      {} ({})\n", n.id, n.mode));
    s.push_str(&format!("version   {}\n", n.version));
    s.push_str(&format!("uptime    {:.1} s\n", n.uptime_s));
    s.push_str(&format!(
        "listen    {}\n",
        if n.listen.is_empty() {
            "-".into()
        } else {
            n.listen.join(", ")
        }
    ));
    s.push_str(&format!(
        "peers     {} ({} known)   streams {}   sessions {}\n",
        n.peers, n.known_peers, n.streams, n.sessions
    ));
    let a = &n.admission;
    s.push_str(&format!(
        "admission {} handshaking, {} waiting; {} admitted ({} waited), {} completed, {} evicted, {} timed out ({} under pressure), {} refused, {} not allowed\n",
        a.active,
        a.waiting,
        a.admitted,
        a.waited,
        a.completed,
        a.evicted,
        a.timed_out,
        a.timed_out_under_pressure,
        a.refused,
        a.not_allowed
    ));
    s.push_str(&format!(
        "timers    keepalive {} ms, dead-timeout {} ms, recovery-timeout {} ms\n",
        c.keepalive_ms, c.dead_timeout_ms, c.recovery_timeout_ms
    ));
    s.push_str(&format!(
        "windows   recv-window {}, send-buffer {}\n",
        bytes(c.recv_window),
        bytes(c.send_buffer)
    ));
    s.push_str(&format!(
        "migrate   automatic {}\n",
        if c.auto_migrate { "on" } else { "off" }
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(20 << 20), "20.0 MiB");
        assert_eq!(bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn id_first_dash_for_none_and_escaped_queries() {
        let row = SessionRow {
            id: "s1".into(),
            handle: "1".into(),
            peer: "ab".repeat(32),
            direction: "in".into(),
            query: Some("evil\n\x1b[2J".into()),
            state: "recovering".into(),
            stream: None,
            recv_stream: None,
            bytes_written: 0,
            bytes_acked: 0,
            bytes_read: 0,
            bytes_in_flight: 0,
            bytes_buffered: 0,
            bytes_retransmitted: 0,
            send_window: 262144,
            recv_window: 262144,
            migrations: 0,
            recoveries: 0,
            pinned: false,
            peer_pinned: false,
        };
        let out = sessions(&[row]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("ID "), "{out}");
        assert!(lines[1].starts_with("s1 "), "{out}");
        assert!(lines[1].contains(" - "), "{out}");
        assert!(!out.contains('\x1b'), "{out}");
        assert!(lines[1].contains("256.0 KiB"), "{out}");
    }
}
