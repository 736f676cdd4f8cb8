//! [`Graph::feedback`]: cycles, through an explicitly declared feedback edge, and
//! the build-time checks that go with them.

use super::graph::{Graph, Inlet, Outlet};
use super::parts::{Parts, Pending, PortRef};
use crate::error::BuildError;
use crate::junction::Feedback;

impl Graph {
    /// Closes a cycle: connects `from` (the end of the cycle) back to `to` (an
    /// input of its head) through a feedback edge with a bounded buffer that
    /// never backpressures (see [`Feedback`] for the buffer, the overflow policy
    /// and the completion rule).
    ///
    /// The graph rejects every cycle that goes through no feedback edge, and a
    /// feedback edge that closes no cycle. The head is usually a
    /// [`MergePrioritized`](crate::junction::MergePrioritized) with
    /// [`Priority::Strict`](crate::junction::Priority::Strict), its input 0 fed
    /// back: elements already on the cycle go first, and new elements enter only
    /// when none waits (Akka's `MergePreferred` pattern), which keeps the buffer
    /// small. Add it with [`junction`](Self::junction), which hands out its
    /// inlets.
    ///
    /// ```text
    ///              ┌─────────────── cycle ───────────────┐
    ///  source ──► head[1] ──► step ──► partition ── done ─┼──► sink
    ///              ▲ in[0]                 │ again        │
    ///              └──── feedback (buffer, never blocks) ◄┘
    /// ```
    ///
    /// # Examples
    ///
    /// Halve every number until it is 0:
    ///
    /// ```
    /// use weir_runtime::junction::{Feedback, MergePrioritized, Overflow, Priority};
    /// use weir_runtime::{Flow, Graph, Runtime};
    /// # use weir_runtime::operator::{Io, Operator, Step};
    /// # use std::task::Context;
    /// # struct Src(std::ops::Range<u64>);
    /// # impl Operator for Src { type In = std::convert::Infallible; type Out = u64;
    /// #   fn kind(&self) -> &'static str { "src" }
    /// #   fn step(&mut self, io: &mut Io<'_, Self::In, u64>, _: &mut Context<'_>) -> Step {
    /// #     while io.has_room() { match self.0.next() { Some(x) => io.push(x), None => return Step::Finished } }
    /// #     Step::Continue } }
    /// # struct Halve;
    /// # impl Operator for Halve { type In = u64; type Out = u64;
    /// #   fn kind(&self) -> &'static str { "halve" }
    /// #   fn step(&mut self, io: &mut Io<'_, u64, u64>, _: &mut Context<'_>) -> Step {
    /// #     io.map_batch(|x| x / 2); io.finish_when_drained() } }
    /// # struct Count(u64, Option<weir_runtime::OutputSender<u64>>);
    /// # impl Operator for Count { type In = u64; type Out = std::convert::Infallible;
    /// #   fn kind(&self) -> &'static str { "count" }
    /// #   fn counting(&self) -> weir_runtime::operator::Counting { weir_runtime::operator::Counting::Custom }
    /// #   fn step(&mut self, io: &mut Io<'_, u64, Self::Out>, _: &mut Context<'_>) -> Step {
    /// #     let mut n = 0; io.consume_all(|_| n += 1); self.0 += n; io.finish_when_drained() }
    /// #   fn on_stop(&mut self) { if let Some(mut tx) = self.1.take() { tx.send(self.0) } } }
    /// # fn count() -> (Count, weir_runtime::OutputReceiver<u64>) {
    /// #   let (tx, rx) = weir_runtime::output(); (Count(0, Some(tx)), rx) }
    /// let rt = Runtime::builder().arbiters(1).build()?;
    /// let mut g = Graph::new();
    /// let numbers = g.source(Flow::from_source(Src(1..1_001)));
    /// let head = g.junction(MergePrioritized::new(Priority::Strict), 2, 1);
    /// g.connect(numbers, head.inlets[1]);
    /// let halved = g.flow(head.outlets[0], |f| f.via(Halve));
    /// let [done, again] = g.partition(halved, |x: &u64| usize::from(*x > 0));
    /// g.feedback(again, head.inlets[0], Feedback::buffer(1_000).name("loop"));
    /// let (op, rx) = count();
    /// let finished = g.sink(done, |f| f.to(op, rx));
    /// // The cycle completes once the source has ended and the cycle is empty.
    /// let report = g.run(&rt)?.wait()?.report;
    /// report.check_conservation()?;
    /// assert_eq!(futures::executor::block_on(finished), Some(1_000));
    /// assert_eq!(report.abandoned(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn feedback<T: Send + 'static>(
        &mut self,
        from: Outlet<T>,
        to: Inlet<T>,
        mut feedback: Feedback<T>,
    ) {
        let name = feedback.name.take();
        let ports = self.junction(feedback, 1, 1);
        let node = ports.inlets[0].at.node;
        if let Some(name) = name {
            self.parts.meta_mut(node).name = Some(name);
        }
        self.connect(from, ports.inlets[0]);
        if to.graph != self.parts.id {
            self.parts
                .errors
                .push(Pending::Ready(BuildError::ForeignPort {
                    what: format!("{to:?}"),
                }));
            return;
        }
        self.parts.connect_feedback(ports.outlets[0].at, to.at);
    }
}

impl Parts {
    /// Checks that every feedback edge closes a cycle: its head leads back to it.
    pub(super) fn check_feedback(&self) -> Result<(), BuildError> {
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); self.len()];
        for e in &self.edges {
            next[e.from.node].push(e.to.node);
        }
        for e in self.edges.iter().filter(|e| e.feedback) {
            let PortRef { node: edge, .. } = e.from;
            let head = e.to.node;
            let mut seen = vec![false; self.len()];
            let mut todo = vec![head];
            seen[head] = true;
            while let Some(node) = todo.pop() {
                for &succ in &next[node] {
                    if !seen[succ] {
                        seen[succ] = true;
                        todo.push(succ);
                    }
                }
            }
            if !seen[edge] {
                return Err(BuildError::InvalidArgument {
                    stage: self.name(edge),
                    message: format!(
                        "the feedback edge into `{}` closes no cycle: nothing leads from \
                         `{}` back to it; connect the ports directly",
                        self.name(head),
                        self.name(head)
                    ),
                });
            }
        }
        Ok(())
    }
}
