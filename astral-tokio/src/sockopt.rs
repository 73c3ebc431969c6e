//! Socket options the driver sets on every TCP stream it dials or accepts.

/// Bounds the bytes written to `socket` and not yet sent by the kernel
/// (`TCP_NOTSENT_LOWAT`, [`Config::tcp_notsent_lowat`]), so that the send
/// backlog stays in the engine, where control frames overtake bulk data.
/// Linux only (a no-op elsewhere); `None` leaves the kernel's default. A
/// failure is logged and ignored: the stream works, only deeper.
///
/// [`Config::tcp_notsent_lowat`]: astral_core::Config::tcp_notsent_lowat
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn set_notsent_lowat<S: std::os::fd::AsFd>(socket: &S, lowat: Option<u32>) {
    if let Some(lowat) = lowat {
        if let Err(e) = socket2::SockRef::from(socket).set_tcp_notsent_lowat(lowat) {
            tracing::debug!(error = %e, lowat, "TCP_NOTSENT_LOWAT not set");
        }
    }
}

/// Not Linux: `TCP_NOTSENT_LOWAT` is not set (the kernel's send buffer
/// stays as deep as the system makes it).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn set_notsent_lowat<S>(_socket: &S, _lowat: Option<u32>) {}
