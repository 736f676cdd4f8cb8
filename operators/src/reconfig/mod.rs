//! [`ConfigWatcher`]: reloads a TOML config file while a pipeline runs and applies
//! what changed to the stages' [`ConfigHandle`]s.
//!
//! The file is parsed into the user's config type (`serde::Deserialize`). Each
//! [`bind`](ConfigWatcher::bind) maps the whole config to one handle's config; on
//! a reload only the handles whose mapped config changed are reconfigured.
//!
//! A new file is applied all or nothing as far as can be known before applying:
//! it must parse, pass the watcher's [`validate`](ConfigWatcher::validate) check,
//! and every changed handle config must pass its handle's
//! [check](ConfigHandle::with_check). Otherwise it is rejected with a
//! [`WatchError`] naming the file, line, column and field, and nothing is applied:
//! the old config stays in force. (A stage whose operator rejects a config that
//! passed the checks keeps its old one; the others are applied; the error says
//! which.)
//!
//! Change detection polls the file's modification time and length: no new
//! dependency, no platform notifier.
//!
//! # Examples
//!
//! ```
//! use serde::Deserialize;
//! use weir_operators::ops::ConfigExt;
//! use weir_operators::reconfig::ConfigWatcher;
//! use weir_operators::{FlowExt, Pipeline};
//! use weir_runtime::reconfig::ConfigHandle;
//!
//! #[derive(Debug, Clone, PartialEq, Deserialize)]
//! struct Settings {
//!     min: u64,
//! }
//!
//! # let dir = std::env::temp_dir().join(format!("weir-watch-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let path = dir.join("settings.toml");
//! std::fs::write(&path, "min = 5\n")?;
//! let min = ConfigHandle::<u64>::new();
//! let mut watcher = ConfigWatcher::<Settings>::new(&path).bind(&min, |s| s.min);
//! let initial = watcher.load()?; // parsed, not applied: the stages start with it
//!
//! let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
//! let (ingress, flow) = Pipeline::ingress::<u64>(16);
//! let running = flow.filter_with_config(&min, initial.min, |min, x| x >= min).collect().run(&rt)?;
//!
//! std::fs::write(&path, "min = \"high\"\n")?; // invalid: rejected, min stays 5
//! let err = watcher.reload_blocking().unwrap_err();
//! assert_eq!((err.line, err.field.as_deref()), (Some(1), Some("min")));
//!
//! std::fs::write(&path, "min = 8\n")?;
//! let reload = watcher.reload_blocking()?;
//! assert_eq!(reload.applied.len(), 1);
//! for x in 0..10 {
//!     futures::executor::block_on(ingress.send(x))?;
//! }
//! drop(ingress);
//! assert_eq!(running.wait()?.output, [8, 9]);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;

pub use error::WatchError;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use weir_runtime::reconfig::{Applied, ConfigHandle};

/// One handle fed from the file: maps the config, checks, applies.
trait Binding<C>: Send {
    /// Whether the mapped config differs between `old` and `new`.
    fn changed(&self, old: Option<&C>, new: &C) -> bool;
    /// The handle's check on the mapped config.
    fn check(&self, new: &C) -> Result<(), String>;
    /// Applies the mapped config.
    fn apply(&self, new: &C) -> BoxFuture<'static, Result<Applied, String>>;
}

struct Bound<C, D, M> {
    handle: ConfigHandle<D>,
    map: M,
    _c: std::marker::PhantomData<fn(&C)>,
}

impl<C, D, M> Binding<C> for Bound<C, D, M>
where
    D: Clone + PartialEq + Send + 'static,
    M: Fn(&C) -> D + Send,
{
    fn changed(&self, old: Option<&C>, new: &C) -> bool {
        old.is_none_or(|old| (self.map)(old) != (self.map)(new))
    }

    fn check(&self, new: &C) -> Result<(), String> {
        self.handle.check(&(self.map)(new))
    }

    fn apply(&self, new: &C) -> BoxFuture<'static, Result<Applied, String>> {
        let handle = self.handle.clone();
        let config = (self.map)(new);
        Box::pin(async move { handle.reconfigure(config).await.map_err(|e| e.to_string()) })
    }
}

/// What a reload applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reload {
    /// The acknowledgement of each handle whose config changed.
    pub applied: Vec<Applied>,
}

/// A user check of the whole config.
type Validate<C> = Box<dyn Fn(&C) -> Result<(), String> + Send>;

/// Watches a TOML file and applies its changes to config handles. See the
/// [module docs](self).
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct ConfigWatcher<C> {
    path: PathBuf,
    bindings: Vec<Box<dyn Binding<C>>>,
    validate: Option<Validate<C>>,
    /// The config in force (the last one loaded or applied).
    current: Option<C>,
    /// Modification time and length of the file when last read.
    seen: Option<(SystemTime, u64)>,
}

impl<C> fmt::Debug for ConfigWatcher<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path)
            .field("bindings", &self.bindings.len())
            .field("loaded", &self.current.is_some())
            .finish()
    }
}

