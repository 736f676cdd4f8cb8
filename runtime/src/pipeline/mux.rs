//! [`Graph::mux`] and [`Graph::demux`]: many sub-streams over one edge, each with
//! its own credit.

use std::sync::Arc;

use super::graph::{Graph, JunctionPorts, Outlet};
use crate::junction::{Demux, Frame, Mux, MuxLink};

/// Sub-stream capacity of a mux built with [`Graph::mux`]: 1024 elements, the
/// default capacity of an edge.
///
/// # Choosing a sub-stream capacity
///
/// Each sub-stream behaves like an edge of this capacity: it bounds the memory one
/// sub-stream can take between the mux and the demux (the whole pair holds at most
/// `streams × sub_capacity` elements, plus the frames on the shared edge), and the
/// largest batch of one sub-stream that crosses in one go. Lower it for many
/// sub-streams or large elements; a sub-stream's throughput drops only when it is
/// smaller than the batches its stages exchange.
pub const DEFAULT_SUB_CAPACITY: usize = crate::DEFAULT_CAPACITY;

/// The output of a [`Graph::mux`]: every input's elements as tagged [`Frame`]s on
/// one edge, to be split back by [`Graph::demux`].
///
/// It can only go to a demux: the frames carry credit that only the demux returns,
/// so no stage may sit between the two. It is not `Clone` (one demux per mux), and
/// a `Muxed` that is never demuxed leaves the mux's output unconnected, which
/// [`Graph::run`] rejects.
///
/// Frames cannot go through ordinary stages: a `Muxed` is not an [`Outlet`].
///
/// ```compile_fail
/// use weir_runtime::{Graph, Muxed};
/// fn misuse(g: &mut Graph, muxed: Muxed<u64>) {
///     g.flow(muxed, |f| f); // error: expected `Outlet<_>`, found `Muxed<u64>`
/// }
/// ```
///
/// and one mux feeds one demux:
///
/// ```compile_fail
/// use weir_runtime::{Graph, Muxed};
/// fn twice(g: &mut Graph, muxed: Muxed<u64>) {
///     let [_a, _b] = g.demux::<u64, 2>(muxed);
///     let [_c, _d] = g.demux::<u64, 2>(muxed); // error: use of moved value `muxed`
/// }
/// ```
pub struct Muxed<T> {
    outlet: Outlet<Frame<T>>,
    link: Arc<MuxLink>,
}

impl<T> std::fmt::Debug for Muxed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Muxed")
            .field("outlet", &self.outlet)
            .field("streams", &self.link.streams())
            .field("sub_capacity", &self.link.sub_capacity())
            .finish()
    }
}

impl<T> Muxed<T> {
    /// Number of sub-streams (the mux's inputs).
    pub fn streams(&self) -> usize {
        self.link.streams()
    }

    /// Most elements of one sub-stream between the mux and the demux's output.
    pub fn sub_capacity(&self) -> usize {
        self.link.sub_capacity()
    }
}

