//! [`KeyedScan`]: a running value per key, one output per input (`scan`, `reduce`).

use std::hash::Hash;
use std::sync::Arc;
use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};

use super::state::{Bounds, KeyedState, now};

/// Keeps a state `S` per key and emits `f(&mut state, element)` for every element.
/// Created by [`Keyed::scan`](crate::keyed::Keyed::scan) and
/// [`Keyed::reduce`](crate::keyed::Keyed::reduce). Order preserved; one output per
/// input.
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

impl<T, K, S, U, KF, F> Operator for KeyedScan<T, K, S, U, KF, F>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Send + 'static,
    S: Clone + Send + 'static,
    U: Send + 'static,
    KF: Fn(&T) -> K + Send + Sync + 'static,
    F: Fn(&mut S, T) -> U + Send + Sync + 'static,
{
    type In = T;
    type Out = U;

    fn kind(&self) -> &'static str {
        self.kind
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

    fn step(&mut self, io: &mut Io<'_, T, U>, cx: &mut Context<'_>) -> Step {
        let now = now();
        while self.state.pop_expired(now).is_some() {}
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            let key = (self.key)(&x);
            let acc = match self.state.get_mut(&key, now, true) {
                Some(acc) => acc,
                None => {
                    if self.state.make_room().is_err() {
                        return Step::Failed(full_failure(self.kind, self.state.len()));
                    }
                    self.state.insert(key, self.init.clone(), now)
                }
            };
            let y = (self.f)(acc, x);
            io.push(y);
        }
        self.state.after_step(cx);
        io.finish_when_drained()
    }
}
