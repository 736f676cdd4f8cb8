//! Stream-stream joins: [`IntervalJoin`] of a left and a right input by key, inner
//! or left-outer, within an event-time interval (watermarks) or while both rows
//! are held (processing time, bounded by a TTL), with bounded state and a side
//! output for the rows that found no partner.
//!
//! # Shape
//!
//! [`JoinExt::interval_join`] wires, in a [`Graph`]:
//!
//! ```text
//! left  ─► map(Side::Left)  ─┐                          ┌─► joined:    Outlet<O>
//!                            ├─► merge ─► join stage ─► split
//! right ─► map(Side::Right) ─┘                          └─► unmatched: Outlet<Side<L, R>>
//! ```
//!
//! The join itself is an ordinary operator stage ([`JoinStage`]), so it can be
//! supervised and restarted like any stage; the merge and the split are the
//! runtime's junctions.
//!
//! # Semantics
//!
//! - **Matching**: see [`IntervalJoin`]. Each pair is emitted once, when its
//!   second row arrives; a row may match many.
//! - **Time**: with [`IntervalJoin::event_time`], rows leave when the other side's
//!   watermark passes them, and elements behind their own side's watermark are
//!   late (side output, counted). Without it, a row waits for partners until its
//!   TTL, the row bound, or the end of the input.
//! - **Unmatched rows**: a row that leaves without a match goes to the side output
//!   once (counted in [`JoinCounters`]); in a left-outer join an unmatched left row
//!   is emitted on the main output as `combine(&left, None)` instead, exactly once.
//! - **Ordering**: outputs follow the order the join stage sees its input in; the
//!   merge interleaves the two inputs by arrival, so the order across inputs is
//!   not fixed (the set of pairs is, for on-time elements).
//! - **Backpressure and bounds**: the stage takes an element only while its output
//!   has room; one element can make several outputs (all its matches). State is
//!   at most `max_rows` rows; each queue around it is bounded by the rows.
//! - **Completion**: when both inputs have ended, every row still held leaves
//!   (unmatched ones to the side output or the outer output), then the outputs end.
//! - **Failure**: a panic in a key, timestamp or combine function fails the
//!   element with nothing emitted for it. Supervised
//!   ([`IntervalJoin::supervise`]), the element is retried, dead-lettered or
//!   skipped, or the stage restarts with no rows: the rows it held are lost,
//!   counted as `state_lost` in the report.
//! - **Checkpoints**: in a checkpointed pipeline the rows of both sides, the
//!   largest timestamps (so the watermarks) and the counters are the join
//!   stage's state, stored by the key group of their key; a restore resumes the
//!   join where the checkpoint left it (see [`JoinStage`]). `K`, `L` and `R`
//!   must be serde types, and `Sync`; `L` and `R` also `Clone`: a snapshot
//!   pauses the join stage only to freeze its rows' 128 key groups, the
//!   checkpoint's writer encodes them, and the stage copies a group (about
//!   1/128 of the rows) only if it changes it before the writer is done.

mod operator;
mod rows;
mod spec;

pub use operator::JoinStage;
pub use spec::{IntervalJoin, JoinCounters};

use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::{Graph, Outlet};

/// An element of a join's input: a row of the left or of the right input. Also
/// the element of the side output: a row that found no partner (or came late).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Side<L, R> {
    /// From the left input.
    Left(L),
    /// From the right input.
    Right(R),
}

/// What the join stage emits: a joined element or an unmatched row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JoinOut<O, L, R> {
    /// Made by the combine function.
    Joined(O),
    /// A row that left the state without a partner, or came late.
    Unmatched(Side<L, R>),
}

/// The outputs of [`JoinExt::interval_join`].
#[derive(Debug)]
pub struct JoinOutlets<O, L, R> {
    /// The joined elements (and, for a left-outer join, the unmatched left rows
    /// combined with `None`).
    pub joined: Outlet<O>,
    /// Rows that left the state unmatched or came late. Connect it (a sink that
    /// counts or dead-letters them) like any outlet.
    pub unmatched: Outlet<Side<L, R>>,
}

