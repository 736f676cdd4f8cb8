//! [`Bottleneck`]: the stage that holds a pipeline back, from one sample of its
//! edges' fill.

use serde::Serialize;
use weir_runtime::{EdgeLoad, PipelineStats, Topology};

/// An edge at least this full (queued / capacity) holds its sender back.
pub const FULL: f64 = 0.8;

/// An edge at most this full leaves its receiver waiting for input.
pub const STARVED: f64 = 0.2;

/// Why a stage is named the bottleneck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BottleneckReason {
    /// The stall watchdog reports it stalled (it holds input and makes no
    /// progress), and no stage downstream of it is stalled: the root of the stall.
    Stalled,
    /// Its input is full while its outputs are starved (or it is a sink): it is
    /// the slowest stage, blocking upstream and starving downstream.
    Backpressure,
}

/// The stage that holds its pipeline back, from [`Bottleneck::find`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bottleneck {
    /// The stage's name.
    pub stage: String,
    /// Its node id in the [`Topology`].
    pub id: usize,
    /// Why it was chosen.
    pub reason: BottleneckReason,
    /// The fill of its fullest input edge, from 0 to 1.
    pub input_fill: f64,
    /// The fill of its fullest output edge (`None` for a sink).
    pub output_fill: Option<f64>,
    /// The nodes it blocks: their edge into it is full.
    pub blocked: Vec<String>,
}

impl Bottleneck {
    /// The stage that holds the pipeline back now, if one does.
    ///
    /// The rule, from the stats' stall flags and the edges' fill (one sample):
    ///
    /// 1. A stalled stage none of whose downstream stages is stalled (the root
    ///    of the stall), the most upstream one if there are several.
    /// 2. Otherwise a stage whose fullest input edge is at least [`FULL`] while
    ///    its fullest output edge is at most [`STARVED`] (or it has none: a
    ///    sink) — blocked upstream, starved downstream. Of several, the one with
    ///    the fullest input, then the emptiest output, then the most downstream.
    /// 3. Otherwise none: every stage keeps up, or the pipeline is idle.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir::console::Bottleneck;
    /// use weir::prelude::*;
    ///
    /// let rt = Runtime::builder().arbiters(1).build()?;
    /// let running = Pipeline::from_iter(0..10_u64).collect().run(&rt)?;
    /// let controller = running.controller();
    /// running.wait()?;
    /// // Finished: every edge is empty, nothing holds it back.
    /// let found = Bottleneck::find(&controller.topology(), &controller.edge_loads(), &controller.stats());
    /// assert_eq!(found, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn find(topology: &Topology, loads: &[EdgeLoad], stats: &PipelineStats) -> Option<Self> {
        let stalled: Vec<bool> = topology
            .nodes
            .iter()
            .map(|n| stats.stages.get(n.id).is_some_and(|s| s.stalled))
            .collect();
        find_in(topology, loads, &stalled)
    }
}

/// [`Bottleneck::find`] with the stall flags by node id.
pub(crate) fn find_in(
    topology: &Topology,
    loads: &[EdgeLoad],
    stalled: &[bool],
) -> Option<Bottleneck> {
    let n = topology.nodes.len();
    let fill_into = |id: usize| -> Option<f64> {
        loads
            .iter()
            .filter(|e| e.to == id)
            .map(EdgeLoad::fill)
            .reduce(f64::max)
    };
    let fill_from = |id: usize| -> Option<f64> {
        loads
            .iter()
            .filter(|e| e.from == id)
            .map(EdgeLoad::fill)
            .reduce(f64::max)
    };
    let blocked = |id: usize| -> Vec<String> {
        loads
            .iter()
            .filter(|e| e.to == id && e.fill() >= FULL)
            .map(|e| topology.nodes[e.from].name.clone())
            .collect()
    };
    let make = |id: usize, reason| Bottleneck {
        stage: topology.nodes[id].name.clone(),
        id,
        reason,
        input_fill: fill_into(id).unwrap_or(0.0),
        output_fill: fill_from(id),
        blocked: blocked(id),
    };

    // 1. The root of a stall.
    let downstream = reachable(topology);
    let root = (0..n)
        .filter(|&id| stalled.get(id).copied().unwrap_or(false))
        .filter(|&id| {
            !downstream[id]
                .iter()
                .any(|&d| stalled.get(d).copied().unwrap_or(false))
        })
        .min_by_key(|&id| upstream_count(&downstream, id));
    if let Some(id) = root {
        return Some(make(id, BottleneckReason::Stalled));
    }

    // 2. Blocked upstream, starved downstream.
    (0..n)
        .filter_map(|id| {
            let input = fill_into(id)?;
            let output = fill_from(id);
            (input >= FULL && output.is_none_or(|o| o <= STARVED)).then_some((id, input, output))
        })
        .max_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then_with(|| b.2.unwrap_or(0.0).total_cmp(&a.2.unwrap_or(0.0)))
                .then_with(|| a.0.cmp(&b.0))
        })
        .map(|(id, _, _)| make(id, BottleneckReason::Backpressure))
}

