//! The graph under construction ([`Parts`]: nodes, edges, recorded errors), its
//! validation (names, capacities, pins, shape) and [`launch`], which wires and
//! starts it. Shared by [`Flow`](super::Flow), [`Runnable`](super::Runnable) and
//! [`Graph`](super::Graph).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use tokio::sync::oneshot;

use super::events::{EVENT_BUFFER, Events};
use super::flow::DEFAULT_CAPACITY;
use super::node::{AnyDownTx, Node, Start};
use super::shared::{Done, PipelineShared};
use crate::error::BuildError;
use crate::operator::Counting;
use crate::runtime::{Placement, Runtime};
use crate::stage::actor::reconfig::PolicyTx;
use crate::stage::fused::{ControlTx, FusedUp};
use crate::stage::link::{EdgeSource, UpLink, UpTx};
use crate::stage::shared::{StageShared, StageSpec};

static GRAPH_SEQ: AtomicU64 = AtomicU64::new(1);
static PIPELINE_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Static facts about a node, kept until the graph is resolved.
#[derive(Debug, Clone)]
pub(crate) struct StageMeta {
    pub(crate) name: Option<String>,
    pub(crate) kind: &'static str,
    pub(crate) counting: Counting,
    pub(crate) capacity: Option<usize>,
    pub(crate) pinned: Option<usize>,
    /// The index of this stage among the replicas of a pool: replica `k` runs on
    /// the arbiter `k + 1` places after the pipeline's first stage (unless pinned),
    /// so replicas run in parallel.
    pub(crate) replica: Option<usize>,
    /// The pool the stage belongs to, by name: a policy file's `[stages.<pool>]`
    /// applies to every replica (unless the replica has a table of its own).
    pub(crate) group: Option<String>,
    /// Set on the stages of a keyed pool's replicas ([`Pool::by_key`]): their state
    /// can be restored into another replica count.
    ///
    /// [`Pool::by_key`]: super::Pool::by_key
    pub(crate) keyed: Option<KeyedReplica>,
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    pub(crate) junction: bool,
    /// Ends a fused group after this stage (`Flow::async_boundary`).
    pub(crate) boundary: bool,
}

/// A stage of replica `replica` of a keyed pool of `replicas`: named
/// `{pool}-{replica}{rest}` (`rest` is empty for a one-stage replica, `.{name}`
/// for each stage of a replica flow), so that the same stage of every replica of
/// an earlier run, whatever their count, is found by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyedReplica {
    pub(crate) pool: String,
    pub(crate) rest: String,
    pub(crate) replica: usize,
    pub(crate) replicas: usize,
}

impl KeyedReplica {
    /// The replica number in `name` if it names this stage in some replica of the
    /// same pool (`{pool}-{j}{rest}`).
    pub(crate) fn replica_in(&self, name: &str) -> Option<usize> {
        let tail = name.strip_prefix(self.pool.as_str())?.strip_prefix('-')?;
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || tail[digits..] != self.rest {
            return None;
        }
        tail[..digits].parse().ok()
    }
}

