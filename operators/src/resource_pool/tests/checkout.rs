//! What a checkout hands out: reuse, LIFO order, health checks, failures, discard.

use std::sync::atomic::Ordering;

use super::support::{pool, pool_with};
use crate::resource_pool::{PoolError, Pooled};

#[tokio::test(start_paused = true)]
async fn reuses_an_idle_resource() {
    let pool = pool(4);
    let first = pool.acquire().await.unwrap();
    let id = first.id;
    drop(first);
    let status = pool.status();
    assert_eq!((status.size, status.idle, status.in_use), (1, 1, 0));

    let again = pool.acquire().await.unwrap();
    assert_eq!(again.id, id);
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.in_use, status.created),
        (1, 0, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn hands_out_the_most_recently_returned_first() {
    let pool = pool(4);
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let (a_id, b_id) = (a.id, b.id);
    drop(a);
    drop(b); // returned last
    assert_eq!(pool.acquire().await.unwrap().id, b_id);
    let b_again = pool.acquire().await.unwrap();
    assert_eq!(
        b_again.id, b_id,
        "LIFO: the warm one again after it came back"
    );
    assert_eq!(pool.acquire().await.unwrap().id, a_id);
    assert_eq!(pool.status().created, 2);
}

#[tokio::test(start_paused = true)]
async fn a_resource_failing_its_health_check_is_replaced() {
    let pool = pool(1);
    let conn = pool.acquire().await.unwrap();
    let broken = conn.id;
    conn.healthy.store(false, Ordering::SeqCst);
    drop(conn);

    let fresh = pool.acquire().await.unwrap();
    assert_ne!(fresh.id, broken);
    let status = pool.status();
    assert_eq!(status.health_check_failures, 1);
    assert_eq!((status.size, status.created), (1, 2));
    assert_eq!(pool.manager().alive(), 1, "the broken one was dropped");
}

#[tokio::test(start_paused = true)]
async fn health_checks_per_checkout_are_bounded() {
    let pool = pool_with(5, |config| config.max_health_check_attempts(2));
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(pool.acquire().await.unwrap());
    }
    for conn in &held {
        conn.healthy.store(false, Ordering::SeqCst);
    }
    drop(held);

    // Two broken ones are checked and dropped, then a fresh one is created; the
    // other three stay idle for later checkouts to clear.
    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.id, 5);
    let status = pool.status();
    assert_eq!(status.health_check_failures, 2);
    assert_eq!((status.size, status.idle, status.in_use), (4, 3, 1));

    let next = pool.acquire().await.unwrap();
    assert_eq!(next.id, 6);
    assert_eq!(pool.status().health_check_failures, 4);
    assert_eq!(pool.manager().max_alive(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_failed_create_frees_its_slot() {
    let pool = pool(1);
    pool.manager().fail_next_creates.store(3, Ordering::SeqCst);
    for _ in 0..3 {
        let err = pool.acquire().await.unwrap_err();
        assert!(matches!(err, PoolError::Create(_)), "{err:?}");
    }
    let status = pool.status();
    assert_eq!(
        (status.size, status.in_use, status.create_failures),
        (0, 0, 3)
    );

    let conn = pool.acquire().await.unwrap();
    assert_eq!(pool.status().size, 1);
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn a_failed_create_wakes_the_next_waiter() {
    let pool = pool(1);
    let held = pool.acquire().await.unwrap();
    pool.manager().fail_next_creates.store(1, Ordering::SeqCst);
    let first = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|conn| conn.id) }
    });
    super::support::settle().await;
    let second = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|conn| conn.id) }
    });
    super::support::settle().await;
    Pooled::discard(held); // the first waiter must create, and fails

    assert!(matches!(first.await.unwrap(), Err(PoolError::Create(_))));
    assert_eq!(second.await.unwrap().unwrap(), 1);
    assert_eq!(pool.status().size, 1);
}

#[tokio::test(start_paused = true)]
async fn discard_drops_the_resource_and_frees_the_slot() {
    let pool = pool(1);
    let conn = pool.acquire().await.unwrap();
    Pooled::discard(conn);
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.in_use, status.discarded),
        (0, 0, 0, 1)
    );
    assert_eq!(pool.manager().alive(), 0);

    assert_eq!(pool.acquire().await.unwrap().id, 1, "a new one is created");
}

#[tokio::test(start_paused = true)]
async fn detach_takes_the_resource_out_of_the_pool() {
    let pool = pool(1);
    let conn = Pooled::detach(pool.acquire().await.unwrap());
    assert_eq!(pool.status().size, 0);
    let other = pool.acquire().await.unwrap();
    assert_ne!(other.id, conn.id);
    assert_eq!(
        pool.manager().alive(),
        2,
        "the detached one is the caller's now"
    );
}

#[tokio::test(start_paused = true)]
async fn a_resource_refused_by_recycle_is_dropped() {
    let pool = pool(2);
    pool.manager().recycle_refuses.store(true, Ordering::SeqCst);
    drop(pool.acquire().await.unwrap());
    let status = pool.status();
    assert_eq!((status.size, status.idle, status.discarded), (0, 0, 1));
    assert_eq!(pool.manager().alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn try_acquire_fails_at_once_when_every_slot_is_taken() {
    let pool = pool(2);
    let a = pool.try_acquire().await.unwrap();
    let b = pool.try_acquire().await.unwrap();
    assert!(matches!(
        pool.try_acquire().await,
        Err(PoolError::Exhausted)
    ));
    drop(a);
    let c = pool.try_acquire().await.unwrap();
    assert_eq!(pool.status().created, 2, "the returned one was reused");
    drop((b, c));
}

#[tokio::test(start_paused = true)]
async fn try_acquire_does_not_jump_the_queue() {
    let pool = pool(1);
    let held = pool.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|conn| conn.id) }
    });
    super::support::settle().await;
    drop(held);
    // The slot went to the waiter, not to whoever asks next.
    assert!(matches!(
        pool.try_acquire().await,
        Err(PoolError::Exhausted)
    ));
    assert_eq!(waiter.await.unwrap().unwrap(), 0);
}
