//! [`MapWithConfig`] and [`FilterWithConfig`]: `map` and `filter` whose closure reads
//! a config that a [`ConfigHandle`] changes while the pipeline runs.

use std::fmt;
use std::task::Context;

use weir_runtime::Flow;
use weir_runtime::operator::{Io, Operator, Step};
use weir_runtime::reconfig::{ConfigHandle, Reconfigurable};

/// Validates a config (the handle's check).
type Check<C> = Box<dyn Fn(&C) -> Result<(), String> + Send + Sync>;

/// The config an operator holds, with the check new ones must pass.
struct Held<C> {
    config: C,
    check: Check<C>,
}

impl<C: Clone + Send + 'static> Held<C> {
    fn new(handle: &ConfigHandle<C>, initial: C) -> Self {
        Held {
            config: initial,
            check: Box::new(handle.checker()),
        }
    }

    fn replace(&mut self, config: &C) -> Result<(), String> {
        (self.check)(config)?;
        self.config = config.clone();
        Ok(())
    }
}

/// `map` with a config: applies `f(&config, element)`. Created by
/// [`ConfigExt::map_with_config`]. One output per input, order kept; retry-safe.
pub struct MapWithConfig<C, F, T, U> {
    held: Held<C>,
    f: F,
    _type: std::marker::PhantomData<fn(T) -> U>,
}

impl<C: fmt::Debug, F, T, U> fmt::Debug for MapWithConfig<C, F, T, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapWithConfig")
            .field("config", &self.held.config)
            .finish_non_exhaustive()
    }
}

impl<C, F, T, U> Operator for MapWithConfig<C, F, T, U>
where
    C: Clone + Send + fmt::Debug + 'static,
    F: FnMut(&C, T) -> U + Send + 'static,
    T: Send + 'static,
    U: Send + 'static,
{
    type In = T;
    type Out = U;

    fn kind(&self) -> &'static str {
        "map_with_config"
    }

    fn validate(&self) -> Result<(), String> {
        (self.held.check)(&self.held.config).map_err(|e| format!("initial config: {e}"))
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(&mut self, io: &mut Io<'_, T, U>, _cx: &mut Context<'_>) -> Step {
        let config = &self.held.config;
        let f = &mut self.f;
        io.map_batch(|x| f(config, x));
        io.finish_when_drained()
    }
}

impl<C, F, T, U> Reconfigurable for MapWithConfig<C, F, T, U>
where
    C: Clone + Send + fmt::Debug + 'static,
    F: FnMut(&C, T) -> U + Send + 'static,
    T: Send + 'static,
    U: Send + 'static,
{
    type Config = C;

    fn reconfigure(&mut self, config: &C) -> Result<(), String> {
        self.held.replace(config)
    }
}

/// `filter` with a config: keeps the elements for which `predicate(&config,
/// &element)` is true; the others are counted as filtered. Created by
/// [`ConfigExt::filter_with_config`]. Order kept; retry-safe.
pub struct FilterWithConfig<C, F, T> {
    held: Held<C>,
    predicate: F,
    _type: std::marker::PhantomData<fn(T) -> T>,
}

impl<C: fmt::Debug, F, T> fmt::Debug for FilterWithConfig<C, F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterWithConfig")
            .field("config", &self.held.config)
            .finish_non_exhaustive()
    }
}

impl<C, F, T> Operator for FilterWithConfig<C, F, T>
where
    C: Clone + Send + fmt::Debug + 'static,
    F: FnMut(&C, &T) -> bool + Send + 'static,
    T: Send + 'static,
{
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "filter_with_config"
    }

    fn validate(&self) -> Result<(), String> {
        (self.held.check)(&self.held.config).map_err(|e| format!("initial config: {e}"))
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn may_filter(&self) -> bool {
        true
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, _cx: &mut Context<'_>) -> Step {
        let config = &self.held.config;
        let predicate = &mut self.predicate;
        io.filter_batch(|x| predicate(config, x));
        io.finish_when_drained()
    }
}

