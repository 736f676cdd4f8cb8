//! The bound on resources alive, fairness among waiters, and the acquire timeout.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::support::{pool, pool_with, settle};
use crate::resource_pool::{PoolError, Pooled};

#[tokio::test(start_paused = true)]
async fn never_more_than_max_size_alive_under_50_acquirers() {
    let pool = pool(4);
    pool.manager().set_create_delay(Duration::from_millis(5));
    let tasks: Vec<_> = (0..50_u64)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for round in 0..3 {
                    let conn = pool.acquire().await.unwrap();
                    let status = pool.status();
                    assert!(status.size <= 4 && status.in_use <= 4, "{status:?}");
                    tokio::time::sleep(Duration::from_millis(1 + (i + round) % 7)).await;
                    if (i + round) % 11 == 0 {
                        Pooled::discard(conn);
                    } else if (i + round) % 13 == 0 {
                        conn.healthy.store(false, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    settle().await;
    assert_eq!(pool.status().waiting, 46);
    for task in tasks {
        task.await.unwrap();
    }
    let manager = pool.manager();
    assert_eq!(
        manager.max_alive(),
        4,
        "the bound is reached and never passed"
    );
    let status = pool.status();
    assert_eq!((status.in_use, status.waiting), (0, 0));
    assert_eq!(status.size, manager.alive());
    assert!(
        status.discarded > 0 && status.health_check_failures > 0,
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn never_more_than_max_size_alive_across_threads() {
    let pool = pool(3);
    let tasks: Vec<_> = (0..50_u32)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for round in 0..40_u32 {
                    let conn = pool.acquire().await.unwrap();
                    tokio::task::yield_now().await;
                    match (i + round) % 9 {
                        0 => Pooled::discard(conn),
                        1 => conn.healthy.store(false, Ordering::SeqCst),
                        _ => drop(conn),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(
        pool.manager().max_alive() <= 3,
        "max alive {}",
        pool.manager().max_alive()
    );
    let status = pool.status();
    assert_eq!((status.in_use, status.waiting), (0, 0));
    assert_eq!(status.size, pool.manager().alive());
    pool.drain().await;
    assert_eq!(pool.manager().alive(), 0);
}

/// A place is freed only once its resource is dropped: a checkout that finds the
/// pool full of resources still being evicted waits for their drops to finish
/// before it creates their replacements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_waits_for_evicted_resources_to_be_dropped() {
    let pool = pool_with(2, |config| config.idle_timeout(Duration::from_millis(1)));
    pool.manager().drop_delay_us.store(25_000, Ordering::SeqCst); // slow to close
    let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(2)).await; // both expired
    pool.manager().drop_delay_us.store(0, Ordering::SeqCst);

    let evictor = std::thread::spawn({
        let pool = pool.clone();
        move || pool.evict_idle()
    });
    while pool.status().idle > 0 {
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    let c = pool.acquire().await.unwrap();
    let d = pool.acquire().await.unwrap();
    assert_eq!(evictor.join().unwrap(), 2);
    assert_eq!(pool.manager().max_alive(), 2);
    drop((c, d));
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let pool = pool(1);
    let held = pool.acquire().await.unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (pool, served) = (pool.clone(), Arc::clone(&served));
        tasks.push(tokio::spawn(async move {
            let conn = pool.acquire().await.unwrap();
            served.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(conn);
        }));
        settle().await; // queued before the next one arrives
    }
    assert_eq!(pool.status().waiting, 6);
    drop(held);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*served.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(
        pool.status().created,
        1,
        "one resource passed along the line"
    );
}

#[tokio::test(start_paused = true)]
async fn acquire_times_out_after_exactly_acquire_timeout() {
    let timeout = Duration::from_millis(250);
    let pool = pool_with(1, |config| config.acquire_timeout(timeout));
    let held = pool.acquire().await.unwrap();

    let start = Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert!(
        matches!(err, PoolError::Timeout(t) if t == timeout),
        "{err:?}"
    );
    assert_eq!(start.elapsed(), timeout);
    let status = pool.status();
    assert_eq!((status.timeouts, status.waiting, status.in_use), (1, 0, 1));
    assert_eq!(
        err.to_string(),
        "no pooled resource within the acquire timeout of 250ms"
    );

    // A waiter served just before its deadline does not time out.
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|conn| conn.id) }
    });
    tokio::time::sleep(timeout - Duration::from_millis(1)).await;
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), 0);
    assert_eq!(pool.status().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn acquire_timeout_covers_a_slow_create() {
    let pool = pool_with(1, |config| {
        config.acquire_timeout(Duration::from_millis(100))
    });
    pool.manager().set_create_delay(Duration::from_secs(10));
    let start = Instant::now();
    assert!(matches!(pool.acquire().await, Err(PoolError::Timeout(_))));
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let status = pool.status();
    assert_eq!((status.size, status.in_use, status.timeouts), (0, 0, 1));

    pool.manager().set_create_delay(Duration::ZERO);
    assert!(
        pool.acquire().await.is_ok(),
        "the abandoned create freed its slot"
    );
}

/// A small deterministic generator, so the sequence test needs no extra crate.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(start_paused = true)]
async fn random_operation_sequences_keep_the_invariants() {
    const MAX: usize = 4;
    for seed in 1..=200_u64 {
        let pool = pool_with(MAX, |config| {
            config
                .idle_timeout(Duration::from_millis(50))
                .max_health_check_attempts(2)
        });
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut held: Vec<Pooled<_>> = Vec::new();
        for step in 0..60 {
            match rng.below(7) {
                0 | 1 => {
                    let got = pool.try_acquire().await;
                    if held.len() < MAX {
                        held.push(got.unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}")));
                    } else {
                        assert!(matches!(got, Err(PoolError::Exhausted)));
                    }
                }
                2 if !held.is_empty() => {
                    let i = rng.below(held.len() as u64) as usize;
                    drop(held.swap_remove(i));
                }
                3 if !held.is_empty() => {
                    let i = rng.below(held.len() as u64) as usize;
                    Pooled::discard(held.swap_remove(i));
                }
                4 if !held.is_empty() => {
                    let i = rng.below(held.len() as u64) as usize;
                    held[i].healthy.store(false, Ordering::SeqCst);
                    drop(held.swap_remove(i));
                }
                5 => tokio::time::advance(Duration::from_millis(rng.below(40))).await,
                _ => {
                    pool.evict_idle();
                }
            }
            let status = pool.status();
            assert!(status.size <= MAX, "seed {seed} step {step}: {status:?}");
            assert_eq!(status.in_use, held.len(), "seed {seed} step {step}");
            assert_eq!(
                status.size,
                status.idle + status.in_use,
                "seed {seed} step {step}"
            );
            assert_eq!(
                status.size,
                pool.manager().alive(),
                "seed {seed} step {step}"
            );
        }
        assert!(pool.manager().max_alive() <= MAX);
        drop(held);
        pool.drain().await;
        assert_eq!(pool.manager().alive(), 0);
    }
}
