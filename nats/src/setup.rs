//! Creating streams and durable consumers: [`ConsumerSettings`].

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream;

use crate::{Nats, NatsError};

/// The settings of a durable pull consumer that weir processes share.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_nats::ConsumerSettings;
///
/// let settings = ConsumerSettings::new("workers")
///     .ack_wait(Duration::from_secs(5))
///     .max_deliver(3)
///     .max_ack_pending(512);
/// assert_eq!(settings.max_deliver, Some(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct ConsumerSettings {
    /// The durable name: processes using the same name share the consumer.
    pub durable: String,
    /// How long the broker waits for an acknowledgement before it redelivers.
    /// Default 30 s.
    pub ack_wait: Duration,
    /// How many times the broker delivers a message at most (`None`: no limit).
    /// Default 5.
    pub max_deliver: Option<u64>,
    /// How many messages may be delivered and not yet acknowledged, across all
    /// processes: the broker stops delivering at this many. Default 1000.
    pub max_ack_pending: u64,
}

impl ConsumerSettings {
    /// Settings for the durable consumer `durable`, with the defaults above.
    pub fn new(durable: impl Into<String>) -> Self {
        ConsumerSettings {
            durable: durable.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: Some(5),
            max_ack_pending: 1000,
        }
    }

    /// Sets [`ack_wait`](Self::ack_wait).
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// Sets [`max_deliver`](Self::max_deliver).
    pub fn max_deliver(mut self, n: u64) -> Self {
        self.max_deliver = Some(n);
        self
    }

    /// Sets [`max_ack_pending`](Self::max_ack_pending).
    pub fn max_ack_pending(mut self, n: u64) -> Self {
        self.max_ack_pending = n;
        self
    }

    fn config(&self) -> Result<pull::Config, NatsError> {
        let signed = |n: u64, what: &str| {
            i64::try_from(n)
                .map_err(|_| NatsError::InvalidSettings(format!("{what} {n} is too large")))
        };
        if self.durable.is_empty() || self.durable.contains(['.', ' ', '*', '>']) {
            return Err(NatsError::InvalidSettings(format!(
                "invalid durable name {:?}: it must be non-empty, without `.`, spaces, `*` or `>`",
                self.durable
            )));
        }
        if self.max_ack_pending == 0 {
            return Err(NatsError::InvalidSettings(
                "max_ack_pending must be at least 1".into(),
            ));
        }
        if self.max_deliver == Some(0) {
            return Err(NatsError::InvalidSettings(
                "max_deliver must be at least 1".into(),
            ));
        }
        Ok(pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: match self.max_deliver {
                Some(n) => signed(n, "max_deliver")?,
                None => -1,
            },
            max_ack_pending: signed(self.max_ack_pending, "max_ack_pending")?,
            ..Default::default()
        })
    }
}

impl Nats {
    /// Creates the stream `name` capturing `subjects` with work-queue retention (a
    /// message is removed once acknowledged), or returns the existing one.
    ///
    /// # Errors
    ///
    /// The server refused (no JetStream, a conflicting stream).
    pub fn work_queue(&self, name: &str, subjects: &[&str]) -> Result<stream::Stream, NatsError> {
        let js = self.jetstream().clone();
        let config = stream::Config {
            name: name.to_owned(),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        };
        self.block_on(async move { js.get_or_create_stream(config).await })?
            .map_err(NatsError::request("creating the stream"))
    }

    /// Creates the durable pull consumer `settings.durable` on `stream`, or
    /// returns the existing one (its settings are the ones it was created with).
    ///
    /// # Errors
    ///
    /// Invalid settings (named in the message), a missing stream, or the server
    /// refused.
    pub fn durable_consumer(
        &self,
        stream: &str,
        settings: &ConsumerSettings,
    ) -> Result<PullConsumer, NatsError> {
        let config = settings.config()?;
        let js = self.jetstream().clone();
        let stream = stream.to_owned();
        self.block_on(async move {
            let stream = js
                .get_stream(stream)
                .await
                .map_err(NatsError::request("looking up the stream"))?;
            let durable = config.durable_name.clone().unwrap_or_default();
            stream
                .get_or_create_consumer(&durable, config)
                .await
                .map_err(NatsError::request("creating the consumer"))
        })?
    }
}