/// Joins, as methods on a [`Graph`]. In the prelude.
pub trait JoinExt {
    /// Joins `left` and `right` by `join` (see the [module](self) for the shape
    /// and semantics).
    ///
    /// State is checkpointed; `K`, `L` and `R` must be serde types, and
    /// `Sync`; `L` and `R` also `Clone` (see the [module](self) docs on
    /// checkpoints).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_operators::join::{IntervalJoin, JoinExt, JoinOutlets, Side};
    /// use weir_operators::{FlowExt, Pipeline};
    /// use weir_runtime::Graph;
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let mut g = Graph::new();
    /// let orders = g.source(Pipeline::from_iter([(1_u32, 100_i64), (2, 200)]));
    /// let payments = g.source(Pipeline::from_iter([(1_u32, 130_i64), (3, 300)]));
    /// let join = IntervalJoin::inner(|o: &(u32, i64)| o.0, |p: &(u32, i64)| p.0, |o, p| (o.0, p.1 - o.1))
    ///     .event_time(|o| o.1, |p| p.1, 0, 60);
    /// let JoinOutlets { joined, unmatched } = g.interval_join(orders, payments, join);
    /// let joined = g.sink(joined, |f| f.collect());
    /// let unmatched = g.sink(unmatched, |f| f.collect());
    /// g.run(&rt)?.wait()?.report.check_conservation()?;
    /// assert_eq!(futures::executor::block_on(joined), Some(vec![(1, 30)]));
    /// let mut side = futures::executor::block_on(unmatched).unwrap();
    /// side.sort_by_key(|s| match s { Side::Left(o) => o.0, Side::Right(p) => p.0 });
    /// assert_eq!(side, [Side::Left((2, 200)), Side::Right((3, 300))]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn interval_join<K, L, R, O>(
        &mut self,
        left: Outlet<L>,
        right: Outlet<R>,
        join: IntervalJoin<K, L, R, O>,
    ) -> JoinOutlets<O, L, R>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        L: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        R: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        O: Send + 'static;
}

impl JoinExt for Graph {
    fn interval_join<K, L, R, O>(
        &mut self,
        left: Outlet<L>,
        right: Outlet<R>,
        join: IntervalJoin<K, L, R, O>,
    ) -> JoinOutlets<O, L, R>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        L: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        R: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        O: Send + 'static,
    {
        use crate::ops::{FilterMap, Map};
        let name = join.name.clone();
        let named = |suffix: &str| name.as_ref().map(|n| format!("{n}.{suffix}"));
        let tag_left = named("left");
        let tag_right = named("right");
        let l = self.flow(left, |f| {
            let f = f.via(Map::new(Side::<L, R>::Left));
            match tag_left {
                Some(n) => f.name(n),
                None => f,
            }
        });
        let r = self.flow(right, |f| {
            let f = f.via(Map::new(Side::<L, R>::Right));
            match tag_right {
                Some(n) => f.name(n),
                None => f,
            }
        });
        let merged = self.merge([l, r]);
        let joined = self.flow(merged, |f| join.on(f));
        let [main, side] = self.partition(joined, |x: &JoinOut<O, L, R>| match x {
            JoinOut::Joined(_) => 0,
            JoinOut::Unmatched(_) => 1,
        });
        if let Some(n) = &name {
            self.name_stage(merged, format!("{n}.merge"));
            self.name_stage(main, format!("{n}.split"));
        }
        let unwrap_main = named("joined");
        let unwrap_side = named("unmatched");
        let main = self.flow(main, |f| {
            let f = f.via(FilterMap::new(|x| match x {
                JoinOut::Joined(o) => Some(o),
                JoinOut::Unmatched(_) => None,
            }));
            match unwrap_main {
                Some(n) => f.name(n),
                None => f,
            }
        });
        let side = self.flow(side, |f| {
            let f = f.via(FilterMap::new(|x| match x {
                JoinOut::Unmatched(s) => Some(s),
                JoinOut::Joined(_) => None,
            }));
            match unwrap_side {
                Some(n) => f.name(n),
                None => f,
            }
        });
        JoinOutlets {
            joined: main,
            unmatched: side,
        }
    }
}
