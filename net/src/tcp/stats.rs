//! [`TcpSourceStats`]: what a TCP source did, and the counters behind it.

use weir_runtime::observe::{Level, Tally};

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
    /// Connections closed because their TLS handshake failed or timed out (a
    /// plaintext client, an untrusted or missing client certificate…): nothing
    /// they sent was admitted. Always 0 without TLS. These connections are also
    /// counted in `accepted`.
    pub tls_handshake_failures: u64,
}

/// The source's counters: kept for [`TcpSourceStats`] and exported through the
/// `metrics` facade as `weir_tcp_source_*` with the label `addr` (the address it
/// listens on).
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) accepted: Tally,
    pub(crate) refused: Tally,
    pub(crate) open: Level,
    pub(crate) frames: Tally,
    pub(crate) bytes: Tally,
    pub(crate) bad_frames: Tally,
    pub(crate) idle_timeouts: Tally,
    pub(crate) read_timeouts: Tally,
    pub(crate) over_quota_dropped: Tally,
    pub(crate) over_quota_delayed: Tally,
    pub(crate) io_errors: Tally,
    pub(crate) dead_letters_refused: Tally,
    pub(crate) tls_handshake_failures: Tally,
}

pub(crate) fn bump(counter: &Tally, by: u64) {
    let _ = counter.add(by);
}

impl Counters {
    /// The counters of the source listening on `addr`.
    pub(crate) fn new(addr: &str) -> Self {
        let l = [("addr", addr.to_owned())];
        Counters {
            accepted: Tally::new("weir_tcp_source_accepted_total", &l),
            refused: Tally::new("weir_tcp_source_refused_total", &l),
            open: Level::new("weir_tcp_source_open_connections", &l),
            frames: Tally::new("weir_tcp_source_frames_total", &l),
            bytes: Tally::new("weir_tcp_source_bytes_total", &l),
            bad_frames: Tally::new("weir_tcp_source_bad_frames_total", &l),
            idle_timeouts: Tally::new("weir_tcp_source_idle_timeouts_total", &l),
            read_timeouts: Tally::new("weir_tcp_source_read_timeouts_total", &l),
            over_quota_dropped: Tally::new("weir_tcp_source_over_quota_dropped_total", &l),
            over_quota_delayed: Tally::new("weir_tcp_source_over_quota_delayed_total", &l),
            io_errors: Tally::new("weir_tcp_source_io_errors_total", &l),
            dead_letters_refused: Tally::new("weir_tcp_source_dead_letters_refused_total", &l),
            tls_handshake_failures: Tally::new("weir_tcp_source_tls_handshake_failures_total", &l),
        }
    }

    pub(crate) fn opened(&self) {
        self.open.up();
        bump(&self.accepted, 1);
    }

    pub(crate) fn closed(&self) {
        self.open.down();
    }

    pub(crate) fn snapshot(&self) -> TcpSourceStats {
        let get = Tally::get;
        TcpSourceStats {
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            open: self.open.get(),
            peak_open: self.open.peak(),
            frames: get(&self.frames),
            bytes: get(&self.bytes),
            bad_frames: get(&self.bad_frames),
            idle_timeouts: get(&self.idle_timeouts),
            read_timeouts: get(&self.read_timeouts),
            over_quota_dropped: get(&self.over_quota_dropped),
            over_quota_delayed: get(&self.over_quota_delayed),
            io_errors: get(&self.io_errors),
            dead_letters_refused: get(&self.dead_letters_refused),
            tls_handshake_failures: get(&self.tls_handshake_failures),
        }
    }
}
