//! [`Aggregate`] and [`KeyedAggregate`]: one result per key, emitted when the key's
//! state ends (`fold`, `aggregate`).

use std::hash::Hash;
use std::sync::Arc;
use std::task::Context;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::checkpoint::{Checkpointable, Deferred, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Counting, Io, Operator, Step};

use super::groups::KeyGroup;
use super::scan::full_failure;
use super::state::{Bounds, KeyedState, now};

/// An aggregation in three parts (Flink's `AggregateFunction`): a fresh
/// accumulator per key, adding an element to it, and the result it ends with.
///
/// # Examples
///
/// The mean of each key's values:
///
/// ```
/// use weir_operators::keyed::Aggregate;
///
/// struct Mean;
/// impl Aggregate<(char, f64)> for Mean {
///     type Acc = (f64, u32);
///     type Out = f64;
///     fn init(&self) -> (f64, u32) { (0.0, 0) }
///     fn add(&self, acc: &mut (f64, u32), x: (char, f64)) { acc.0 += x.1; acc.1 += 1; }
///     fn finish(&self, acc: (f64, u32)) -> f64 { acc.0 / f64::from(acc.1) }
/// }
/// ```
pub trait Aggregate<T>: Send + Sync + 'static {
    /// The per-key accumulator.
    type Acc: Send + 'static;
    /// The result for a key.
    type Out: Send + 'static;
    /// A fresh accumulator, for a key's first element.
    fn init(&self) -> Self::Acc;
    /// Adds an element to its key's accumulator.
    fn add(&self, acc: &mut Self::Acc, x: T);
    /// The key's result, when its state ends.
    fn finish(&self, acc: Self::Acc) -> Self::Out;
}

/// `fold` as an [`Aggregate`]: the accumulator is the result.
pub(crate) struct FoldWith<S, F> {
    pub(crate) init: S,
    pub(crate) f: F,
}

impl<T, S, F> Aggregate<T> for FoldWith<S, F>
where
    S: Clone + Send + Sync + 'static,
    F: Fn(&mut S, T) + Send + Sync + 'static,
{
    type Acc = S;
    type Out = S;
    fn init(&self) -> S {
        self.init.clone()
    }
    fn add(&self, acc: &mut S, x: T) {
        (self.f)(acc, x);
    }
    fn finish(&self, acc: S) -> S {
        acc
    }
}

/// Accumulates per key and emits `(key, result)` when a key's state ends: its TTL
/// ran out, it was evicted for a new key, or the input ended. Created by
/// [`Keyed::fold`](crate::keyed::Keyed::fold) and
/// [`Keyed::aggregate`](crate::keyed::Keyed::aggregate).
///
/// Checkpointable: every key's accumulator, by key group, with how long the key
/// has been idle (see the [module docs](crate::keyed) on time). The snapshot
/// of a `fold` and of an `aggregate` is deferred, as
/// [`KeyedScan`](super::KeyedScan)'s (their accumulators are `Clone + Sync`).
pub struct KeyedAggregate<T, K, KF, A: Aggregate<T>> {
    kind: &'static str,
    key: Arc<KF>,
    agg: Arc<A>,
    state: KeyedState<K, A::Acc>,
    /// The deferred snapshot (`fold` and `aggregate` set it; unit tests may
    /// leave it out to encode on the stage).
    defer: Option<DeferFn<K, A::Acc>>,
    /// What the input's end left to emit, oldest key first.
    closing: Option<std::vec::IntoIter<(K, A::Acc)>>,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T, K, KF, A: Aggregate<T>> std::fmt::Debug for KeyedAggregate<T, K, KF, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedAggregate")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T, K: Hash + Eq + Clone, KF, A: Aggregate<T>> KeyedAggregate<T, K, KF, A> {
    pub(crate) fn new(kind: &'static str, key: Arc<KF>, agg: Arc<A>, bounds: Bounds) -> Self {
        KeyedAggregate {
            kind,
            key,
            agg,
            state: KeyedState::new(bounds),
            defer: None,
            closing: None,
            _t: std::marker::PhantomData,
        }
    }

    /// Snapshots with `defer` (a [`KeyedState::snapshot_deferred`], taken where
    /// the accumulator's bounds are known) instead of encoding on the stage.
    pub(crate) fn deferring(mut self, defer: DeferFn<K, A::Acc>) -> Self {
        self.defer = Some(defer);
        self
    }
}

/// A deferred snapshot of a keyed state: [`KeyedState::snapshot_deferred`] for
/// states whose types allow it.
pub(crate) type DeferFn<K, S> = fn(&mut KeyedState<K, S>, u32, Instant) -> Deferred;

/// The version of [`KeyedAggregate`]'s snapshot.
const STATE_VERSION: u32 = 1;

