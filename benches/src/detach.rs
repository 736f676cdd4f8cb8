//! The `detach3` workload of the comparison harness (issue 4): a broadcast whose
//! third branch stalls, under [`LagPolicy::Detach`], against the same graph with
//! nothing stalled.
//!
//! `0..n` → [`Broadcast::new(3)`](weir::prelude::Broadcast) with
//! [`LagPolicy::Detach`] on branch [`STALLED`]. Branches 0 and 1 are `fold` sinks
//! that sum what they get. Branch [`STALLED`] is either
//!
//! * stalled ([`detach3_weir`]): an egress nobody reads until the healthy sinks
//!   have their sums. It takes [`STALLED_CAPACITY`] + [`EGRESS_BUFFER`] elements,
//!   then grants no more credit; the broadcast detaches it and drops every later
//!   element for it. The stall parks the sink's stage, it burns no core. Once the
//!   healthy sums are in, the egress is drained (releasing the stall) so the
//!   graph completes; or
//! * healthy ([`detach3_unstalled_weir`]): a third summing sink, the policy
//!   unchanged: the "unstalled throughput" the stalled run is compared with.
//!
//! Both return the healthy sinks' sums (each must be the sum of `0..n`) and fail
//! unless conservation holds and, for the stalled branch, delivered + dropped =
//! `n`, with at most [`STALLED_CAPACITY`] + [`EGRESS_BUFFER`] delivered (it really
//! stalled), and at least one detachment when `n` is larger than that plus
//! [`MAX_LAG`].

use std::time::Duration;

use weir::OutputReceiver;
use weir::prelude::*;

use crate::junctions::{JunctionPlacement, arbiters, expected_sum};
use crate::workload::sum_step;

/// Branches of the broadcast.
pub const DETACH_FAN: usize = 3;
/// The branch that stalls, with [`LagPolicy::Detach`].
pub const STALLED: usize = 2;
/// `max_lag` of the stalled branch's policy.
pub const MAX_LAG: usize = 1024;
/// `max_wait` of the stalled branch's policy.
pub const MAX_WAIT: Duration = Duration::from_millis(20);
/// Input capacity of the stalled sink's stage.
pub const STALLED_CAPACITY: usize = 256;
/// Buffer of the stalled sink's egress.
pub const EGRESS_BUFFER: usize = 64;
/// Name of the broadcast stage in the report.
const FANOUT: &str = "fanout";

/// The counts of the stalled branch's port and what its sink delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StalledCounts {
    /// Elements routed to the port.
    pub pushed: u64,
    /// Elements sent on the port.
    pub emitted: u64,
    /// Elements dropped for the branch.
    pub dropped: u64,
    /// Times the branch was detached.
    pub detached: u64,
    /// Elements the stalled sink handed out through its egress.
    pub delivered: u64,
}

