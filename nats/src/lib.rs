//! NATS JetStream connectors for weir: several weir processes share a durable
//! pull consumer, each message is acknowledged only after every sink it reached
//! committed it, and results can be published back with the server's
//! acknowledgement.
//!
//! - [`JetStreamSource`]: a durable pull consumer that fetches only what the
//!   pipeline has credit for (backpressure reaches the broker);
//! - [`Delivery`] and [`AckToken`]: end-to-end acknowledgement, shared by every
//!   copy of an element (ack when all committed or filtered, term when
//!   dead-lettered, nothing when one was abandoned or lost);
//! - [`Commit`]: the sink that commits, nakks with backoff, or terminates and
//!   dead-letters a poison message after `max_deliver`;
//! - [`Publish`]: a sink publishing with server acknowledgement and bounded
//!   in-flight publishes;
//! - [`Acks::OnCheckpoint`] and [`MsgId`]: exactly once with checkpoints — the
//!   source acks a message only once a checkpoint holding its effects is durable,
//!   and the publish sink sets a deterministic `Nats-Msg-Id` so that the target
//!   stream's duplicate window drops what a restored pipeline publishes again
//!   (`docs/scale-out.md`, "Checkpoints");
//! - [`Nats`], [`ConsumerSettings`]: the connection, streams and consumers;
//! - [`NatsOptions`]: TLS (CA, client certificate, TLS required) and
//!   authentication (token, user and password, nkey, credentials file) for
//!   [`Nats::connect_with`] (`docs/security.md`);
//! - [`TestServer`]: a throwaway `nats-server -js` for tests and demos, with
//!   TLS and authorization ([`TestServerOptions`]).
//!
//! The guarantees are stated in `docs/semantics.md` ("At-least-once with NATS
//! JetStream") and the deployment in `docs/scale-out.md`.
//!
//! # Examples
//!
//! ```no_run
//! use weir_nats::{ConsumerSettings, JetStreamSource, Nats, NatsFlowExt};
//! use weir_operators::FlowExt;
//!
//! let nats = Nats::connect("127.0.0.1:4222")?;
//! nats.work_queue("orders", &["orders.>"])?;
//! let consumer = nats.durable_consumer("orders", &ConsumerSettings::new("billing"))?;
//! let rt = weir_runtime::Runtime::new()?;
//! let done = JetStreamSource::new(nats.clone(), consumer)
//!     .flow()
//!     .map(|d| d.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
//!     .filter_acked(|order| !order.is_empty())
//!     .commit(|d| {
//!         println!("billing {}", d.payload);
//!         async { Ok(()) }
//!     })
//!     .run(&rt)?
//!     .wait()?;
//! nats.flush()?;
//! done.report.check_conservation()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod ack;
mod ack_core;
mod commit;
mod connection;
mod error;
mod ext;
mod hold;
mod options;
mod publish;
mod refused;
mod server;
mod setup;
mod source;
/// The synchronisation types `ack_core` is written against (loom's in its model).
mod sync {
    pub(crate) use std::sync::Mutex;
    pub(crate) use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
}

pub use ack::{AckToken, Delivery, DeliveryInfo, Received};
pub use commit::{Commit, Redelivery};
pub use connection::{AckStats, Nats};
pub use error::{NatsCause, NatsError, Refusal};
pub use ext::NatsFlowExt;
pub use options::NatsOptions;
pub use publish::{DEFAULT_MAX_IN_FLIGHT, MsgId, Publish, PublishStats};
pub use server::{INSTALL_HINT, TestServer, TestServerOptions};
pub use setup::ConsumerSettings;
pub use source::{Acks, DEFAULT_FETCH_WAIT, DEFAULT_MAX_FETCH, JetStreamSource};

pub use async_nats;
pub use bytes::Bytes;