impl<C, F, T> Reconfigurable for FilterWithConfig<C, F, T>
where
    C: Clone + Send + fmt::Debug + 'static,
    F: FnMut(&C, &T) -> bool + Send + 'static,
    T: Send + 'static,
{
    type Config = C;

    fn reconfigure(&mut self, config: &C) -> Result<(), String> {
        self.held.replace(config)
    }
}

/// `map` and `filter` whose closures read a config changed at run time through a
/// [`ConfigHandle`] (see `weir_runtime::reconfig`). A new config is applied between
/// two batches: every element is processed under exactly one config, the elements
/// taken after the acknowledgement under the new one. The handle's
/// [check](ConfigHandle::with_check) validates the initial config when the
/// pipeline is built and every new one in the stage; a rejected config leaves the
/// one in force.
///
/// # Examples
///
/// ```
/// use weir_operators::ops::ConfigExt;
/// use weir_operators::{FlowExt, Pipeline};
/// use weir_runtime::reconfig::ConfigHandle;
/// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
/// let min = ConfigHandle::<u64>::with_check(|m| {
///     if *m < 1_000 { Ok(()) } else { Err(format!("min {m} must be below 1000")) }
/// });
/// // An ingress keeps the stage running until the handle is dropped.
/// let (ingress, flow) = Pipeline::ingress::<u64>(16);
/// let running = flow
///     .filter_with_config(&min, 5, |min, x| x >= min)
///     .collect()
///     .run(&rt)?;
/// // Rejected in the stage: the threshold 5 stays in force.
/// let err = min.reconfigure_blocking(5_000).unwrap_err();
/// assert!(err.to_string().contains("must be below 1000"));
/// for x in 0..10 {
///     ingress.try_send(x).expect("room in the ingress buffer");
/// }
/// drop(ingress);
/// let done = running.wait()?;
/// assert_eq!(done.output, [5, 6, 7, 8, 9]);
/// assert_eq!(done.report.stages[1].config_rejected, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait ConfigExt<T: Clone + Send + 'static>: Sized {
    /// Maps each element with `f(&config, element)`; `initial` is the config until
    /// `handle` applies another.
    fn map_with_config<C, U, F>(self, handle: &ConfigHandle<C>, initial: C, f: F) -> Flow<U>
    where
        C: Clone + Send + fmt::Debug + 'static,
        U: Send + 'static,
        F: FnMut(&C, T) -> U + Send + 'static;

    /// Keeps the elements for which `predicate(&config, &element)` is true;
    /// `initial` is the config until `handle` applies another.
    fn filter_with_config<C, F>(
        self,
        handle: &ConfigHandle<C>,
        initial: C,
        predicate: F,
    ) -> Flow<T>
    where
        C: Clone + Send + fmt::Debug + 'static,
        F: FnMut(&C, &T) -> bool + Send + 'static;
}

impl<T: Clone + Send + 'static> ConfigExt<T> for Flow<T> {
    fn map_with_config<C, U, F>(self, handle: &ConfigHandle<C>, initial: C, f: F) -> Flow<U>
    where
        C: Clone + Send + fmt::Debug + 'static,
        U: Send + 'static,
        F: FnMut(&C, T) -> U + Send + 'static,
    {
        let op = MapWithConfig {
            held: Held::new(handle, initial),
            f,
            _type: std::marker::PhantomData,
        };
        self.cloneable().via_reconfigurable(op, handle)
    }

    fn filter_with_config<C, F>(self, handle: &ConfigHandle<C>, initial: C, predicate: F) -> Flow<T>
    where
        C: Clone + Send + fmt::Debug + 'static,
        F: FnMut(&C, &T) -> bool + Send + 'static,
    {
        let op = FilterWithConfig {
            held: Held::new(handle, initial),
            predicate,
            _type: std::marker::PhantomData,
        };
        self.cloneable().via_reconfigurable(op, handle)
    }
}
