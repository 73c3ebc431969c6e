//! Transport buffering: what was pulled and not written yet, what was
//! read and not handed on yet.

use std::io;

use bytes::{Buf, BytesMut};

use crate::noise::{Opened, RecordOpener};

/// Ciphertext pulled from the core that the transport has not taken yet.
///
/// The rule both drivers follow: pull (`poll_transmit`) only into an empty
/// buffer, and at most [`TxBuffer::PULL`] bytes at a time, so the core's
/// scheduler keeps the backpressure (data stays in sessions' send buffers,
/// where `write` can refuse it) and the driver never holds more than one
/// pull's worth.
#[derive(Debug, Default)]
pub struct TxBuffer {
    buf: BytesMut,
}

impl TxBuffer {
    /// Bytes pulled per `poll_transmit` call: a few records, so one write
    /// system call carries many frames.
    pub const PULL: usize = 256 * 1024;

    /// Whether everything pulled was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The buffer to pull into (`poll_transmit(now, stream, buf, PULL)`);
    /// only when [`TxBuffer::is_empty`].
    pub fn pull_into(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The bytes to write next.
    pub fn chunk(&self) -> &[u8] {
        &self.buf
    }

    /// The transport took `n` bytes.
    pub fn advance(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
        if self.buf.is_empty() && self.buf.capacity() > 4 * Self::PULL {
            // A burst must not pin its peak.
            self.buf = BytesMut::new();
        }
    }

    /// The (empty) buffer, for a driver that builds
    /// [`UnsealedRecords`] in it and seals them outside the engine's lock;
    /// give the sealed bytes back with [`TxBuffer::fill`]. Only when
    /// [`TxBuffer::is_empty`]: pending bytes would be lost.
    pub fn take_buffer(&mut self) -> BytesMut {
        std::mem::take(&mut self.buf)
    }

    /// Sealed bytes to write (after [`TxBuffer::take_buffer`]).
    pub fn fill(&mut self, sealed: BytesMut) {
        debug_assert!(self.buf.is_empty(), "fill over pending bytes");
        self.buf = sealed;
    }
}

/// Bytes read from a transport and not handed on yet: at most one partial
/// record (or handshake message, which is framed the same way).
///
/// The rule both drivers follow: read at most [`RxBuffer::next_read`]
/// bytes at a time, then hand on the whole records at the front
/// ([`RxBuffer::take_whole`] to `handle_input_owned`, or
/// [`RxBuffer::open`] for a detached record layer). A read may end inside
/// a record only while the buffer still has room for that record's rest
/// (when it has not, the read asks for just the rest), so the partial
/// record left behind is completed where it is and nothing is ever moved:
/// every byte is written once by the transport and then only read
/// (decrypted in place).
///
/// ```
/// use astral_core::driver::RxBuffer;
/// let mut rx = RxBuffer::default();
/// // A record of 3 + 16 bytes arrives in two reads.
/// let wire = [&[0u8, 19][..], &[7; 19][..]].concat();
/// assert_eq!(rx.next_read(), RxBuffer::READ);
/// rx.read_with(|b| { b[..5].copy_from_slice(&wire[..5]); Ok(5) }).unwrap();
/// assert!(rx.take_whole().is_empty(), "a partial record stays");
/// assert!(rx.next_read() >= 16);
/// rx.read_with(|b| { b[..16].copy_from_slice(&wire[5..]); Ok(16) }).unwrap();
/// assert_eq!(&rx.take_whole()[..], &wire[..]);
/// assert!(rx.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct RxBuffer {
    buf: BytesMut,
}

impl RxBuffer {
    /// Bytes read at once on a record boundary.
    pub const READ: usize = 256 * 1024;
    /// Room kept after a read for the rest of a record it ends inside.
    const SLACK: usize = 2 + 65535;

    /// Reserves room and returns how many bytes to read next (never 0): up
    /// to [`RxBuffer::READ`] while the room after the read could still take
    /// the rest of any record it ends inside, else just the rest of the
    /// partial record.
    pub fn next_read(&mut self) -> usize {
        let missing = RecordOpener::missing(&self.buf);
        if self.buf.is_empty() {
            if self.buf.capacity() < Self::READ + Self::SLACK {
                // Empty: a new allocation (or the old one reclaimed), no copy.
                self.buf.reserve(Self::READ + Self::SLACK);
            }
        } else if self.buf.capacity() - self.buf.len() < missing.max(1) {
            // Cannot happen under the rule; correct (one copy) regardless.
            self.buf.reserve(missing.max(1));
        }
        let room = self.buf.capacity() - self.buf.len();
        if room > Self::SLACK {
            (room - Self::SLACK).min(Self::READ).max(missing)
        } else {
            missing.max(1).min(room)
        }
    }

