//! The etl example's settings that change while it runs: one [`EtlConfig`] from a
//! TOML file, fed by weir's [`ConfigWatcher`] to the stages' config
//! [`Handles`] (the threshold of the transform, the rate of the throttle, the
//! supervision policies of the whole graph), polled by a [`Reloader`] thread while
//! the pipeline runs.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde::Deserialize;
use weir::limit::{Rate, ThrottleConfig};
use weir::prelude::{ConfigHandle, ConfigWatcher, PolicyConfig};

/// The supervision of the graph when the file has no `[policies]` tables: a
/// failure fails the pipeline, except the rows `reject` turns away (dead letters).
pub const DEFAULT_POLICIES: &str = r#"
[default.actions]
permanent = "escalate"
on_exhausted = "escalate"

[stages.reject.actions]
permanent = "dead_letter"
resource_exhausted = "dead_letter"
"#;

/// The reloadable settings (`examples/config/etl.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtlConfig {
    /// The largest valid amount, in cents: a row above it is invalid
    /// (dead-lettered with the reason).
    pub max_amount_cents: u64,
    /// Rows per second through the transform, all sources together; 0: no limit.
    #[serde(default)]
    pub rate_limit: u64,
    /// The supervision policies of the whole graph (`[policies]`,
    /// `[policies.default]`, `[policies.stages.<name>]`), applied with
    /// `Graph::policies` and re-applied on a reload.
    #[serde(default = "default_policies")]
    pub policies: PolicyConfig,
}

/// [`DEFAULT_POLICIES`], parsed.
pub fn default_policies() -> PolicyConfig {
    PolicyConfig::from_toml_str(DEFAULT_POLICIES).expect("the built-in policies are valid")
}

impl Default for EtlConfig {
    fn default() -> Self {
        EtlConfig {
            max_amount_cents: 500_000,
            rate_limit: 0,
            policies: default_policies(),
        }
    }
}

