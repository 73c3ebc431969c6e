//! Byte flows of one session direction: the send buffer with retention of
//! uncredited bytes, and the receive reassembly buffer keyed by offset.
//!
//! Offsets are absolute positions in a direction's byte flow. A Fin occupies
//! one extra unit after the last data byte (like TCP's FIN), so a cumulative
//! credit of `final + 1` acknowledges the Fin itself; that is what lets a Fin
//! lost with a dead stream be retransmitted (design §8, rule 1).
//!
//! Credit is a *limit*: the receiver grants "send up to offset `L`", and a
//! grant is never taken back (docs/PROTOCOL.md, "What a peer may assume
//! about credit"). A Credit or Resume carrying `consumed` grants
//! `consumed + base`, where `base` is the window of the session's
//! Query/Response; a Window frame grants `consumed + window`. Both ends keep
//! the highest limit: the receiver enforces it, the sender sends up to it.
//! Windows may therefore grow and shrink (auto-tuning, `crate::window`)
//! while every offset the peer was ever allowed stays allowed, whatever
//! order the grants arrive in over several streams.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Buf, Bytes, BytesMut};

/// Violations of flow control by the peer; each is a session protocol error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The peer sent bytes beyond the credit this node granted.
    #[error("data [{offset}, {end}) exceeds granted credit {limit}")]
    CreditExceeded {
        /// First byte of the offending frame.
        offset: u64,
        /// One past its last byte.
        end: u64,
        /// The credit limit in force.
        limit: u64,
    },
    /// Data after the final offset announced by Fin.
    #[error("data beyond the final offset {0}")]
    DataBeyondFin(u64),
    /// A Fin that contradicts data or an earlier Fin.
    #[error("inconsistent fin at {offset} (data reaches {received})")]
    BadFin {
        /// The Fin's final offset.
        offset: u64,
        /// Highest offset received or previous final offset.
        received: u64,
    },
    /// The peer credited bytes this node never sent.
    #[error("credit {consumed} exceeds bytes sent {sent}")]
    CreditBeyondSent {
        /// Cumulative credit claimed.
        consumed: u64,
        /// Bytes (plus Fin) ever sent.
        sent: u64,
    },
    /// A Resume claiming more bytes received than were sent.
    #[error("peer claims {received} received but only {sent} were sent")]
    ResumeBeyondSent {
        /// Claimed.
        received: u64,
        /// Sent.
        sent: u64,
    },
    /// A cumulative counter would overflow.
    #[error("offset overflow")]
    Overflow,
}

/// Small writes are coalesced into one chunk up to this size; larger
/// `Bytes` writes are kept as they are (zero copy).
const COALESCE_LIMIT: usize = 4096;

/// Sending half of a session: bytes the application wrote, from the oldest
/// byte the peer has not credited (`acked`) to the newest (`written`).
///
/// Bytes below `sent` are in flight and retained until credited, so they can
/// be retransmitted after a stream dies; retained plus queued bytes are
/// bounded by the peer's grant plus the local send buffer
/// ([`SendBuf::capacity`]).
#[derive(Debug, Default)]
pub struct SendBuf {
    /// The retained bytes, allocated by the first write into an empty
    /// buffer and freed once everything written is credited (an idle
    /// direction pays one pointer).
    queue: Option<Box<SendQueue>>,
    written: u64,
    sent: u64,
    sent_max: u64,
    acked: u64,
    /// Highest offset the peer allowed us to send (the grant): bytes below
    /// it may be sent, never bytes above.
    limit: u64,
    /// The window of the peer's Query/Response: a Credit or Resume with
    /// `consumed` grants `consumed + base_window`.
    base_window: u32,
    /// The window the peer's latest grant stated (for statistics).
    peer_window: u32,
    fin_requested: bool,
    fin_sent: bool,
    fin_ever_sent: bool,
    /// Bytes sent more than once (after recovery).
    retransmitted: u64,
}

/// The retained bytes of a [`SendBuf`] and its transmission cursor.
#[derive(Debug, Default)]
struct SendQueue {
    /// Retained chunks; the first starts exactly at `min(acked, written)`
    /// (credited bytes are trimmed off the front chunk).
    chunks: VecDeque<Bytes>,
    /// Small writes not yet cut into a chunk.
    tail: BytesMut,
    /// Position of `sent` within `chunks`: index and offset in that chunk
    /// (`usize`: one `write_bytes` chunk may exceed 4 GiB).
    cursor_idx: usize,
    cursor_off: usize,
}

