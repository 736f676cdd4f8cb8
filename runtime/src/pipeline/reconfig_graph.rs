//! [`Graph::partition_with_config`]: a partition whose picking function reads a
//! config changed at run time.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::{Arc, Mutex, PoisonError};

use super::graph::{Graph, Outlet};
use super::parts::Pending;
use crate::error::BuildError;
use crate::reconfig::{Applied, ConfigHandle, ReconfigError};
use crate::stage::actor::reconfig::{record, rejected};

/// The config a junction's function reads, and a counter of its changes.
struct Live<C> {
    changes: AtomicU64,
    config: Mutex<C>,
}

impl Graph {
    /// [`partition`](Self::partition) whose `pick(&config, &element)` reads a config
    /// that `handle` changes while the pipeline runs (thresholds, weights, …);
    /// `initial` is the config until then.
    ///
    /// The partition reads the config before each element (one atomic load while
    /// it does not change): every element is routed under exactly one config, and
    /// an element routed after the acknowledgement under the new one. Each branch
    /// keeps its elements' order; nothing is lost. The change is recorded as a
    /// config of the partition stage (generation in stats and report). A config
    /// the handle's [check](ConfigHandle::with_check) refuses is rejected, the old
    /// one kept; an invalid `initial` is a build error.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::reconfig::ConfigHandle;
    /// use weir_runtime::{Graph, Outlet};
    ///
    /// /// Large values to branch 1, the rest to branch 0, "large" set at run time.
    /// fn by_size(g: &mut Graph, values: Outlet<u64>, limit: &ConfigHandle<u64>) -> [Outlet<u64>; 2] {
    ///     g.partition_with_config(values, limit, 1_000, |limit, x| usize::from(x > limit))
    /// }
    /// ```
    pub fn partition_with_config<T, C, const N: usize>(
        &mut self,
        from: Outlet<T>,
        handle: &ConfigHandle<C>,
        initial: C,
        mut pick: impl FnMut(&C, &T) -> usize + Send + 'static,
    ) -> [Outlet<T>; N]
    where
        T: Send + 'static,
        C: Clone + Send + std::fmt::Debug + 'static,
    {
        if let Err(message) = handle.check(&initial) {
            self.parts
                .errors
                .push(Pending::Ready(BuildError::InvalidArgument {
                    stage: "partition".into(),
                    message: format!("initial config: {message}"),
                }));
        }
        if !handle.attach() {
            self.parts
                .errors
                .push(Pending::Ready(BuildError::InvalidArgument {
                    stage: "partition".into(),
                    message: "this config handle is already attached to another stage".into(),
                }));
        }
        let live = Arc::new(Live {
            changes: AtomicU64::new(0),
            config: Mutex::new(initial.clone()),
        });
        let reader = Arc::clone(&live);
        let mut local = (0, initial);
        let outlets = self.partition::<T, N>(from, move |x| {
            let changes = reader.changes.load(Acquire);
            if changes != local.0 {
                let config = reader.config.lock().unwrap_or_else(PoisonError::into_inner);
                local = (changes, config.clone());
            }
            pick(&local.1, x)
        });
        let node = outlets.first().map_or(usize::MAX, |o| o.at.node);
        if node < self.parts.len() {
            let handle = handle.clone();
            self.parts.on_start(
                node,
                Box::new(move |shared| {
                    let shared = Arc::clone(shared);
                    let check = handle.checker();
                    handle.bind(
                        shared.name.clone(),
                        Box::new(move |config: C, reply| {
                            let answer = if shared.final_state().is_some() {
                                Err(ReconfigError::Stopped {
                                    stage: shared.name.clone(),
                                })
                            } else if let Err(reason) = check(&config) {
                                Err(rejected(&shared, reason))
                            } else {
                                let shown = format!("{config:?}");
                                *live.config.lock().unwrap_or_else(PoisonError::into_inner) =
                                    config;
                                live.changes.fetch_add(1, Release);
                                Ok(Applied {
                                    stage: shared.name.clone(),
                                    generation: record(&shared, shown),
                                })
                            };
                            let _ = reply.send(answer);
                        }),
                    );
                }),
            );
        }
        outlets
    }
}
