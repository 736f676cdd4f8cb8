//! [`Nats`]: a connection to a NATS server with JetStream, and the thread that
//! drives it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use weir_runtime::observe::Tally;

use async_nats::jetstream;
use async_nats::jetstream::AckKind;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{NatsError, NatsOptions};

/// A connection to a NATS server, with its JetStream context.
///
/// The client runs on a small tokio runtime of its own, on one thread that the
/// connection owns, so that it does not depend on the arbiters of a weir
/// [`Runtime`](weir_runtime::Runtime): stages hand it work and are woken when the
/// work is done. Clones share the connection; the thread stops when the last
/// clone is dropped.
///
/// It also counts the acknowledgements its sources sent ([`AckStats`]).
///
/// # Examples
///
/// ```no_run
/// let nats = weir_nats::Nats::connect("127.0.0.1:4222")?;
/// nats.flush()?;
/// # Ok::<(), weir_nats::NatsError>(())
/// ```
#[derive(Clone)]
pub struct Nats {
    inner: Arc<Inner>,
}

enum AckCommand {
    /// The acknowledgement `kind` to the message's reply subject.
    Send(async_nats::Subject, AckKind),
    /// Answered once every acknowledgement before it was handed to the client.
    Mark(oneshot::Sender<()>),
}

struct Inner {
    /// The server's URL as given to `connect` (the connectors' metrics label).
    url: String,
    handle: Handle,
    /// To the task that sends acknowledgements, in the order they were decided.
    acks: mpsc::UnboundedSender<AckCommand>,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stats: AckCounters,
    /// Dropping it stops the runtime thread.
    _stop: oneshot::Sender<()>,
}

/// What the sources of one [`Nats`] connection told the broker about the
/// messages they delivered, counted since it connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckStats {
    /// Messages acknowledged: every holder committed or filtered them.
    pub acked: u64,
    /// Messages negatively acknowledged (redelivered after a delay).
    pub naked: u64,
    /// Messages terminated: dead-lettered, never redelivered.
    pub termed: u64,
    /// Messages dropped without a decision (abandoned at shutdown, failed without
    /// a dead letter): nothing is sent, the broker redelivers them after `ack_wait`.
    pub unacked: u64,
}

/// The counts behind [`AckStats`], also exported through the `metrics` facade
/// as `weir_nats_{acked,naked,termed,unacked}_total`, labelled `url` (the
/// server the connection was made to).
pub(crate) struct AckCounters {
    pub(crate) acked: Tally,
    pub(crate) naked: Tally,
    pub(crate) termed: Tally,
    pub(crate) unacked: Tally,
}

impl AckCounters {
    fn new(url: &str) -> Self {
        let l = [("url", crate::refused::redacted(url))];
        AckCounters {
            acked: Tally::new("weir_nats_acked_total", &l),
            naked: Tally::new("weir_nats_naked_total", &l),
            termed: Tally::new("weir_nats_termed_total", &l),
            unacked: Tally::new("weir_nats_unacked_total", &l),
        }
    }
}

impl Nats {
    /// Connects to the server at `url` (`"127.0.0.1:4222"`, `"nats://host:port"`),
    /// starting the connection's thread. Blocks until connected.
    ///
    /// # Errors
    ///
    /// The server cannot be reached or the thread cannot be started.
    pub fn connect(url: &str) -> Result<Nats, NatsError> {
        Nats::connect_with(url, NatsOptions::new())
    }

