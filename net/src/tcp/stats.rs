//! [`TcpSourceStats`]: what a TCP source did, and the counters behind it.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`TcpSource`](super::TcpSource)'s counters, from
/// [`TcpSourceHandle::stats`](super::TcpSourceHandle::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpSourceStats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: u64,
    /// Connections open now.
    pub open: u64,
    /// The most connections open at once.
    pub peak_open: u64,
    /// Frames handed to the pipeline.
    pub frames: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Connections closed for a bad frame (oversized, or cut short by the peer).
    pub bad_frames: u64,
    /// Connections closed by the idle timeout.
    pub idle_timeouts: u64,
    /// Connections closed by the read (frame completion) timeout.
    pub read_timeouts: u64,
    /// Frames dropped over a connection's quota ([`OverQuota::Drop`](super::OverQuota::Drop)).
    pub over_quota_dropped: u64,
    /// Times a connection waited for its quota ([`OverQuota::Delay`](super::OverQuota::Delay)).
    pub over_quota_delayed: u64,
    /// Socket read errors and failed accepts.
    pub io_errors: u64,
    /// Dead letters of bad input the dead-letter sink refused (it was full).
    pub dead_letters_refused: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) open: AtomicU64,
    pub(crate) peak_open: AtomicU64,
    pub(crate) frames: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) bad_frames: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    pub(crate) read_timeouts: AtomicU64,
    pub(crate) over_quota_dropped: AtomicU64,
    pub(crate) over_quota_delayed: AtomicU64,
    pub(crate) io_errors: AtomicU64,
    pub(crate) dead_letters_refused: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn opened(&self) {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(open, Ordering::Relaxed);
        bump(&self.accepted, 1);
    }

    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TcpSourceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TcpSourceStats {
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            open: get(&self.open),
            peak_open: get(&self.peak_open),
            frames: get(&self.frames),
            bytes: get(&self.bytes),
            bad_frames: get(&self.bad_frames),
            idle_timeouts: get(&self.idle_timeouts),
            read_timeouts: get(&self.read_timeouts),
            over_quota_dropped: get(&self.over_quota_dropped),
            over_quota_delayed: get(&self.over_quota_delayed),
            io_errors: get(&self.io_errors),
            dead_letters_refused: get(&self.dead_letters_refused),
        }
    }
}
