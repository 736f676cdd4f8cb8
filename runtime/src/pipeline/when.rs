//! [`Graph::when`]: a sub-pipeline applied only to the elements that match a
//! predicate, the order of all elements kept (seed StreamWorkflow's conditional
//! steps).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::flow::Flow;
use super::graph::{Graph, JunctionPorts, Outlet};
use super::node::{InletFn, plain_inlet};
use super::parts::Pending;
use crate::junction::when::{BYPASS, Decisions, SUB, WhenJoin, WhenSplit};
use crate::operator::Counting;

impl Graph {
    /// Applies the stages `sub` adds only to the elements for which `predicate` is
    /// true; the others go around them. Every element leaves in its input order.
    ///
    /// The sub-pipeline must be **one-to-one** (every stage emits exactly one output
    /// per input: `map`, `try_map`, `inspect`, `map_async`, …), because the order is
    /// restored by following the recorded decisions. A stage that is not one-to-one
    /// (`filter`, `filter_map`, `flat_map`, `chunks`, …), or whose supervision can drop an
    /// element (dead-letter or skip it: give it `on_exhausted(Escalate)` and
    /// retry/restart actions), is rejected when the graph runs, naming the stage.
    ///
    /// Backpressure: an element waits for room on its path, and the elements after
    /// it wait behind it (the order is kept). Completion: when the input ends and
    /// both paths have drained. A panic in `predicate` fails the pipeline.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::{Graph, Outlet};
    /// use weir_runtime::operator::{Io, Operator, Step};
    /// # use std::task::Context;
    /// # struct Upper;
    /// # impl Operator for Upper {
    /// #     type In = String;
    /// #     type Out = String;
    /// #     fn kind(&self) -> &'static str { "upper" }
    /// #     fn step(&mut self, io: &mut Io<'_, String, String>, _: &mut Context<'_>) -> Step {
    /// #         io.map_batch(|s| s.to_uppercase());
    /// #         io.finish_when_drained()
    /// #     }
    /// # }
    ///
    /// /// Upper-cases the lines that start with "error", in place.
    /// fn shout_errors(g: &mut Graph, lines: Outlet<String>) -> Outlet<String> {
    ///     g.when(lines, |l: &String| l.starts_with("error"), |f| f.via(Upper))
    /// }
    /// ```
    pub fn when<T, P, F>(&mut self, from: Outlet<T>, predicate: P, sub: F) -> Outlet<T>
    where
        T: Send + 'static,
        P: Fn(&T) -> bool + Send + 'static,
        F: FnOnce(Flow<T>) -> Flow<T>,
    {
        let decisions: Decisions = Arc::new(Mutex::new(VecDeque::new()));
        let split = WhenSplit::new(Box::new(predicate), decisions.clone());
        let JunctionPorts { inlets, outlets } = self.junction(split, 1, 2);
        self.connect(from, inlets[0]);
        let first_sub = self.parts.len();
        let processed = self.flow(outlets[SUB], sub);
        let sub_nodes = first_sub..self.parts.len();
        for node in sub_nodes {
            let meta = self.parts.meta(node);
            let problem = if meta.counting != Counting::OneToOne || self.parts.may_filter(node) {
                Some(format!(
                    "a `{}` stage is not one-to-one; `when` keeps the order by pairing \
                     each element with one output of the sub-pipeline",
                    meta.kind
                ))
            } else if self.parts.may_drop(node) {
                Some(
                    "its supervision can drop elements (dead letter or skip), and `when` \
                     keeps the order by pairing each element with one output; use \
                     retry/restart actions with on_exhausted(Escalate)"
                        .into(),
                )
            } else {
                None
            };
            if let Some(message) = problem {
                self.parts.errors.push(Pending::Argument { node, message });
            }
        }
        let inlets: Vec<InletFn<WhenJoin<T>>> =
            vec![plain_inlet::<WhenJoin<T>> as InletFn<WhenJoin<T>>; 2];
        let join = self.add_junction(WhenJoin::new(decisions), inlets, 1);
        let id = self.parts.id;
        let (sub_in, bypass_in) = (
            super::graph::Inlet::new(id, join, SUB),
            super::graph::Inlet::new(id, join, BYPASS),
        );
        if processed.at == outlets[SUB].at {
            // No stage added: the sub path runs straight into the join.
            self.connect(outlets[SUB], sub_in);
        } else {
            self.connect(processed, sub_in);
        }
        self.connect(outlets[BYPASS], bypass_in);
        Outlet::new(id, join, 0)
    }
}