impl<T, K, KF, A> Checkpointable for KeyedAggregate<T, K, KF, A>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned,
    A: Aggregate<T>,
    A::Acc: Serialize + DeserializeOwned,
{
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        // After the end of the input (no barrier follows it, but a snapshot then
        // must still hold everything): what is left to emit, as entries.
        let closing: Vec<(K, A::Acc)> = self
            .closing
            .take()
            .map(Iterator::collect)
            .unwrap_or_default();
        let snapshot = self.state.snapshot(STATE_VERSION, now(), &closing);
        if !closing.is_empty() {
            self.closing = Some(closing.into_iter());
        }
        snapshot
    }

    fn snapshot_deferred(&mut self, checkpoint: u64) -> Result<Deferred, StateError> {
        match self.defer {
            // After the input's end, what is left to emit is encoded now.
            Some(defer) if self.closing.is_none() => {
                Ok(defer(&mut self.state, STATE_VERSION, now()))
            }
            _ => self.snapshot(checkpoint).map(Deferred::ready),
        }
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.closing = None;
        self.state.restore(snapshot, STATE_VERSION, ctx, now())
    }
}

impl<T, K, KF, A> Operator for KeyedAggregate<T, K, KF, A>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
    KF: Fn(&T) -> K + Send + Sync + 'static,
    A: Aggregate<T>,
    A::Acc: Serialize + DeserializeOwned,
{
    type In = T;
    type Out = (K, A::Out);

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

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn state_entries(&self) -> usize {
        self.state.len() + self.closing.as_ref().map_or(0, ExactSizeIterator::len)
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }

    fn step(&mut self, io: &mut Io<'_, T, (K, A::Out)>, cx: &mut Context<'_>) -> Step {
        let now = now();
        if let Some(closing) = &mut self.closing {
            while io.has_room() {
                let Some((k, acc)) = closing.next() else {
                    return Step::Finished;
                };
                io.push((k, self.agg.finish(acc)));
            }
            return Step::Continue;
        }
        loop {
            // Expired keys first, so that an element never lands in a dead state.
            while io.has_room() {
                let Some((k, acc)) = self.state.pop_expired(now) else {
                    break;
                };
                io.push((k, self.agg.finish(acc)));
            }
            if !io.has_room() {
                break;
            }
            let Some(x) = io.pop() else { break };
            let key = (self.key)(&x);
            let g = KeyGroup::of(&key);
            let acc = match self.state.get_mut_in(g, &key, now, true) {
                Some(acc) => acc,
                None => {
                    match self.state.make_room() {
                        Err(_) => return Step::Failed(full_failure(self.kind, self.state.len())),
                        Ok(Some((k, acc))) => io.push((k, self.agg.finish(acc))),
                        Ok(None) => {}
                    }
                    self.state.insert_in(g, key, self.agg.init(), now)
                }
            };
            self.agg.add(acc, x);
            io.complete(1);
        }
        if io.input_exhausted() {
            self.closing = Some(self.state.drain_all().into_iter());
            // Step again to emit what the state held, as room allows.
            cx.waker().wake_by_ref();
        }
        self.state.after_step(cx);
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use weir_runtime::checkpoint::{key_group_of, replica_of_group};

    use super::*;
    use crate::keyed::OnFull;
    use crate::test_support::{assert_resumes, replica, run_resumed, run_whole};

    type Key = fn(&(String, u64)) -> String;
    type Sums = KeyedAggregate<
        (String, u64),
        String,
        Key,
        FoldWith<Vec<u64>, fn(&mut Vec<u64>, (String, u64))>,
    >;

    fn sums(bounds: Bounds) -> Sums {
        fn key(x: &(String, u64)) -> String {
            x.0.clone()
        }
        fn add(acc: &mut Vec<u64>, x: (String, u64)) {
            acc.push(x.1);
        }
        let agg = FoldWith {
            init: Vec::new(),
            f: add as fn(&mut Vec<u64>, (String, u64)),
        };
        KeyedAggregate::new("keyed_fold", Arc::new(key as Key), Arc::new(agg), bounds)
    }

    fn input(n: u64, keys: u64) -> Vec<(String, u64)> {
        (0..n).map(|i| (format!("k{}", i * 5 % keys), i)).collect()
    }

    #[test]
    fn a_restored_fold_emits_what_the_uninterrupted_one_emits() {
        let input = input(50, 6);
        assert_resumes(&|| sums(Bounds::default()), &input, &[0, 1, 25, 49, 50]);
    }

    #[test]
    fn evictions_after_a_restore_follow_the_same_order() {
        let bounds = || Bounds {
            max_keys: Some((2, OnFull::EvictLru)),
            ..Bounds::default()
        };
        let input = input(60, 5);
        assert_resumes(&|| sums(bounds()), &input, &[0, 7, 31, 60]);
    }

    #[test]
    fn replicas_together_emit_every_key_once() {
        let input = input(300, 40);
        let mut whole = run_whole(sums(Bounds::default()), input.clone());
        let k = 120;
        let (_, snapshot) =
            run_resumed(&|| sums(Bounds::default()), &input, k, &Default::default());
        whole.sort();
        for n in [2, 8] {
            let mut union = Vec::new();
            for i in 0..n {
                let mut op = sums(Bounds::default());
                op.restore(&snapshot, &replica(i, n)).unwrap();
                let mine: Vec<(String, u64)> = input[k..]
                    .iter()
                    .filter(|x| replica_of_group(key_group_of(&x.0), n) == i)
                    .cloned()
                    .collect();
                union.extend(run_whole(op, mine));
            }
            union.sort();
            assert_eq!(union, whole, "n = {n}");
        }
    }
}
