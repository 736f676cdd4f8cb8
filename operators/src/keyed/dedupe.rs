//! [`Dedupe`]: drops an element whose key passed recently.

use std::hash::Hash;
use std::sync::Arc;
use std::task::Context;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::checkpoint::{Checkpointable, Deferred, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Io, Operator, Step};

use super::groups::KeyGroup;
use super::scan::full_failure;
use super::state::{Bounds, KeyedState, now};

/// Passes an element if its key has not passed within the TTL (or is not among
/// the keys remembered under the key bound); otherwise drops it, counted as
/// filtered. A repeat does not extend the time a key is remembered: the key
/// passes again once the TTL has elapsed since it last passed. Created by
/// [`Keyed::dedupe`](crate::keyed::Keyed::dedupe) and
/// [`KeyedExt::dedupe`](crate::keyed::KeyedExt::dedupe). Order preserved.
///
/// Checkpointable: the keys remembered, by key group, each with how long ago it
/// passed (see the [module docs](crate::keyed) on time). The snapshot is
/// deferred, as [`KeyedScan`](super::KeyedScan)'s.
pub struct Dedupe<T, K, KF> {
    key: Arc<KF>,
    state: KeyedState<K, ()>,
    _t: std::marker::PhantomData<fn(T) -> T>,
}

impl<T, K, KF> std::fmt::Debug for Dedupe<T, K, KF> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedupe").finish_non_exhaustive()
    }
}

impl<T, K: Hash + Eq + Clone, KF> Dedupe<T, K, KF> {
    pub(crate) fn new(key: Arc<KF>, bounds: Bounds) -> Self {
        Dedupe {
            key,
            state: KeyedState::new(bounds),
            _t: std::marker::PhantomData,
        }
    }
}

/// The version of [`Dedupe`]'s snapshot.
const STATE_VERSION: u32 = 1;

impl<T, K, KF> Checkpointable for Dedupe<T, K, KF>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
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

impl<T, K, KF> Operator for Dedupe<T, K, KF>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    KF: Fn(&T) -> K + Send + Sync + 'static,
{
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "dedupe"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn validate(&self) -> Result<(), String> {
        let bounds = self.state.bounds();
        if bounds.ttl.is_none() && bounds.max_keys.is_none() {
            return Err(
                "dedupe: set a ttl or max_keys, or the keys it remembers grow without bound".into(),
            );
        }
        bounds.validate("dedupe")
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn may_filter(&self) -> bool {
        true
    }

    fn state_entries(&self) -> usize {
        self.state.len()
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, cx: &mut Context<'_>) -> Step {
        let now = now();
        while self.state.pop_expired(now).is_some() {}
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            let key = (self.key)(&x);
            let g = KeyGroup::of(&key);
            if self.state.contains_in(g, &key) {
                io.filter();
                continue;
            }
            if self.state.make_room().is_err() {
                return Step::Failed(full_failure("dedupe", self.state.len()));
            }
            self.state.insert_in(g, key, (), now);
            io.push(x);
        }
        self.state.after_step(cx);
        io.finish_when_drained()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed::OnFull;
    use crate::test_support::assert_resumes;

    type Key = fn(&u64) -> u64;

    #[test]
    fn a_restored_dedupe_remembers_the_same_keys() {
        let make = || {
            let bounds = Bounds {
                max_keys: Some((4, OnFull::EvictLru)),
                ..Bounds::default()
            };
            Dedupe::new(Arc::new((|x: &u64| x % 9) as Key), bounds)
        };
        let input: Vec<u64> = (0..70).map(|i| i * i % 13).collect();
        assert_resumes(&make, &input, &[0, 3, 20, 69, 70]);
    }
}