impl StageMeta {
    fn port_name(&self, input: bool, port: usize) -> String {
        let dir = if input { "in" } else { "out" };
        if self.junction {
            format!("{dir}[{port}]")
        } else {
            dir.to_owned()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PortRef {
    pub(crate) node: usize,
    pub(crate) port: usize,
}

struct NodeEntry {
    meta: StageMeta,
    node: Box<dyn Node>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Edge {
    pub(super) from: PortRef,
    pub(super) to: PortRef,
    /// Declared with `Graph::feedback`: left out of the cycle check.
    pub(super) feedback: bool,
}

/// An error found while building, reported when the graph runs (with the stage's
/// final name).
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Argument {
        node: usize,
        message: String,
    },
    /// A policy given in code that does not fit its stage (dead letters without a
    /// queue, …): an error unless a policy file replaces the policy.
    CodePolicy {
        node: usize,
        message: String,
    },
    Ready(BuildError),
}

/// The nodes and edges of a graph under construction.
pub(crate) struct Parts {
    pub(crate) id: u64,
    nodes: Vec<NodeEntry>,
    pub(super) edges: Vec<Edge>,
    pub(crate) errors: Vec<Pending>,
    /// Where settings go that have no stage to apply to (reported as errors).
    scratch: StageMeta,
    /// The pipeline's own element sizers for the runtime's memory budget (see
    /// `Flow::sizer`).
    pub(crate) sizers: crate::memory::Sizers,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field(
                "stages",
                &self.nodes.iter().map(|n| &n.meta).collect::<Vec<_>>(),
            )
            .field("edges", &self.edges)
            .finish_non_exhaustive()
    }
}

impl Parts {
    pub(crate) fn new() -> Self {
        Parts {
            id: GRAPH_SEQ.fetch_add(1, Relaxed),
            nodes: Vec::new(),
            edges: Vec::new(),
            errors: Vec::new(),
            sizers: crate::memory::Sizers::default(),
            scratch: StageMeta {
                name: None,
                kind: "none",
                counting: Counting::Custom,
                capacity: None,
                pinned: None,
                replica: None,
                group: None,
                keyed: None,
                inputs: 0,
                outputs: 0,
                junction: false,
                boundary: false,
            },
        }
    }

    pub(crate) fn scratch(&mut self) -> &mut StageMeta {
        &mut self.scratch
    }

    pub(super) fn node(&self, node: usize) -> &dyn Node {
        self.nodes[node].node.as_ref()
    }

    pub(super) fn node_mut(&mut self, node: usize) -> &mut dyn Node {
        self.nodes[node].node.as_mut()
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn add(&mut self, meta: StageMeta, node: Box<dyn Node>) -> usize {
        self.nodes.push(NodeEntry { meta, node });
        self.nodes.len() - 1
    }

    /// Supervises `node` with a policy from a policy file.
    pub(crate) fn apply_policy(
        &mut self,
        node: usize,
        policy: &weir_supervisor::policy::SupervisionPolicy,
    ) -> super::node::PolicyFit {
        self.nodes[node].node.apply_policy(policy, node)
    }

    /// Whether `node`'s supervision can drop an element.
    pub(crate) fn may_drop(&self, node: usize) -> bool {
        self.nodes[node].node.may_drop()
    }

    /// The stages whose failure only ends a merge input (see
    /// `InputFailure::EndInput`): walking downstream from the stage through
    /// stages with a single output leads to a junction that contains its inputs'
    /// failures. Call after the shape check (no cycles among these chains).
    fn contained_stages(&self) -> Vec<usize> {
        let mut out_edges: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for e in &self.edges {
            out_edges[e.from.node].push(e.to.node);
        }
        (0..self.nodes.len())
            .filter(|&start| {
                let mut node = start;
                for _ in 0..=self.nodes.len() {
                    if self.nodes[node].meta.junction {
                        return node != start && self.nodes[node].node.contains_input_failures();
                    }
                    match out_edges[node].as_slice() {
                        [next] => node = *next,
                        _ => return false,
                    }
                }
                false
            })
            .collect()
    }

    /// Whether `node`'s operator can take an input and produce nothing.
    pub(crate) fn may_filter(&self, node: usize) -> bool {
        self.nodes[node].node.may_filter()
    }

    pub(crate) fn meta(&self, node: usize) -> &StageMeta {
        &self.nodes[node].meta
    }

    /// Adds a hook run with `node`'s counters when it starts.
    pub(crate) fn on_start(&mut self, node: usize, hook: super::node::StartHook) {
        self.nodes[node].node.on_start(hook);
    }

    pub(crate) fn meta_mut(&mut self, node: usize) -> &mut StageMeta {
        &mut self.nodes[node].meta
    }

    pub(crate) fn connect(&mut self, from: PortRef, to: PortRef) {
        self.edges.push(Edge {
            from,
            to,
            feedback: false,
        });
    }

    /// Connects the output of a feedback stage to the head of its cycle.
    pub(crate) fn connect_feedback(&mut self, from: PortRef, to: PortRef) {
        self.edges.push(Edge {
            from,
            to,
            feedback: true,
        });
    }

    /// Moves `other`'s nodes and edges into this graph; returns the offset added to
    /// its node numbers.
    pub(crate) fn absorb(&mut self, other: Parts) -> usize {
        let offset = self.nodes.len();
        self.nodes.extend(other.nodes);
        self.sizers.absorb(other.sizers);
        self.edges.extend(other.edges.into_iter().map(|e| Edge {
            from: PortRef {
                node: e.from.node + offset,
                port: e.from.port,
            },
            to: PortRef {
                node: e.to.node + offset,
                port: e.to.port,
            },
            feedback: e.feedback,
        }));
        self.errors
            .extend(other.errors.into_iter().map(|err| match err {
                Pending::Argument { node, message } => Pending::Argument {
                    node: node + offset,
                    message,
                },
                Pending::CodePolicy { node, message } => Pending::CodePolicy {
                    node: node + offset,
                    message,
                },
                ready => ready,
            }));
        offset
    }

    /// For each node, the nodes reachable from it along the edges (feedback edges
    /// left out), in index order.
    pub(super) fn downstream(&self) -> Vec<Vec<usize>> {
        let n = self.nodes.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for e in self.edges.iter().filter(|e| !e.feedback) {
            next[e.from.node].push(e.to.node);
        }
        (0..n)
            .map(|start| {
                let mut seen = vec![false; n];
                let mut stack = next[start].clone();
                while let Some(node) = stack.pop() {
                    if !std::mem::replace(&mut seen[node], true) {
                        stack.extend(&next[node]);
                    }
                }
                (0..n).filter(|&i| seen[i] && i != start).collect()
            })
            .collect()
    }

    /// Every node's name and pool, for a policy file.
    pub(super) fn node_names(&self) -> Vec<super::policies::NodeName> {
        (0..self.nodes.len())
            .map(|i| super::policies::NodeName {
                name: self.name(i),
                group: self.nodes[i].meta.group.clone(),
            })
            .collect()
    }

    pub(super) fn name(&self, node: usize) -> String {
        let meta = &self.nodes[node].meta;
        meta.name
            .clone()
            .unwrap_or_else(|| default_name(meta.kind, node))
    }

    /// Checks the shape: every port connected exactly once, no cycle but through
    /// a feedback edge, and every feedback edge on a cycle.
    fn check_shape(&self) -> Result<(), BuildError> {
        let mut ins: HashMap<PortRef, usize> = HashMap::new();
        let mut outs: HashMap<PortRef, usize> = HashMap::new();
        for e in &self.edges {
            *outs.entry(e.from).or_default() += 1;
            *ins.entry(e.to).or_default() += 1;
        }
        for (node, entry) in self.nodes.iter().enumerate() {
            for (input, count, map) in [
                (true, entry.meta.inputs, &ins),
                (false, entry.meta.outputs, &outs),
            ] {
                for port in 0..count {
                    let used = map.get(&PortRef { node, port }).copied().unwrap_or(0);
                    if used == 0 {
                        return Err(BuildError::UnconnectedPort {
                            stage: self.name(node),
                            port: entry.meta.port_name(input, port),
                        });
                    }
                    if used > 1 {
                        return Err(BuildError::PortConnectedTwice {
                            stage: self.name(node),
                            port: entry.meta.port_name(input, port),
                            count: used,
                        });
                    }
                }
            }
        }
        if let Some(cycle) = self.find_cycle() {
            return Err(BuildError::Cycle {
                stages: cycle.into_iter().map(|n| self.name(n)).collect(),
            });
        }
        self.check_feedback()
    }

    /// A cycle that goes through no feedback edge, as the nodes on it in edge
    /// order, if there is one.
    fn find_cycle(&self) -> Option<Vec<usize>> {
        let n = self.nodes.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for e in self.edges.iter().filter(|e| !e.feedback) {
            next[e.from.node].push(e.to.node);
        }
        // 0 unvisited, 1 on the current path, 2 done.
        let mut state = vec![0_u8; n];
        let mut path: Vec<usize> = Vec::new();
        for root in 0..n {
            if state[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            state[root] = 1;
            path.push(root);
            while let Some(&mut (node, ref mut i)) = stack.last_mut() {
                if let Some(&succ) = next[node].get(*i) {
                    *i += 1;
                    match state[succ] {
                        0 => {
                            state[succ] = 1;
                            path.push(succ);
                            stack.push((succ, 0));
                        }
                        1 => {
                            let start = path.iter().position(|&p| p == succ).unwrap_or(0);
                            let mut cycle = path[start..].to_vec();
                            cycle.push(succ);
                            return Some(cycle);
                        }
                        _ => {}
                    }
                } else {
                    state[node] = 2;
                    path.pop();
                    stack.pop();
                }
            }
        }
        None
    }
}

fn default_name(kind: &str, index: usize) -> String {
    format!("{kind}#{index}")
}

/// How a graph runs: the settings [`Runnable`] and [`Graph`] share.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) name: Option<String>,
    pub(crate) default_capacity: usize,
    pub(crate) max_batch: usize,
    pub(crate) placement: Placement,
    pub(crate) events: Option<tokio::sync::broadcast::Sender<weir_supervisor::SupervisionEvent>>,
    pub(crate) stall_timeout: Option<std::time::Duration>,
    pub(crate) strategy: weir_supervisor::policy::RestartStrategy,
    /// A policy file to apply to every stage (see `Runnable::policies`).
    pub(crate) policies: Option<weir_supervisor::policy::PolicyConfig>,
    /// Re-applies a policy file while the pipeline runs (see
    /// `Runnable::policies_handle`).
    pub(crate) policies_handle:
        Option<crate::reconfig::ConfigHandle<weir_supervisor::policy::PolicyConfig>>,
    /// How often the stages' counters are published through the `metrics` facade.
    pub(crate) metrics_interval: std::time::Duration,
    /// Where and how the pipeline checkpoints, if it does.
    pub(crate) checkpoint: Option<crate::checkpoint::CheckpointConfig>,
    /// Whether adjacent stages run fused (see `Runnable::fusion`).
    pub(crate) fusion: bool,
}

/// The environment variable that turns fusion off for every pipeline of the
/// process when set to `off`, `0` or `false` (to run a test suite unfused).
pub const FUSION_ENV: &str = "WEIR_FUSION";

/// Fusion's default: on, unless [`FUSION_ENV`] says off.
fn fusion_default() -> bool {
    !matches!(
        std::env::var(FUSION_ENV).as_deref().map(str::trim),
        Ok("off" | "0" | "false")
    )
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: None,
            default_capacity: DEFAULT_CAPACITY,
            max_batch: usize::MAX,
            placement: Placement::default(),
            metrics_interval: crate::observe::DEFAULT_METRICS_INTERVAL,
            events: None,
            stall_timeout: None,
            strategy: weir_supervisor::policy::RestartStrategy::default(),
            policies: None,
            policies_handle: None,
            checkpoint: None,
            fusion: fusion_default(),
        }
    }
}

impl Settings {
    pub(crate) fn subscribe(&mut self) -> Events {
        let tx = self
            .events
            .get_or_insert_with(|| tokio::sync::broadcast::channel(EVENT_BUFFER).0);
        Events::new(tx.subscribe())
    }
}

/// Validates `parts` and starts every node on `runtime`.
pub(crate) fn launch(
    mut parts: Parts,
    settings: Settings,
    runtime: &Runtime,
) -> Result<(Arc<PipelineShared>, oneshot::Receiver<Done>), BuildError> {
    let pipeline_name = settings
        .name
        .clone()
        .unwrap_or_else(|| format!("pipeline-{}", PIPELINE_SEQ.fetch_add(1, Relaxed)));
    let specs = resolve(&parts, &settings, &pipeline_name, runtime)?;
    if let Some(budget) = runtime.budget() {
        for (entry, spec) in parts.nodes.iter().zip(&specs) {
            if let Some(element) = entry.node.max_element_bytes()
                && element > budget.limit()
            {
                return Err(BuildError::BudgetTooSmall {
                    stage: spec.name.clone(),
                    element,
                    budget: budget.limit(),
                });
            }
        }
    }
    if settings.policies_handle.is_some() && settings.policies.is_none() {
        return Err(BuildError::InvalidArgument {
            stage: pipeline_name,
            message: "a policies handle re-applies a policy file: give the pipeline the file \
                      it starts with (policies(&config)) too"
                .into(),
        });
    }
    if let Some(handle) = &settings.policies_handle
        && !handle.attach()
    {
        return Err(BuildError::InvalidArgument {
            stage: pipeline_name,
            message: "this policies handle is already attached to another pipeline (one \
                      handle per pipeline)"
                .into(),
        });
    }
    // The file decides the policies and the strategy (see `Runnable::policies`).
    let (node_policies, strategy) = match &settings.policies {
        Some(config) => (
            super::policies::apply(&mut parts, config)?,
            config.strategy(),
        ),
        None => (Vec::new(), settings.strategy),
    };
    let coordinator = match &settings.checkpoint {
        Some(config) => Some(super::checkpointing::prepare(
            &mut parts,
            config,
            &pipeline_name,
        )?),
        None => None,
    };
    let capacities: Vec<usize> = specs.iter().map(|s| s.capacity).collect();
    let stages: Vec<Arc<StageShared>> = specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| Arc::new(StageShared::new(i, s)))
        .collect();
    for (stage, node) in stages.iter().zip(&node_policies) {
        stage.set_stall_override(node.stall_timeout);
        stage.set_on_stall_override(node.on_stall);
    }
    let pinned: Vec<Option<usize>> = parts.nodes.iter().map(|n| n.meta.pinned).collect();
    let mut arbiters = runtime.place(settings.placement, &pinned);
    let base = arbiters.first().copied().unwrap_or(0);
    for (i, node) in parts.nodes.iter().enumerate() {
        if let (Some(k), None) = (node.meta.replica, node.meta.pinned) {
            arbiters[i] = (base + 1 + k) % runtime.arbiters();
        }
    }
    let timer = runtime.handle(arbiters[0]).clone();
    let events = settings
        .events
        .unwrap_or_else(|| tokio::sync::broadcast::channel(EVENT_BUFFER).0);
    let (pipeline, done) = PipelineShared::new(
        pipeline_name,
        stages.clone(),
        timer,
        events,
        settings.stall_timeout,
        strategy,
        parts.downstream(),
        coordinator,
        runtime
            .budget()
            .map(|budget| crate::memory::PipelineMemory {
                budget: Arc::clone(budget),
                sizers: parts.sizers.clone(),
            }),
    );

