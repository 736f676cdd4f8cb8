//! weir: an actor-based stream processing runtime for Rust services.
//!
//! Every stage of a pipeline is an actix actor; elements travel downstream in
//! batches against credit granted upstream, so no edge ever holds more than its
//! capacity and a slow sink slows the source instead of filling memory. Batches grow
//! under load and shrink to single elements at idle, so there is no linger timer and
//! no latency cost for batching.
//!
//! # Examples
//!
//! ```
//! use weir::prelude::*;
//!
//! let rt = Runtime::new()?;
//! let done = Pipeline::from_iter(0..1_000_u64)
//!     .map(|x| x * 3)
//!     .filter(|x| x % 2 == 0)
//!     .name("evens")
//!     .chunks(100)
//!     .map(|chunk| chunk.iter().sum::<u64>())
//!     .collect()
//!     .run(&rt)?
//!     .wait()?;
//! assert_eq!(done.output.iter().sum::<u64>(), (0..1_000).map(|x| x * 3).filter(|x| x % 2 == 0).sum::<u64>());
//! done.report.check_conservation()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Invalid pipelines
//!
//! Mistakes that can be caught by the compiler are. A flow cannot be used twice
//! (stages are moved into it):
//!
//! ```compile_fail
//! use weir::prelude::*;
//! let flow = Pipeline::from_iter(0..3_u64).map(|x| x + 1);
//! let a = flow.collect();
//! let b = flow.collect(); // error: use of moved value `flow`
//! ```
//!
//! and a flow without a sink cannot be run:
//!
//! ```compile_fail
//! use weir::prelude::*;
//! let rt = Runtime::new().unwrap();
//! Pipeline::from_iter(0..3_u64).map(|x| x + 1).run(&rt); // error: no method `run` on `Flow`
//! ```
//!
//! The rest is rejected by [`Runnable::run`](weir_runtime::Runnable::run) with a
//! [`BuildError`] naming the stage: zero capacities,
//! duplicate names, invalid operator arguments, pins to missing arbiters.
//!
//! ```
//! use weir::prelude::*;
//! let rt = Runtime::builder().arbiters(1).build()?;
//! let err = Pipeline::from_iter(0..3_u64).chunks(0).name("batches").collect().run(&rt).unwrap_err();
//! assert!(err.to_string().contains("`batches`"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crates behind the facade: [`weir_runtime`] (stage actors, edges, placement,
//! handles), [`weir_operators`] (the catalogue), [`weir_supervisor`] (failure
//! classification).
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Hot reconfiguration from a TOML file: [`ConfigWatcher`](reconfig_file::ConfigWatcher).
pub use weir_operators::reconfig as reconfig_file;
pub use weir_operators::{
    FlowExt, Pipeline, barrier, file, hub, join, keyed, limit, ops, resource_pool, sink, source,
    window,
};
pub use weir_runtime::*;
pub use weir_supervisor as supervisor;

#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod prometheus;

#[cfg(feature = "sse")]
#[cfg_attr(docsrs, doc(cfg(feature = "sse")))]
pub mod sse;

#[cfg(feature = "console")]
pub mod console;

#[cfg(any(feature = "https", feature = "wss"))]
mod client_tls;
#[cfg(any(
    feature = "sse",
    feature = "console",
    feature = "http",
    feature = "websocket"
))]
mod http_server;
#[cfg(feature = "server-tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "server-tls")))]
pub mod server_tls;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http_source;

#[cfg(feature = "http-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-client")))]
pub mod http_sink;

#[cfg(feature = "websocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
pub mod websocket;

/// Network connectors (feature `net`): framing codecs, a TCP source and sink;
/// TLS for them with feature `net-tls` (`weir::net::tls`).
#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub use weir_net as net;

/// NATS JetStream connectors (feature `nats`): the crate [`weir_nats`].
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use weir_nats as nats;

/// Everything a pipeline author needs: `use weir::prelude::*;`.
pub mod prelude {
    pub use weir_operators::barrier::{Barrier, BarrierExt, UnevenEnd};
    pub use weir_operators::file::FileFlowExt;
    pub use weir_operators::hub::{
        BroadcastHub, HubEnd, MergeHub, NoSubscriber, Producer, Subscriber,
    };
    pub use weir_operators::join::{
        IntervalJoin, JoinCounters, JoinExt, JoinOut, JoinOutlets, Side,
    };
    pub use weir_operators::keyed::{Aggregate as KeyedAggregate, KeyedExt, OnFull, StateCounters};
    pub use weir_operators::limit::{
        AtLimit, KeysFull, LimitExt, Rate, Throttle, ThrottleConfig, ThrottleMode, rejections_to,
    };
    pub use weir_operators::ops::{ConfigExt, FlowControlExt};
    pub use weir_operators::reconfig::{ConfigWatcher, WatchError};
    pub use weir_operators::sink::Egress;
    pub use weir_operators::source::{Ingress, SendError, TrySendError};
    pub use weir_operators::window::{
        Aggregate, EventTime, GraphWindowExt, Window, WindowExt, WindowMetrics, WindowOverflow,
        WindowResult, Windows,
    };
    pub use weir_operators::{FlowExt, Pipeline};
    pub use weir_runtime::junction::{
        Balance, BalanceStrategy, Broadcast, Feedback, LagPolicy, Overflow, Priority,
    };
    pub use weir_runtime::reconfig::{Applied, ConfigHandle, ReconfigError, Reconfigurable};
    pub use weir_runtime::{
        BuildError, Completion, Flow, Graph, Inlet, Outcome, Outlet, PipelineController,
        PipelineError, Placement, Pool, PoolOrder, Report, Runnable, Running, Runtime, Supervision,
    };
    pub use weir_supervisor::dead_letter::{DeadLetter, MemoryDlq};
    pub use weir_supervisor::policy::{
        Action, BackoffConfig, ClassActions, PolicyConfig, RestartStrategy, RestartType,
        SupervisionPolicy,
    };
    pub use weir_supervisor::{ErrorClass, Failure, SupervisionEvent};
}

/// The README's Rust examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The supervision guide's Rust examples (docs/supervision.md), compiled and run as
/// doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/supervision.md")]
pub struct SupervisionDoctests;

/// The operator catalogue's Rust examples (docs/operators.md), compiled and run as
/// doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/operators.md")]
pub struct OperatorsDoctests;

/// The checkpoint guide's Rust examples (docs/checkpoints.md), compiled (and run,
/// where they need no files) as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/checkpoints.md")]
pub struct CheckpointsDoctests;

/// The WebSocket guide's Rust examples (docs/websocket.md), compiled and run as
/// doctests so that they stay true.
#[cfg(all(doctest, feature = "websocket"))]
#[doc = include_str!("../../docs/websocket.md")]
pub struct WebsocketDoctests;
