//! [`CycleWatch`]: what a feedback edge reads to see that its cycle is empty.
//!
//! The stages on the cycle are found from the edges every stage records as its
//! inputs (`StageShared::inputs`): walking them backwards from the feedback edge
//! gives every stage upstream of it; of those, the ones reachable forwards from
//! the feedback edge are on a cycle through it (its strongly connected
//! component, which includes other feedback edges of nested cycles).
//!
//! Every counter read is monotone: elements sent on an edge (`emitted`, counted
//! before the batch is sent), elements received from it, a stage's received count,
//! its `settled` mark (the received count at the end of its last pass that left
//! it holding nothing), and whether a stage feeding the cycle has stopped. Two
//! reads that return the same numbers therefore saw one state that held at every
//! instant between them (a double collect).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use crate::stage::link::EdgeSource;
use crate::stage::shared::StageShared;

/// One edge into a stage on the cycle.
struct WatchedEdge {
    /// The sender's counters.
    from: EdgeSource,
    /// The receiver; `None`: the feedback edge itself.
    to: Option<Arc<StageShared>>,
    /// The receiver's input port.
    port: usize,
}

/// The stages of a cycle and the edges into them.
pub(super) struct CycleWatch {
    /// The stages on the cycle, the feedback edge itself left out.
    members: Vec<Arc<StageShared>>,
    /// Every edge into a stage on the cycle (from the cycle or from outside).
    edges: Vec<WatchedEdge>,
    /// The stages outside the cycle that feed it.
    entries: Vec<Arc<StageShared>>,
}

impl CycleWatch {
    /// Finds the cycle through the feedback stage `me`.
    pub(super) fn discover(me: &StageShared) -> Self {
        let inputs = |s: &StageShared| s.inputs.get().cloned().unwrap_or_default();
        // Every stage upstream of `me`, with its input edges.
        let mut stages: HashMap<usize, Arc<StageShared>> = HashMap::new();
        let mut inputs_of: HashMap<usize, Vec<EdgeSource>> = HashMap::new();
        let mine = inputs(me);
        let mut todo: Vec<EdgeSource> = mine.clone();
        inputs_of.insert(me.index, mine);
        while let Some(edge) = todo.pop() {
            let index = edge.stage.index;
            if inputs_of.contains_key(&index) {
                continue;
            }
            let ins = inputs(&edge.stage);
            todo.extend(ins.iter().cloned());
            inputs_of.insert(index, ins);
            stages.insert(index, edge.stage);
        }
        // Of those, the ones `me` reaches: on a cycle through `me`.
        let mut next: HashMap<usize, Vec<usize>> = HashMap::new();
        for (&to, ins) in &inputs_of {
            for edge in ins {
                next.entry(edge.stage.index).or_default().push(to);
            }
        }
        let mut on_cycle: HashSet<usize> = HashSet::from([me.index]);
        let mut todo = vec![me.index];
        while let Some(node) = todo.pop() {
            for &succ in next.get(&node).into_iter().flatten() {
                if on_cycle.insert(succ) {
                    todo.push(succ);
                }
            }
        }
        let mut cycle: Vec<usize> = on_cycle.iter().copied().collect();
        cycle.sort_unstable();
        let mut watch = CycleWatch {
            members: Vec::new(),
            edges: Vec::new(),
            entries: Vec::new(),
        };
        let mut entries: HashSet<usize> = HashSet::new();
        for index in cycle {
            let to = (index != me.index).then(|| Arc::clone(&stages[&index]));
            if let Some(stage) = &to {
                watch.members.push(Arc::clone(stage));
            }
            for (port, from) in inputs_of[&index].iter().enumerate() {
                let source = from.stage.index;
                if !on_cycle.contains(&source) && entries.insert(source) {
                    watch.entries.push(Arc::clone(&from.stage));
                }
                watch.edges.push(WatchedEdge {
                    from: from.clone(),
                    to: to.clone(),
                    port,
                });
            }
        }
        watch
    }

