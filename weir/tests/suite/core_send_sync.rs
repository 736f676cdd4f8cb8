//! Public handles are `Send`/`Sync` where a service needs them to be, checked at
//! compile time (as tokio does in `tests/async_send_sync.rs`).

use static_assertions::assert_impl_all;
use weir::prelude::*;
use weir::{PipelineStats, StageReport};

assert_impl_all!(Runtime: Send, Sync, Clone);
assert_impl_all!(Running<Vec<u64>>: Send, Sync);
assert_impl_all!(Running<()>: Send, Sync);
assert_impl_all!(PipelineController: Send, Sync, Clone);
assert_impl_all!(Ingress<u64>: Send, Sync, Clone);
assert_impl_all!(Egress<u64>: Send, Sync);
assert_impl_all!(Flow<u64>: Send);
assert_impl_all!(Runnable<Vec<u64>>: Send);
assert_impl_all!(Report: Send, Sync, Clone);
assert_impl_all!(StageReport: Send, Sync, Clone);
assert_impl_all!(PipelineStats: Send, Sync, Clone);
assert_impl_all!(PipelineError: Send, Sync, std::error::Error);
assert_impl_all!(BuildError: Send, Sync, std::error::Error);
assert_impl_all!(Completion<Vec<u64>>: Send, Sync);

#[test]
fn the_running_future_is_send() {
    fn assert_send<T: Send>(_: T) {}
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let running = Pipeline::from_iter(0..3).collect().run(&rt).unwrap();
    assert_send(std::future::IntoFuture::into_future(running));
}
