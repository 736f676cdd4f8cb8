//! A manager that counts what it creates and can be told to fail, stall or refuse.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::resource_pool::{Manager, PoolConfig, PoolConfigBuilder, ResourcePool};

/// A test connection; `alive` counts the ones not yet dropped.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) id: u32,
    pub(super) healthy: AtomicBool,
    alive: Arc<AtomicUsize>,
    /// Blocks the dropping thread this long: a connection that takes time to close.
    drop_delay: Duration,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.drop_delay.is_zero() {
            std::thread::sleep(self.drop_delay);
        }
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("test manager failure")]
pub(super) struct TestError;

/// Counts creations and the most connections alive at once.
#[derive(Debug, Default)]
pub(super) struct Counting {
    next_id: AtomicU32,
    alive: Arc<AtomicUsize>,
    max_alive: AtomicUsize,
    creates_started: AtomicU32,
    /// How long `create` takes, in ms of (paused) tokio time.
    pub(super) create_delay_ms: AtomicU64,
    /// How long `check` takes, in ms.
    pub(super) check_delay_ms: AtomicU64,
    /// How long dropping a connection blocks its thread, in µs (real time).
    pub(super) drop_delay_us: AtomicU64,
    /// How many of the next creates fail.
    pub(super) fail_next_creates: AtomicU32,
    /// Makes `recycle` refuse every returned connection.
    pub(super) recycle_refuses: AtomicBool,
}

impl Counting {
    pub(super) fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    pub(super) fn max_alive(&self) -> usize {
        self.max_alive.load(Ordering::SeqCst)
    }

    pub(super) fn creates_started(&self) -> u32 {
        self.creates_started.load(Ordering::SeqCst)
    }

    pub(super) fn set_create_delay(&self, delay: Duration) {
        self.create_delay_ms.store(millis(delay), Ordering::SeqCst);
    }

    pub(super) fn set_check_delay(&self, delay: Duration) {
        self.check_delay_ms.store(millis(delay), Ordering::SeqCst);
    }
}

fn millis(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).expect("a test delay fits in u64 ms")
}

async fn pause_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

impl Manager for Counting {
    type Resource = Conn;
    type Error = TestError;

    async fn create(&self) -> Result<Conn, TestError> {
        self.creates_started.fetch_add(1, Ordering::SeqCst);
        pause_ms(self.create_delay_ms.load(Ordering::SeqCst)).await;
        let fail = self
            .fail_next_creates
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(TestError);
        }
        let alive = self.alive.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_alive.fetch_max(alive, Ordering::SeqCst);
        Ok(Conn {
            id: self.next_id.fetch_add(1, Ordering::SeqCst),
            healthy: AtomicBool::new(true),
            alive: Arc::clone(&self.alive),
            drop_delay: Duration::from_micros(self.drop_delay_us.load(Ordering::SeqCst)),
        })
    }

    async fn check(&self, conn: &Conn) -> Result<(), TestError> {
        pause_ms(self.check_delay_ms.load(Ordering::SeqCst)).await;
        if conn.healthy.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(TestError)
        }
    }

    fn recycle(&self, _conn: &mut Conn) -> bool {
        !self.recycle_refuses.load(Ordering::SeqCst)
    }
}

/// A pool of `max_size` with no timeouts, adjusted by `tune`.
pub(super) fn pool_with(
    max_size: usize,
    tune: impl FnOnce(PoolConfigBuilder) -> PoolConfigBuilder,
) -> ResourcePool<Counting> {
    let builder = PoolConfig::builder()
        .max_size(max_size)
        .acquire_timeout(None)
        .idle_timeout(None);
    ResourcePool::new(
        Counting::default(),
        tune(builder).build().expect("a valid test config"),
    )
    .expect("a valid test config")
}

/// A pool of `max_size` with no timeouts.
pub(super) fn pool(max_size: usize) -> ResourcePool<Counting> {
    pool_with(max_size, |builder| builder)
}

/// Lets every spawned task run until it blocks.
pub(super) async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}
