//! [`Merge`]'s routing driven directly, without actors: scripted arrivals and
//! credit, many seeds. Checks what the turns must keep: each input's order, exact
//! counts, the input bound, completion, and that no input waits longer than one
//! turn of every other input.

use std::collections::VecDeque;
use std::time::Instant;

use super::{InPort, Junction, Merge, OutPort, Ports, Routing};
use crate::operator::Counting;
use crate::stage::shared::{StageShared, StageSpec};

/// A small xorshift generator: deterministic cases without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn shared(inputs: usize, capacity: usize) -> StageShared {
    StageShared::new(
        0,
        StageSpec {
            name: "merge".into(),
            kind: "merge",
            capacity,
            counting: Counting::OneToOne,
            is_source: false,
            is_sink: false,
            contained: false,
            junction_inputs: inputs,
            junction_outputs: 1,
        },
    )
}

/// Elements are `(input, position)`, so order and origin can be checked.
type El = (usize, usize);

struct Sim {
    ins: Vec<InPort<El>>,
    outs: Vec<OutPort<El>>,
    shared: StageShared,
    merge: Merge<El>,
    /// Elements each input will send in all.
    lengths: Vec<usize>,
    /// Elements each input has sent so far.
    sent: Vec<usize>,
    /// Credit the sink has not granted back yet (elements it took).
    ungranted: usize,
    delivered: Vec<El>,
    /// Elements of other inputs sent while input `j` waited with a queue.
    waited: Vec<usize>,
    finished: bool,
}

impl Sim {
    fn new(lengths: Vec<usize>, capacity: usize, out_credit: usize) -> Self {
        let n = lengths.len();
        let ins = (0..n)
            .map(|_| InPort {
                queue: VecDeque::new(),
                behind: VecDeque::new(),
                behind_len: 0,
                arrived: false,
                ended: false,
                owed: 0,
                restored: 0,
                up: None,
                received: 0,
            })
            .collect();
        let outs = vec![OutPort {
            buffer: VecDeque::new(),
            credit: out_credit,
            capacity: out_credit,
            tx: None,
            open: true,
            last_flow: Instant::now(),
            pushed: 0,
            ending: false,
            charge: None,
        }];
        Sim {
            ins,
            outs,
            shared: shared(n, capacity),
            merge: Merge::new(),
            sent: vec![0; n],
            lengths,
            ungranted: 0,
            delivered: Vec::new(),
            waited: vec![0; n],
            finished: false,
        }
    }

    /// Input `i`'s upstream sends up to `k` elements within the credit it has.
    fn arrive(&mut self, i: usize, k: usize, capacity: usize) {
        let port = &mut self.ins[i];
        let credit = capacity - port.queue.len();
        let k = k.min(credit).min(self.lengths[i] - self.sent[i]);
        port.queue
            .extend((self.sent[i]..self.sent[i] + k).map(|p| (i, p)));
        port.received += k as u64;
        self.sent[i] += k;
        if self.sent[i] == self.lengths[i] {
            port.ended = true;
        }
    }

    /// The junction sends its buffer within credit; the sink takes it.
    fn flush(&mut self) {
        let out = &mut self.outs[0];
        let k = out.buffer.len().min(out.credit);
        self.delivered.extend(out.buffer.drain(..k));
        out.credit -= k;
        self.ungranted += k;
    }

    /// The sink grants back `k` of the places it freed.
    fn grant(&mut self, k: usize) {
        let k = k.min(self.ungranted);
        self.ungranted -= k;
        self.outs[0].credit += k;
    }

    fn route(&mut self, capacity: usize) {
        let n = self.ins.len();
        let mut left: Vec<usize> = self.ins.iter().map(|p| p.queue.len()).collect();
        for (j, w) in self.waited.iter_mut().enumerate() {
            if left[j] == 0 {
                *w = 0;
            }
        }
        let before = self.outs[0].buffer.len();
        let mut ports = Ports {
            ins: &mut self.ins,
            outs: &mut self.outs,
            shared: &self.shared,
            pipeline: "test",
            taken: 0,
            uncommitted: 0,
            filtered: 0,
            now: Instant::now(),
            wake: None,
        };
        let routing = self.merge.route(&mut ports);
        let taken = ports.taken;
        let moved = self.outs[0].buffer.len() - before;
        assert_eq!(taken, moved as u64, "every element taken is routed");
        assert!(
            self.outs[0].buffer.len() <= self.outs[0].credit,
            "within room"
        );
        for &(i, _) in self.outs[0].buffer.iter().skip(before) {
            left[i] -= 1;
            self.waited[i] = 0;
            for j in (0..n).filter(|&j| j != i && left[j] > 0) {
                self.waited[j] += 1;
                assert!(
                    self.waited[j] <= (n - 1) * capacity,
                    "input {j} waited past one turn of every other input"
                );
            }
        }
        let owed: usize = self.ins.iter().map(|p| p.owed).sum();
        assert_eq!(owed, moved, "the freed places are owed upstream");
        for p in &mut self.ins {
            p.owed = 0;
        }
        let exhausted = self.ins.iter().all(|p| p.ended && p.queue.is_empty());
        assert_eq!(
            routing == Routing::Finished,
            exhausted,
            "finishes when all end"
        );
        self.finished = exhausted;
    }
}

#[test]
fn merge_turns_keep_order_and_counts_and_starve_no_input() {
    for seed in 1..400_u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let n = 1 + rng.below(5);
        let capacity = 1 + rng.below(40);
        let out_credit = 1 + rng.below(100);
        let lengths: Vec<usize> = (0..n).map(|_| rng.below(300)).collect();
        let mut sim = Sim::new(lengths.clone(), capacity, out_credit);
        let mut steps = 0;
        while !(sim.finished && sim.outs[0].buffer.is_empty()) {
            steps += 1;
            assert!(steps < 100_000, "seed {seed}: no progress");
            match rng.below(4) {
                0 | 1 => {
                    let i = rng.below(n);
                    let k = 1 + rng.below(2 * capacity);
                    sim.arrive(i, k, capacity);
                }
                2 => sim.flush(),
                _ => {
                    let k = 1 + rng.below(out_credit);
                    sim.grant(k);
                }
            }
            for p in &sim.ins {
                assert!(p.queue.len() <= capacity, "seed {seed}: input bound");
            }
            sim.route(capacity);
        }
        let total: usize = lengths.iter().sum();
        assert_eq!(
            sim.delivered.len(),
            total,
            "seed {seed}: everything delivered"
        );
        for (i, &len) in lengths.iter().enumerate() {
            let mine: Vec<usize> = sim
                .delivered
                .iter()
                .filter(|e| e.0 == i)
                .map(|e| e.1)
                .collect();
            assert_eq!(mine, (0..len).collect::<Vec<_>>(), "seed {seed}: input {i}");
        }
    }
}

#[test]
fn whole_queues_take_turns_when_the_room_takes_them() {
    // Three full queues of 4 and room for 8: input 0's queue, then input 1's, whole;
    // input 2 goes first in the next pass.
    let mut sim = Sim::new(vec![4, 4, 4], 4, 8);
    for i in 0..3 {
        sim.arrive(i, 4, 4);
    }
    sim.route(4);
    let origins: Vec<usize> = sim.outs[0].buffer.iter().map(|e| e.0).collect();
    assert_eq!(origins, [0, 0, 0, 0, 1, 1, 1, 1]);
    sim.flush();
    sim.grant(4);
    sim.route(4);
    let origins: Vec<usize> = sim.outs[0].buffer.iter().map(|e| e.0).collect();
    assert_eq!(origins, [2, 2, 2, 2]);
}