impl<C: DeserializeOwned + Clone + Send + 'static> ConfigWatcher<C> {
    /// A watcher of the TOML file at `path`, with no handle bound yet.
    pub fn new(path: impl AsRef<Path>) -> Self {
        ConfigWatcher {
            path: path.as_ref().to_path_buf(),
            bindings: Vec::new(),
            validate: None,
            current: None,
            seen: None,
        }
    }

    /// Feeds `handle` with `map(&config)` on every reload where it changed.
    pub fn bind<D, M>(mut self, handle: &ConfigHandle<D>, map: M) -> Self
    where
        D: Clone + PartialEq + Send + 'static,
        M: Fn(&C) -> D + Send + 'static,
    {
        self.bindings.push(Box::new(Bound {
            handle: handle.clone(),
            map,
            _c: std::marker::PhantomData,
        }));
        self
    }

    /// Checks every config read from the file (the initial one included) before
    /// anything of it is applied. The message is reported in the [`WatchError`].
    pub fn validate(mut self, check: impl Fn(&C) -> Result<(), String> + Send + 'static) -> Self {
        self.validate = Some(Box::new(check));
        self
    }

    /// Reads and checks the file, and makes it the config in force *without*
    /// applying it: build the pipeline with it. Later reloads apply only what
    /// differs from it.
    ///
    /// # Errors
    ///
    /// The file cannot be read, parsed, or fails a check.
    pub fn load(&mut self) -> Result<C, WatchError> {
        let (config, seen) = self.read()?;
        for binding in &self.bindings {
            binding
                .check(&config)
                .map_err(|message| WatchError::invalid(&self.path, message))?;
        }
        self.current = Some(config.clone());
        self.seen = Some(seen);
        Ok(config)
    }

    /// The config in force: the last one loaded or applied.
    pub fn current(&self) -> Option<&C> {
        self.current.as_ref()
    }

    /// Whether the file's modification time or length changed since it was last
    /// read.
    pub fn changed(&self) -> bool {
        stamp(&self.path).ok() != self.seen
    }

    /// Reloads the file if it changed since it was last read; `None` if not.
    ///
    /// # Errors
    ///
    /// As [`reload`](Self::reload).
    pub async fn poll(&mut self) -> Result<Option<Reload>, WatchError> {
        if !self.changed() {
            return Ok(None);
        }
        self.reload().await.map(Some)
    }

    /// Reads the file now and applies what changed to the bound handles.
    ///
    /// # Errors
    ///
    /// The file cannot be read or parsed, or fails the watcher's or a handle's
    /// check: nothing is applied and the old config stays in force. Or a stage
    /// rejected its new config: the others were applied, that stage kept its old
    /// one; the error names it.
    pub async fn reload(&mut self) -> Result<Reload, WatchError> {
        let (config, seen) = self.read()?;
        // Marked as seen even when invalid: the same broken file is reported once.
        self.seen = Some(seen);
        let old = self.current.as_ref();
        let changed: Vec<&dyn Binding<C>> = self
            .bindings
            .iter()
            .map(AsRef::as_ref)
            .filter(|b| b.changed(old, &config))
            .collect();
        for binding in &changed {
            binding
                .check(&config)
                .map_err(|message| WatchError::invalid(&self.path, message))?;
        }
        let mut applied = Vec::new();
        let mut refused = Vec::new();
        for binding in changed {
            match binding.apply(&config).await {
                Ok(ack) => applied.push(ack),
                Err(reason) => refused.push(reason),
            }
        }
        self.current = Some(config);
        if refused.is_empty() {
            tracing::info!(path = %self.path.display(), applied = applied.len(), "config reloaded");
            Ok(Reload { applied })
        } else {
            Err(WatchError::invalid(&self.path, refused.join("; ")))
        }
    }

    /// [`reload`](Self::reload) for synchronous callers (not on a stage's arbiter
    /// thread).
    ///
    /// # Errors
    ///
    /// As [`reload`](Self::reload).
    pub fn reload_blocking(&mut self) -> Result<Reload, WatchError> {
        futures::executor::block_on(self.reload())
    }

    /// Polls the file every `every` on a thread of its own until the returned
    /// [`Watching`] is stopped or dropped, handing each reload's outcome to
    /// `report` (an invalid file is reported and the old config kept).
    pub fn spawn(
        mut self,
        every: Duration,
        mut report: impl FnMut(Result<Reload, WatchError>) + Send + 'static,
    ) -> std::io::Result<Watching>
    where
        C: 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weir-config-watcher".into())
            .spawn(move || {
                while !stopped.load(SeqCst) {
                    std::thread::park_timeout(every);
                    if stopped.load(SeqCst) {
                        break;
                    }
                    match futures::executor::block_on(self.poll()) {
                        Ok(None) => {}
                        Ok(Some(reload)) => report(Ok(reload)),
                        Err(err) => report(Err(err)),
                    }
                }
            })?;
        Ok(Watching {
            stop,
            thread: Some(thread),
        })
    }

    fn read(&self) -> Result<(C, (SystemTime, u64)), WatchError> {
        let seen = stamp(&self.path).map_err(|e| WatchError::io(&self.path, e))?;
        let text =
            std::fs::read_to_string(&self.path).map_err(|e| WatchError::io(&self.path, e))?;
        let config: C =
            toml::from_str(&text).map_err(|e| WatchError::parse(&self.path, &text, &e))?;
        if let Some(check) = &self.validate {
            check(&config).map_err(|message| WatchError::invalid(&self.path, message))?;
        }
        Ok((config, seen))
    }
}

/// The file's modification time and length.
fn stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

/// A watcher polling on its own thread; stops when dropped.
#[derive(Debug)]
pub struct Watching {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watching {
    /// Stops polling and waits for the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.halt();
    }
}
