//! Broadcast's bulk path under lag policies: without a dead-letter sink, a
//! broadcast whose branches are not all `Block` routes whole runs between policy
//! events. Whatever the policy and the sizes, the healthy branches get everything
//! in order, and the stalled branch gets an ordered subset within its bound, its
//! drop count being exactly what it missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::common;

use common::*;
use proptest::prelude::*;
use weir::prelude::*;

/// Input capacity of the stalled sink's stage.
const CAPACITY: usize = 16;
/// Buffer of the stalled sink's egress.
const EGRESS: usize = 8;

fn policy() -> impl Strategy<Value = LagPolicy> {
    prop_oneof![
        (0_usize..40).prop_map(|buffer| LagPolicy::DropNewest { buffer }),
        (0_usize..40).prop_map(|buffer| LagPolicy::DropOldest { buffer }),
        (0_usize..40).prop_map(|max_lag| LagPolicy::Detach {
            max_lag,
            max_wait: None
        }),
    ]
}

/// What may wait in the broadcast for the stalled branch beyond its credit.
fn waiting_bound(policy: LagPolicy) -> usize {
    match policy {
        LagPolicy::Block => usize::MAX,
        LagPolicy::DropNewest { buffer } | LagPolicy::DropOldest { buffer } => buffer,
        LagPolicy::Detach { max_lag, .. } => max_lag,
    }
}

/// `0..n` broadcast to `B - 1` collecting branches and, last, a branch under
/// `policy` whose egress is read only once every healthy branch has everything.
fn stalled_last_branch<const B: usize>(n: u64, policy: LagPolicy) {
    let healthy = B - 1;
    actix_rt::System::new().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let mut g = Graph::new();
        let src = g.source(Pipeline::from_iter(0..n));
        let branches: [Outlet<u64>; B] = g.broadcast(src, Broadcast::new(B).lag(healthy, policy));
        g.name_stage(branches[0], "fanout");
        let seen = Arc::new(AtomicU64::new(0));
        let collected: Vec<_> = branches[..healthy]
            .iter()
            .map(|&b| {
                let seen = Arc::clone(&seen);
                let b = g.flow(b, move |f| {
                    f.inspect(move |_| {
                        seen.fetch_add(1, Relaxed);
                    })
                });
                collect(&mut g, b)
            })
            .collect();
        let mut egress = None;
        g.sink(branches[healthy], |f| {
            let (runnable, e) = f.egress(EGRESS);
            egress = Some(e);
            runnable.name("stalled").capacity(CAPACITY)
        });
        let mut egress = egress.unwrap();
        let running = g.run(&rt).unwrap();
        while seen.load(Relaxed) < n * healthy as u64 {
            tokio::task::yield_now().await;
        }
        let mut slow = Vec::new();
        while let Some(x) = egress.recv().await {
            slow.push(x);
        }
        let done = running.await.unwrap();
        done.report.check_conservation().unwrap();
        for c in collected {
            assert_eq!(take(c), (0..n).collect::<Vec<_>>(), "{policy:?}");
        }
        let fanout = done.report.stage("fanout").unwrap();
        let port = &fanout.outputs[healthy];
        assert_eq!(port.pushed, n, "{policy:?}");
        assert_eq!(port.emitted, slow.len() as u64, "{policy:?}");
        assert_eq!(
            port.dropped,
            n - slow.len() as u64,
            "{policy:?}: drops = missed"
        );
        assert!(slow.windows(2).all(|w| w[0] < w[1]), "{policy:?}: order");
        assert!(slow.iter().all(|&x| x < n));
        let bound = (CAPACITY + EGRESS).saturating_add(waiting_bound(policy));
        assert!(slow.len() <= bound, "{policy:?}: {} > {bound}", slow.len());
        if matches!(policy, LagPolicy::DropOldest { buffer } if buffer > 0) && n > 0 {
            // (With no buffer, the new element is dropped instead.)
            assert_eq!(slow.last(), Some(&(n - 1)), "drop-oldest keeps the newest");
        }
        if matches!(policy, LagPolicy::Detach { .. }) && n as usize > bound {
            assert!(port.detached >= 1, "{port:?}");
        }
        for p in &fanout.outputs[..healthy] {
            assert_eq!((p.pushed, p.emitted, p.dropped), (n, n, 0), "{policy:?}");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_stalled_branch_misses_only_what_is_counted(
        n in 0_u64..6_000,
        healthy in 1_usize..4,
        policy in policy(),
    ) {
        match healthy {
            1 => stalled_last_branch::<2>(n, policy),
            2 => stalled_last_branch::<3>(n, policy),
            _ => stalled_last_branch::<4>(n, policy),
        }
    }
}