impl SendQueue {
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }
}

impl SendBuf {
    fn queue(&mut self) -> &mut SendQueue {
        self.queue.get_or_insert_with(Default::default)
    }

    /// Total bytes the application wrote.
    pub fn written(&self) -> u64 {
        self.written
    }
    /// Next offset to transmit.
    pub fn sent(&self) -> u64 {
        self.sent
    }
    /// Highest offset ever transmitted.
    pub fn sent_max(&self) -> u64 {
        self.sent_max
    }
    /// Peer's cumulative credit (consumed bytes, +1 once it consumed the Fin).
    pub fn acked(&self) -> u64 {
        self.acked
    }
    /// Credit window the peer granted (as of its latest grant).
    pub fn peer_window(&self) -> u32 {
        self.peer_window
    }
    /// The peer's grant: the highest offset it allowed this side to send.
    pub fn limit(&self) -> u64 {
        self.limit
    }
    /// Sets the session's base window (the Query/Response `buffer`): the
    /// peer grants it from offset 0, and every later Credit or Resume
    /// grants it from the consumed count carried.
    pub fn set_peer_window(&mut self, window: u32) {
        self.base_window = window;
        self.peer_window = window;
        self.raise_limit(self.acked.saturating_add(u64::from(window)));
    }

    fn raise_limit(&mut self, limit: u64) -> bool {
        if limit > self.limit {
            self.limit = limit;
            true
        } else {
            false
        }
    }
    /// Bytes retransmitted so far.
    pub fn retransmitted(&self) -> u64 {
        self.retransmitted
    }
    /// Bytes retained (written, not yet credited).
    pub fn retained(&self) -> u64 {
        self.written - self.acked.min(self.written)
    }
    /// Whether the application has finished this direction.
    pub fn fin_requested(&self) -> bool {
        self.fin_requested
    }
    /// Whether the peer credited the Fin: this direction is complete.
    pub fn fin_acked(&self) -> bool {
        self.fin_requested && self.acked > self.written
    }

    /// Room for more application bytes: the application may write up to
    /// `send_buffer` bytes beyond the peer's grant, so retained plus queued
    /// bytes never exceed the grant (from what was credited) plus
    /// `send_buffer`.
    pub fn capacity(&self, send_buffer: u32) -> usize {
        let ceiling = self.limit.saturating_add(u64::from(send_buffer));
        usize::try_from(ceiling.saturating_sub(self.written)).unwrap_or(usize::MAX)
    }

    /// Copies up to `capacity` bytes of `data`; returns how many were taken.
    pub fn write(&mut self, data: &[u8], capacity: usize) -> usize {
        let n = data.len().min(capacity);
        if n == 0 {
            return 0;
        }
        let q = self.queue();
        q.tail.extend_from_slice(&data[..n]);
        if q.tail.len() >= COALESCE_LIMIT {
            q.seal_tail();
        }
        self.written += n as u64;
        n
    }

    /// Queues `data` without copying when it is large. Takes at most
    /// `capacity` bytes; returns how many.
    pub fn write_bytes(&mut self, mut data: Bytes, capacity: usize) -> usize {
        let n = data.len().min(capacity);
        if n == 0 {
            return 0;
        }
        data.truncate(n);
        if n < COALESCE_LIMIT {
            return self.write(&data, n);
        }
        let q = self.queue();
        q.seal_tail();
        q.chunks.push_back(data);
        self.written += n as u64;
        n
    }

    /// Marks the end of this direction: a Fin follows the last byte.
    pub fn finish(&mut self) {
        self.fin_requested = true;
    }

    /// Bytes that may be transmitted now under the peer's credit.
    pub fn sendable(&self) -> u64 {
        self.written.min(self.limit).saturating_sub(self.sent)
    }

    /// Whether the Fin should be (re)transmitted now.
    pub fn fin_due(&self) -> bool {
        self.fin_requested && !self.fin_sent && self.sent == self.written
    }

    /// Whether there is anything for the scheduler: data under credit or a Fin.
    pub fn has_output(&self) -> bool {
        self.sendable() > 0 || self.fin_due()
    }

