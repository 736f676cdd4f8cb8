//! Sessionization of click events on event time: clicks of each user grouped
//! into sessions that end after 30 minutes without a click, from a stream that
//! arrives up to 2 minutes out of order, with a few very late clicks that go to
//! the side output.
//!
//! ```text
//!  clicks ──► event_time_windows(session 30 min, by user) ─┬─► sessions ──► check
//!                                                           └─► late ──────► check
//! ```
//!
//! The program computes the sessions with a plain sort-and-scan per user and
//! checks that the pipeline found the same ones (user, start, end, clicks), and
//! that the late clicks are exactly the ones injected.
//!
//! Run it with `cargo run -p weir-examples --bin sessionize`.

use std::collections::BTreeMap;
use std::time::Duration;
use weir_examples::outln;

use weir::prelude::*;

/// A click: user, event time (ms), page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Click {
    user: u32,
    at: u64,
    page: u32,
}

const MINUTE: u64 = 60_000;
const GAP: u64 = 30 * MINUTE;
const USERS: u32 = 50;

/// A deterministic click log: each user clicks in bursts, with long pauses.
fn clicks() -> Vec<Click> {
    let mut out = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for user in 0..USERS {
        let mut t = next() % (10 * MINUTE);
        for _ in 0..40 {
            // Mostly a few minutes apart; sometimes an hour: a new session.
            t += if next() % 8 == 0 {
                60 * MINUTE
            } else {
                next() % (5 * MINUTE)
            };
            out.push(Click {
                user,
                at: t,
                page: (next() % 100) as u32,
            });
        }
    }
    out.sort_by_key(|c| c.at);
    // Shuffle within 2 minutes: swap neighbours that are close in time.
    for i in 1..out.len() {
        if out[i].at - out[i - 1].at < 2 * MINUTE && next() % 2 == 0 {
            out.swap(i, i - 1);
        }
    }
    out
}

/// Sessions computed directly: sort each user's clicks, split at gaps.
fn reference(clicks: &[Click]) -> Vec<(u32, u64, u64, u64)> {
    let mut by_user: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for c in clicks {
        by_user.entry(c.user).or_default().push(c.at);
    }
    let mut out = Vec::new();
    for (user, mut times) in by_user {
        times.sort_unstable();
        let (mut start, mut last, mut n) = (times[0], times[0], 0);
        for t in times {
            if t >= last + GAP {
                out.push((user, start, last + GAP, n));
                (start, n) = (t, 0);
            }
            last = t;
            n += 1;
        }
        out.push((user, start, last + GAP, n));
    }
    out.sort_unstable();
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log = clicks();
    // Three clicks arrive a day late: their sessions closed long ago.
    let late: Vec<Click> = (0..3)
        .map(|i| Click {
            user: i,
            at: log[10 * i as usize].at,
            page: 999,
        })
        .collect();
    let mut input = log.clone();
    for (i, c) in late.iter().enumerate() {
        input.insert(input.len() - 10 * (i + 1), c.clone());
    }

    let rt = Runtime::builder().arbiters(1).build()?;
    let windows = Windows::session(Duration::from_millis(GAP)).max_windows(10_000, Overflow::Fail);
    let metrics = windows.metrics();
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(input));
    let out = g.event_time_windows(
        src,
        windows,
        EventTime::new(|c: &Click| c.at).out_of_orderness(Duration::from_millis(2 * MINUTE)),
        |c| c.user,
        Aggregate::count(),
    );
    let sessions = g.sink(out.results, |f| f.collect());
    let late_out = g.sink(out.late, |f| f.collect());
    let done = g.run(&rt)?.wait()?;
    done.report.check_conservation()?;
    let sessions = futures::executor::block_on(sessions).ok_or("no sessions")?;
    let mut late_out = futures::executor::block_on(late_out).ok_or("no late output")?;
    late_out.sort_by_key(|c| c.user);

    let mut got: Vec<(u32, u64, u64, u64)> = sessions
        .iter()
        .map(|r| (r.key, r.window.start, r.window.end, r.value))
        .collect();
    got.sort_unstable();
    let want = reference(&log);
    outln!(
        "{} clicks of {USERS} users -> {} sessions (peak {} open at once)",
        log.len(),
        got.len(),
        metrics.peak_open()
    );
    for (user, start, end, n) in got.iter().take(3) {
        outln!(
            "  user {user}: {n} clicks from minute {} to {}",
            start / MINUTE,
            end / MINUTE
        );
    }
    assert_eq!(got, want, "the sessions match the sort-and-scan reference");
    assert!(sessions.iter().all(|r| r.firing == 0), "no late updates");
    outln!("late clicks on the side output: {}", late_out.len());
    assert_eq!(late_out, late);
    assert_eq!(metrics.late(), 3);
    outln!("all checks passed");
    Ok(())
}
