//! The unit tests of `engine.rs` (apart from it: the loom model compiles that
//! file alone).

use proptest::prelude::*;

use super::engine::Order;
use super::test_log::Log;
use super::{DlqCut, DlqPosition, RunId};

fn at(n: u64) -> Option<DlqCut> {
    Some(DlqCut::At(DlqPosition {
        end: n,
        records: n,
        last_crc: None,
    }))
}

#[test]
fn a_letter_after_a_barrier_waits_for_the_stages_behind_it() {
    let mut log = Log::default();
    let mut order = Order::new(RunId::new(), "p", 2, 1 << 20);
    order.offer(0, vec![1], &mut log).unwrap();
    order.passed(0, 1, &mut log);
    // Stage 0 is past barrier 1, stage 1 is not: 2 waits, 3 (stage 1, before
    // its barrier) goes in at once.
    order.offer(0, vec![2], &mut log).unwrap();
    order.offer(1, vec![3], &mut log).unwrap();
    assert_eq!(log.0, [1, 3]);
    assert_eq!(order.cut(1), None, "stage 1 has not passed barrier 1");
    order.passed(1, 1, &mut log);
    assert_eq!(log.0, [1, 3, 2]);
    assert_eq!(order.cut(1), at(2));
    order.offer(1, vec![4], &mut log).unwrap();
    assert_eq!(log.0, [1, 3, 2, 4]);
}

#[test]
fn overlapping_barriers_each_get_their_own_cut() {
    let mut log = Log::default();
    let mut order = Order::new(RunId::new(), "p", 2, 1 << 20);
    order.passed(0, 1, &mut log);
    order.offer(0, vec![10], &mut log).unwrap();
    order.passed(0, 2, &mut log);
    order.offer(0, vec![20], &mut log).unwrap();
    order.offer(1, vec![0], &mut log).unwrap();
    // Stage 1 passes both at once (its barriers came one after the other).
    order.passed(1, 2, &mut log);
    assert_eq!(log.0, [0, 10, 20]);
    assert_eq!(order.cut(1), at(1));
    assert_eq!(order.cut(2), at(2));
    assert_eq!(order.cut(3), None);
    order.release(2);
    assert_eq!(order.cut(1), at(2), "forgotten: the next one answers");
}

#[test]
fn a_stopped_stage_holds_nothing_back() {
    let mut log = Log::default();
    let mut order = Order::new(RunId::new(), "p", 2, 1 << 20);
    order.passed(0, 5, &mut log);
    order.offer(0, vec![1], &mut log).unwrap();
    assert!(log.0.is_empty());
    order.stopped(1, &mut log);
    assert_eq!(log.0, [1]);
    assert_eq!(order.cut(5), at(0));
    order.stopped(0, &mut log);
    // The final checkpoint (any later id) holds everything.
    assert_eq!(order.cut(6), at(1));
    assert_eq!(order.cut(1_000), at(1));
}

#[test]
fn past_the_hold_limit_letters_go_in_and_the_checkpoints_in_flight_get_no_cut() {
    let mut log = Log::default();
    let mut order = Order::new(RunId::new(), "p", 2, 2);
    order.passed(0, 1, &mut log);
    order.offer(0, vec![1], &mut log).unwrap();
    order.offer(0, vec![2], &mut log).unwrap();
    assert!(log.0.is_empty());
    order.offer(0, vec![3], &mut log).unwrap();
    assert_eq!(log.0, [1, 2, 3], "over the limit: appended");
    order.offer(0, vec![4], &mut log).unwrap();
    assert_eq!(log.0, [1, 2, 3, 4]);
    order.passed(1, 1, &mut log);
    assert_eq!(order.cut(1), Some(DlqCut::Unordered));
    // The next checkpoint is in order again.
    order.passed(0, 2, &mut log);
    order.offer(0, vec![5], &mut log).unwrap();
    assert_eq!(log.0.len(), 4);
    order.passed(1, 2, &mut log);
    assert_eq!(order.cut(2), at(4));
    assert_eq!(log.0, [1, 2, 3, 4, 5]);
}

/// One step of a run: a stage writes a letter or passes its next barrier.
#[derive(Debug, Clone)]
enum Event {
    Letter(usize),
    Pass(usize),
    Stop(usize),
}

fn events(stages: usize) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0..stages).prop_map(Event::Letter),
            3 => (0..stages).prop_map(Event::Pass),
            1 => (0..stages).prop_map(Event::Stop),
        ],
        0..200,
    )
}

proptest! {
    /// For any interleaving of letters and barrier passes of 1–5 stages, the
    /// cut of each checkpoint holds exactly the letters written before their
    /// stage passed its barrier, and every letter is in the file once at the
    /// end.
    #[test]
    fn every_cut_holds_exactly_the_letters_before_its_barrier(
        stages in 1_usize..5,
        script in events(5),
    ) {
        let mut log = Log::default();
        let mut order = Order::new(RunId::new(), "p", stages, usize::MAX);
        // Per stage: barriers passed, stopped.
        let mut epoch = vec![0_u64; stages];
        let mut stopped = vec![false; stages];
        // Per letter (its number): the epoch it was written in.
        let mut written_in: Vec<u64> = Vec::new();
        for event in script {
            match event {
                Event::Letter(s) if s < stages && !stopped[s] => {
                    let n = written_in.len();
                    written_in.push(epoch[s]);
                    order.offer(s, vec![n as u8], &mut log).unwrap();
                }
                Event::Pass(s) if s < stages && !stopped[s] => {
                    epoch[s] += 1;
                    order.passed(s, epoch[s], &mut log);
                }
                Event::Stop(s) if s < stages && !stopped[s] => {
                    stopped[s] = true;
                    order.stopped(s, &mut log);
                }
                _ => {}
            }
        }
        for (s, _) in stopped.iter().enumerate().filter(|(_, stopped)| !**stopped) {
            order.stopped(s, &mut log);
        }
        let highest = epoch.iter().copied().max().unwrap_or(0);
        for n in 1..=highest + 1 {
            let Some(DlqCut::At(cut)) = order.cut(n) else {
                return Err(TestCaseError::fail(format!("no cut for {n}")));
            };
            let mut before: Vec<u8> = log.0[..cut.end as usize].to_vec();
            before.sort_unstable();
            let want: Vec<u8> = (0..written_in.len())
                .filter(|&i| written_in[i] < n)
                .map(|i| i as u8)
                .collect();
            prop_assert_eq!(before, want, "checkpoint {}", n);
        }
        let mut all = log.0.clone();
        all.sort_unstable();
        prop_assert_eq!(all, (0..written_in.len()).map(|i| i as u8).collect::<Vec<_>>());
    }
}