    /// Connects to `url` with TLS and authentication options (a `tls://` URL
    /// requires TLS). Files named in `options` are read and checked first.
    ///
    /// # Errors
    ///
    /// - [`NatsError::File`]: a file of the options is missing or does not
    ///   parse (the message names it);
    /// - [`NatsError::InvalidOptions`]: an nkey seed that does not decode;
    /// - [`NatsError::Connect`]: the server cannot be reached or refused the
    ///   connection — the message says why: `the server refused the
    ///   credentials` (wrong token, password, nkey or JWT), `TLS failed` (an
    ///   untrusted server certificate, a server without TLS when TLS is
    ///   required, a client certificate the server refused). Each failure is
    ///   logged at `warn` with the server's address (any user and password in
    ///   the URL replaced by `***`) and the reason, never a secret; a refusal
    ///   ([`NatsError::refusal`]) is also counted in
    ///   `weir_nats_connections_refused_total`, labelled `url` and `reason`
    ///   (`tls`, `credentials`);
    /// - the thread cannot be started.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use weir_nats::{Nats, NatsOptions};
    /// let options = NatsOptions::new().ca_file("ca.pem").user_and_password("billing", "s3cret");
    /// let nats = Nats::connect_with("tls://127.0.0.1:4222", options)?;
    /// # Ok::<(), weir_nats::NatsError>(())
    /// ```
    pub fn connect_with(url: &str, options: NatsOptions) -> Result<Nats, NatsError> {
        let connect_options = options.to_connect_options()?;
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("weir-nats".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx
                            .send(Err(NatsError::io("starting the connection's runtime")(e)));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                let _ = rt.block_on(stop_rx);
            })
            .map_err(NatsError::io("starting the connection's thread"))?;
        let handle = handle_rx.recv().map_err(|_| NatsError::ThreadStopped)??;
        let url = url.to_owned();
        let stats_url = url.clone();
        let target = url.clone();
        // The JetStream context spawns a task: it is made on the connection's runtime.
        let (client, jetstream) = block_on(&handle, async move {
            let client = connect_options.connect(target).await?;
            let jetstream = jetstream::new(client.clone());
            Ok::<_, async_nats::ConnectError>((client, jetstream))
        })?
        .map_err(|source| crate::refused::failed(url, source))?;
        // Registered once connected: a refused connection leaves no series.
        let stats = AckCounters::new(&stats_url);
        let (acks, mut decided) = mpsc::unbounded_channel::<AckCommand>();
        let ack_client = client.clone();
        // One task sends every acknowledgement: no task per message. A lost
        // acknowledgement only causes a redelivery, so errors are not waited for.
        drop(handle.spawn(async move {
            while let Some(command) = decided.recv().await {
                match command {
                    AckCommand::Send(reply, kind) => {
                        let _ = ack_client.publish(reply, kind.into()).await;
                    }
                    AckCommand::Mark(done) => {
                        let _ = done.send(());
                    }
                }
            }
        }));
        Ok(Nats {
            inner: Arc::new(Inner {
                url: stats_url,
                handle,
                acks,
                client,
                jetstream,
                stats,
                _stop: stop_tx,
            }),
        })
    }

    /// The core NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.jetstream
    }

    /// Runs `fut` on the connection's runtime and waits for it, from a thread that
    /// is not inside an async runtime (setup code, `main`, tests).
    ///
    /// # Errors
    ///
    /// The connection's thread stopped, or `fut` panicked.
    pub fn block_on<F>(&self, fut: F) -> Result<F::Output, NatsError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        block_on(&self.inner.handle, fut)
    }

    /// Starts `fut` on the connection's runtime.
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.handle.spawn(fut)
    }

    /// Waits until everything published so far, acknowledgements included, has
    /// reached the server. Call it after a pipeline stopped and before the process
    /// exits, so that its last acknowledgements are not lost (they would only cause
    /// redeliveries).
    ///
    /// # Errors
    ///
    /// The server could not be reached.
    pub fn flush(&self) -> Result<(), NatsError> {
        let client = self.inner.client.clone();
        let (mark, marked) = oneshot::channel();
        let _ = self.inner.acks.send(AckCommand::Mark(mark));
        self.block_on(async move {
            let _ = marked.await;
            client.flush().await
        })?
        .map_err(NatsError::request("flush"))
    }

    /// The server's URL, as given to [`connect`](Self::connect).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The acknowledgements sent so far.
    pub fn ack_stats(&self) -> AckStats {
        let s = &self.inner.stats;
        AckStats {
            acked: s.acked.get(),
            naked: s.naked.get(),
            termed: s.termed.get(),
            unacked: s.unacked.get(),
        }
    }

    pub(crate) fn send_ack(&self, message: &jetstream::Message, kind: AckKind) {
        // Fails only once the connection's thread stopped: then the broker
        // redelivers the message, as after a crash. A message without a reply
        // subject cannot be acknowledged (it did not come from a consumer).
        if let Some(reply) = message.reply.clone() {
            let _ = self.inner.acks.send(AckCommand::Send(reply, kind));
        }
    }

    /// Sends acknowledgement `kind` to the reply subject `reply`, in order with
    /// the others.
    pub(crate) fn send_ack_to(&self, reply: &str, kind: AckKind) {
        let _ = self
            .inner
            .acks
            .send(AckCommand::Send(async_nats::Subject::from(reply), kind));
    }

    pub(crate) fn counters(&self) -> &AckCounters {
        &self.inner.stats
    }
}

fn block_on<F>(handle: &Handle, fut: F) -> Result<F::Output, NatsError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    futures::executor::block_on(handle.spawn(fut)).map_err(NatsError::from)
}

impl fmt::Debug for Nats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nats")
            .field("state", &self.inner.client.connection_state())
            .field("acks", &self.ack_stats())
            .finish()
    }
}
