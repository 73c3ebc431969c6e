//! One TCP connection under a core stream, and the listener entries.

use std::net::SocketAddr;

use astral_core::driver::TxBuffer;
use astral_core::StreamId;
use mio::net::{TcpListener, TcpStream};

/// A slot of the socket table (index = token offset).
pub(crate) enum Entry {
    Free,
    Listener(TcpListener),
    Conn(Box<Conn>),
}

/// Life of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// Non-blocking connect in progress: wait for WRITABLE.
    Connecting,
    /// Carries the core stream's bytes.
    Open,
    /// The core closed the stream; write the tail already pulled, then close.
    Closing,
}

pub(crate) struct Conn {
    pub socket: TcpStream,
    pub stream: StreamId,
    pub state: ConnState,
    /// Ciphertext pulled from the core, not yet written.
    pub tx: TxBuffer,
    /// Whether WRITABLE interest is registered.
    pub write_interest: bool,
    /// Remote address (the dialed one, or the accepted peer's).
    pub remote: SocketAddr,
    /// When it entered `Closing` (the tail gets `driver::LINGER_TIMEOUT`).
    pub closing_since: Option<std::time::Instant>,
}

impl Conn {
    pub fn new(socket: TcpStream, stream: StreamId, state: ConnState, remote: SocketAddr) -> Self {
        Conn {
            socket,
            stream,
            state,
            tx: TxBuffer::default(),
            write_interest: state == ConnState::Connecting,
            remote,
            closing_since: None,
        }
    }
}