impl Graph {
    /// Carries the outlets over one edge as tagged sub-streams, each with its own
    /// credit of [`DEFAULT_SUB_CAPACITY`]; split them back with
    /// [`demux`](Self::demux). See [`mux_with`](Self::mux_with).
    pub fn mux<T: Send + 'static>(
        &mut self,
        from: impl IntoIterator<Item = Outlet<T>>,
    ) -> Muxed<T> {
        self.mux_with(from, DEFAULT_SUB_CAPACITY)
    }

    /// Carries the outlets over one edge as tagged sub-streams (sub-stream `k` is
    /// `from`'s `k`-th outlet), each with a credit of `sub_capacity` elements; split
    /// them back with [`demux`](Self::demux).
    ///
    /// A stalled sub-stream does not slow the others (no head-of-line blocking): the
    /// mux sends an element of sub-stream `k` only while `k` has credit, and the
    /// demux, having room reserved for every element it can receive, always takes
    /// the whole edge at once. Sub-stream `k` holds at most `sub_capacity` elements
    /// between the mux's output buffer and the demux's output buffer `k` (both
    /// included, and the shared edge in between).
    ///
    /// Order: each sub-stream's order is kept; they interleave on the edge by
    /// arrival, sharing its room in turn. Completion: sub-streams end independently:
    /// when input `k` ends, demux output `k` ends after its last element while the
    /// others go on. When demux output `k` cancels (a `take`), the mux cancels input
    /// `k` only. The mux completes when every input has ended, the demux when the
    /// mux has. Failure: a panic in either fails the pipeline, as in every junction.
    ///
    /// Counting: the edge between the two carries [`Frame`]s: one per element, plus
    /// one `End` per sub-stream. The mux's output port and the demux's input count
    /// frames; the demux's output ports count elements.
    ///
    /// # Errors
    ///
    /// [`Graph::run`] rejects, naming the mux: no outlets, or a `sub_capacity` of 0.
    ///
    /// # Examples
    ///
    /// Two sub-streams over one edge; one of them is short and ends first:
    ///
    /// ```
    /// use weir_runtime::{Flow, Graph, Runtime};
    /// # use weir_runtime::operator::{Io, Operator, Step};
    /// # use std::task::Context;
    /// # struct Src(std::ops::Range<u64>);
    /// # impl Operator for Src { type In = std::convert::Infallible; type Out = u64;
    /// #   fn kind(&self) -> &'static str { "src" }
    /// #   fn step(&mut self, io: &mut Io<'_, Self::In, u64>, _: &mut Context<'_>) -> Step {
    /// #     while io.has_room() { match self.0.next() { Some(x) => io.push(x), None => return Step::Finished } }
    /// #     Step::Continue } }
    /// # struct Sum(u64, Option<weir_runtime::OutputSender<u64>>);
    /// # impl Operator for Sum { type In = u64; type Out = std::convert::Infallible;
    /// #   fn kind(&self) -> &'static str { "sum" }
    /// #   fn counting(&self) -> weir_runtime::operator::Counting { weir_runtime::operator::Counting::Custom }
    /// #   fn step(&mut self, io: &mut Io<'_, u64, Self::Out>, _: &mut Context<'_>) -> Step {
    /// #     let mut s = 0; io.consume_all(|x| s += x); self.0 += s; io.finish_when_drained() }
    /// #   fn on_stop(&mut self) { if let Some(mut tx) = self.1.take() { tx.send(self.0) } } }
    /// # fn sum() -> (Sum, weir_runtime::OutputReceiver<u64>) {
    /// #   let (tx, rx) = weir_runtime::output(); (Sum(0, Some(tx)), rx) }
    /// let rt = Runtime::builder().arbiters(1).build()?;
    /// let mut g = Graph::new();
    /// let long = g.source(Flow::from_source(Src(0..1_000)));
    /// let short = g.source(Flow::from_source(Src(0..10)));
    /// let muxed = g.mux_with([long, short], 64);
    /// let [long, short] = g.demux(muxed);
    /// let (op, long_sum) = sum();
    /// let long_sum = g.sink(long, |f| f.to(op, long_sum));
    /// let (op, short_sum) = sum();
    /// let short_sum = g.sink(short, |f| f.to(op, short_sum));
    /// let done = g.run(&rt)?.wait()?;
    /// done.report.check_conservation()?;
    /// assert_eq!(futures::executor::block_on(long_sum), Some((0..1_000).sum()));
    /// assert_eq!(futures::executor::block_on(short_sum), Some((0..10).sum()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mux_with<T: Send + 'static>(
        &mut self,
        from: impl IntoIterator<Item = Outlet<T>>,
        sub_capacity: usize,
    ) -> Muxed<T> {
        let from: Vec<Outlet<T>> = from.into_iter().collect();
        let link = MuxLink::new(from.len(), sub_capacity);
        let JunctionPorts { inlets, outlets } =
            self.junction(Mux::<T>::new(Arc::clone(&link)), from.len(), 1);
        for (outlet, inlet) in from.into_iter().zip(inlets) {
            self.connect(outlet, inlet);
        }
        Muxed {
            outlet: outlets[0],
            link,
        }
    }

    /// Splits a [`Muxed`] edge back into its `N` sub-streams: output `k` carries
    /// the elements of the mux's input `k`, in order (see
    /// [`mux_with`](Self::mux_with) for the rules).
    ///
    /// The demux's input capacity (set with [`capacity_of`](Self::capacity_of) on
    /// any of its outlets) is the shared edge's: the largest batch of frames that
    /// crosses at once.
    ///
    /// # Errors
    ///
    /// [`Graph::run`] rejects, naming the demux: `N` different from the mux's
    /// number of inputs.
    pub fn demux<T: Send + 'static, const N: usize>(&mut self, muxed: Muxed<T>) -> [Outlet<T>; N] {
        let JunctionPorts { inlets, outlets } =
            self.junction(Demux::<T>::new(Arc::clone(&muxed.link)), 1, N);
        self.connect(muxed.outlet, inlets[0]);
        std::array::from_fn(|k| outlets[k])
    }

    /// Names the mux stage of `muxed` (see [`name_stage`](Self::name_stage)).
    pub fn name_mux<T>(&mut self, muxed: &Muxed<T>, name: impl Into<String>) -> &mut Self {
        self.name_stage(muxed.outlet, name)
    }

    /// Sets the input capacity (per input) of the mux stage of `muxed` (see
    /// [`capacity_of`](Self::capacity_of)).
    pub fn capacity_of_mux<T>(&mut self, muxed: &Muxed<T>, capacity: usize) -> &mut Self {
        self.capacity_of(muxed.outlet, capacity)
    }
}
