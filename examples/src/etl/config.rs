//! The etl example's settings that change while it runs: one [`EtlConfig`] from a
//! TOML file, held in a [`LiveConfig`] that the stages read and a
//! [`ConfigWatcher`] updates when the file changes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// The reloadable settings (`examples/config/etl.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtlConfig {
    /// The largest valid amount, in cents: a row above it is invalid
    /// (dead-lettered with the reason).
    pub max_amount_cents: u64,
    /// Rows per second through the transform, all sources together; 0: no limit.
    #[serde(default)]
    pub rate_limit: u64,
}

impl Default for EtlConfig {
    fn default() -> Self {
        EtlConfig {
            max_amount_cents: 500_000,
            rate_limit: 0,
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
        if config.max_amount_cents == 0 {
            return Err("max_amount_cents must be at least 1".into());
        }
        if config.rate_limit > 10_000_000 {
            return Err("rate_limit above 10000000 rows/s: use 0 for no limit".into());
        }
        Ok(config)
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

/// The config in force, shared by the stages (read per row: two relaxed loads)
/// and the watcher. `generation` counts the changes applied.
#[derive(Debug, Default)]
pub struct LiveConfig {
    max_amount_cents: AtomicU64,
    rate_limit: AtomicU64,
    generation: AtomicU64,
    rejected: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl LiveConfig {
    /// A live config starting with `config`.
    pub fn new(config: EtlConfig) -> Arc<LiveConfig> {
        let live = LiveConfig::default();
        live.store(config);
        Arc::new(live)
    }

    fn store(&self, config: EtlConfig) {
        self.max_amount_cents
            .store(config.max_amount_cents, Ordering::Relaxed);
        self.rate_limit.store(config.rate_limit, Ordering::Relaxed);
    }

    /// The config in force.
    pub fn get(&self) -> EtlConfig {
        EtlConfig {
            max_amount_cents: self.max_amount_cents.load(Ordering::Relaxed),
            rate_limit: self.rate_limit.load(Ordering::Relaxed),
        }
    }

    /// Puts `config` in force; true if it differs from the one in force.
    pub fn apply(&self, config: EtlConfig) -> bool {
        if config == self.get() {
            return false;
        }
        self.store(config);
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// Changes applied so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// New files rejected (invalid); the old config stayed in force.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Why the last rejected file was rejected.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Loads `path` and applies it; an invalid file is counted and its error
    /// kept, the config in force stays. Returns whether a change was applied.
    pub fn reload(&self, path: &Path) -> bool {
        match EtlConfig::load(path) {
            Ok(config) => self.apply(config),
            Err(e) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut slot) = self.last_error.lock() {
                    *slot = Some(e);
                }
                false
            }
        }
    }
}

/// A thread that reloads the config file when its modification time or size
/// changes, polling every `period`. Stops when dropped.
#[derive(Debug)]
pub struct ConfigWatcher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConfigWatcher {
    /// Watches `path` for `live`; `on_change` is called with each applied config
    /// or rejection message.
    pub fn start(
        path: PathBuf,
        live: Arc<LiveConfig>,
        period: Duration,
        mut on_change: impl FnMut(Result<EtlConfig, String>) + Send + 'static,
    ) -> ConfigWatcher {
        let (tx, rx) = mpsc::channel::<()>();
        let stamp = |p: &Path| -> Option<(SystemTime, u64)> {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        };
        let mut seen = stamp(&path);
        let thread = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(period) {
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                let rejected = live.rejected();
                if live.reload(&path) {
                    on_change(Ok(live.get()));
                } else if live.rejected() > rejected {
                    on_change(Err(live.last_error().unwrap_or_default()));
                }
            }
        });
        ConfigWatcher {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for ConfigWatcher {
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
    fn an_invalid_file_is_rejected_and_the_old_config_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etl.toml");
        let live = LiveConfig::new(EtlConfig::default());
        std::fs::write(&path, "max_amount_cents = 100\nrate_limit = 5\n").unwrap();
        assert!(live.reload(&path));
        assert_eq!(live.get().max_amount_cents, 100);
        assert_eq!(live.generation(), 1);
        for bad in [
            "max_amount_cents = 0",
            "max_amount_cents = \"x\"",
            "oops = 1",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(!live.reload(&path));
            assert!(live.last_error().unwrap().contains("etl.toml"));
        }
        assert_eq!(live.rejected(), 3);
        assert_eq!(
            live.get(),
            EtlConfig {
                max_amount_cents: 100,
                rate_limit: 5
            }
        );
        assert!(!live.apply(live.get()), "the same config is not a change");
    }

    #[test]
    fn the_shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/etl.toml");
        assert_eq!(EtlConfig::load(&path).unwrap(), EtlConfig::default());
    }
}
