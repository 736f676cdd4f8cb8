//! Helpers the graph test suites share.
#![allow(dead_code, unreachable_pub)]

use weir::prelude::*;

/// Lets every actor on this single-threaded System run until nothing moves.
pub async fn settle() {
    for _ in 0..500 {
        tokio::task::yield_now().await;
    }
}

/// A runtime with one arbiter.
pub fn rt1() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

/// Adds a sink that collects `from` and returns its receiver.
pub fn collect<T: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(
    g: &mut Graph,
    from: Outlet<T>,
) -> weir::OutputReceiver<Vec<T>> {
    g.sink(from, |f| f.collect())
}

/// The sink's result, once the graph has completed.
pub fn take<R>(rx: weir::OutputReceiver<R>) -> R {
    futures::executor::block_on(rx).expect("the sink handed over its result")
}

/// Runs `f` on an actix System whose tokio clock is paused: timers fire as soon
/// as nothing else can run, in virtual time.
pub fn paused<R, Fut>(f: impl FnOnce(Runtime) -> Fut) -> R
where
    Fut: std::future::Future<Output = R>,
{
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    });
    system.block_on(async move { f(Runtime::from_current().unwrap()).await })
}
