//! One client's event stream: its subscriber turned into SSE frames.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use hyper::body::Frame;
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};
use weir_operators::hub::{HubEnd, Subscriber};

use super::{Counters, Encode};

/// Events taken from the buffer into one frame at most, so one write carries a
/// burst without letting a fast hub starve the heartbeat or the shutdown check.
const EVENTS_PER_FRAME: usize = 64;

/// Where a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing sent yet: the next frame is the `retry:` field and `: connected`.
    Start,
    /// Streaming.
    Run,
    /// The `end` event went out; the stream ends.
    Done,
}

/// Decrements the count of streaming clients when the stream goes (the client
/// left, the stream ended or the server shut down).
struct ClientGuard(Arc<Counters>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.down();
    }
}

/// What a client's stream carries along.
struct State<T> {
    sub: Subscriber<T>,
    encode: Encode<T>,
    event: Option<String>,
    retry: Duration,
    heartbeat: Option<Interval>,
    shutdown: watch::Receiver<bool>,
    /// The index the next element has when nothing was dropped before it.
    expected: u64,
    phase: Phase,
    counters: Arc<Counters>,
    _guard: ClientGuard,
}

/// The frames of one client's stream: what its subscriber yields, as SSE text.
pub(super) fn events<T: Send + 'static>(
    sub: Subscriber<T>,
    encode: Encode<T>,
    event: Option<String>,
    retry: Duration,
    heartbeat: Option<Duration>,
    shutdown: watch::Receiver<bool>,
    counters: Arc<Counters>,
) -> impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    counters.clients.up();
    let _ = counters.subscribed.add(1);
    let heartbeat = heartbeat.map(|every| {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick
    });
    let state = State {
        sub,
        encode,
        event,
        retry,
        heartbeat,
        shutdown,
        expected: 0,
        phase: Phase::Start,
        _guard: ClientGuard(Arc::clone(&counters)),
        counters,
    };
    futures::stream::unfold(state, |mut st| async move {
        let text = st.next_frame().await?;
        Some((Ok(Frame::data(Bytes::from(text))), st))
    })
}

impl<T: Send + 'static> State<T> {
    /// The next frame's text; `None` after the `end` event.
    async fn next_frame(&mut self) -> Option<String> {
        let mut out = String::new();
        match self.phase {
            Phase::Done => return None,
            Phase::Start => {
                self.phase = Phase::Run;
                let _ = write!(out, "retry: {}\n: connected\n\n", self.retry.as_millis());
                return Some(out);
            }
            Phase::Run => {}
        }
        tokio::select! {
            biased;
            _ = self.shutdown.changed() => {
                // The sender went away or said so: either way the server is stopping.
                out.push_str("event: end\ndata: shutdown\n\n");
                self.phase = Phase::Done;
            }
            next = self.sub.recv_indexed() => match next {
                Some((i, x)) => {
                    self.push_event(&mut out, i, &x);
                    let mut sent = 1;
                    while sent < EVENTS_PER_FRAME {
                        let Some((i, x)) = self.sub.try_recv_indexed() else { break };
                        self.push_event(&mut out, i, &x);
                        sent += 1;
                    }
                    let _ = self.counters.events.add(sent as u64);
                }
                None => {
                    // What was offered after the last element and dropped.
                    let offered = self.sub.stats().offered;
                    self.report_lag(&mut out, offered);
                    let how = match self.sub.end() {
                        Some(HubEnd::Completed) => "completed",
                        _ => "stopped",
                    };
                    let _ = write!(out, "event: end\ndata: {how}\n\n");
                    self.phase = Phase::Done;
                }
            },
            () = tick(&mut self.heartbeat) => out.push_str(": keep-alive\n\n"),
        }
        Some(out)
    }

    /// Appends one element's event (after a `lagged` event when the lag policy
    /// dropped elements before it): its index as `id`, its encoding as one
    /// `data:` line per line.
    fn push_event(&mut self, out: &mut String, index: u64, x: &T) {
        self.report_lag(out, index);
        self.expected = index + 1;
        if let Some(name) = &self.event {
            let _ = writeln!(out, "event: {name}");
        }
        let _ = writeln!(out, "id: {index}");
        let text = (self.encode)(x);
        // `lines` drops a trailing newline; an empty encoding is one empty line.
        let mut any = false;
        for line in text.lines() {
            let _ = writeln!(out, "data: {line}");
            any = true;
        }
        if !any {
            out.push_str("data: \n");
        }
        out.push('\n');
    }

    /// Appends a `lagged` event when elements before index `upto` were dropped
    /// since the last element sent.
    fn report_lag(&mut self, out: &mut String, upto: u64) {
        if upto > self.expected {
            let n = upto - self.expected;
            self.expected = upto;
            let _ = self.counters.lagged.add(n);
            let _ = write!(out, "event: lagged\ndata: {n}\n\n");
        }
    }
}

/// The next heartbeat; never, without one.
async fn tick(heartbeat: &mut Option<Interval>) {
    match heartbeat {
        Some(every) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}
