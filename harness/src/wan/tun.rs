//! The TUN bridge (Linux, root): two TUN devices, one per network
//! namespace, joined by this program. Every IP packet one kernel sends into
//! its device is read here, passed through an emulated [`Link`] (packet
//! mode: delay, jitter, rate, tail-drop queue, loss, blackhole) and written
//! into the other device, where the other kernel receives it. The two
//! kernels' TCP run end to end over the emulated path: real receive
//! windows, congestion control, retransmission, RTO.
//!
//! The bridge creates both devices in the namespace it runs in, without
//! addresses and down; `harness/scripts/wan-netns.sh` moves each into its
//! namespace, addresses and raises it. A TUN device keeps working after
//! such a move: its file descriptor stays with this process.
//!
//! Rates and queues count whole IP packets (headers included).

use std::io;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::wan::command::PathParams;
use crate::wan::link::{Link, LinkMode, LinkParams, LinkStats};
use crate::wan::path::{PathControl, PathKind};

/// Configuration of a bridge.
#[derive(Debug, Clone)]
pub struct TunConfig {
    /// Name of device A (its kernel is the "up" sender).
    pub dev_a: String,
    /// Name of device B.
    pub dev_b: String,
    /// MTU of both devices (the script sets the same on the interfaces).
    pub mtu: u16,
    /// Seed for jitter and loss.
    pub seed: u64,
}

/// A running bridge; dropping it stops it and removes both devices.
pub struct TunBridge {
    path: PathControl,
    tasks: Vec<JoinHandle<()>>,
    names: (String, String),
}

impl TunBridge {
    /// Creates both devices and starts forwarding with `params`.
    /// Needs `CAP_NET_ADMIN` (root) and `/dev/net/tun`.
    pub fn start(config: &TunConfig, params: PathParams) -> io::Result<TunBridge> {
        let path = PathControl::new(PathKind::Tun, params);
        let a = Arc::new(open(&config.dev_a, config.mtu)?);
        let b = Arc::new(open(&config.dev_b, config.mtu)?);
        let mtu = config.mtu as usize;
        let tasks = vec![
            tokio::spawn(pump(
                a.clone(),
                b.clone(),
                path.clone(),
                true,
                mtu,
                config.seed,
            )),
            tokio::spawn(pump(b, a, path.clone(), false, mtu, config.seed ^ 1)),
        ];
        Ok(TunBridge {
            path,
            tasks,
            names: (config.dev_a.clone(), config.dev_b.clone()),
        })
    }

    /// The path's controls.
    pub fn path(&self) -> &PathControl {
        &self.path
    }

    /// The devices' names (A, B).
    pub fn devices(&self) -> (&str, &str) {
        (&self.names.0, &self.names.1)
    }
}

impl Drop for TunBridge {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn open(name: &str, mtu: u16) -> io::Result<tun::AsyncDevice> {
    let mut cfg = tun::Configuration::default();
    cfg.tun_name(name).mtu(mtu);
    // No addresses and not up here: the interface moves to another
    // namespace first (the script configures it there).
    cfg.platform_config(|p| {
        p.ensure_root_privileges(false);
    });
    tun::create_as_async(&cfg).map_err(|e| io::Error::other(format!("TUN device {name}: {e}")))
}

/// Carries packets from `src` to `dst` through the path's up (or down) link.
async fn pump(
    src: Arc<tun::AsyncDevice>,
    dst: Arc<tun::AsyncDevice>,
    path: PathControl,
    up: bool,
    mtu: usize,
    seed: u64,
) {
    let pick = |p: &PathParams| -> LinkParams {
        let mut l = if up { p.up.clone() } else { p.down.clone() };
        // Packets in flight are bounded by the senders' TCP, not by us.
        l.inflight = None;
        l
    };
    let mut params: watch::Receiver<PathParams> = path.subscribe();
    let first = pick(&params.borrow_and_update());
    let mut link: Link<Vec<u8>> = Link::new(LinkMode::Packet, first, Instant::now(), seed);
    let mut last = LinkStats::default();
    // Room for the largest packet plus slack (GSO is off: packets ≤ MTU).
    let mut buf = vec![0u8; mtu + 64];
    loop {
        let now = Instant::now();
        while let Some(p) = link.poll_deliver(now) {
            if let Err(e) = dst.send(&p).await {
                // The other kernel refused it (device down): a lost packet.
                tracing::debug!(%e, "TUN write failed");
            }
        }
        path.report_link(up, link.stats(), &mut last);
        let wake = link.next_wakeup(now);
        let sleep = async {
            match wake {
                Some(w) => tokio::time::sleep_until(tokio::time::Instant::from_std(w)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = src.recv(&mut buf) => match r {
                Ok(n) => {
                    let _ = link.offer(Instant::now(), buf[..n].to_vec(), n);
                }
                Err(e) => {
                    tracing::warn!(%e, "TUN read failed; bridge direction stops");
                    return;
                }
            },
            _ = sleep => {}
            r = params.changed() => {
                if r.is_err() {
                    return;
                }
                let p = pick(&params.borrow_and_update());
                link.set_params(Instant::now(), p);
            }
        }
    }
}