    /// The counters, if every stage feeding the cycle has stopped and the cycle
    /// holds nothing (its stages and the edges into them); `None` otherwise.
    /// `me`'s own queue and buffer are the caller's to check.
    pub(super) fn collect(&self, me: &StageShared) -> Option<Vec<u64>> {
        if self.entries.iter().any(|s| s.final_state().is_none()) {
            return None;
        }
        let mut counts = Vec::with_capacity(self.edges.len() + self.members.len());
        for edge in &self.edges {
            let sent = edge.from.emitted(SeqCst);
            let received = edge.to.as_deref().unwrap_or(me).received_on(edge.port);
            if sent != received {
                return None;
            }
            counts.push(sent);
        }
        for stage in &self.members {
            let received = stage.received.load(SeqCst);
            if stage.settled.load(SeqCst) != received {
                return None;
            }
            counts.push(received);
        }
        Some(counts)
    }

    /// Names of the stages on the cycle (for tests).
    #[cfg(test)]
    pub(super) fn member_names(&self) -> Vec<String> {
        self.members.iter().map(|s| s.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::operator::Counting;
    use crate::stage::shared::{FinalState, StageSpec};

    /// A stage's counters; `ports` = (inputs, outputs) for a junction.
    fn stage(index: usize, name: &str, ports: Option<(usize, usize)>) -> Arc<StageShared> {
        let (ins, outs) = ports.unwrap_or((0, 0));
        Arc::new(StageShared::new(
            index,
            StageSpec {
                name: name.into(),
                kind: "test",
                capacity: 4,
                counting: Counting::Custom,
                is_source: false,
                is_sink: false,
                junction_inputs: ins,
                junction_outputs: outs,
                contained: false,
            },
        ))
    }

    fn edge(stage: &Arc<StageShared>, port: Option<usize>) -> EdgeSource {
        EdgeSource {
            stage: Arc::clone(stage),
            port,
        }
    }

    #[test]
    fn finds_the_cycle_and_sees_when_it_is_empty() {
        // src → pre → head.in[1]; head → step → split; split.out[1] → fb → head.in[0];
        // split.out[0] → sink.
        let src = stage(0, "src", None);
        let pre = stage(1, "pre", None);
        let head = stage(2, "head", Some((2, 1)));
        let step = stage(3, "step", None);
        let split = stage(4, "split", Some((1, 2)));
        let fb = stage(5, "fb", Some((1, 1)));
        let sink = stage(6, "sink", None);
        let set = |s: &Arc<StageShared>, ins: Vec<EdgeSource>| s.inputs.set(ins).unwrap();
        set(&pre, vec![edge(&src, None)]);
        set(&head, vec![edge(&fb, Some(0)), edge(&pre, None)]);
        set(&step, vec![edge(&head, Some(0))]);
        set(&split, vec![edge(&step, None)]);
        set(&fb, vec![edge(&split, Some(1))]);
        set(&sink, vec![edge(&split, Some(0))]);

        let watch = CycleWatch::discover(&fb);
        assert_eq!(watch.member_names(), ["head", "step", "split"]);
        let entries: Vec<&str> = watch.entries.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(entries, ["pre"]);
        assert_eq!(watch.edges.len(), 5);

        // `pre` still runs: something may enter.
        assert_eq!(watch.collect(&fb), None);
        *pre.final_state.lock().unwrap() = Some(FinalState::default());
        assert_eq!(watch.collect(&fb), Some(vec![0; 8]));
        // One element sent from step to split, not received yet.
        step.emitted.fetch_add(1, Relaxed);
        assert_eq!(watch.collect(&fb), None);
        // Received by split, still in its queue.
        split.in_received[0].fetch_add(1, Relaxed);
        split.received.fetch_add(1, Relaxed);
        assert_eq!(watch.collect(&fb), None);
        // Split has settled it.
        split.mark_settled(1);
        assert!(watch.collect(&fb).is_some_and(|c| c.contains(&1)));
    }
}
