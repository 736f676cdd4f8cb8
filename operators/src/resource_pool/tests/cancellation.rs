//! Dropping a checkout at each of its `.await`s leaks neither slots nor resources.

use std::time::Duration;

use super::support::{pool, settle};

#[tokio::test(start_paused = true)]
async fn dropping_an_acquire_while_it_waits_leaks_nothing() {
    let pool = pool(1);
    let held = pool.acquire().await.unwrap();

    // Cancelled by an outer timeout while queued for a slot.
    let outer = tokio::time::timeout(Duration::from_millis(10), pool.acquire()).await;
    assert!(outer.is_err());
    assert_eq!(pool.status().waiting, 0);

    // Cancelled by aborting its task.
    let task = tokio::spawn({
        let pool = pool.clone();
        async move { drop(pool.acquire().await) }
    });
    settle().await;
    assert_eq!(pool.status().waiting, 1);
    task.abort();
    settle().await;
    assert_eq!(pool.status().waiting, 0);

    drop(held);
    // The slot did not go to a cancelled waiter: it is free at once.
    let conn = pool.try_acquire().await.unwrap();
    assert_eq!(conn.id, 0);
    assert_eq!(pool.status().size, 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_an_acquire_while_it_creates_leaks_nothing() {
    let pool = pool(1);
    pool.manager().set_create_delay(Duration::from_secs(5));
    let outer = tokio::time::timeout(Duration::from_millis(10), pool.acquire()).await;
    assert!(outer.is_err());
    assert_eq!(pool.manager().creates_started(), 1);
    let status = pool.status();
    assert_eq!((status.size, status.in_use, status.created), (0, 0, 0));

    pool.manager().set_create_delay(Duration::ZERO);
    let conn = pool.try_acquire().await.unwrap();
    assert_eq!(pool.status().size, 1);
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn dropping_an_acquire_while_it_checks_drops_that_resource() {
    let pool = pool(1);
    drop(pool.acquire().await.unwrap());
    pool.manager().set_check_delay(Duration::from_secs(5));

    let outer = tokio::time::timeout(Duration::from_millis(10), pool.acquire()).await;
    assert!(outer.is_err());
    // Its state after a half-done check is unknown: the pool does not keep it.
    let status = pool.status();
    assert_eq!((status.size, status.idle, status.in_use), (0, 0, 0));
    assert_eq!(pool.manager().alive(), 0);

    pool.manager().set_check_delay(Duration::ZERO);
    assert_eq!(pool.try_acquire().await.unwrap().id, 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_cancelled_after_being_granted_a_slot_passes_it_on() {
    let pool = pool(1);
    let held = pool.acquire().await.unwrap();
    let first = tokio::spawn({
        let pool = pool.clone();
        async move { drop(pool.acquire().await) }
    });
    settle().await;
    let second = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|conn| conn.id) }
    });
    settle().await;
    drop(held); // the slot is granted to `first`
    first.abort(); // ... which is cancelled before it runs
    assert_eq!(second.await.unwrap().unwrap(), 0);
    assert_eq!(pool.status().created, 1);
    assert_eq!(pool.status().in_use, 0);
}