    /// The buffer, for readers that fill spare capacity (tokio's
    /// `poll_read_buf`): read at most [`RxBuffer::next_read`] bytes into it.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Reads with `read` (e.g. `std::io::Read::read`) into
    /// [`RxBuffer::next_read`] zeroed bytes; returns what it returned.
    pub fn read_with(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let want = self.next_read();
        let len = self.buf.len();
        // Safe code cannot read into uninitialised memory: zero what the
        // read may fill (a write pass, not a copy).
        self.buf.resize(len + want, 0);
        let r = read(&mut self.buf[len..]);
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(len + n.min(want));
        r
    }

    /// Bytes buffered.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is buffered (the last read ended on a boundary).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Splits off the whole records (or handshake messages) at the front;
    /// a malformed length is handed on too, so that its reader reports it.
    pub fn take_whole(&mut self) -> BytesMut {
        let mut at = 0;
        while at < self.buf.len() {
            let rest = &self.buf[at..];
            if rest.len() < 2 {
                break;
            }
            let total = 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            if total > rest.len() {
                break;
            }
            at += total;
        }
        self.buf.split_to(at)
    }

    /// Opens the whole records at the front in place (see
    /// [`RecordOpener::open`]).
    pub fn open(&mut self, opener: &mut RecordOpener) -> Opened {
        opener.open(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records of random sizes arrive in reads of random sizes, each at
    /// most `next_read`: every record comes out whole, in order, from the
    /// memory the transport wrote it to (never moved), and only a read that
    /// completes a record asks for less than a full read.
    #[test]
    fn rx_buffer_hands_on_whole_records_where_they_were_read() {
        use rand_chacha::ChaCha8Rng;
        use rand_core::{RngCore, SeedableRng};
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut wire = Vec::new();
        let mut records = Vec::new();
        for i in 0..400u32 {
            let len = 16 + (rng.next_u32() as usize % 65_520);
            let mut r = (len as u16).to_be_bytes().to_vec();
            r.extend((0..len).map(|j| (i as usize + j) as u8));
            records.push(r.clone());
            wire.extend(r);
        }
        let (mut rx, mut at, mut got) = (RxBuffer::default(), 0, Vec::<u8>::new());
        let (mut reads, mut short_reads) = (0, 0);
        // (wire offset, address, length) of every read.
        let mut written = Vec::new();
        while at < wire.len() {
            let want = rx.next_read();
            assert!(want > 0);
            if want < RxBuffer::READ {
                short_reads += 1;
                assert!(!rx.is_empty(), "a short read only completes a record");
            }
            let n = want
                .min(1 + rng.next_u32() as usize % 300_000)
                .min(wire.len() - at);
            let addr = rx.buf_mut().as_ptr() as usize + rx.len();
            rx.read_with(|b| {
                b[..n].copy_from_slice(&wire[at..at + n]);
                Ok(n)
            })
            .unwrap();
            written.push((at, addr, n));
            at += n;
            reads += 1;
            let whole = rx.take_whole();
            if !whole.is_empty() {
                let start = got.len();
                let &(off, addr, _) = written
                    .iter()
                    .find(|&&(off, _, n)| off <= start && start < off + n)
                    .unwrap();
                assert_eq!(whole.as_ptr() as usize, addr + (start - off), "never moved");
                got.extend_from_slice(&whole);
            }
        }
        assert!(rx.is_empty());
        assert_eq!(got, wire);
        eprintln!(
            "{} records, {reads} reads, {short_reads} short",
            records.len()
        );
        assert!(short_reads > 0 && reads < 3 * records.len());
    }

    #[test]
    fn rx_buffer_passes_a_malformed_length_on() {
        // A length below a tag's: too short for any record or handshake
        // message. It goes on whole, so that its reader reports it.
        let mut rx = RxBuffer::default();
        rx.read_with(|b| {
            b[..6].copy_from_slice(&[0, 3, 9, 9, 9, 0]);
            Ok(6)
        })
        .unwrap();
        assert_eq!(&rx.take_whole()[..], &[0, 3, 9, 9, 9]);
        assert!(rx.next_read() > 0);
    }

    #[test]
    fn tx_buffer_advances_and_sheds() {
        let mut t = TxBuffer::default();
        t.pull_into().extend_from_slice(&[1, 2, 3]);
        assert_eq!(t.chunk(), &[1, 2, 3]);
        t.advance(2);
        assert_eq!(t.chunk(), &[3]);
        t.advance(5);
        assert!(t.is_empty());
    }
}