impl EtlConfig {
    /// Parses and checks a TOML text.
    ///
    /// # Errors
    ///
    /// The TOML error, or what is out of range.
    pub fn parse(text: &str) -> Result<EtlConfig, String> {
        let config: EtlConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// Checks the ranges.
    ///
    /// # Errors
    ///
    /// What is out of range.
    pub fn check(&self) -> Result<(), String> {
        if self.max_amount_cents == 0 {
            return Err("max_amount_cents must be at least 1".into());
        }
        if self.rate_limit > 10_000_000 {
            return Err("rate_limit above 10000000 rows/s: use 0 for no limit".into());
        }
        Ok(())
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not a valid config; the message names it.
    pub fn load(path: &Path) -> Result<EtlConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        EtlConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The stages' config handles: the transform's threshold and the rate limit's
/// throttle. Changes reach the running stages between two batches, each
/// acknowledged with a generation (see the report's `config_generation`).
#[derive(Debug, Clone)]
pub struct Handles {
    /// The transform's `max_amount_cents`.
    pub threshold: ConfigHandle<u64>,
    /// The `rate_limit` stage's throttle.
    pub rate: ConfigHandle<ThrottleConfig>,
    /// The graph's supervision policies.
    pub policies: ConfigHandle<PolicyConfig>,
}

impl Default for Handles {
    fn default() -> Self {
        Handles {
            threshold: ConfigHandle::with_check(|max: &u64| {
                if *max == 0 {
                    Err("max_amount_cents must be at least 1".into())
                } else {
                    Ok(())
                }
            }),
            rate: ConfigHandle::new(),
            policies: ConfigHandle::new(),
        }
    }
}

/// The throttle for a rate limit in rows per second; 0 (no limit) is a rate no
/// pipeline reaches, one row a nanosecond.
pub fn throttle_config(rate_limit: u64) -> ThrottleConfig {
    match u32::try_from(rate_limit) {
        Ok(0) | Err(_) => ThrottleConfig::new(Rate::per_second(1_000_000_000), 1_000),
        Ok(rate) => ThrottleConfig::new(Rate::per_second(rate), (rate / 100).max(1)),
    }
}

/// weir's [`ConfigWatcher`] for `path`, checking each file with
/// [`EtlConfig::check`] and feeding `handles`.
pub fn watcher(path: &Path, handles: &Handles) -> ConfigWatcher<EtlConfig> {
    ConfigWatcher::<EtlConfig>::new(path)
        .validate(EtlConfig::check)
        .bind(&handles.threshold, |c| c.max_amount_cents)
        .bind(&handles.rate, |c| throttle_config(c.rate_limit))
        .bind(&handles.policies, |c| c.policies.clone())
}

/// What the [`Reloader`] did.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    applied: AtomicU64,
    rejected: AtomicU64,
    in_force: Mutex<Option<EtlConfig>>,
    last_error: Mutex<Option<String>>,
}

impl ReloadCounts {
    /// Files whose changes were applied.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Files rejected (the old config stayed in force).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Acquire)
    }

    /// The config in force: the last one loaded or applied.
    pub fn in_force(&self) -> Option<EtlConfig> {
        self.in_force.lock().ok().and_then(|c| c.clone())
    }

    /// Why the last rejected file was rejected.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// A thread polling the config file with a [`ConfigWatcher`] (after the
/// pipeline started) and applying what changed. Stops when dropped.
#[derive(Debug)]
pub struct Reloader {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    counts: Arc<ReloadCounts>,
}

impl Reloader {
    /// Polls every `period` with `watcher` (already [`load`](ConfigWatcher::load)ed);
    /// `on_event` hears each applied config or rejection.
    pub fn start(
        mut watcher: ConfigWatcher<EtlConfig>,
        period: Duration,
        mut on_event: impl FnMut(Result<EtlConfig, String>) + Send + 'static,
    ) -> Reloader {
        let counts = Arc::new(ReloadCounts::default());
        if let Ok(mut slot) = counts.in_force.lock() {
            *slot = watcher.current().cloned();
        }
        let shared = Arc::clone(&counts);
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(period) {
                match futures::executor::block_on(watcher.poll()) {
                    Ok(None) => {}
                    Ok(Some(_)) => {
                        let config = watcher.current().cloned();
                        if let Ok(mut slot) = shared.in_force.lock() {
                            (*slot).clone_from(&config);
                        }
                        shared.applied.fetch_add(1, Ordering::Release);
                        if let Some(config) = config {
                            on_event(Ok(config));
                        }
                    }
                    Err(e) => {
                        if let Ok(mut slot) = shared.last_error.lock() {
                            *slot = Some(e.to_string());
                        }
                        shared.rejected.fetch_add(1, Ordering::Release);
                        on_event(Err(e.to_string()));
                    }
                }
            }
        });
        Reloader {
            stop: Some(tx),
            thread: Some(thread),
            counts,
        }
    }

    /// The counts, shared.
    pub fn counts(&self) -> Arc<ReloadCounts> {
        Arc::clone(&self.counts)
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_file_is_rejected_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etl.toml");
        std::fs::write(&path, "max_amount_cents = 100\nrate_limit = 5\n").unwrap();
        let mut w = watcher(&path, &Handles::default());
        assert_eq!(
            w.load().unwrap(),
            EtlConfig {
                max_amount_cents: 100,
                rate_limit: 5,
                policies: default_policies(),
            }
        );
        for (bad, what) in [
            ("max_amount_cents = 0", "at least 1"),
            ("max_amount_cents = \"x\"", "max_amount_cents"),
            ("max_amount_cents = 1\nrate_limit = 99999999", "rate_limit"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = w.reload_blocking().unwrap_err().to_string();
            assert!(e.contains("etl.toml") && e.contains(what), "{e}");
            assert_eq!(
                w.current().unwrap().max_amount_cents,
                100,
                "the old config stays"
            );
        }
    }

    #[test]
    fn no_limit_is_a_rate_the_throttle_accepts() {
        assert_eq!(throttle_config(0).rate.interval(), Duration::from_nanos(1));
        assert_eq!(throttle_config(2_000).burst, 20);
    }

    #[test]
    fn the_shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/etl.toml");
        assert_eq!(EtlConfig::load(&path).unwrap(), EtlConfig::default());
    }
}
