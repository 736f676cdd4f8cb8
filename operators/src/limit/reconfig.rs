//! [`ThrottleConfig`]: a throttle's rate and burst, changed while it runs.

use std::hash::Hash;

use weir_runtime::reconfig::Reconfigurable;

use super::config::Rate;
use super::throttle::ThrottleStage;

/// The parameters of a running throttle that a
/// [`ConfigHandle`](weir_runtime::reconfig::ConfigHandle) changes: see
/// [`LimitExt::throttle_with_config`](super::LimitExt::throttle_with_config).
///
/// Applying it replaces the quotas: every key starts again with a full burst at
/// the new rate, and an element waiting for the old rate is decided again at the
/// new one. The mode, key limits and counters stay as they were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// The new rate.
    pub rate: Rate,
    /// The new burst (at least 1).
    pub burst: u32,
}

impl ThrottleConfig {
    /// `rate` with burst `burst`.
    pub fn new(rate: Rate, burst: u32) -> Self {
        ThrottleConfig { rate, burst }
    }
}

impl<T, K, F> Reconfigurable for ThrottleStage<T, K, F>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    F: FnMut(&T) -> K + Send + 'static,
{
    type Config = ThrottleConfig;

    fn reconfigure(&mut self, config: &ThrottleConfig) -> Result<(), String> {
        self.set_rate(config.rate, config.burst)
    }
}