    /// Takes up to `max` sendable bytes as a zero-copy slice with its offset.
    pub fn take(&mut self, max: usize) -> Option<(u64, Bytes)> {
        let want = (self.sendable().min(max as u64)) as usize;
        if want == 0 {
            return None;
        }
        // Sendable bytes exist, so they were written: the queue is there.
        let q = self.queue.as_deref_mut()?;
        if q.cursor_idx >= q.chunks.len() {
            q.seal_tail();
        }
        let chunk = q.chunks.get(q.cursor_idx)?;
        let off = q.cursor_off;
        let n = want.min(chunk.len() - off);
        let piece = chunk.slice(off..off + n);
        let offset = self.sent;
        if off + n == chunk.len() {
            q.cursor_idx += 1;
            q.cursor_off = 0;
        } else {
            q.cursor_off += n;
        }
        self.sent += n as u64;
        self.retransmitted += self.sent.min(self.sent_max).saturating_sub(offset);
        self.sent_max = self.sent_max.max(self.sent);
        Some((offset, piece))
    }

    /// Marks the Fin transmitted; returns its final offset.
    pub fn take_fin(&mut self) -> u64 {
        self.fin_sent = true;
        self.fin_ever_sent = true;
        self.sent_max = self.sent_max.max(self.written);
        self.written
    }

    /// Applies a cumulative credit from the peer (a Credit, or the
    /// `consumed` of a Resume): it acknowledges `consumed` and grants the
    /// base window from there. Returns whether the acknowledgement or the
    /// grant advanced.
    pub fn on_credit(&mut self, consumed: u64) -> Result<bool, FlowError> {
        self.on_window(consumed, self.base_window)
    }

    /// Applies a Window frame: acknowledges `consumed` and grants
    /// `consumed + window`. A grant below the current limit changes
    /// nothing (credit is never taken back). Returns whether the
    /// acknowledgement or the grant advanced.
    pub fn on_window(&mut self, consumed: u64, window: u32) -> Result<bool, FlowError> {
        let ceiling = self.sent_max + u64::from(self.fin_ever_sent);
        if consumed > ceiling {
            return Err(FlowError::CreditBeyondSent {
                consumed,
                sent: ceiling,
            });
        }
        let raised = self.raise_limit(consumed.saturating_add(u64::from(window)));
        if raised {
            self.peer_window = window;
        }
        if consumed <= self.acked {
            return Ok(raised);
        }
        let base = self.base();
        self.acked = consumed;
        self.release(base);
        Ok(true)
    }

    /// Offset of the first retained byte.
    fn base(&self) -> u64 {
        self.acked.min(self.written)
    }

    /// Drops the bytes below the credited offset; `base` is where the
    /// retained chunks started before the credit.
    fn release(&mut self, mut base: u64) {
        let upto = self.base();
        if self.sent < upto {
            // The peer credited bytes we were about to retransmit: skip them.
            self.seek_from(base, upto);
        }
        let Some(q) = self.queue.as_deref_mut() else {
            return;
        };
        // Everything below `upto` was sent (sent >= upto), so the cursor is
        // at or after it and trimming never passes the cursor.
        while base < upto {
            let Some(front) = q.chunks.front_mut() else {
                break;
            };
            let len = front.len() as u64;
            if base + len <= upto {
                base += len;
                q.chunks.pop_front();
                q.cursor_idx = q.cursor_idx.saturating_sub(1);
            } else {
                let cut = (upto - base) as usize;
                front.advance(cut);
                if q.cursor_idx == 0 {
                    q.cursor_off -= cut;
                }
                base = upto;
            }
        }
        self.shed_idle();
    }

    /// An idle direction keeps no allocation: once everything written is
    /// credited, drop the queue (chunks, small-write tail and cursor).
    fn shed_idle(&mut self) {
        if self.acked >= self.written
            && self
                .queue
                .as_deref()
                .is_some_and(|q| q.chunks.is_empty() && q.tail.is_empty())
        {
            self.queue = None;
        }
    }

    /// Whether the retained-bytes queue is allocated (tests).
    #[cfg(test)]
    pub(crate) fn has_queue(&self) -> bool {
        self.queue.is_some()
    }

    /// Rewinds transmission to `max(received, acked)`, clamped to what is
    /// retained. Used by recovery: retransmit `[max(received, acked), sent)`
    /// — unless that point is at or above `live_from`, the offset from which
    /// every byte went out on a stream known to be live in both directions
    /// (those bytes are on their way; pass `u64::MAX` when none is known).
    pub fn retransmit_from(&mut self, received: u64, live_from: u64) -> Result<(), FlowError> {
        let ceiling = self.sent_max + u64::from(self.fin_ever_sent);
        if received > ceiling {
            return Err(FlowError::ResumeBeyondSent {
                received,
                sent: ceiling,
            });
        }
        let from = received.max(self.acked.min(self.written));
        if from < self.sent && from < live_from {
            self.seek(from);
        }
        // A Fin the peer has not received must be sent again.
        if self.fin_sent && received <= self.written {
            self.fin_sent = false;
        }
        Ok(())
    }

