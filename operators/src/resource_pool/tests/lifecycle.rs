//! Idle eviction, close and drain, configuration, and the handles' traits.

use std::error::Error as _;
use std::time::Duration;

use weir_runtime::{ErrorClass, Failure};

use super::support::{Conn, Counting, TestError, pool, pool_with, settle};
use crate::resource_pool::{PoolConfig, PoolError, Pooled, ResourcePool};

#[tokio::test(start_paused = true)]
async fn idle_resources_expire_exactly_at_idle_timeout() {
    let pool = pool_with(2, |config| config.idle_timeout(Duration::from_secs(60)));
    drop(pool.acquire().await.unwrap());

    tokio::time::advance(Duration::from_secs(60) - Duration::from_millis(1)).await;
    assert_eq!(pool.evict_idle(), 0);
    assert_eq!(pool.status().idle, 1);

    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(pool.evict_idle(), 1);
    let status = pool.status();
    assert_eq!((status.size, status.idle, status.evicted), (0, 0, 1));
    assert_eq!(pool.manager().alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_checkout_evicts_expired_resources_as_it_goes() {
    let pool = pool_with(2, |config| config.idle_timeout(Duration::from_secs(60)));
    let old = pool.acquire().await.unwrap();
    let recent = pool.acquire().await.unwrap();
    let recent_id = recent.id;
    drop(old);
    tokio::time::advance(Duration::from_secs(30)).await;
    drop(recent); // idle for 30 s less than `old`

    tokio::time::advance(Duration::from_secs(30)).await;
    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.id, recent_id);
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.evicted, status.created),
        (1, 0, 1, 2)
    );

    // Reuse restarts the idle clock.
    drop(conn);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(pool.acquire().await.unwrap().id, recent_id);
}

#[tokio::test(start_paused = true)]
async fn close_refuses_new_and_waiting_checkouts() {
    let pool = pool(1);
    let held = pool.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|conn| conn.id) }
    });
    settle().await;
    pool.close();
    assert!(pool.is_closed());
    assert!(matches!(waiter.await.unwrap(), Err(PoolError::Closed)));
    assert!(matches!(pool.acquire().await, Err(PoolError::Closed)));
    assert!(matches!(pool.try_acquire().await, Err(PoolError::Closed)));

    drop(held); // returned after close: dropped, not pooled
    let status = pool.status();
    assert_eq!((status.size, status.idle, status.closed), (0, 0, true));
    assert_eq!(pool.manager().alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn drain_waits_for_every_checked_out_resource() {
    let pool = pool(3);
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    drop(pool.acquire().await.unwrap()); // one idle

    let drain = tokio::spawn({
        let pool = pool.clone();
        async move { pool.drain().await }
    });
    settle().await;
    assert_eq!(pool.manager().alive(), 2, "the idle one is dropped at once");
    assert!(!drain.is_finished());
    assert!(matches!(pool.acquire().await, Err(PoolError::Closed)));

    drop(a);
    settle().await;
    assert!(!drain.is_finished());
    assert_eq!(pool.status().size, 1);

    drop(b);
    drain.await.unwrap();
    assert_eq!(pool.status().size, 0);
    assert_eq!(pool.manager().alive(), 0);
    pool.drain().await; // draining a drained pool returns at once
}

#[tokio::test(start_paused = true)]
async fn drain_waits_for_a_create_in_flight_and_drops_its_resource() {
    let pool = pool(2);
    pool.manager().set_create_delay(Duration::from_secs(1));
    let checkout = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|conn| conn.id) }
    });
    settle().await;
    assert_eq!(pool.status().size, 1);

    pool.drain().await; // the paused clock runs the create to its end
    assert!(matches!(checkout.await.unwrap(), Err(PoolError::Closed)));
    assert_eq!(pool.status().created, 1);
    assert_eq!(pool.manager().alive(), 0);
}

#[test]
fn config_validation_names_the_field() {
    let err = PoolConfig::builder().max_size(0).build().unwrap_err();
    assert_eq!(err.field(), "max_size");
    assert_eq!(
        err.to_string(),
        "invalid pool config: `max_size` must be at least 1"
    );

    let err = PoolConfig::builder()
        .max_health_check_attempts(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_health_check_attempts");
    let err = PoolConfig::builder()
        .idle_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "idle_timeout");
    let err = PoolConfig::builder()
        .acquire_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "acquire_timeout");
    let err = PoolConfig::builder()
        .max_size(usize::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_size");

    // A config edited after it was built is checked again by the pool.
    let config = PoolConfig {
        max_size: 0,
        ..PoolConfig::default()
    };
    let err = ResourcePool::new(Counting::default(), config).unwrap_err();
    assert_eq!(err.field(), "max_size");
    assert!(PoolConfig::default().validate().is_ok());
}

#[test]
fn handles_are_send_sync_and_cheap_to_clone() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<ResourcePool<Counting>>();
    send_sync::<Pooled<Conn>>();
    send_sync::<PoolError<TestError>>();

    let pool = pool(1);
    send(&pool.acquire());
    send(&pool.try_acquire());
    send(&pool.drain());
    let clone = pool.clone();
    clone.close();
    assert!(pool.is_closed(), "clones share one pool");
}

#[test]
fn works_without_a_tokio_runtime_when_no_timeout_is_set() {
    let pool = ResourcePool::from_fn(
        PoolConfig::builder().acquire_timeout(None).build().unwrap(),
        || async { Ok::<_, TestError>(String::from("plain")) },
    )
    .unwrap();
    futures::executor::block_on(async {
        let conn = pool.acquire().await.unwrap();
        assert_eq!(*conn, "plain");
        drop(conn);
        assert_eq!(pool.evict_idle(), 0);
        pool.drain().await;
    });
    assert_eq!(pool.status().size, 0);
}

#[test]
fn pool_errors_become_classified_failures() {
    let failure = Failure::from(PoolError::<TestError>::Timeout(Duration::from_secs(1)));
    assert_eq!(failure.class(), ErrorClass::Timeout);
    assert_eq!(
        Failure::from(PoolError::<TestError>::Closed).class(),
        ErrorClass::Permanent
    );
    assert_eq!(
        Failure::from(PoolError::<TestError>::Exhausted).class(),
        ErrorClass::ResourceExhausted
    );

    let create = PoolError::Create(TestError);
    assert_eq!(create.class(), ErrorClass::Transient);
    assert_eq!(create.to_string(), "creating a pooled resource failed");
    assert_eq!(create.source().unwrap().to_string(), "test manager failure");
}
