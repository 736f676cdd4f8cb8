//! weir's network connectors, hardened against bad input.
//!
//! - [`frame`]: newline-delimited and length-prefixed framing, with incremental
//!   decoders that check the maximum frame size before allocating and never
//!   panic.
//! - [`duplex`]: a bidirectional stream over one TCP connection, with a sliding
//!   window, acknowledgements, heartbeats and a peer timeout.
//! - [`tcp`]: a TCP source (a listener: many connections, one stream of frames,
//!   backpressure onto the sockets, connection limit, idle and read timeouts,
//!   per-connection quotas, bad frames dead-lettered) and a TCP sink (a client
//!   that reconnects under the stage's supervision).
//! - `tls` (feature `tls`): TLS 1.3 (rustls) for the TCP source, the TCP
//!   sink and duplex connections, with optional client certificates.
//!
//! See `docs/network.md` for the limits and what happens to bad input.
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

pub mod duplex;
pub mod frame;
mod stream;
pub mod tcp;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;

/// The Rust examples of `docs/network.md`, compiled and run as doctests so that
/// they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/network.md")]
pub struct NetworkDoctests;
