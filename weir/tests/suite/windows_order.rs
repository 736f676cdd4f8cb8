//! Tumbling and sliding windows, exactly: the window state's results in their
//! exact order (not sorted), its late and overflowing elements and its open
//! count after every step, against a reference that keeps every window in one
//! list with its timer. This pins the firing order (by the time the watermark
//! passed a window, then by window creation) and the state bound's eviction
//! order, which the per-window-end timer index must keep. Also the join's
//! one-lookup path (no row bound): a panic in `combine` leaves its state as it
//! was, so a retry joins exactly as if nothing had failed.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use weir::prelude::*;
use weir::window::{Admit, KeyedWindows};

/// (key, timestamp ms, value)
type Ev = (u8, u64, u64);

/// One firing: (key, start, end, value, firing).
type Fired = (u8, u64, u64, u64, u32);

struct RefWin {
    key: u8,
    start: u64,
    end: u64,
    sum: u64,
    id: u64,
    fired: u32,
    /// When it next needs attention: its end until it fired there, then its close.
    timer: u64,
}

/// Every open window in one list, scanned linearly. Windows are created in the
/// order the state assigns them (latest start first); the window handled next is
/// the one with the smallest (timer, id).
struct Reference {
    size: u64,
    slide: u64,
    lateness: u64,
    max: usize,
    overflow: WindowOverflow,
    wm: Option<u64>,
    open: Vec<RefWin>,
    next_id: u64,
    out: Vec<Fired>,
    evicted: u64,
}

impl Reference {
    fn due(&self, end: u64) -> bool {
        self.wm.is_some_and(|wm| wm >= end)
    }

    fn closed(&self, end: u64) -> bool {
        self.wm.is_some_and(|wm| wm >= end + self.lateness)
    }

    fn fire(&mut self, i: usize) {
        let w = &mut self.open[i];
        self.out.push((w.key, w.start, w.end, w.sum, w.fired));
        w.fired += 1;
    }

    /// The window handled next, if its timer is at most `limit`.
    fn earliest(&self, limit: u64) -> Option<usize> {
        (0..self.open.len())
            .filter(|&i| self.open[i].timer <= limit)
            .min_by_key(|&i| (self.open[i].timer, self.open[i].id))
    }

    fn insert(&mut self, (key, ts, v): Ev) -> Result<Admit, ()> {
        let mut targets = Vec::new();
        let mut start = ts - ts % self.slide;
        loop {
            if start + self.size <= ts {
                break;
            }
            targets.push((start, start + self.size));
            if start < self.slide {
                break;
            }
            start -= self.slide;
        }
        targets.retain(|&(_, end)| !self.closed(end));
        if targets.is_empty() {
            return Ok(Admit::Late);
        }
        loop {
            let needed = targets
                .iter()
                .filter(|&&(s, _)| !self.open.iter().any(|w| w.key == key && w.start == s))
                .count();
            if self.open.len() + needed <= self.max {
                break;
            }
            match self.overflow {
                WindowOverflow::EmitEarliest => {
                    let Some(i) = self.earliest(u64::MAX) else {
                        break;
                    };
                    if self.open[i].timer == self.open[i].end {
                        self.fire(i);
                    }
                    self.open.remove(i);
                    self.evicted += 1;
                }
                WindowOverflow::DropElement => return Ok(Admit::Overflow),
                WindowOverflow::Fail => return Err(()),
            }
        }
        for (start, end) in targets {
            let i = match self
                .open
                .iter()
                .position(|w| w.key == key && w.start == start)
            {
                Some(i) => i,
                None => {
                    self.next_id += 1;
                    let timer = if self.due(end) {
                        end + self.lateness
                    } else {
                        end
                    };
                    self.open.push(RefWin {
                        key,
                        start,
                        end,
                        sum: 0,
                        id: self.next_id,
                        fired: 0,
                        timer,
                    });
                    self.open.len() - 1
                }
            };
            self.open[i].sum += v;
            if self.due(end) {
                self.fire(i);
            }
        }
        Ok(Admit::Added)
    }

