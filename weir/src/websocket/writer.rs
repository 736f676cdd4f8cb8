//! One client of a [`WsBroadcast`](super::WsBroadcast): its hub subscription
//! written to its socket, with lag notices, heartbeats and the closing
//! handshake.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use weir_operators::hub::{HubEnd, SubscribeError, Subscriber};

use super::SlowClient;
use super::broadcast::Shared;
use super::handshake::Ws;
use super::session::{self, Alarm, End, Liveness};

/// Elements taken from the buffer into one write at most, so that a burst
/// goes out in one flush without starving the heartbeat or the shutdown.
const PER_WRITE: usize = 64;

/// What one client's session keeps.
struct Client<'a, T> {
    shared: &'a Shared<T>,
    sub: Subscriber<T>,
    /// The index the next element has when nothing was dropped before it.
    expected: u64,
}

/// Serves one client until it ends.
pub(crate) async fn write<T: Clone + Send + 'static>(
    shared: Arc<Shared<T>>,
    session: Result<Subscriber<T>, SubscribeError>,
    mut ws: Ws,
    peer: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) {
    let options = &shared.options;
    let counters = &shared.counters;
    let sub = match session {
        Ok(sub) => sub,
        Err(e) => {
            // Validated before the server started; said to the client anyway.
            tracing::error!(%peer, error = %e, "websocket broadcast: cannot subscribe");
            let end = End::Closing(CloseCode::Error, "cannot subscribe to the hub");
            let _ = session::send_close(&mut ws, &end, options.write_timeout).await;
            return;
        }
    };
    let mut client = Client {
        shared: &shared,
        sub,
        expected: 0,
    };
    let mut liveness = Liveness::new(options);
    let end = loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => {
                break End::Closing(CloseCode::Away, "the server is shutting down");
            }
            next = ws.next() => {
                liveness.heard();
                match next {
                    None => break End::Closed,
                    Some(Err(e)) => break End::from_error(e),
                    Some(Ok(Message::Pong(_))) => {
                        let _ = counters.conn.pongs.add(1);
                    }
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        let _ = counters.ignored.add(1);
                    }
                    Some(Ok(_)) => {}
                }
            }
            alarm = liveness.alarm() => match alarm {
                Alarm::Idle => break End::Idle,
                Alarm::Ping => {
                    if !session::ping(&mut ws, options.write_timeout, &counters.conn).await {
                        break End::WriteTimeout;
                    }
                    liveness.pinged();
                }
            },
            next = client.sub.recv_indexed() => {
                let Some(first) = next else {
                    break client.ended(&mut ws).await;
                };
                if let Some(end) = client.send_burst(&mut ws, first).await {
                    break end;
                }
            }
        }
    };
    end.count(&counters.conn);
    match &end {
        End::TooSlow(missed) => {
            let _ = counters.too_slow.add(1);
            tracing::debug!(%peer, missed, "websocket broadcast: slow client disconnected");
        }
        End::WriteTimeout => {
            let _ = counters.write_timeouts.add(1);
            tracing::debug!(%peer, "websocket broadcast: write timed out, client dropped");
        }
        End::Protocol(_, reason) | End::Utf8(reason) | End::Broken(reason) => {
            tracing::debug!(%peer, %reason, "websocket broadcast: client closed");
        }
        _ => {}
    }
    // Unsubscribe at once: the hub stops keeping elements for this client.
    drop(client);
    if session::send_close(&mut ws, &end, options.write_timeout).await {
        let late = session::linger(&mut ws).await;
        let _ = counters.ignored.add(late);
    }
}

impl<T: Clone + Send + 'static> Client<'_, T> {
    /// Writes `first` and whatever else is buffered (up to [`PER_WRITE`]), each
    /// after the lag notice of what was dropped before it, in one flush.
    /// Returns why the session ends, if it does.
    async fn send_burst(&mut self, ws: &mut Ws, first: (u64, T)) -> Option<End> {
        let shared = self.shared;
        let mut batch = Vec::with_capacity(2);
        let mut elements = 0_u64;
        let mut too_slow = false;
        let mut next = Some(first);
        while let Some((index, x)) = next.take() {
            if index > self.expected && shared.slow == SlowClient::Disconnect {
                too_slow = true;
                break;
            }
            self.report_lag(index, &mut batch);
            batch.push((shared.encode)(&x).into_message());
            elements += 1;
            self.expected = index + 1;
            if elements < PER_WRITE as u64 {
                next = self.sub.try_recv_indexed();
            }
        }
        if !batch.is_empty() {
            if let Some(end) = write_all(ws, batch, shared.options.write_timeout).await {
                return Some(end);
            }
            let _ = shared.counters.sent.add(elements);
        }
        // Cut off: it misses everything offered to it and not sent, the
        // element in hand and what its buffer still holds included.
        too_slow.then(|| End::TooSlow(self.missed(self.sub.stats().offered)))
    }

    /// The hub ended and the buffer is empty: reports what was dropped after
    /// the last element sent, and says how the session closes.
    async fn ended(&mut self, ws: &mut Ws) -> End {
        let offered = self.sub.stats().offered;
        if offered > self.expected {
            if self.shared.slow == SlowClient::Disconnect {
                return End::TooSlow(self.missed(offered));
            }
            let mut batch = Vec::with_capacity(1);
            self.report_lag(offered, &mut batch);
            if let Some(end) = write_all(ws, batch, self.shared.options.write_timeout).await {
                return end;
            }
        }
        match self.sub.end() {
            Some(HubEnd::Completed) => End::Closing(CloseCode::Normal, "end of stream"),
            _ => End::Closing(CloseCode::Away, "the pipeline stopped"),
        }
    }

    /// Counts the elements dropped before index `upto` as lagged and returns
    /// how many.
    fn missed(&mut self, upto: u64) -> u64 {
        let n = upto - self.expected;
        self.expected = upto;
        let _ = self.shared.counters.lagged.add(n);
        n
    }

    /// Adds a lag notice to `batch` when elements before index `upto` were
    /// dropped since the last one sent.
    fn report_lag(&mut self, upto: u64, batch: &mut Vec<Message>) {
        if upto > self.expected {
            let n = self.missed(upto);
            if let Some(notice) = &self.shared.notice {
                batch.push(notice(n).into_message());
                let _ = self.shared.counters.notices.add(1);
            }
        }
    }
}

/// Writes `batch` and flushes it within `timeout`; the end of the session if
/// that failed.
async fn write_all(ws: &mut Ws, batch: Vec<Message>, timeout: std::time::Duration) -> Option<End> {
    let write = async {
        for message in batch {
            ws.feed(message).await?;
        }
        ws.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(End::from_error(e)),
        Err(_) => Some(End::WriteTimeout),
    }
}
