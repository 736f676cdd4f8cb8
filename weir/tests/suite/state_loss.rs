//! A stateful operator restarted from its factory loses its state, and the loss is
//! counted in the report (`state_lost`), never silent.

use std::collections::HashSet;
use std::task::Context;
use std::time::Duration;

use weir::operator::{Io, Operator, Step};
use weir::prelude::*;

/// Counts distinct keys; panics once on the element 500.
struct DistinctKeys {
    keys: HashSet<u64>,
    tripped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Operator for DistinctKeys {
    type In = u64;
    type Out = usize;

    fn kind(&self) -> &'static str {
        "distinct-keys"
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(&mut self, io: &mut Io<'_, u64, usize>, _cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            if x == 500 && !self.tripped.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("trip on {x}");
            }
            self.keys.insert(x % 37);
            io.push(self.keys.len());
        }
        io.finish_when_drained()
    }

    fn state_entries(&self) -> usize {
        self.keys.len()
    }
}

#[test]
fn a_restart_from_the_factory_counts_the_state_it_lost() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let tripped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let policy = SupervisionPolicy::default().restart_backoff(BackoffConfig::new(
        Duration::from_millis(1),
        Duration::from_millis(1),
    ));
    let done = Pipeline::from_iter(0..1_000_u64)
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(4)))
        .via_factory(move || DistinctKeys {
            keys: HashSet::new(),
            tripped: tripped.clone(),
        })
        .name("distinct")
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    let stage = done.report.stage("distinct").unwrap();
    assert_eq!(stage.restarts, 1);
    // 0..500 saw all 37 keys; the fresh instance starts counting from 1 again.
    assert_eq!(stage.state_lost, 37);
    assert_eq!(done.output[499], 37);
    assert_eq!(done.output[500], 1);
    assert_eq!(done.output.len(), 1_000);
}