    // Which stage each stage is fused into (the one before it), if any.
    let fused_into = if settings.fusion {
        fused_groups(&parts, &stages, &arbiters)
    } else {
        vec![None; parts.nodes.len()]
    };
    let heads = group_heads(&fused_into);
    pipeline.set_topology(super::topology::describe(
        &parts,
        &pipeline.name,
        &capacities,
        &arbiters,
        &heads,
    ));
    // Pass 1: mailboxes, sized for every edge in and out; a fused group's actor
    // takes the credit of the edge after its last member.
    let mut out_capacity = vec![0; parts.nodes.len()];
    for e in &parts.edges {
        if fused_into[e.to.node] != Some(e.from.node) {
            out_capacity[heads[e.from.node]] += capacities[e.to.node];
        }
    }
    for (i, entry) in parts.nodes.iter_mut().enumerate() {
        if fused_into[i].is_none() {
            let input = capacities[i] * entry.meta.inputs;
            entry.node.prepare(input, out_capacity[i]);
        }
    }
    // Pass 2: links, both ways.
    let mut inputs: Vec<Vec<Option<EdgeSource>>> = parts
        .nodes
        .iter()
        .map(|n| vec![None; n.meta.inputs])
        .collect();
    for e in &parts.edges {
        if fused_into[e.to.node] == Some(e.from.node) {
            // Inside a fused group: linked in the fusing pass below.
            inputs[e.to.node][e.to.port] = Some(EdgeSource {
                stage: Arc::clone(&stages[e.from.node]),
                port: None,
            });
            continue;
        }
        let tx: AnyDownTx = parts.nodes[e.to.node].node.down_tx(e.to.port);
        // Credit for the last member of a fused group goes to the group's actor.
        let up_tx = parts.nodes[heads[e.from.node]].node.up_tx(e.from.port);
        let source = EdgeSource {
            stage: Arc::clone(&stages[e.from.node]),
            port: parts.nodes[e.from.node]
                .meta
                .junction
                .then_some(e.from.port),
        };
        parts.nodes[e.from.node]
            .node
            .set_output(e.from.port, tx, capacities[e.to.node]);
        parts.nodes[e.to.node].node.set_input(
            e.to.port,
            UpLink {
                tx: up_tx,
                source: source.clone(),
            },
        );
        inputs[e.to.node][e.to.port] = Some(source);
    }
    for (stage, ins) in stages.iter().zip(inputs) {
        let _ = stage.inputs.set(ins.into_iter().flatten().collect());
    }
    let controls = (0..parts.nodes.len())
        .map(|i| match fused_into[i] {
            None => ControlTx::Actor(parts.nodes[i].node.control()),
            Some(_) => {
                let head = parts.nodes[heads[i]].node.member_controls();
                // Cannot fail: only stages lead fused groups.
                ControlTx::Member(head.expect("a stage leads a fused group"), i)
            }
        })
        .collect();
    pipeline.set_controls(controls);
    if let Some(handle) = &settings.policies_handle {
        let setters = (0..parts.nodes.len())
            .map(|i| match fused_into[i] {
                None => parts.nodes[i].node.policy_setter().map(PolicyTx::Actor),
                Some(_) => parts.nodes[i].node.supervision().map(|_| {
                    let head = parts.nodes[heads[i]].node.member_policies();
                    // Cannot fail: only stages lead fused groups.
                    PolicyTx::Member(head.expect("a stage leads a fused group"), i)
                }),
            })
            .collect();
        let names = parts.node_names();
        super::policies::Reloader::bind(handle, &pipeline, names, node_policies, setters);
    }
    // Installed before any stage starts: the last stage to stop takes the final
    // sample, which a pipeline that ends at once would otherwise miss.
    crate::observe::metrics::install_sampler(&pipeline);
    let mut nodes: Vec<Option<Box<dyn Node>>> =
        parts.nodes.into_iter().map(|n| Some(n.node)).collect();
    // Fusing: each member, from the last of its group back, becomes the output of
    // the stage before it.
    for i in (0..nodes.len()).rev() {
        let Some(prev) = fused_into[i] else {
            continue;
        };
        let Some(mut node) = nodes[i].take() else {
            continue;
        };
        let up = Arc::new(FusedUp::default());
        node.set_input(
            0,
            UpLink {
                tx: UpTx::Fused(Arc::clone(&up)),
                source: EdgeSource {
                    stage: Arc::clone(&stages[prev]),
                    port: None,
                },
            },
        );
        let member = node.into_member(
            Start {
                arbiter: runtime.handle(arbiters[i]),
                shared: Arc::clone(&stages[i]),
                pipeline: Arc::clone(&pipeline),
                max_batch: settings.max_batch,
            },
            up,
        );
        if let Some(prev) = nodes[prev].as_mut() {
            prev.set_fused_output(member);
        }
    }
    // Pass 3: start.
    for (i, node) in nodes.into_iter().enumerate() {
        let Some(node) = node else {
            continue; // A fused member: it starts with its group's actor.
        };
        let started = node.start(Start {
            arbiter: runtime.handle(arbiters[i]),
            shared: Arc::clone(&stages[i]),
            pipeline: Arc::clone(&pipeline),
            max_batch: settings.max_batch,
        });
        if !started {
            pipeline.abort();
            return Err(BuildError::RuntimeStopped {
                stage: stages[i].name.clone(),
            });
        }
    }
    crate::observe::metrics::spawn_sampler(Arc::clone(&pipeline), settings.metrics_interval);
    Ok((pipeline, done))
}