    fn advance(&mut self, wm: u64) {
        if self.wm.is_some_and(|old| old >= wm) {
            return;
        }
        self.wm = Some(wm);
        while let Some(i) = self.earliest(wm) {
            if self.open[i].timer == self.open[i].end {
                self.fire(i);
            }
            let end = self.open[i].end;
            if self.closed(end) {
                self.open.remove(i);
            } else {
                self.open[i].timer = end + self.lateness;
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// An element: key, how far the clock moves on, how far behind it the
    /// element is, its value.
    Elem(u8, u64, u64, u64),
    /// The watermark moves this far beyond its current value.
    Idle(u64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            12 => (0..6_u8, 0..8_u64, 0..40_u64, 0..100_u64)
                .prop_map(|(k, adv, back, v)| Step::Elem(k, adv, back, v)),
            1 => (0..60_u64).prop_map(Step::Idle),
        ],
        0..250,
    )
}

fn overflow() -> impl Strategy<Value = WindowOverflow> {
    prop_oneof![
        Just(WindowOverflow::EmitEarliest),
        Just(WindowOverflow::DropElement),
        Just(WindowOverflow::Fail),
    ]
}

fn drain(real: &mut KeyedWindows<Ev, u8, u64, u64>, out: &mut Vec<Fired>) {
    while let Some(r) = real.pop_ready() {
        out.push((r.key, r.window.start, r.window.end, r.value, r.firing));
    }
}

/// Plays `steps` on the window state and on the reference; compares admissions
/// and open counts at every step and the results in order.
fn play(
    (size, slide): (u64, u64),
    bound: u64,
    lateness: u64,
    (max, overflow): (usize, WindowOverflow),
    steps: &[Step],
) {
    let spec = if size == slide {
        Windows::tumbling(Duration::from_millis(size))
    } else {
        Windows::sliding(Duration::from_millis(size), Duration::from_millis(slide))
    }
    .allowed_lateness(Duration::from_millis(lateness))
    .max_windows(max, overflow);
    let metrics = spec.metrics();
    let agg = Aggregate::new(|| 0, |s: &mut u64, e: &Ev| *s += e.2, |s| *s);
    let mut real: KeyedWindows<Ev, u8, u64, u64> = KeyedWindows::new(spec, agg);
    real.validate().unwrap();
    let mut reference = Reference {
        size,
        slide,
        lateness,
        max,
        overflow,
        wm: None,
        open: Vec::new(),
        next_id: 0,
        out: Vec::new(),
        evicted: 0,
    };
    let (mut clock, mut max_ts) = (100_u64, None::<u64>);
    let mut real_out = Vec::new();
    for step in steps {
        match *step {
            Step::Elem(key, adv, back, v) => {
                clock += adv;
                let ts = clock.saturating_sub(back);
                let e = (key, ts, v);
                let admit = real.insert(key, ts, &e).map_err(|_| ());
                assert_eq!(admit, reference.insert(e), "admission of {e:?}");
                if admit.is_err() {
                    // Overflow::Fail: the stage would fail here.
                    break;
                }
                if admit == Ok(Admit::Added) {
                    let m = max_ts.map_or(ts, |m: u64| m.max(ts));
                    max_ts = Some(m);
                    real.advance(m.saturating_sub(bound));
                    reference.advance(m.saturating_sub(bound));
                }
            }
            Step::Idle(by) => {
                let wm = reference.wm.unwrap_or(0) + by;
                real.advance(wm);
                reference.advance(wm);
            }
        }
        drain(&mut real, &mut real_out);
        assert_eq!(real.open_windows(), reference.open.len());
        assert!(real.open_windows() <= max, "the bound holds");
        assert_eq!(
            real.next_timer(),
            reference
                .earliest(u64::MAX)
                .map(|i| reference.open[i].timer)
        );
    }
    real.advance(u64::MAX);
    reference.advance(u64::MAX);
    drain(&mut real, &mut real_out);
    assert_eq!(real.open_windows(), 0);
    assert_eq!(metrics.evicted(), reference.evicted);
    assert_eq!(
        real_out, reference.out,
        "the same results in the same order"
    );
}

fn shape() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        (1..40_u64).prop_map(|s| (s, s)),
        (1..8_u64, 1..5_u64).prop_map(|(k, d)| (d * k, d)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random tumbling and sliding shapes, out-of-orderness, lateness, keys, idle
    /// advances and state bounds (every overflow policy): the same results in the
    /// same order, the same late and overflowing elements, and the same open
    /// windows and next timer after every step.
    #[test]
    fn aligned_windows_fire_in_the_reference_order(
        shape in shape(),
        bound in 0..30_u64,
        lateness in prop_oneof![Just(0_u64), 0..30_u64],
        max in prop_oneof![Just(100_000_usize), 8..40_usize],
        overflow in overflow(),
        steps in steps(),
    ) {
        play(shape, bound, lateness, (max, overflow), &steps);
    }
}

/// Many keys sharing each window end (the benchmark's shape, small): every
/// window fires once, at its end, in creation order within an end.
#[test]
fn many_keys_per_window_end_fire_in_creation_order() {
    let agg = Aggregate::new(|| 0, |s: &mut u64, x: &u64| *s += *x, |s| *s);
    let mut w: KeyedWindows<u64, u64, u64, u64> =
        KeyedWindows::new(Windows::tumbling(Duration::from_millis(10)), agg);
    let mut fired = Vec::new();
    for x in 0..10_000_u64 {
        let ts = x / 100;
        // Keys in a different order in each window: creation order differs.
        let key = (x * 7 + ts) % 500;
        assert_eq!(w.insert(key, ts, &x).unwrap(), Admit::Added);
        w.advance(ts);
        while let Some(r) = w.pop_ready() {
            fired.push((r.window.start, r.key, r.value));
        }
    }
    w.advance(u64::MAX);
    while let Some(r) = w.pop_ready() {
        fired.push((r.window.start, r.key, r.value));
    }
    assert_eq!(
        fired.iter().map(|f| f.2).sum::<u64>(),
        (0..10_000_u64).sum::<u64>()
    );
    let mut at = 0;
    for start in (0..100_u64).step_by(10) {
        // Creation order: the order keys first appear in the window.
        let mut expected = Vec::new();
        for x in start * 100..(start + 10) * 100 {
            let key = (x * 7 + x / 100) % 500;
            if !expected.contains(&key) {
                expected.push(key);
            }
        }
        let window = &fired[at..at + expected.len()];
        at += expected.len();
        let keys: Vec<u64> = window.iter().map(|f| f.1).collect();
        assert!(window.iter().all(|f| f.0 == start));
        assert_eq!(keys, expected, "window {start}");
    }
    assert_eq!(at, fired.len());
}

/// The join without a row bound (probe and insert in one lookup): `combine`
/// panics once on the right row 5 after matching nothing yet; the retried element
/// joins exactly as if it had not failed, no row is lost or marked matched twice.
#[test]
fn a_retried_join_element_changes_nothing_before_it_succeeds() {
    let tripped = Arc::new(AtomicBool::new(false));
    let trip = Arc::clone(&tripped);
    let policy = SupervisionPolicy::default()
        .max_attempts(3)
        .action(ErrorClass::Panic, Action::Retry);
    // Lefts (k, t) and rights (k, t): keys 0..8, every right matches the left
    // of its key (same time), right 5 also meets left 13 of another key: no.
    let tagged: Vec<Side<(u32, i64), (u32, i64)>> = (0..8)
        .map(|k| Side::Left((k, i64::from(k))))
        .chain((0..8).map(|k| Side::Right((k, i64::from(k)))))
        .collect();
    let dead = MemoryDlq::new(4);
    let dlq = dead.clone();
    let done = common::paused(move |rt| async move {
        IntervalJoin::inner(
            |l: &(u32, i64)| l.0,
            |r: &(u32, i64)| r.0,
            move |l: &(u32, i64), r: &(u32, i64)| {
                if l.0 == 5 && !trip.swap(true, Ordering::SeqCst) {
                    panic!("combine fails on {l:?}");
                }
                (l.0, Some(r.0))
            },
        )
        .event_time(|l| l.1, |r| r.1, -20, 20)
        .supervise(Supervision::new(policy).dead_letters(dlq))
        .name("join")
        .on(Pipeline::from_iter(tagged))
        .collect()
        .run(&rt)
        .unwrap()
        .await
        .unwrap()
    });
    done.report.check_conservation().unwrap();
    assert!(tripped.load(Ordering::SeqCst), "the panic happened");
    assert!(dead.drain().is_empty(), "the retry succeeded");
    let stage = done.report.stage("join").unwrap();
    assert_eq!(
        (stage.restarts, stage.state_lost),
        (0, 0),
        "retried, not restarted"
    );
    let mut joined: Vec<(u32, Option<u32>)> = done
        .output
        .iter()
        .filter_map(|x| match x {
            JoinOut::Joined(j) => Some(*j),
            JoinOut::Unmatched(_) => None,
        })
        .collect();
    joined.sort_unstable();
    let expected: Vec<(u32, Option<u32>)> = (0..8).map(|k| (k, Some(k))).collect();
    assert_eq!(
        joined, expected,
        "every pair once, the retried one included"
    );
    assert_eq!(done.output.len(), 8, "no row left unmatched");
}
