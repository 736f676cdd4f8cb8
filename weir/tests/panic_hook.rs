//! `weir::panics::quiet_supervised_panics`: panics caught by a supervised stage
//! skip the previous hook (no print, no backtrace) but keep their message in the
//! failure; every other panic still reaches it. Its own binary: the panic hook is
//! process-wide.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use weir::prelude::*;

#[test]
fn supervised_panics_are_quiet_and_keep_their_message_the_rest_reach_the_old_hook() {
    let reported = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&reported);
    std::panic::set_hook(Box::new(move |_| {
        r.fetch_add(1, SeqCst);
    }));
    weir::panics::quiet_supervised_panics();
    weir::panics::quiet_supervised_panics(); // once per process: a no-op

    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let dlq = MemoryDlq::new(100);
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Retry)
        .max_attempts(2)
        .backoff(BackoffConfig::none());
    let done = Pipeline::from_iter(0..1_000_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .map(|x| {
            assert!(x % 100 != 5, "element {x} is cursed");
            x
        })
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output.len(), 990);
    let letters = dlq.drain();
    assert_eq!(letters.len(), 10);
    assert!(
        letters[0].error.contains("element 5 is cursed"),
        "{}",
        letters[0].error
    );
    assert_eq!(reported.load(SeqCst), 0, "20 caught panics, none printed");

    // An unsupervised stage's panic fails the pipeline and is reported as before.
    let err = Pipeline::from_iter(0..10_u64)
        .map(|x| {
            assert!(x != 3, "unsupervised trouble");
            x
        })
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(err.to_string().contains("unsupervised trouble"), "{err}");
    assert_eq!(reported.load(SeqCst), 1);

    // And so is a panic outside any stage.
    assert!(std::panic::catch_unwind(|| panic!("elsewhere")).is_err());
    assert_eq!(reported.load(SeqCst), 2);
}