fn resolve(
    parts: &Parts,
    settings: &Settings,
    pipeline: &str,
    runtime: &Runtime,
) -> Result<Vec<StageSpec>, BuildError> {
    // A policy file decides the policies: what the code's policy got wrong is
    // checked again against the file's.
    let file = settings.policies.is_some();
    let first = parts
        .errors
        .iter()
        .find(|e| !(file && matches!(e, Pending::CodePolicy { .. })));
    if let Some(err) = first {
        return Err(match err.clone() {
            Pending::Argument { node, message } | Pending::CodePolicy { node, message } => {
                BuildError::InvalidArgument {
                    stage: parts.name(node),
                    message,
                }
            }
            Pending::Ready(err) => err,
        });
    }
    if settings.max_batch == 0 {
        return Err(BuildError::ZeroBatchLimit {
            pipeline: pipeline.to_owned(),
        });
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut specs = Vec::with_capacity(parts.nodes.len());
    for (index, entry) in parts.nodes.iter().enumerate() {
        let meta = &entry.meta;
        let name = parts.name(index);
        if name.is_empty() {
            return Err(BuildError::EmptyStageName { index });
        }
        if let Some(&first) = seen.get(&name) {
            return Err(BuildError::DuplicateStageName {
                name,
                first,
                second: index,
            });
        }
        seen.insert(name.clone(), index);
        let is_source = meta.inputs == 0;
        let capacity = if is_source {
            if meta.capacity.is_some() {
                return Err(BuildError::CapacityOnSource { stage: name });
            }
            0
        } else {
            let capacity = meta.capacity.unwrap_or(settings.default_capacity);
            if capacity == 0 {
                return Err(BuildError::ZeroCapacity { stage: name });
            }
            capacity
        };
        if let Some(arbiter) = meta.pinned
            && arbiter >= runtime.arbiters()
        {
            return Err(BuildError::NoSuchArbiter {
                stage: name,
                arbiter,
                available: runtime.arbiters(),
            });
        }
        specs.push(StageSpec {
            name,
            kind: meta.kind,
            capacity,
            counting: meta.counting,
            is_source: is_source && !meta.junction,
            is_sink: meta.outputs == 0 && !meta.junction,
            junction_inputs: if meta.junction { meta.inputs } else { 0 },
            junction_outputs: if meta.junction { meta.outputs } else { 0 },
            contained: false,
        });
    }
    parts.check_shape()?;
    for node in parts.contained_stages() {
        specs[node].contained = true;
    }
    Ok(specs)
}

/// For each stage, the stage before it whose fused group it joins, if any: an edge
/// joins two stages into one group when the first has that one output, the second
/// that one input and an operator that fuses ([`Node::fusable`]), both run on one
/// arbiter, neither is pinned, contained (a failure that only ends a merge input)
/// or after an async boundary, and the edge is not a feedback edge.
fn fused_groups(
    parts: &Parts,
    stages: &[Arc<StageShared>],
    arbiters: &[usize],
) -> Vec<Option<usize>> {
    let mut into = vec![None; parts.nodes.len()];
    for e in &parts.edges {
        let (a, b) = (e.from.node, e.to.node);
        let (ma, mb) = (&parts.nodes[a].meta, &parts.nodes[b].meta);
        let joins = !e.feedback
            && !ma.junction
            && !mb.junction
            && ma.outputs == 1
            && mb.inputs == 1
            && !ma.boundary
            && ma.pinned.is_none()
            && mb.pinned.is_none()
            && arbiters[a] == arbiters[b]
            && !stages[a].contained
            && !stages[b].contained
            && parts.nodes[b].node.fusable();
        if joins {
            into[b] = Some(a);
        }
    }
    into
}

/// For each stage, the first stage of its fused group (itself when it leads one
/// or is not fused).
fn group_heads(fused_into: &[Option<usize>]) -> Vec<usize> {
    (0..fused_into.len())
        .map(|mut i| {
            // Groups are chains: following the links back ends at the head.
            for _ in 0..fused_into.len() {
                match fused_into[i] {
                    Some(prev) => i = prev,
                    None => break,
                }
            }
            i
        })
        .collect()
}