    fn seek(&mut self, offset: u64) {
        self.seek_from(self.base(), offset);
    }

    fn seek_from(&mut self, base: u64, offset: u64) {
        if let Some(q) = self.queue.as_deref_mut() {
            let mut pos = base;
            let mut idx = 0usize;
            while idx < q.chunks.len() {
                let len = q.chunks[idx].len() as u64;
                if offset < pos + len {
                    break;
                }
                pos += len;
                idx += 1;
            }
            q.cursor_idx = idx;
            // `offset` lies within chunk `idx` (or at the end): the
            // difference is below that chunk's length, which is a usize.
            q.cursor_off = (offset - pos) as usize;
        }
        self.sent = offset;
    }
}

/// Receiving half of a session: reassembly by offset.
///
/// Everything stored lies in `[consumed, limit)`, where `limit` is the
/// highest offset this side ever granted, so memory is bounded by
/// `limit - consumed` (at most the largest window granted); bytes below
/// `delivered` are duplicates and dropped.
#[derive(Debug)]
pub struct RecvBuf {
    /// Unread segments keyed by offset, non-overlapping, all `>= consumed`.
    segs: BTreeMap<u64, Bytes>,
    delivered: u64,
    consumed: u64,
    advertised: u64,
    /// Highest offset granted to the peer (never decreases).
    limit: u64,
    fin: u64,
    /// The window granted from `consumed` from now on.
    window: u32,
    /// The window of our Query/Response: what a Credit or Resume implies.
    base: u32,
    eof_read: bool,
}

/// What a grant tells the peer: it may send up to `consumed + window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The credit value (consumed, plus the Fin once read).
    pub consumed: u64,
    /// Bytes granted beyond it.
    pub window: u32,
    /// Whether a plain Credit says the same (the window is the base one).
    pub is_base: bool,
}

const NO_FIN: u64 = u64::MAX;

impl RecvBuf {
    /// A receive buffer whose Query/Response grants `window` bytes.
    pub fn new(window: u32) -> Self {
        RecvBuf {
            segs: BTreeMap::new(),
            delivered: 0,
            consumed: 0,
            advertised: 0,
            limit: u64::from(window),
            fin: NO_FIN,
            window,
            base: window,
            eof_read: false,
        }
    }
    /// The window of the Query/Response (the smallest this side grants).
    pub fn base(&self) -> u32 {
        self.base
    }
    /// The highest offset granted to the peer so far.
    pub fn limit(&self) -> u64 {
        self.limit
    }
    /// Sets the window future grants give (at least the base window:
    /// a Credit or Resume implies it). Credit already granted stays.
    pub fn set_window(&mut self, window: u32) {
        self.window = window.max(self.base);
    }
    /// Grants the current window from the current credit value and
    /// records it as advertised; returns what the frame must carry. If an
    /// earlier grant went further (the window shrank), the frame restates
    /// that limit.
    pub fn grant(&mut self) -> Grant {
        let consumed = self.credit_value();
        self.limit = self
            .limit
            .max(consumed.saturating_add(u64::from(self.window)));
        self.mark_advertised(consumed);
        self.grant_fields(consumed)
    }
    /// Advertises the current credit value in a Resume, which grants the
    /// base window from it; returns the value.
    pub fn grant_resume(&mut self) -> u64 {
        let consumed = self.credit_value();
        self.limit = self
            .limit
            .max(consumed.saturating_add(u64::from(self.base)));
        self.mark_advertised(consumed);
        consumed
    }
    /// The frame fields that restate the current limit from `consumed`.
    fn grant_fields(&self, consumed: u64) -> Grant {
        // The limit is at most `consumed + max window`: the difference fits.
        let window = u32::try_from(self.limit.saturating_sub(consumed)).unwrap_or(u32::MAX);
        Grant {
            consumed,
            window,
            is_base: window == self.base,
        }
    }
    /// A Window frame that restates the limit when what the peer can infer
    /// from a Resume or Response (`implied`) falls short of it.
    pub fn restate_beyond(&self, implied: u64) -> Option<Grant> {
        (self.limit > implied).then(|| self.grant_fields(self.credit_value()))
    }
    /// Bytes the peer may still send beyond what the application consumed
    /// (granted, not yet consumed): what this direction may come to hold.
    #[cfg(test)]
    pub fn outstanding(&self) -> u64 {
        self.limit.saturating_sub(self.consumed)
    }
    /// Contiguous bytes received.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
    /// Bytes the application consumed.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
    /// The window this side grants.
    pub fn window(&self) -> u32 {
        self.window
    }
    /// Bytes held (delivered-unread plus out of order).
    pub fn buffered(&self) -> u64 {
        self.segs.values().map(|b| b.len() as u64).sum()
    }

