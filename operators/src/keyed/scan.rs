//! [`KeyedScan`]: a running value per key, one output per input (`scan`, `reduce`).

use std::hash::Hash;
use std::sync::Arc;
use std::task::Context;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::checkpoint::{Checkpointable, Deferred, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};

use super::groups::KeyGroup;
use super::state::{Bounds, KeyedState, now};

/// The version of [`KeyedScan`]'s snapshot.
const STATE_VERSION: u32 = 1;

/// Keeps a state `S` per key and emits `f(&mut state, element)` for every element.
/// Created by [`Keyed::scan`](crate::keyed::Keyed::scan) and
/// [`Keyed::reduce`](crate::keyed::Keyed::reduce). Order preserved; one output per
/// input.
///
/// Checkpointable: every key's state, by key group, with how long the key has
/// been idle (see the [module docs](crate::keyed) on time). A checkpoint's
/// snapshot is deferred: the stage shares its key groups with the checkpoint's
/// writer and copies a group only when it changes it before the writer is done.
pub struct KeyedScan<T, K, S, U, KF, F> {
    kind: &'static str,
    key: Arc<KF>,
    f: Arc<F>,
    init: S,
    state: KeyedState<K, S>,
    _t: std::marker::PhantomData<fn(T) -> U>,
}

impl<T, K, S, U, KF, F> std::fmt::Debug for KeyedScan<T, K, S, U, KF, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedScan")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T, K, S, U, KF, F> KeyedScan<T, K, S, U, KF, F>
where
    K: Hash + Eq + Clone,
{
    pub(crate) fn new(
        kind: &'static str,
        key: Arc<KF>,
        f: Arc<F>,
        init: S,
        bounds: Bounds,
    ) -> Self {
        KeyedScan {
            kind,
            key,
            f,
            init,
            state: KeyedState::new(bounds),
            _t: std::marker::PhantomData,
        }
    }
}

/// The failure of an element whose new key finds the state full under
/// [`OnFull::Fail`](super::OnFull::Fail).
pub(crate) fn full_failure(kind: &str, keys: usize) -> Failure {
    Failure::error(
        ErrorClass::ResourceExhausted,
        format!("{kind}: a new key arrived with the state full ({keys} keys, OnFull::Fail)"),
    )
}

impl<T, K, S, U, KF, F> Checkpointable for KeyedScan<T, K, S, U, KF, F>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    S: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        self.state.snapshot(STATE_VERSION, now(), &[])
    }

    fn snapshot_deferred(&mut self, _checkpoint: u64) -> Result<Deferred, StateError> {
        Ok(self.state.snapshot_deferred(STATE_VERSION, now()))
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.state.restore(snapshot, STATE_VERSION, ctx, now())
    }
}

impl<T, K, S, U, KF, F> Operator for KeyedScan<T, K, S, U, KF, F>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    S: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    U: Send + 'static,
    KF: Fn(&T) -> K + Send + Sync + 'static,
    F: Fn(&mut S, T) -> U + Send + Sync + 'static,
{
    type In = T;
    type Out = U;

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn fusable(&self) -> bool {
        true
    }

    fn validate(&self) -> Result<(), String> {
        self.state.bounds().validate(self.kind)
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn state_entries(&self) -> usize {
        self.state.len()
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }

    fn step(&mut self, io: &mut Io<'_, T, U>, cx: &mut Context<'_>) -> Step {
        let now = now();
        while self.state.pop_expired(now).is_some() {}
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            let key = (self.key)(&x);
            let g = KeyGroup::of(&key);
            let acc = match self.state.get_mut_in(g, &key, now, true) {
                Some(acc) => acc,
                None => {
                    if self.state.make_room().is_err() {
                        return Step::Failed(full_failure(self.kind, self.state.len()));
                    }
                    self.state.insert_in(g, key, self.init.clone(), now)
                }
            };
            let y = (self.f)(acc, x);
            io.push(y);
        }
        self.state.after_step(cx);
        io.finish_when_drained()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use weir_runtime::checkpoint::{key_group_of, replica_of_group};

    use super::*;
    use crate::keyed::OnFull;
    use crate::test_support::{assert_resumes, replica, run_resumed, run_whole};

    type Sum = KeyedScan<
        (u64, u64),
        u64,
        u64,
        (u64, u64),
        fn(&(u64, u64)) -> u64,
        fn(&mut u64, (u64, u64)) -> (u64, u64),
    >;

    fn sum(bounds: Bounds) -> Sum {
        fn key(x: &(u64, u64)) -> u64 {
            x.0
        }
        fn add(total: &mut u64, (k, v): (u64, u64)) -> (u64, u64) {
            *total += v;
            (k, *total)
        }
        KeyedScan::new("keyed_scan", Arc::new(key), Arc::new(add), 0, bounds)
    }

    fn input(n: u64, keys: u64) -> Vec<(u64, u64)> {
        (0..n).map(|i| (i * 7 % keys, i)).collect()
    }

    #[test]
    fn a_restored_scan_goes_on_as_the_uninterrupted_one() {
        let input = input(60, 7);
        assert_resumes(&|| sum(Bounds::default()), &input, &[0, 1, 17, 30, 59, 60]);
    }

    #[test]
    fn the_lru_order_survives_a_restore() {
        // With room for 3 keys, which key is evicted (and so starts again from 0)
        // depends on the recency order at the snapshot.
        let bounds = || Bounds {
            max_keys: Some((3, OnFull::EvictLru)),
            ..Bounds::default()
        };
        let input = input(80, 5);
        assert_resumes(&|| sum(bounds()), &input, &[0, 4, 23, 50, 80]);
    }

    /// Restored as replica `i` of `n`, each replica holds exactly the keys of its
    /// key groups: fed the rest of the elements of those keys, the replicas
    /// together give, per key, what the uninterrupted scan gives.
    #[test]
    fn replicas_restore_exactly_their_keys() {
        let input = input(400, 64);
        let whole = run_whole(sum(Bounds::default()), input.clone());
        let k = 200;
        let (_, snapshot) = run_resumed(&|| sum(Bounds::default()), &input, k, &Default::default());
        for n in [2, 8] {
            let mut union: Vec<(u64, u64)> = Vec::new();
            let mut owner: BTreeMap<u64, usize> = BTreeMap::new();
            for i in 0..n {
                let mut op = sum(Bounds::default());
                op.restore(&snapshot, &replica(i, n)).unwrap();
                for key in op.state.keys() {
                    assert_eq!(owner.insert(key, i), None, "key {key} in two replicas");
                    assert_eq!(replica_of_group(key_group_of(&key), n), i);
                }
                let mine: Vec<(u64, u64)> = input[k..]
                    .iter()
                    .copied()
                    .filter(|x| replica_of_group(key_group_of(&x.0), n) == i)
                    .collect();
                union.extend(run_whole(op, mine));
            }
            assert_eq!(owner.len(), 64, "every key restored once (n = {n})");
            let mut want = whole[k..].to_vec();
            want.sort_unstable();
            union.sort_unstable();
            assert_eq!(union, want, "n = {n}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn any_split_point_resumes(len in 0_u64..80, keys in 1_u64..10, at in 0.0_f64..=1.0) {
            let input = input(len, keys);
            let k = ((len as f64) * at) as usize;
            let whole = run_whole(sum(Bounds::default()), input.clone());
            let (resumed, _) = run_resumed(&|| sum(Bounds::default()), &input, k, &Default::default());
            prop_assert_eq!(resumed, whole);
        }
    }
}
