//! The state one connection's two stages and its driver tasks share.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use tokio::sync::Notify;
use weir_supervisor::{ErrorClass, Failure};

use super::DuplexConfig;

/// One connection: its peer, settings, state, and the writer's wake-up.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) peer: SocketAddr,
    pub(crate) config: DuplexConfig,
    state: Mutex<State>,
    pub(crate) writer: Notify,
}

/// Which side of a TLS handshake this end of the connection plays.
#[cfg(feature = "tls")]
#[derive(Debug)]
pub(crate) enum Handshake {
    /// The connecting side: verifies the server.
    Client(crate::tls::TlsConnector),
    /// The accepting side.
    Server(crate::tls::TlsAcceptor),
}

/// Both directions' counters. Sending: `acked <= written <= assigned <= acked +
/// window`. Receiving: `delivered <= received <= granted` and `inbox.len() ==
/// received - delivered`.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The socket, until a stage starts the driver.
    pub(crate) stream: Option<std::net::TcpStream>,
    /// The TLS handshake to make before the protocol starts, if any.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Handshake>,
    // Sending.
    /// Elements the peer still lets this side send.
    pub(crate) credit: u64,
    /// Payloads taken by the sink stage and not yet written.
    pub(crate) queue: VecDeque<Vec<u8>>,
    /// Elements taken by the sink stage (queued or written).
    pub(crate) assigned: u64,
    /// Elements written (DATA sent).
    pub(crate) written: u64,
    /// Elements the peer acknowledged (delivered into its pipeline).
    pub(crate) acked: u64,
    /// The sink stage takes no more elements: END goes out after the queue.
    pub(crate) sink_done: bool,
    pub(crate) end_sent: bool,
    // Receiving.
    /// Elements received and not yet taken by the source stage.
    pub(crate) inbox: VecDeque<Vec<u8>>,
    pub(crate) received: u64,
    /// Elements the source stage handed to its pipeline.
    pub(crate) delivered: u64,
    /// The ACK last sent.
    pub(crate) ack_sent: u64,
    /// Elements the peer was allowed to send in all (initial window + credits).
    pub(crate) granted: u64,
    pub(crate) peer_ended: bool,
    /// The source stage stopped before the peer's END.
    pub(crate) source_cancelled: bool,
    pub(crate) pong_due: bool,
    // Outcome.
    pub(crate) failure: Option<(ErrorClass, String)>,
    /// Both directions ended cleanly and the writer closed its half.
    pub(crate) closed: bool,
    pub(crate) sink_waker: Option<Waker>,
    pub(crate) source_waker: Option<Waker>,
    // Figures.
    pub(crate) max_in_flight: u64,
    pub(crate) max_buffered: u64,
    pub(crate) pings_sent: u64,
}

impl State {
    /// Wakes both stages.
    pub(crate) fn wake_stages(&mut self) {
        if let Some(waker) = self.sink_waker.take() {
            waker.wake();
        }
        if let Some(waker) = self.source_waker.take() {
            waker.wake();
        }
    }

    /// The failure as a [`Failure`] for a stage, if the connection failed.
    pub(crate) fn failure(&self) -> Option<Failure> {
        self.failure
            .as_ref()
            .map(|(class, message)| Failure::error(*class, message.clone()))
    }
}

impl Shared {
    pub(crate) fn new(
        stream: std::net::TcpStream,
        peer: SocketAddr,
        config: DuplexConfig,
    ) -> Arc<Self> {
        let window = u64::from(config.window);
        Arc::new(Shared {
            peer,
            config,
            state: Mutex::new(State {
                stream: Some(stream),
                granted: window,
                ..State::default()
            }),
            writer: Notify::new(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails the connection (the first failure wins; nothing after a clean
    /// close): both stages fail with it and the writer sends ERROR and stops.
    pub(crate) fn fail(&self, class: ErrorClass, message: String) {
        let mut state = self.lock();
        if state.failure.is_none() && !state.closed {
            tracing::warn!(peer = %self.peer, error = %message, "duplex connection failed");
            state.failure = Some((class, message));
            state.wake_stages();
        }
        drop(state);
        self.writer.notify_one();
    }
}