    /// What a Resume reports as received: contiguous bytes, plus the Fin.
    pub fn received_mark(&self) -> u64 {
        self.delivered + u64::from(self.fin == self.delivered)
    }

    /// Cumulative credit to advertise: consumed, plus the Fin once read.
    pub fn credit_value(&self) -> u64 {
        self.consumed + u64::from(self.eof_read)
    }

    /// The credit last advertised.
    pub fn advertised(&self) -> u64 {
        self.advertised
    }

    /// Whether a Credit frame is worth sending now (batched: a quarter
    /// window consumed, or end-of-stream reached, or the peer's remaining
    /// credit below a quarter window).
    ///
    /// The last rule keeps a session from stalling when the limit granted
    /// falls short of `advertised + window`: a Resume, Query or Response
    /// grants only the base window, and the tuner may grow the window
    /// after a read found a grant due but before it is encoded (a quarter
    /// of the new window can exceed what was consumed since). A reader
    /// that consumed everything the peer may send would then never grant
    /// again: the read armed no delayed credit (it was due then). A peer
    /// with no credit left is always owed a grant. After a full grant
    /// (`limit == advertised + window`) the rule fires no earlier than the
    /// quarter-window one.
    pub fn credit_due(&self) -> bool {
        let value = self.credit_value();
        if value <= self.advertised {
            return false;
        }
        let threshold = u64::from((self.window / 4).max(1));
        self.eof_read
            || value - self.advertised >= threshold
            || self.limit.saturating_sub(value) < threshold
    }

    /// Records that `value` was advertised.
    pub fn mark_advertised(&mut self, value: u64) {
        self.advertised = self.advertised.max(value);
    }

