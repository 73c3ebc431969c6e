//! Addresses on the command line: `HOST:PORT` (TCP), `unix:/path` (Unix
//! socket), and peers as `ID@ADDR`. Every parse error names the fix.

use std::fmt;
use std::path::PathBuf;

use astral_tokio::NodeId;

/// Where a transport goes or listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// TCP to a host name or IP literal (names are resolved when dialing,
    /// by the SOCKS5 proxy if one is given).
    Tcp {
        /// Name or IP (without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix-domain stream socket.
    Unix(PathBuf),
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Addr::Tcp { host, port } => write!(f, "{host}:{port}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Parses `HOST:PORT`, `[V6]:PORT` or `unix:/path`.
pub fn parse_addr(s: &str) -> Result<Addr, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("missing path after unix: (e.g. unix:/tmp/astral.sock)".into());
        }
        return Ok(Addr::Unix(PathBuf::from(path)));
    }
    if s.is_empty() {
        return Err("empty address (use HOST:PORT or unix:/path)".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in {s:?} (use [IPv6]:PORT)"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, p),
            None => return Err(format!("missing port in {s:?}: use {s}:PORT")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!(
                    "put an IPv6 address in brackets: [{h}]:PORT, not {s:?}"
                ))
            }
            Some((h, p)) => (h, p),
            None => {
                return Err(format!(
                    "missing port in {s:?}: use {s}:PORT, e.g. {s}:4000"
                ))
            }
        }
    };
    if host.is_empty() {
        return Err(format!(
            "missing host in {s:?}: use HOST:PORT, e.g. 127.0.0.1{}",
            &s[s.len() - port.len() - 1..]
        ));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("bad port {port:?} in {s:?} (a number from 0 to 65535)"))?;
    Ok(Addr::Tcp {
        host: host.to_string(),
        port,
    })
}

/// A peer and one of its addresses: `ID@ADDR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The identity expected at the address.
    pub peer: NodeId,
    /// The address.
    pub addr: Addr,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.peer.short(), self.addr)
    }
}

fn looks_like_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses `ID@HOST:PORT` or `ID@unix:/path`.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let Some((id, addr)) = s.split_once('@') else {
        return Err(if looks_like_id(s) {
            format!(
                "missing @ADDR after the peer id: use {}…@HOST:PORT",
                &s[..8]
            )
        } else if parse_addr(s).is_ok() {
            format!(
                "missing the peer id before {s:?}: use ID@{s} (the listener prints its id; `astral id KEYFILE` shows it too)"
            )
        } else {
            format!("expected ID@HOST:PORT or ID@unix:/path, got {s:?}")
        });
    };
    let peer: NodeId = id.parse().map_err(|_| {
        format!(
            "bad peer id {id:?}: an id is 64 hex digits (the listener prints it; `astral id KEYFILE` shows it)"
        )
    })?;
    if addr.is_empty() {
        return Err(format!(
            "missing address after the @ in {s:?} (use ID@HOST:PORT)"
        ));
    }
    let addr = parse_addr(addr)?;
    Ok(Target { peer, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "8f3a2b1c00000000000000000000000000000000000000000000000000000001";

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr("127.0.0.1:4000").unwrap(),
            Addr::Tcp {
                host: "127.0.0.1".into(),
                port: 4000
            }
        );
        assert_eq!(parse_addr("[::1]:0").unwrap().to_string(), "[::1]:0");
        assert_eq!(
            parse_addr("example.onion:80").unwrap().to_string(),
            "example.onion:80"
        );
        assert_eq!(
            parse_addr("unix:/tmp/a.sock").unwrap(),
            Addr::Unix("/tmp/a.sock".into())
        );
        let e = parse_addr("127.0.0.1").unwrap_err();
        assert!(
            e.contains("missing port") && e.contains("127.0.0.1:PORT"),
            "{e}"
        );
        assert!(parse_addr("::1:4000").unwrap_err().contains("brackets"));
        assert!(parse_addr("h:99999").unwrap_err().contains("bad port"));
        assert!(parse_addr(":4000").unwrap_err().contains("missing host"));
        assert!(parse_addr("unix:").unwrap_err().contains("missing path"));
    }

    #[test]
    fn targets() {
        let t = parse_target(&format!("{ID}@127.0.0.1:4000")).unwrap();
        assert_eq!(t.addr.to_string(), "127.0.0.1:4000");
        let e = parse_target(&format!("{ID}@127.0.0.1")).unwrap_err();
        assert!(e.contains("missing port"), "{e}");
        let e = parse_target("127.0.0.1:4000").unwrap_err();
        assert!(e.contains("missing the peer id"), "{e}");
        let e = parse_target(ID).unwrap_err();
        assert!(e.contains("missing @ADDR"), "{e}");
        let e = parse_target("xyz@127.0.0.1:1").unwrap_err();
        assert!(e.contains("bad peer id"), "{e}");
        let t = parse_target(&format!("{ID}@unix:/run/a.sock")).unwrap();
        assert_eq!(t.addr, Addr::Unix("/run/a.sock".into()));
    }
}
