//! The broadcast hub's engine against a model: random subscribe / unsubscribe /
//! publish / read / clock steps, checking after each step every count and bound the
//! module docs promise.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use tokio::time::Instant;
use weir_runtime::junction::LagPolicy;

use super::NoSubscriber;
use super::state::{Shared, State};

/// A small deterministic generator (xorshift64*), so every case can be replayed
/// from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// What the model knows about one subscriber.
struct Model {
    policy: LagPolicy,
    capacity: usize,
    /// Sequence numbers published since it subscribed.
    offered: Vec<u64>,
    received: Vec<u64>,
}

fn policy(rng: &mut Rng) -> LagPolicy {
    let extra = rng.below(3) as usize;
    match rng.below(4) {
        0 => LagPolicy::Block,
        1 => LagPolicy::DropNewest { buffer: extra },
        2 => LagPolicy::DropOldest { buffer: extra },
        _ => LagPolicy::Detach {
            max_lag: extra,
            max_wait: (rng.below(2) == 0).then(|| Duration::from_millis(1 + rng.below(5))),
        },
    }
}

fn extra(policy: LagPolicy) -> usize {
    match policy {
        LagPolicy::Block => 0,
        LagPolicy::DropNewest { buffer } | LagPolicy::DropOldest { buffer } => buffer,
        LagPolicy::Detach { max_lag, .. } => max_lag,
    }
}

fn check(st: &mut State<u64>, models: &BTreeMap<u64, Model>, published: u64, seed: u64) {
    assert_eq!(st.delivered + st.unclaimed, published, "seed {seed}");
    for (&id, m) in models {
        let slot = st.slot(id).unwrap();
        let s = slot.stats();
        let what = format!("seed {seed}, subscriber {id} ({:?}): {s:?}", m.policy);
        assert_eq!(s.offered, m.offered.len() as u64, "{what}");
        assert_eq!(
            s.offered,
            s.received + s.dropped + s.buffered as u64,
            "{what}"
        );
        assert_eq!(s.received, m.received.len() as u64, "{what}");
        assert!(s.buffered <= m.capacity + extra(m.policy), "{what}");
        if m.policy == LagPolicy::Block {
            assert_eq!(s.dropped, 0, "{what}");
        }
        // What it read and what it holds: in publication order, each offered to it.
        let seen: Vec<u64> = m
            .received
            .iter()
            .chain(slot.queue.iter().map(|(_, x)| x))
            .copied()
            .collect();
        // Each buffered element carries its index among those offered to it.
        assert!(
            slot.queue.iter().all(|&(i, x)| m.offered[i as usize] == x),
            "{what}"
        );
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{what}: {seen:?}");
        assert!(
            seen.iter().all(|x| m.offered.binary_search(x).is_ok()),
            "{what}"
        );
        if m.policy == LagPolicy::Block {
            assert_eq!(seen, m.offered, "{what}");
        }
    }
}

#[test]
fn random_schedules_keep_every_count_and_bound() {
    for seed in 1..=150_u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let alone = if rng.below(2) == 0 {
            NoSubscriber::Wait
        } else {
            NoSubscriber::Drop
        };
        let shared = Shared::new(alone);
        let mut st = shared.lock();
        let mut models: BTreeMap<u64, Model> = BTreeMap::new();
        let (mut now, mut published) = (Instant::now(), 0_u64);
        let (mut copies, mut wake) = (Vec::new(), Vec::new());
        for _ in 0..300 {
            match rng.below(10) {
                0 if models.len() < 4 => {
                    let (capacity, policy) = (1 + rng.below(3) as usize, policy(&mut rng));
                    let id = st.add(capacity, policy);
                    let m = Model {
                        policy,
                        capacity,
                        offered: Vec::new(),
                        received: Vec::new(),
                    };
                    models.insert(id, m);
                }
                1 if !models.is_empty() => {
                    let id = *models
                        .keys()
                        .nth(rng.below(models.len() as u64) as usize)
                        .unwrap();
                    models.remove(&id);
                    assert!(st.remove(id).is_some());
                }
                2..=5 => {
                    if !st.ready(now) {
                        // Only a full `Block` subscriber, or nobody under `Wait`,
                        // holds the hub back.
                        if models.is_empty() {
                            assert_eq!(alone, NoSubscriber::Wait, "seed {seed}");
                        } else {
                            let full = models.iter().any(|(&id, m)| {
                                m.policy == LagPolicy::Block
                                    && st.slot(id).unwrap().queue.len() == m.capacity
                            });
                            assert!(full, "seed {seed}: not ready");
                        }
                        continue;
                    }
                    let before: Vec<usize> = models
                        .keys()
                        .map(|&id| st.slot(id).unwrap().queue.len())
                        .collect();
                    let took = st.publish(published, now, &mut copies, &mut wake);
                    for m in models.values_mut() {
                        m.offered.push(published);
                    }
                    let after: Vec<usize> = models
                        .keys()
                        .map(|&id| st.slot(id).unwrap().queue.len())
                        .collect();
                    let took_any = models.keys().any(|&id| {
                        st.slot(id).unwrap().queue.back().map(|(_, x)| x) == Some(&published)
                    });
                    assert_eq!(took, took_any, "seed {seed}: {before:?} -> {after:?}");
                    published += 1;
                }
                6..=8 if !models.is_empty() => {
                    let id = *models
                        .keys()
                        .nth(rng.below(models.len() as u64) as usize)
                        .unwrap();
                    let x = st.slot(id).unwrap().pop(now);
                    let m = models.get_mut(&id).unwrap();
                    if let Some((i, x)) = x {
                        assert_eq!(m.offered[i as usize], x, "seed {seed}: the index of {x}");
                        m.received.push(x);
                    }
                }
                _ => now += Duration::from_millis(rng.below(4)),
            }
            check(&mut st, &models, published, seed);
        }
    }
}

#[test]
fn a_panicking_clone_changes_no_count() {
    #[derive(Debug)]
    struct Fragile(u32);
    impl Clone for Fragile {
        fn clone(&self) -> Self {
            assert!(self.0 != 13, "unlucky");
            Fragile(self.0)
        }
    }
    let shared = Shared::new(NoSubscriber::Wait);
    let mut st = shared.lock();
    let ids = [st.add(4, LagPolicy::Block), st.add(4, LagPolicy::Block)];
    let now = Instant::now();
    let (mut copies, mut wake) = (Vec::new(), Vec::new());
    assert!(st.publish(Fragile(1), now, &mut copies, &mut wake));
    let run = catch_unwind(AssertUnwindSafe(|| {
        st.publish(Fragile(13), now, &mut copies, &mut wake)
    }));
    assert!(run.is_err());
    assert_eq!(st.delivered, 1);
    for id in ids {
        let s = st.slot(id).unwrap().stats();
        assert_eq!((s.offered, s.buffered), (1, 1));
    }
}

#[test]
fn both_hubs_say_they_cannot_be_checkpointed() {
    use weir_runtime::operator::Operator;
    let (sink, _hub) = super::broadcast::BroadcastHubSink::<u32>::new(NoSubscriber::Wait);
    assert!(sink.not_checkpointable().unwrap().contains("subscribers"));
    assert!(
        super::merge::merge_source_for_test()
            .not_checkpointable()
            .unwrap()
            .contains("producers")
    );
}