    /// Stores a data frame. Returns whether new contiguous bytes arrived.
    pub fn on_data(&mut self, offset: u64, mut data: Bytes) -> Result<bool, FlowError> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FlowError::Overflow)?;
        let limit = self.limit;
        if end > limit {
            return Err(FlowError::CreditExceeded { offset, end, limit });
        }
        if self.fin != NO_FIN && end > self.fin {
            return Err(FlowError::DataBeyondFin(self.fin));
        }
        if end <= self.delivered || data.is_empty() {
            return Ok(false);
        }
        let mut off = offset;
        if off < self.delivered {
            data.advance((self.delivered - off) as usize);
            off = self.delivered;
        }
        self.insert(off, data);
        let before = self.delivered;
        while let Some((&k, v)) = self.segs.range(self.delivered..).next() {
            if k != self.delivered {
                break;
            }
            self.delivered += v.len() as u64;
        }
        Ok(self.delivered > before)
    }

    /// Inserts `data` at `off`, keeping only the bytes no segment holds yet.
    fn insert(&mut self, mut off: u64, mut data: Bytes) {
        if let Some((&k, v)) = self.segs.range(..off).next_back() {
            let e = k + v.len() as u64;
            if e > off {
                let skip = (e - off).min(data.len() as u64) as usize;
                data.advance(skip);
                off += skip as u64;
            }
        }
        while !data.is_empty() {
            let end = off + data.len() as u64;
            let next = self
                .segs
                .range(off..end)
                .next()
                .map(|(&k, v)| (k, v.len() as u64));
            match next {
                None => {
                    self.segs.insert(off, data);
                    return;
                }
                Some((k, len)) => {
                    if k > off {
                        let head = data.split_to((k - off) as usize);
                        self.segs.insert(off, head);
                        off = k;
                    }
                    let skip = len.min(data.len() as u64) as usize;
                    data.advance(skip);
                    off += skip as u64;
                }
            }
        }
    }

    /// Records the peer's Fin at `offset`. Returns whether end-of-stream is
    /// now readable (all bytes before it delivered).
    pub fn on_fin(&mut self, offset: u64) -> Result<bool, FlowError> {
        if self.fin != NO_FIN {
            if self.fin != offset {
                return Err(FlowError::BadFin {
                    offset,
                    received: self.fin,
                });
            }
            return Ok(false);
        }
        let highest = self
            .segs
            .iter()
            .next_back()
            .map(|(&k, v)| k + v.len() as u64)
            .unwrap_or(0)
            .max(self.delivered);
        if offset < highest {
            return Err(FlowError::BadFin {
                offset,
                received: highest,
            });
        }
        if offset > self.limit {
            return Err(FlowError::CreditExceeded {
                offset,
                end: offset,
                limit: self.limit,
            });
        }
        self.fin = offset;
        Ok(self.delivered == offset)
    }

    /// Whether a read would return data or end-of-stream.
    pub fn is_readable(&self) -> bool {
        self.delivered > self.consumed || (self.fin == self.consumed && !self.eof_read)
    }

    /// Bytes the peer may still send: up to its Fin once that is known,
    /// otherwise up to the limit granted.
    pub fn may_still_arrive(&self) -> u64 {
        self.limit.min(self.fin).saturating_sub(self.delivered)
    }

    /// Whether everything up to and including the Fin has been read.
    pub fn is_finished(&self) -> bool {
        self.eof_read
    }

    /// Takes up to `max` contiguous bytes without copying. `Ok(None)` at
    /// end-of-stream, `Err(())` when nothing is available yet.
    #[allow(clippy::result_unit_err)]
    pub fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, ()> {
        if self.delivered > self.consumed {
            // Invariant: the first segment starts at `consumed` whenever
            // `delivered > consumed`, so this entry exists.
            let mut entry = match self.segs.first_entry() {
                Some(e) => e,
                None => return Err(()),
            };
            let seg = entry.get_mut();
            let n = seg.len().min(max.max(1));
            let out = if n == seg.len() {
                entry.remove()
            } else {
                let head = seg.split_to(n);
                let rest = entry.remove();
                self.segs.insert(self.consumed + n as u64, rest);
                head
            };
            self.consumed += out.len() as u64;
            if self.segs.is_empty() {
                // An emptied BTreeMap keeps its root node (~450 bytes for
                // these entries); an idle session should keep nothing.
                self.segs = BTreeMap::new();
            }
            return Ok(Some(out));
        }
        if self.fin == self.consumed {
            self.eof_read = true;
            return Ok(None);
        }
        Err(())
    }

    /// Discards everything readable (used after the application closed its
    /// read side); returns how many bytes were dropped.
    pub fn discard_readable(&mut self) -> u64 {
        let mut n = 0;
        while let Ok(Some(chunk)) = self.read_chunk(usize::MAX) {
            n += chunk.len() as u64;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_take_credit_release() {
        let mut s = SendBuf::default();
        s.set_peer_window(10);
        assert_eq!(s.write(b"hello world!", 100), 12);
        assert_eq!(s.sendable(), 10);
        let (o, b) = s.take(4).unwrap();
        assert_eq!((o, &b[..]), (0, &b"hell"[..]));
        let (o, b) = s.take(100).unwrap();
        assert_eq!((o, &b[..]), (4, &b"o worl"[..]));
        assert!(s.take(100).is_none());
        assert!(s.on_credit(5).unwrap());
        let (o, b) = s.take(100).unwrap();
        assert_eq!((o, &b[..]), (10, &b"d!"[..]));
        assert!(matches!(
            s.on_credit(13),
            Err(FlowError::CreditBeyondSent { .. })
        ));
        s.finish();
        assert!(s.fin_due());
        assert_eq!(s.take_fin(), 12);
        assert!(s.on_credit(13).unwrap());
        assert!(s.fin_acked());
    }

    #[test]
    fn retransmit_rewinds_to_received() {
        let mut s = SendBuf::default();
        s.set_peer_window(1000);
        s.write_bytes(Bytes::from(vec![1u8; 5000]), 10_000);
        s.write(&[2u8; 100], 10_000);
        let mut got = 0;
        while let Some((_, b)) = s.take(1000) {
            got += b.len();
        }
        assert_eq!(got, 1000);
        s.on_credit(300).unwrap();
        s.retransmit_from(200, u64::MAX).unwrap();
        // Credit 300 is above 200: resend starts at 300.
        let (o, b) = s.take(50).unwrap();
        assert_eq!((o, b.len()), (300, 50));
        assert_eq!(s.retransmitted(), 50);
        assert!(s.retransmit_from(5000, u64::MAX).is_err());
    }

    #[test]
    fn resume_may_count_the_fin() {
        // Regression: a Resume saying "received 1" of an empty direction
        // whose Fin arrived is legal (the Fin occupies offset 0).
        let mut s = SendBuf::default();
        s.set_peer_window(10);
        s.finish();
        assert_eq!(s.take_fin(), 0);
        assert!(s.retransmit_from(1, u64::MAX).is_ok());
        assert!(!s.fin_due());
        assert!(s.retransmit_from(2, u64::MAX).is_err());
    }

    #[test]
    fn recv_reassembles_out_of_order_and_drops_duplicates() {
        let mut r = RecvBuf::new(100);
        assert!(!r.on_data(5, Bytes::from_static(b"fghij")).unwrap());
        assert!(r.on_data(0, Bytes::from_static(b"abcdefg")).unwrap());
        assert_eq!(r.delivered(), 10);
        assert!(!r.on_data(2, Bytes::from_static(b"cd")).unwrap());
        let a = r.read_chunk(100).unwrap().unwrap();
        let b = r.read_chunk(100).unwrap().unwrap();
        assert_eq!([&a[..], &b[..]].concat(), b"abcdefghij");
        assert_eq!(r.read_chunk(10), Err(()));
        assert!(r.on_fin(10).unwrap());
        assert_eq!(r.read_chunk(10), Ok(None));
        assert_eq!(r.credit_value(), 11);
    }

    #[test]
    fn recv_overlapping_segments() {
        let mut r = RecvBuf::new(100);
        r.on_data(10, Bytes::from_static(b"KLM")).unwrap();
        r.on_data(20, Bytes::from_static(b"UV")).unwrap();
        r.on_data(5, Bytes::from_static(b"fghijklmnopqrstuvwxyz"))
            .unwrap();
        r.on_data(0, Bytes::from_static(b"abcde")).unwrap();
        assert_eq!(r.delivered(), 26);
        let mut all = Vec::new();
        while let Ok(Some(c)) = r.read_chunk(7) {
            all.extend_from_slice(&c);
        }
        assert_eq!(&all, b"abcdefghijKLMnopqrstUVwxyz");
    }

    #[test]
    fn recv_limits() {
        let mut r = RecvBuf::new(10);
        assert!(matches!(
            r.on_data(5, Bytes::from_static(b"123456")),
            Err(FlowError::CreditExceeded { .. })
        ));
        r.on_data(0, Bytes::from_static(b"12")).unwrap();
        assert!(r.on_fin(1).is_err());
        r.on_fin(4).unwrap();
        assert!(matches!(
            r.on_data(3, Bytes::from_static(b"45")),
            Err(FlowError::DataBeyondFin(4))
        ));
        assert!(r.on_fin(5).is_err());
    }

    #[test]
    fn credit_is_batched() {
        let mut r = RecvBuf::new(400);
        r.on_data(0, Bytes::from(vec![0u8; 400])).unwrap();
        r.read_chunk(50).unwrap();
        assert!(!r.credit_due());
        r.read_chunk(50).unwrap();
        assert!(r.credit_due());
        r.mark_advertised(r.credit_value());
        assert!(!r.credit_due());
    }

    /// Regression (`fuzz/regressions/migration_ordering/stuck-after-ping-timeout-bb1fb354`,
    /// `stuck-bd1d293c`): a Resume grants only the base window, so after a
    /// recovery the peer's limit is `consumed + base`. The reader consumes
    /// up to it (a grant is due then), but before the control frame goes
    /// out the tuner grows the window, and a quarter of the new window
    /// exceeds what was consumed since the Resume: the grant was no longer
    /// due, no delayed credit was armed (the read had found it due), the
    /// peer stayed blocked at its limit and the session open for ever.
    #[test]
    fn a_grant_is_due_when_the_peer_is_out_of_credit() {
        let mut r = RecvBuf::new(64);
        r.on_data(0, Bytes::from(vec![0u8; 64])).unwrap();
        r.read_chunk(64).unwrap();
        r.set_window(256);
        let g = r.grant();
        assert_eq!((g.consumed, g.window), (64, 256));
        r.on_data(64, Bytes::from(vec![0u8; 256])).unwrap();
        r.read_chunk(256).unwrap();
        // The stream carrying the next grant dies; the recovery's Resume
        // advertises the consumed count with the base window only.
        assert_eq!(r.grant_resume(), 320);
        assert_eq!(r.limit(), 320 + 64);
        r.on_data(320, Bytes::from(vec![0u8; 64])).unwrap();
        r.read_chunk(64).unwrap();
        assert!(r.credit_due(), "a quarter window (64) consumed");
        // The tuner grows the window (threshold 73) before the grant is
        // encoded. The peer has no credit left (limit == consumed): the
        // grant must stay due.
        r.set_window(292);
        assert_eq!(r.credit_value(), r.limit());
        assert!(r.credit_due(), "the peer is blocked: a grant is due");
        let g = r.grant();
        assert_eq!((g.consumed, g.window), (384, 292));
        assert!(!r.credit_due());
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn byte(i: u64) -> u8 {
            (i.wrapping_mul(2_654_435_761) >> 7) as u8
        }

        #[derive(Debug, Clone)]
        enum Op {
            Write(usize, bool),
            Take(usize),
            Credit(u64),
            Rewind(u64),
            /// The receiver changes its window and grants it; the sender
            /// sees that grant or an older one (grants cross on streams).
            Window(u32, u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (1usize..9000, any::<bool>()).prop_map(|(n, b)| Op::Write(n, b)),
                (1usize..20_000).prop_map(Op::Take),
                any::<u64>().prop_map(Op::Credit),
                any::<u64>().prop_map(Op::Rewind),
                (0u32..=MAX_WINDOW, any::<u8>()).prop_map(|(w, k)| Op::Window(w, k)),
            ]
        }

        const BASE: u32 = 30_000;
        const MAX_WINDOW: u32 = 90_000;

        proptest! {
            /// Whatever the interleaving of writes, sends, credits and
            /// rewinds, every byte taken at offset k is byte k of what was
            /// written, retention stays within the window plus the buffer,
            /// and the receiver reassembles exactly what was written.
            #[test]
            fn send_buffer_matches_model(ops in prop::collection::vec(op(), 1..200)) {
                let mut s = SendBuf::default();
                s.set_peer_window(BASE);
                let mut r = RecvBuf::new(BASE);
                let mut written = 0u64;
                // Every grant the receiver made, oldest first.
                let mut grants: Vec<Grant> = Vec::new();
                for op in ops {
                    match op {
                        Op::Write(n, zero_copy) => {
                            let data: Vec<u8> = (written..written + n as u64).map(byte).collect();
                            let cap = s.capacity(10_000);
                            let took = if zero_copy { s.write_bytes(Bytes::from(data), cap) } else { s.write(&data, cap) };
                            written += took as u64;
                        }
                        Op::Take(max) => {
                            if let Some((off, b)) = s.take(max) {
                                for (k, x) in b.iter().enumerate() {
                                    prop_assert_eq!(*x, byte(off + k as u64));
                                }
                                r.on_data(off, b).unwrap();
                            }
                        }
                        Op::Credit(c) => {
                            // A legal credit: at most what the receiver
                            // consumed, granted (a Credit implies the base
                            // window, which every window is at least).
                            while let Ok(Some(_)) = r.read_chunk(usize::MAX) {}
                            grants.push(r.grant());
                            let c = c % (r.consumed() + 1);
                            s.on_credit(c).unwrap();
                        }
                        Op::Window(w, k) => {
                            r.set_window(w);
                            grants.push(r.grant());
                            // Deliver the newest grant or an older one.
                            let g = grants[grants.len() - 1 - usize::from(k) % grants.len()];
                            let before = s.limit();
                            s.on_window(g.consumed, g.window).unwrap();
                            prop_assert!(s.limit() >= before, "a grant never lowers the limit");
                        }
                        Op::Rewind(x) => {
                            let to = x % (s.sent_max() + 1);
                            s.retransmit_from(to, u64::MAX).unwrap();
                        }
                    }
                    // The sender never has more than the receiver granted.
                    prop_assert!(s.limit() <= r.limit());
                    prop_assert!(s.retained() <= u64::from(MAX_WINDOW) + 10_000);
                    prop_assert!(r.buffered() <= r.outstanding());
                    prop_assert!(r.outstanding() <= u64::from(MAX_WINDOW));
                    prop_assert_eq!(s.written(), written);
                }
            }
        }
    }
}