impl StalledCounts {
    /// Checks the stalled branch's counts for a run of `n` elements: every element
    /// is delivered or dropped (the drop count is exactly what it missed), the sink
    /// got no more than it can hold while stalled, and it was detached when the
    /// stall exceeded the lag budget.
    ///
    /// # Errors
    ///
    /// What does not add up, with the counts.
    pub fn check(&self, n: u64) -> Result<(), String> {
        let held = (STALLED_CAPACITY + EGRESS_BUFFER) as u64;
        let must_detach = n > held + MAX_LAG as u64;
        if self.pushed != n
            || self.emitted != self.delivered
            || self.delivered + self.dropped != n
            || self.delivered > held.min(n)
            || (must_detach && self.detached == 0)
        {
            return Err(format!(
                "stalled branch of {n} elements: {self:?} (want pushed = n, emitted = \
                 delivered <= {held}, delivered + dropped = n{})",
                if must_detach { ", detached >= 1" } else { "" }
            ));
        }
        Ok(())
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn block_on<T>(rx: OutputReceiver<T>) -> Result<T, String> {
    futures::executor::block_on(rx).ok_or_else(|| "a sink gave no sum".to_owned())
}

/// The broadcast of `0..n` with [`LagPolicy::Detach`] on branch [`STALLED`], and
/// the healthy branches' summing sinks.
fn build(n: u64, placement: JunctionPlacement) -> (Graph, [OutputReceiver<u64>; 2], Outlet<u64>) {
    let mut g = Graph::new();
    if placement == JunctionPlacement::Spread {
        g.placement(Placement::Spread);
    }
    let source = g.source(Pipeline::from_iter(0..n));
    let policy = LagPolicy::Detach {
        max_lag: MAX_LAG,
        max_wait: Some(MAX_WAIT),
    };
    let [a, b, c]: [Outlet<u64>; DETACH_FAN] =
        g.broadcast(source, Broadcast::new(DETACH_FAN).lag(STALLED, policy));
    g.name_stage(a, FANOUT);
    let sums = [a, b].map(|branch| g.sink(branch, |f| f.fold(0_u64, sum_step)));
    (g, sums, c)
}

/// Checks the healthy sums and conservation, and returns the stalled branch's
/// port counts (`delivered` left 0).
fn check(done: &weir::Completion<()>, n: u64, sums: &[u64]) -> Result<StalledCounts, String> {
    done.report.check_conservation().map_err(err)?;
    let want = expected_sum(n);
    if sums.iter().any(|&s| s != want) {
        return Err(format!("healthy sums {sums:?} != {want}"));
    }
    let fanout = done
        .report
        .stage(FANOUT)
        .ok_or_else(|| format!("no stage `{FANOUT}` in the report"))?;
    let port = fanout
        .outputs
        .get(STALLED)
        .ok_or_else(|| format!("`{FANOUT}` has no port {STALLED}"))?;
    Ok(StalledCounts {
        pushed: port.pushed,
        emitted: port.emitted,
        dropped: port.dropped,
        detached: port.detached,
        delivered: 0,
    })
}

/// `detach3` with branch [`STALLED`] stalled: returns the two healthy sinks' sums
/// once the graph has completed, after checking the stalled branch's counts
/// ([`StalledCounts::check`]).
///
/// # Errors
///
/// Fails when the graph cannot be built or does not complete, or a check fails.
pub fn detach3_weir(n: u64, placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    detach3_stalled_counts(n, placement).map(|(sums, _)| sums)
}

/// [`detach3_weir`], also returning the stalled branch's counts.
///
/// # Errors
///
/// As [`detach3_weir`].
pub fn detach3_stalled_counts(
    n: u64,
    placement: JunctionPlacement,
) -> Result<(Vec<u64>, StalledCounts), String> {
    let rt = Runtime::builder()
        .arbiters(arbiters())
        .build()
        .map_err(err)?;
    let (mut g, [a, b], stalled) = build(n, placement);
    let mut egress = None;
    g.sink(stalled, |f| {
        let (runnable, e) = f.egress(EGRESS_BUFFER);
        egress = Some(e);
        runnable.name("stalled").capacity(STALLED_CAPACITY)
    });
    let mut egress = egress.ok_or("the egress sink was not built")?;
    let running = g.run(&rt).map_err(err)?;
    // The healthy sinks finish while the egress is unread: they never waited for it.
    let sums = vec![block_on(a)?, block_on(b)?];
    // Release the stall: read the egress to its end so the graph completes.
    let mut delivered = 0_u64;
    while futures::executor::block_on(egress.recv()).is_some() {
        delivered += 1;
    }
    let done = running.wait().map_err(err)?;
    let mut counts = check(&done, n, &sums)?;
    counts.delivered = delivered;
    counts.check(n)?;
    Ok((sums, counts))
}

/// `detach3` with nothing stalled: branch [`STALLED`] (same policy) is a third
/// summing sink. Returns the sums of branches 0 and 1.
///
/// # Errors
///
/// Fails when the graph cannot be built or does not complete, or a sum is wrong.
pub fn detach3_unstalled_weir(n: u64, placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    let rt = Runtime::builder()
        .arbiters(arbiters())
        .build()
        .map_err(err)?;
    let (mut g, [a, b], third) = build(n, placement);
    let c = g.sink(third, |f| f.fold(0_u64, sum_step));
    let running = g.run(&rt).map_err(err)?;
    let sums = vec![block_on(a)?, block_on(b)?];
    let third = block_on(c)?;
    let done = running.wait().map_err(err)?;
    let counts = check(&done, n, &sums)?;
    // Unstalled, the third branch may still lag behind for a moment and be
    // detached; whatever it missed is counted.
    if counts.pushed != n || counts.emitted + counts.dropped != n {
        return Err(format!("third branch of {n} elements: {counts:?}"));
    }
    if counts.dropped == 0 && third != expected_sum(n) {
        return Err(format!("third sum {third} != {}", expected_sum(n)));
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_branch_drops_exactly_what_it_missed() {
        for placement in [JunctionPlacement::Together, JunctionPlacement::Spread] {
            for n in [0_u64, 100, 50_000] {
                let (sums, counts) = detach3_stalled_counts(n, placement).unwrap();
                assert_eq!(sums, vec![expected_sum(n); 2]);
                assert_eq!(counts.delivered + counts.dropped, n, "{counts:?}");
                if n == 50_000 {
                    assert!(counts.detached >= 1, "{counts:?}");
                }
                assert_eq!(
                    detach3_unstalled_weir(n, placement),
                    Ok(vec![expected_sum(n); 2])
                );
            }
        }
    }

    #[test]
    fn the_counts_check_catches_what_does_not_add_up() {
        let ok = StalledCounts {
            pushed: 10_000,
            emitted: 300,
            dropped: 9_700,
            detached: 1,
            delivered: 300,
        };
        assert_eq!(ok.check(10_000), Ok(()));
        let bad = [
            StalledCounts {
                dropped: 9_699,
                ..ok
            },
            StalledCounts {
                pushed: 9_999,
                ..ok
            },
            StalledCounts {
                delivered: 299,
                ..ok
            },
            StalledCounts { detached: 0, ..ok },
            StalledCounts {
                emitted: 1_000,
                delivered: 1_000,
                dropped: 9_000,
                ..ok
            },
        ];
        for counts in bad {
            assert!(counts.check(10_000).is_err(), "{counts:?}");
        }
    }
}
