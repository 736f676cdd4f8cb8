//! [`Topology`]: the graph a pipeline was built as — its nodes and edges, with
//! stable ids — as data ([`serde::Serialize`]), as DOT and as Mermaid; and
//! [`EdgeLoad`], how full each edge is now.
//!
//! The description is taken once, at launch, from the built graph: a node's id is
//! its index in the graph (the order stages and junctions were added in, which is
//! also the order of [`PipelineStats::stages`](super::PipelineStats::stages)), and
//! every edge names its two ends by id and port. Only the circuit breakers' states
//! are live: [`PipelineController::topology`] reads them when it is called.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;
use weir_supervisor::policy::{RestartType, SupervisionPolicy};

use super::parts::Parts;
use super::running::{PipelineController, Running};
use super::shared::PipelineShared;
use crate::observe::BreakerState;

/// What a node of the graph is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// A stage with no input: elements enter the pipeline here.
    Source,
    /// A stage with one input and one output.
    Stage,
    /// A stage with no output: elements leave the pipeline here.
    Sink,
    /// A junction: fan-out, fan-in, a pool's dispatch and collect, a mux.
    Junction,
}

/// A summary of a stage's supervision policy, as it was at launch (a policy
/// file reloaded while the pipeline runs may change it since).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SupervisionSummary {
    /// Whether the stage is restarted after a failure.
    pub restart: RestartType,
    /// How many times one element may be processed in all.
    pub max_attempts: u32,
    /// Restarts allowed within [`intensity_window_ms`](Self::intensity_window_ms)
    /// before the failure escalates.
    pub max_restarts: u32,
    /// The restart intensity's window, in milliseconds.
    pub intensity_window_ms: u64,
    /// Whether the stage has a circuit breaker.
    pub breaker: bool,
    /// Whether failed elements can go to a dead-letter queue.
    pub dead_letters: bool,
}

impl SupervisionSummary {
    pub(crate) fn of(policy: &SupervisionPolicy, dead_letters: bool) -> Self {
        SupervisionSummary {
            restart: policy.restart,
            max_attempts: policy.max_attempts,
            max_restarts: policy.intensity.max_restarts,
            intensity_window_ms: u64::try_from(policy.intensity.within.as_millis())
                .unwrap_or(u64::MAX),
            breaker: policy.breaker.is_some(),
            dead_letters,
        }
    }
}

/// One node of a [`Topology`]: a stage or a junction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopologyNode {
    /// The node's index in the built graph: stable for the pipeline's run, and the
    /// index of its entry in [`PipelineStats::stages`](super::PipelineStats::stages).
    pub id: usize,
    /// The stage's name (unique in the pipeline).
    pub name: String,
    /// Source, stage, sink or junction.
    pub role: NodeRole,
    /// The operator's or junction's kind (`map`, `broadcast`, `pool-dispatch`, …).
    pub kind: &'static str,
    /// The arbiter (thread) the node runs on, from 0.
    pub arbiter: usize,
    /// The capacity of each input edge in elements (0 for a source).
    pub capacity: usize,
    /// Input ports.
    pub inputs: usize,
    /// Output ports.
    pub outputs: usize,
    /// The pool the node is a replica of, by name.
    pub group: Option<String>,
    /// The node's replica number in its pool.
    pub replica: Option<usize>,
    /// The stage's supervision, if it is supervised.
    pub supervision: Option<SupervisionSummary>,
    /// The circuit breaker's state, for a stage that has one: live when the
    /// topology comes from [`PipelineController::topology`].
    pub breaker: Option<BreakerState>,
    /// The id of the first stage of the fused group the node runs in, when it
    /// runs fused with at least one other stage (in one actor; see
    /// [`Runnable::fusion`](crate::Runnable::fusion)); `None` for a node that
    /// runs alone.
    pub fused_group: Option<usize>,
}

/// One edge of a [`Topology`]: output port `from_port` of node `from` feeds input
/// port `to_port` of node `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TopologyEdge {
    /// The sending node's id.
    pub from: usize,
    /// The receiving node's id.
    pub to: usize,
    /// The sender's output port (0 for a stage).
    pub from_port: usize,
    /// The receiver's input port (0 for a stage).
    pub to_port: usize,
    /// The most elements the edge holds: the receiver's input capacity.
    pub capacity: usize,
    /// Declared with [`Graph::feedback`](super::Graph::feedback): it closes a cycle.
    pub feedback: bool,
}