/// For each node, the nodes downstream of it (feedback edges left out).
fn reachable(topology: &Topology) -> Vec<Vec<usize>> {
    let n = topology.nodes.len();
    let mut next = vec![Vec::new(); n];
    for e in topology.edges.iter().filter(|e| !e.feedback) {
        if e.from < n && e.to < n {
            next[e.from].push(e.to);
        }
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

/// How many nodes have `id` downstream of them.
fn upstream_count(downstream: &[Vec<usize>], id: usize) -> usize {
    downstream.iter().filter(|d| d.contains(&id)).count()
}

#[cfg(test)]
mod tests {
    use weir_runtime::{NodeRole, TopologyEdge, TopologyNode};

    use super::*;

    /// A chain of `fills.len() + 1` nodes, edge `i` filled to `fills[i]` of 10.
    fn chain(fills: &[u64]) -> (Topology, Vec<EdgeLoad>) {
        let n = fills.len() + 1;
        let nodes = (0..n)
            .map(|id| TopologyNode {
                id,
                name: format!("s{id}"),
                role: if id == 0 {
                    NodeRole::Source
                } else if id == n - 1 {
                    NodeRole::Sink
                } else {
                    NodeRole::Stage
                },
                kind: "k",
                arbiter: 0,
                capacity: if id == 0 { 0 } else { 10 },
                inputs: usize::from(id > 0),
                outputs: usize::from(id < n - 1),
                group: None,
                replica: None,
                supervision: None,
                breaker: None,
                fused_group: None,
            })
            .collect();
        let edges: Vec<TopologyEdge> = (0..fills.len())
            .map(|i| TopologyEdge {
                from: i,
                to: i + 1,
                from_port: 0,
                to_port: 0,
                capacity: 10,
                feedback: false,
            })
            .collect();
        let loads = edges
            .iter()
            .zip(fills)
            .map(|(e, &queued)| EdgeLoad {
                from: e.from,
                to: e.to,
                from_port: 0,
                to_port: 0,
                queued,
                capacity: 10,
                credit: None,
            })
            .collect();
        (
            Topology {
                pipeline: "p".into(),
                nodes,
                edges,
            },
            loads,
        )
    }

    fn found(fills: &[u64], stalled: &[bool]) -> Option<(String, BottleneckReason)> {
        let (t, loads) = chain(fills);
        find_in(&t, &loads, stalled).map(|b| (b.stage, b.reason))
    }

    #[test]
    fn a_slow_sink_is_the_bottleneck_of_a_full_chain() {
        let (t, loads) = chain(&[10, 10, 10]);
        let b = find_in(&t, &loads, &[]).unwrap();
        assert_eq!(
            (b.stage.as_str(), b.reason),
            ("s3", BottleneckReason::Backpressure)
        );
        assert_eq!((b.input_fill, b.output_fill), (1.0, None));
        assert_eq!(b.blocked, ["s2"]);
    }

    #[test]
    fn a_slow_middle_stage_is_full_before_and_starved_after() {
        assert_eq!(
            found(&[10, 9, 0], &[]),
            Some(("s2".into(), BottleneckReason::Backpressure))
        );
        // Its output a little filled is still starved.
        assert_eq!(
            found(&[10, 10, 2], &[]),
            Some(("s2".into(), BottleneckReason::Backpressure))
        );
    }

    #[test]
    fn no_bottleneck_when_nothing_is_full_or_nothing_is_starved() {
        assert_eq!(found(&[0, 0, 0], &[]), None);
        assert_eq!(found(&[5, 5, 5], &[]), None);
        // Full input, half-full output: the stage keeps up with what it gets.
        assert_eq!(found(&[10, 5], &[]), None);
    }

    #[test]
    fn the_fullest_input_wins_then_the_emptiest_output() {
        // s1 (input 8/10, output empty) and s3 (input full, a sink).
        assert_eq!(
            found(&[8, 0, 10], &[]),
            Some(("s3".into(), BottleneckReason::Backpressure))
        );
        assert_eq!(
            found(&[10, 0, 8], &[]),
            Some(("s1".into(), BottleneckReason::Backpressure))
        );
    }

    #[test]
    fn the_root_of_a_stall_comes_first() {
        // s1 and s2 stalled: s2 is the root (nothing stalled downstream of it).
        assert_eq!(
            found(&[10, 10, 10], &[false, true, true, false]),
            Some(("s2".into(), BottleneckReason::Stalled))
        );
        assert_eq!(
            found(&[0, 0, 0], &[false, true, false, false]),
            Some(("s1".into(), BottleneckReason::Stalled))
        );
    }

    #[test]
    fn a_branch_that_falls_behind_is_named_not_its_fan_out() {
        // src -> fan -> {fast, slow}: the fan's input is full, one output full.
        let (mut t, _) = chain(&[0, 0]);
        t.nodes[1].role = NodeRole::Junction;
        t.nodes[1].outputs = 2;
        t.nodes.push(TopologyNode {
            id: 3,
            name: "slow".into(),
            ..t.nodes[2].clone()
        });
        t.edges.push(TopologyEdge {
            from: 1,
            to: 3,
            from_port: 1,
            ..t.edges[1]
        });
        let load = |from, to, queued| EdgeLoad {
            from,
            to,
            from_port: 0,
            to_port: 0,
            queued,
            capacity: 10,
            credit: None,
        };
        let loads = [load(0, 1, 10), load(1, 2, 0), load(1, 3, 10)];
        let b = find_in(&t, &loads, &[]).unwrap();
        assert_eq!(b.stage, "slow");
        assert_eq!(b.blocked, ["s1"]);
    }
}