/// The graph a pipeline runs: every node and every edge, as built.
///
/// From [`PipelineController::topology`] (or
/// [`PipelineManager::topologies`](crate::manager::PipelineManager::topologies)
/// for every managed pipeline). Serialize it with serde for JSON, or draw it with
/// [`to_dot`](Self::to_dot) and [`to_mermaid`](Self::to_mermaid), left to right.
///
/// # Examples
///
/// ```
/// use weir_runtime::{Flow, Runtime};
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
/// let (op, rx) = sum();
/// let running = Flow::from_source(Src(0..10)).to(op, rx).run(&rt)?;
/// let topology = running.topology();
/// assert_eq!(topology.nodes.len(), 2);
/// assert_eq!((topology.edges[0].from, topology.edges[0].to), (0, 1));
/// assert!(topology.to_dot().contains("n0 -> n1"));
/// assert!(topology.to_mermaid().starts_with("flowchart LR"));
/// assert_eq!(running.wait()?.output, 45);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// The pipeline's name.
    pub pipeline: String,
    /// Every node, by id (`nodes[i].id == i`).
    pub nodes: Vec<TopologyNode>,
    /// Every edge, in the order they were connected.
    pub edges: Vec<TopologyEdge>,
}

impl Topology {
    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&TopologyNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The edges into node `id`, by input port.
    pub fn edges_into(&self, id: usize) -> impl Iterator<Item = &TopologyEdge> + '_ {
        self.edges.iter().filter(move |e| e.to == id)
    }

    /// The edges out of node `id`, by output port.
    pub fn edges_from(&self, id: usize) -> impl Iterator<Item = &TopologyEdge> + '_ {
        self.edges.iter().filter(move |e| e.from == id)
    }

    /// The graph in Graphviz DOT, left to right: a box per stage (rounded for
    /// sources and sinks), a diamond per junction, each edge labelled with its
    /// capacity (and its ports, for a junction's). Feedback edges are dashed.
    ///
    /// ```text
    /// digraph "etl" {
    ///   rankdir=LR;
    ///   n0 [label="read\nsource", shape=box, style=rounded];
    ///   n1 [label="parse\nmap", shape=box];
    ///   n0 -> n1 [label="64"];
    /// }
    /// ```
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&self.pipeline));
        out.push_str("  rankdir=LR;\n");
        for n in &self.nodes {
            let shape = match n.role {
                NodeRole::Junction => "shape=diamond",
                NodeRole::Source | NodeRole::Sink => "shape=box, style=rounded",
                NodeRole::Stage => "shape=box",
            };
            let _ = writeln!(
                out,
                "  n{} [label=\"{}\\n{}\", {shape}];",
                n.id,
                dot_escape(&n.name),
                dot_escape(n.kind)
            );
        }
        for (head, members) in self.fused_groups() {
            let _ = writeln!(
                out,
                "  subgraph cluster_fused{head} {{ label=\"fused\"; style=dashed; {}; }}",
                members
                    .iter()
                    .map(|id| format!("n{id}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        for e in &self.edges {
            let style = if e.feedback { ", style=dashed" } else { "" };
            let _ = writeln!(
                out,
                "  n{} -> n{} [label=\"{}\"{style}];",
                e.from,
                e.to,
                self.edge_label(e)
            );
        }
        out.push_str("}\n");
        out
    }

    /// The graph as a Mermaid flowchart, left to right (`flowchart LR`): stadium
    /// shapes for sources and sinks, hexagons for junctions, each edge labelled
    /// with its capacity. Paste it into a Markdown file to draw it.
    ///
    /// ```text
    /// flowchart LR
    ///   n0(["read<br/>source"])
    ///   n1["parse<br/>map"]
    ///   n0 -->|"64"| n1
    /// ```
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for n in &self.nodes {
            let text = format!("{}<br/>{}", mermaid_escape(&n.name), mermaid_escape(n.kind));
            let _ = match n.role {
                NodeRole::Junction => writeln!(out, "  n{}{{{{\"{text}\"}}}}", n.id),
                NodeRole::Source | NodeRole::Sink => writeln!(out, "  n{}([\"{text}\"])", n.id),
                NodeRole::Stage => writeln!(out, "  n{}[\"{text}\"]", n.id),
            };
        }
        for (head, members) in self.fused_groups() {
            let _ = writeln!(out, "  subgraph fused{head} [\"fused\"]");
            for id in members {
                let _ = writeln!(out, "    n{id}");
            }
            out.push_str("  end\n");
        }
        for e in &self.edges {
            let arrow = if e.feedback { "-.->" } else { "-->" };
            let _ = writeln!(
                out,
                "  n{} {arrow}|\"{}\"| n{}",
                e.from,
                self.edge_label(e),
                e.to
            );
        }
        out
    }

    /// The fused groups (see [`TopologyNode::fused_group`]): each head's id with
    /// the ids of its group, in id order.
    pub fn fused_groups(&self) -> Vec<(usize, Vec<usize>)> {
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for n in &self.nodes {
            if let Some(head) = n.fused_group {
                groups.entry(head).or_default().push(n.id);
            }
        }
        groups.into_iter().collect()
    }

    /// An edge's label: its capacity, with the ports where a junction is at an end.
    fn edge_label(&self, e: &TopologyEdge) -> String {
        let junction = |id: usize| {
            self.nodes
                .get(id)
                .is_some_and(|n| n.role == NodeRole::Junction)
        };
        match (junction(e.from), junction(e.to)) {
            (false, false) => e.capacity.to_string(),
            (true, false) => format!("out[{}] · {}", e.from_port, e.capacity),
            (false, true) => format!("in[{}] · {}", e.to_port, e.capacity),
            (true, true) => format!("out[{}]→in[{}] · {}", e.from_port, e.to_port, e.capacity),
        }
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// How full one edge is now: the elements sent on it that the receiver has not
/// processed yet, against its capacity.
///
/// For a stage, `queued` counts its mailbox, its input queue and the inputs it
/// is processing now (not what its operator keeps as state, like a window's
/// elements); for a junction, which has one queue for all its inputs, only what
/// is in the mailbox on this port. Each counter is read on its own, so the figure is close to, not exactly,
/// one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EdgeLoad {
    /// The sending node's id.
    pub from: usize,
    /// The receiving node's id.
    pub to: usize,
    /// The sender's output port.
    pub from_port: usize,
    /// The receiver's input port.
    pub to_port: usize,
    /// Elements on the edge now.
    pub queued: u64,
    /// The edge's capacity.
    pub capacity: usize,
    /// The sender's credit on this edge now: how many more elements the
    /// receiver will take. A junction has one per output port; a stage's one
    /// output has the stage's. `None` for an edge out of a node without a
    /// counter of it.
    pub credit: Option<usize>,
}

impl EdgeLoad {
    /// `queued / capacity`, from 0 (empty) to 1 (full; a little more while a
    /// batch is being handed over).
    pub fn fill(&self) -> f64 {
        if self.capacity == 0 {
            return 0.0;
        }
        self.queued as f64 / self.capacity as f64
    }
}

/// The topology of `parts` as it launches: `capacities` and `arbiters` by node,
/// after policy files have been applied.
pub(super) fn describe(
    parts: &Parts,
    pipeline: &str,
    capacities: &[usize],
    arbiters: &[usize],
    heads: &[usize],
) -> Topology {
    let mut sizes = vec![0_usize; heads.len()];
    for &head in heads {
        sizes[head] += 1;
    }
    let nodes = (0..parts.len())
        .map(|id| {
            let meta = parts.meta(id);
            let role = if meta.junction {
                NodeRole::Junction
            } else if meta.inputs == 0 {
                NodeRole::Source
            } else if meta.outputs == 0 {
                NodeRole::Sink
            } else {
                NodeRole::Stage
            };
            let supervision = parts.node(id).supervision();
            TopologyNode {
                id,
                name: parts.name(id),
                role,
                kind: meta.kind,
                arbiter: arbiters.get(id).copied().unwrap_or(0),
                capacity: capacities.get(id).copied().unwrap_or(0),
                inputs: meta.inputs,
                outputs: meta.outputs,
                group: meta.group.clone(),
                replica: meta.replica,
                breaker: supervision
                    .filter(|s| s.breaker)
                    .map(|_| BreakerState::Closed),
                supervision,
                fused_group: heads.get(id).copied().filter(|&h| sizes[h] > 1),
            }
        })
        .collect();
    let edges = parts
        .edges
        .iter()
        .map(|e| TopologyEdge {
            from: e.from.node,
            to: e.to.node,
            from_port: e.from.port,
            to_port: e.to.port,
            capacity: capacities.get(e.to.node).copied().unwrap_or(0),
            feedback: e.feedback,
        })
        .collect();
    Topology {
        pipeline: pipeline.to_owned(),
        nodes,
        edges,
    }
}

impl PipelineShared {
    /// Records the pipeline's topology, once, at launch.
    pub(crate) fn set_topology(&self, topology: Topology) {
        let _ = self.topology.set(topology);
    }

    /// The topology with the breakers' states of now.
    pub(crate) fn topology(&self) -> Topology {
        let mut topology = self.topology.get().cloned().unwrap_or_else(|| Topology {
            pipeline: self.name.clone(),
            nodes: Vec::new(),
            edges: Vec::new(),
        });
        for node in &mut topology.nodes {
            if let (Some(state), Some(stage)) = (&mut node.breaker, self.stages.get(node.id)) {
                *state = BreakerState::load(&stage.breaker);
            }
        }
        topology
    }

    /// How full every edge of the topology is now.
    pub(crate) fn edge_loads(&self) -> Vec<EdgeLoad> {
        let Some(topology) = self.topology.get() else {
            return Vec::new();
        };
        topology
            .edges
            .iter()
            .map(|e| {
                let queued = self.stages.get(e.to).map_or(0, |to| {
                    let mailbox =
                        to.inputs
                            .get()
                            .and_then(|ins| ins.get(e.to_port))
                            .map_or(0, |edge| {
                                edge.emitted(Relaxed)
                                    .saturating_sub(to.received_on(e.to_port))
                            });
                    // A stage's inputs received and not yet settled: queued or
                    // being processed now (the queue gauge is published between
                    // steps, the counts at once), less what its operator keeps as
                    // state (a window's elements, which gave their credit back).
                    let queue = if to.in_received.is_empty() {
                        let done = to.completed.load(Relaxed)
                            + to.filtered.load(Relaxed)
                            + to.failed.load(Relaxed)
                            + to.dead_lettered.load(Relaxed);
                        to.received
                            .load(Relaxed)
                            .saturating_sub(done)
                            .saturating_sub(to.held.load(Relaxed) as u64)
                    } else {
                        0
                    };
                    mailbox + queue
                });
                let credit = self.stages.get(e.from).map(|from| {
                    if from.out_ports.is_empty() {
                        from.credit.load(Relaxed)
                    } else {
                        from.out_ports
                            .get(e.from_port)
                            .map_or(0, |port| port.credit.load(Relaxed))
                    }
                });
                EdgeLoad {
                    from: e.from,
                    to: e.to,
                    from_port: e.from_port,
                    to_port: e.to_port,
                    queued,
                    capacity: e.capacity,
                    credit,
                }
            })
            .collect()
    }
}

impl PipelineController {
    /// The graph this pipeline runs: its nodes and edges as built, with the
    /// circuit breakers' states of now (see [`Topology`]).
    pub fn topology(&self) -> Topology {
        self.shared.topology()
    }

    /// How full every edge is now, in the order of
    /// [`Topology::edges`](Topology::edges). Cheap: a few counter reads per edge.
    pub fn edge_loads(&self) -> Vec<EdgeLoad> {
        self.shared.edge_loads()
    }
}

impl<R: Send + 'static> Running<R> {
    /// The graph this pipeline runs (see [`PipelineController::topology`]).
    pub fn topology(&self) -> Topology {
        self.controller().topology()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: usize, name: &str, role: NodeRole) -> TopologyNode {
        TopologyNode {
            id,
            name: name.into(),
            role,
            kind: "k",
            arbiter: 0,
            capacity: 4,
            inputs: usize::from(role != NodeRole::Source),
            outputs: usize::from(role != NodeRole::Sink),
            group: None,
            replica: None,
            supervision: None,
            breaker: None,
            fused_group: None,
        }
    }

    fn edge(from: usize, to: usize, from_port: usize) -> TopologyEdge {
        TopologyEdge {
            from,
            to,
            from_port,
            to_port: 0,
            capacity: 4,
            feedback: false,
        }
    }

    fn sample() -> Topology {
        Topology {
            pipeline: "p\"q".into(),
            nodes: vec![
                node(0, "src", NodeRole::Source),
                node(1, "fan", NodeRole::Junction),
                node(2, "a", NodeRole::Sink),
                node(3, "b", NodeRole::Sink),
            ],
            edges: vec![edge(0, 1, 0), edge(1, 2, 0), edge(1, 3, 1)],
        }
    }

    #[test]
    fn dot_is_left_to_right_with_every_node_and_edge_escaped() {
        let dot = sample().to_dot();
        assert!(
            dot.starts_with("digraph \"p\\\"q\" {\n  rankdir=LR;\n"),
            "{dot}"
        );
        assert!(
            dot.contains("n1 [label=\"fan\\nk\", shape=diamond];"),
            "{dot}"
        );
        assert!(dot.contains("n0 -> n1 [label=\"in[0] · 4\"];"), "{dot}");
        assert!(dot.contains("n1 -> n3 [label=\"out[1] · 4\"];"), "{dot}");
        assert!(dot.trim_end().ends_with('}'));
    }

    #[test]
    fn mermaid_is_a_left_to_right_flowchart() {
        let m = sample().to_mermaid();
        assert!(m.starts_with("flowchart LR\n"), "{m}");
        assert!(m.contains("  n0([\"src<br/>k\"])"), "{m}");
        assert!(m.contains("  n1{{\"fan<br/>k\"}}"), "{m}");
        assert!(m.contains("  n1 -->|\"out[0] · 4\"| n2"), "{m}");
        assert_eq!(m.lines().count(), 1 + 4 + 3);
    }

    #[test]
    fn an_edge_fill_is_queued_over_capacity() {
        let load = EdgeLoad {
            from: 0,
            to: 1,
            from_port: 0,
            to_port: 0,
            queued: 3,
            capacity: 4,
            credit: Some(1),
        };
        assert!((load.fill() - 0.75).abs() < 1e-9);
        assert!(
            EdgeLoad {
                capacity: 0,
                ..load
            }
            .fill()
            .abs()
                < 1e-9
        );
    }
}
