//! Event-time windows: the window state against a naive reference (proptest),
//! the flow and junction versions in pipelines, lateness, state bounds, idle
//! input under paused time, and restarts that lose state.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use weir::prelude::*;
use weir::window::{Admit, KeyedWindows};

use common::{collect, paused, rt1, take};

/// (key, timestamp ms, value)
type Ev = (u8, u64, u64);

#[derive(Debug, Clone, Copy)]
enum Shape {
    Tumbling(u64),
    Sliding(u64, u64),
    Session(u64),
}

fn windows_of(shape: Shape) -> Windows {
    match shape {
        Shape::Tumbling(s) => Windows::tumbling(Duration::from_millis(s)),
        Shape::Sliding(s, d) => {
            Windows::sliding(Duration::from_millis(s), Duration::from_millis(d))
        }
        Shape::Session(g) => Windows::session(Duration::from_millis(g)),
    }
}

fn sum() -> Aggregate<Ev, u64, u64> {
    Aggregate::new(|| 0, |s: &mut u64, e: &Ev| *s += e.2, |s| *s).merge(|a, b| *a += b)
}

/// One firing: (key, start, end, value, firing).
type Fired = (u8, u64, u64, u64, u32);

struct RefWin {
    key: u8,
    start: u64,
    end: u64,
    vals: Vec<u64>,
    fired: u32,
    /// Waiting for the watermark to reach its end.
    pending: bool,
}

/// The naive reference: every window in one list, scanned linearly; values kept
/// as lists and summed when a window fires.
struct Reference {
    shape: Shape,
    lateness: u64,
    wm: Option<u64>,
    open: Vec<RefWin>,
    out: Vec<Fired>,
}

impl Reference {
    fn new(shape: Shape, lateness: u64) -> Self {
        Reference {
            shape,
            lateness,
            wm: None,
            open: Vec::new(),
            out: Vec::new(),
        }
    }

    fn due(&self, end: u64) -> bool {
        self.wm.is_some_and(|wm| wm >= end)
    }

    fn closed(&self, end: u64) -> bool {
        self.wm.is_some_and(|wm| wm >= end + self.lateness)
    }

    fn fire(out: &mut Vec<Fired>, w: &mut RefWin) {
        out.push((w.key, w.start, w.end, w.vals.iter().sum(), w.fired));
        w.fired += 1;
    }

    /// Returns false if the element is late.
    fn insert(&mut self, (key, ts, v): Ev) -> bool {
        let ranges: Vec<(u64, u64)> = match self.shape {
            Shape::Tumbling(s) => vec![(ts / s * s, ts / s * s + s)],
            Shape::Sliding(s, d) => (0..=ts)
                .step_by(d as usize)
                .filter(|&st| st <= ts && ts < st + s)
                .map(|st| (st, st + s))
                .collect(),
            Shape::Session(g) => vec![(ts, ts + g)],
        };
        let targets: Vec<_> = ranges.into_iter().filter(|r| !self.closed(r.1)).collect();
        if targets.is_empty() {
            return false;
        }
        if let Shape::Session(_) = self.shape {
            let (mut start, mut end) = targets[0];
            let mut vals = vec![v];
            let mut fired = 0;
            let mut keep = Vec::new();
            for w in self.open.drain(..) {
                if w.key == key && w.start < end.max(targets[0].1) && targets[0].0 < w.end {
                    start = start.min(w.start);
                    end = end.max(w.end);
                    vals.extend(w.vals);
                    fired = fired.max(w.fired);
                } else {
                    keep.push(w);
                }
            }
            self.open = keep;
            let due = self.due(end);
            let mut w = RefWin {
                key,
                start,
                end,
                vals,
                fired,
                pending: !due,
            };
            if due {
                Self::fire(&mut self.out, &mut w);
            }
            self.open.push(w);
            return true;
        }
        for (start, end) in targets {
            let due = self.due(end);
            let i = match self
                .open
                .iter()
                .position(|w| w.key == key && w.start == start)
            {
                Some(i) => i,
                None => {
                    self.open.push(RefWin {
                        key,
                        start,
                        end,
                        vals: Vec::new(),
                        fired: 0,
                        pending: !due,
                    });
                    self.open.len() - 1
                }
            };
            self.open[i].vals.push(v);
            if due {
                Self::fire(&mut self.out, &mut self.open[i]);
            }
        }
        true
    }

    fn advance(&mut self, wm: u64) {
        if self.wm.is_some_and(|old| old >= wm) {
            return;
        }
        self.wm = Some(wm);
        for w in &mut self.open {
            if w.pending && wm >= w.end {
                w.pending = false;
                Self::fire(&mut self.out, w);
            }
        }
        let lateness = self.lateness;
        self.open.retain(|w| wm < w.end + lateness);
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// An element: key, how far the clock moves on, how far behind it the element is.
    Elem(u8, u64, u64, u64),
    /// The input idles: the watermark moves this far beyond its current value.
    Idle(u64),
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (1..40_u64).prop_map(Shape::Tumbling),
        (1..10_u64, 1..5_u64).prop_map(|(k, d)| Shape::Sliding(d * k, d)),
        (1..30_u64).prop_map(Shape::Session),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            12 => (0..4_u8, 0..8_u64, 0..40_u64, 0..100_u64)
                .prop_map(|(k, adv, back, v)| Step::Elem(k, adv, back, v)),
            1 => (0..60_u64).prop_map(Step::Idle),
        ],
        0..200,
    )
}

/// Plays `steps` on the window state and on the reference with watermark rule
/// `max_ts - bound` (and idle advances); returns both outputs and lateness lists.
fn play(shape: Shape, bound: u64, lateness: u64, steps: &[Step]) {
    let spec = windows_of(shape).allowed_lateness(Duration::from_millis(lateness));
    let mut real: KeyedWindows<Ev, u8, u64, u64> = KeyedWindows::new(spec, sum());
    real.validate().unwrap();
    let mut reference = Reference::new(shape, lateness);
    let (mut clock, mut max_ts) = (100_u64, None::<u64>);
    let mut real_out = Vec::new();
    for step in steps {
        match *step {
            Step::Elem(key, adv, back, v) => {
                clock += adv;
                let ts = clock.saturating_sub(back);
                let on_time = reference.wm.is_none_or(|wm| ts >= wm);
                let e = (key, ts, v);
                let admit = real.insert(key, ts, &e).unwrap();
                let expect = reference.insert(e);
                assert_eq!(admit == Admit::Added, expect, "lateness of {e:?}");
                if on_time {
                    assert_eq!(
                        admit,
                        Admit::Added,
                        "an element at or after the watermark is never late"
                    );
                }
                if expect {
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
        while let Some(r) = real.pop_ready() {
            real_out.push((r.key, r.window.start, r.window.end, r.value, r.firing));
        }
    }
    real.advance(u64::MAX);
    reference.advance(u64::MAX);
    while let Some(r) = real.pop_ready() {
        real_out.push((r.key, r.window.start, r.window.end, r.value, r.firing));
    }
    assert_eq!(real.open_windows(), 0);
    let mut expected = reference.out;
    real_out.sort_unstable();
    expected.sort_unstable();
    assert_eq!(real_out, expected);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random shapes, out-of-orderness, lateness, keys and idle advances: the same
    /// firings (value and firing number) as the reference, and late elements
    /// exactly those the reference finds beyond the allowed lateness.
    #[test]
    fn window_state_matches_the_reference(
        shape in shape(),
        bound in 0..30_u64,
        lateness in prop_oneof![Just(0_u64), 0..30_u64],
        steps in steps(),
    ) {
        play(shape, bound, lateness, &steps);
    }
}

fn events(steps: &[Step]) -> Vec<Ev> {
    let mut clock = 100;
    steps
        .iter()
        .filter_map(|s| match *s {
            Step::Elem(k, adv, back, v) => {
                clock += adv;
                Some((k, clock.saturating_sub(back), v))
            }
            Step::Idle(_) => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The flow version in a pipeline: the same results as the reference; late
    /// elements are dead-lettered, counted, and conservation holds.
    #[test]
    fn flow_version_matches_the_reference(
        shape in shape(),
        bound in 0..30_u64,
        lateness in 0..20_u64,
        steps in steps(),
    ) {
        let input = events(&steps);
        let mut reference = Reference::new(shape, lateness);
        let mut late = Vec::new();
        let mut max_ts = None::<u64>;
        for &e in &input {
            if reference.insert(e) {
                let m = max_ts.map_or(e.1, |m: u64| m.max(e.1));
                max_ts = Some(m);
                reference.advance(m.saturating_sub(bound));
            } else {
                late.push(e);
            }
        }
        reference.advance(u64::MAX);
        let windows = windows_of(shape).allowed_lateness(Duration::from_millis(lateness));
        let metrics = windows.metrics();
        let dlq = MemoryDlq::new(1_000);
        let done = Pipeline::from_iter(input.clone())
            .event_time_windows(
                windows,
                EventTime::new(|e: &Ev| e.1)
                    .out_of_orderness(Duration::from_millis(bound))
                    .late_to(dlq.clone()),
                |e| e.0,
                sum(),
            )
            .name("windows")
            .collect()
            .default_capacity(3)
            .run(&rt1())
            .unwrap()
            .wait()
            .unwrap();
        done.report.check_conservation().unwrap();
        let mut got: Vec<Fired> = done
            .output
            .iter()
            .map(|r| (r.key, r.window.start, r.window.end, r.value, r.firing))
            .collect();
        let mut expected = reference.out;
        got.sort_unstable();
        expected.sort_unstable();
        prop_assert_eq!(got, expected);
        let letters: Vec<Ev> = dlq.drain().into_iter().map(|l| l.element).collect();
        prop_assert_eq!(&letters, &late);
        prop_assert_eq!(metrics.late(), late.len() as u64);
        let stage = done.report.stage("windows").unwrap();
        prop_assert_eq!(stage.filtered, late.len() as u64);
        prop_assert_eq!(stage.completed, (input.len() - late.len()) as u64);
        prop_assert_eq!(metrics.open(), 0);
    }
}

/// The junction version: late elements on their own outlet, results on the other.
#[test]
fn junction_routes_late_elements_to_the_side_output() {
    let input: Vec<Ev> = vec![
        (1, 5, 1),
        (2, 8, 1),
        (1, 21, 1),
        (1, 3, 1),  // window [0,10) closed at watermark 16 (lateness 5): late
        (2, 14, 1), // window [10,20) still open
        (1, 40, 1),
        (2, 19, 1), // [10,20) fired at 35, closed at 35 >= 20 + 5: late
    ];
    let windows =
        Windows::tumbling(Duration::from_millis(10)).allowed_lateness(Duration::from_millis(5));
    let metrics = windows.metrics();
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(input));
    let out = g.event_time_windows(
        src,
        windows,
        EventTime::new(|e: &Ev| e.1).out_of_orderness(Duration::from_millis(5)),
        |e| e.0,
        sum(),
    );
    let results = collect(&mut g, out.results);
    let late = collect(&mut g, out.late);
    let done = g.run(&rt1()).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    let results: Vec<Fired> = take(results)
        .into_iter()
        .map(|r| (r.key, r.window.start, r.window.end, r.value, r.firing))
        .collect();
    assert_eq!(
        results,
        [
            (1, 0, 10, 1, 0),
            (2, 0, 10, 1, 0),
            (2, 10, 20, 1, 0),
            (1, 20, 30, 1, 0),
            (1, 40, 50, 1, 0)
        ]
    );
    assert_eq!(take(late), [(1, 3, 1), (2, 19, 1)]);
    assert_eq!(metrics.late(), 2);
    let junction = done.report.stage("event_time_windows#1").unwrap();
    assert_eq!(junction.input, 7);
    assert_eq!(junction.completed, 7);
}

/// A late element within the allowed lateness fires its window again.
#[test]
fn lateness_fires_updates() {
    let input: Vec<Ev> = vec![(0, 1, 1), (0, 12, 1), (0, 2, 5), (0, 30, 1), (0, 3, 7)];
    let done = Pipeline::from_iter(input)
        .event_time_windows(
            Windows::tumbling(Duration::from_millis(10))
                .allowed_lateness(Duration::from_millis(10)),
            EventTime::new(|e: &Ev| e.1),
            |e| e.0,
            sum(),
        )
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    let got: Vec<(u64, u64, u32)> = done
        .output
        .iter()
        .map(|r| (r.window.start, r.value, r.firing))
        .collect();
    // [0,10) fires at 12 with 1, again with 6 when 2 comes; closed at 30 so 3 is late.
    assert_eq!(got, [(0, 1, 0), (0, 6, 1), (10, 1, 0), (30, 1, 0)]);
    assert_eq!(
        done.report.stage("event_time_windows#1").unwrap().filtered,
        1
    );
}

fn keyed(n: u64) -> Vec<Ev> {
    (0..n).map(|i| ((i % 7) as u8, i, 1)).collect()
}

#[test]
fn state_bound_emit_earliest_is_counted_and_holds() {
    // Every element has its own key: unbounded key cardinality.
    let windows =
        Windows::tumbling(Duration::from_secs(3600)).max_windows(64, WindowOverflow::EmitEarliest);
    let metrics = windows.metrics();
    let done = Pipeline::from_iter(0..20_000_u64)
        .event_time_windows(
            windows,
            EventTime::new(|x: &u64| *x),
            |x| *x,
            Aggregate::count(),
        )
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.output.len(), 20_000, "every key's window fired once");
    assert!(done.output.iter().all(|r| r.value == 1));
    assert_eq!(
        metrics.peak_open(),
        64,
        "the state never held more than the bound"
    );
    assert_eq!(metrics.evicted(), 20_000 - 64);
    assert_eq!(metrics.open(), 0);
}

#[test]
fn state_bound_drop_element_sends_to_the_side_output() {
    let dlq = MemoryDlq::new(100);
    let windows =
        Windows::tumbling(Duration::from_millis(100)).max_windows(3, WindowOverflow::DropElement);
    let metrics = windows.metrics();
    let done = Pipeline::from_iter(keyed(14))
        .event_time_windows(
            windows,
            EventTime::new(|e: &Ev| e.1).late_to(dlq.clone()),
            |e| e.0,
            sum(),
        )
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    let keys: Vec<u8> = done.output.iter().map(|r| r.key).collect();
    assert_eq!(keys, [0, 1, 2]);
    assert_eq!(done.output.iter().map(|r| r.value).sum::<u64>(), 6);
    assert_eq!(metrics.overflowed(), 8);
    assert_eq!(dlq.drain().len(), 8);
}

#[test]
fn state_bound_fail_names_the_bound() {
    let err = Pipeline::from_iter(keyed(14))
        .event_time_windows(
            Windows::tumbling(Duration::from_millis(100)).max_windows(3, Overflow::Fail),
            EventTime::new(|e: &Ev| e.1),
            |e| e.0,
            sum(),
        )
        .name("bounded")
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(err.to_string().contains("max_windows 3"), "{err}");
    err.report().unwrap().check_conservation().unwrap();
}

/// The graph window under `Overflow::Fail` fails the same way as the linear one: a
/// `ResourceExhausted` error naming the bound, not a panic.
#[test]
fn graph_state_bound_fail_is_resource_exhausted() {
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(keyed(14)));
    let out = g.event_time_windows(
        src,
        Windows::tumbling(Duration::from_millis(100)).max_windows(3, Overflow::Fail),
        EventTime::new(|e: &Ev| e.1),
        |e| e.0,
        sum(),
    );
    let _results = collect(&mut g, out.results);
    let _late = collect(&mut g, out.late);
    let err = g.run(&rt1()).unwrap().wait().unwrap_err();
    assert!(err.to_string().contains("max_windows 3"), "{err}");
    match &err {
        PipelineError::StageFailed { stage, failure, .. } => {
            assert_eq!(stage, "event_time_windows#1");
            assert_eq!(failure.class(), ErrorClass::ResourceExhausted, "{failure}");
        }
        other => panic!("expected StageFailed, got {other:?}"),
    }
    err.report().unwrap().check_conservation().unwrap();
}

#[test]
fn invalid_windows_are_build_errors_naming_the_stage() {
    let err = Pipeline::from_iter(keyed(3))
        .event_time_windows(
            Windows::session(Duration::from_millis(5)),
            EventTime::new(|e: &Ev| e.1),
            |e| e.0,
            Aggregate::new(|| 0, |_: &mut u64, _: &Ev| {}, |s| *s),
        )
        .name("sessions")
        .collect()
        .run(&rt1())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("sessions") && text.contains("merge"),
        "{text}"
    );
    let err = Pipeline::from_iter(keyed(3))
        .event_time_windows(
            Windows::sliding(Duration::from_millis(5), Duration::from_millis(10)),
            EventTime::new(|e: &Ev| e.1),
            |e| e.0,
            sum(),
        )
        .collect()
        .run(&rt1())
        .unwrap_err();
    assert!(err.to_string().contains("slide"), "{err}");
}

/// An idle input lets the watermark advance with processing time after the idle
/// timeout: the open window fires without more input or the end of the stream.
#[test]
fn idle_input_advances_the_watermark_after_the_timeout() {
    paused(|rt| async move {
        let (tx, source) = Pipeline::ingress::<Ev>(8);
        let (runnable, mut egress) = source
            .event_time_windows(
                Windows::tumbling(Duration::from_millis(1_000)),
                EventTime::new(|e: &Ev| e.1)
                    .out_of_orderness(Duration::from_millis(100))
                    .idle_timeout(Duration::from_secs(5)),
                |e| e.0,
                sum(),
            )
            .egress(8);
        let running = runnable.run(&rt).unwrap();
        tx.send((0, 100, 1)).await.unwrap();
        tx.send((0, 900, 2)).await.unwrap();
        common::settle().await;
        tokio::time::advance(Duration::from_secs(4)).await;
        common::settle().await;
        assert!(
            egress.try_recv().is_none(),
            "not idle yet: the window waits"
        );
        // Idle: watermark = 900 + elapsed - 100 reaches 1000 once elapsed >= 5 s.
        tokio::time::advance(Duration::from_secs(2)).await;
        common::settle().await;
        let r = egress.try_recv().expect("fired by the idle watermark");
        assert_eq!((r.window.start, r.value), (0, 3));
        drop(tx);
        let done = running.await.unwrap();
        done.report.check_conservation().unwrap();
    });
}

/// A window stage that crashes is restarted by its supervision from a fresh
/// instance: the open windows it had are lost, and the loss is in the report.
#[test]
fn a_crashed_window_stage_restarts_and_reports_lost_state() {
    std::panic::set_hook(Box::new(|_| {}));
    let tripped = Arc::new(AtomicBool::new(false));
    let t = Arc::clone(&tripped);
    let policy = SupervisionPolicy::default().restart_backoff(BackoffConfig::new(
        Duration::from_millis(1),
        Duration::from_millis(1),
    ));
    let done = Pipeline::from_iter(keyed(70))
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(4)))
        .event_time_windows(
            Windows::tumbling(Duration::from_millis(100)),
            EventTime::new(move |e: &Ev| {
                if e.1 == 50 && !t.swap(true, Ordering::SeqCst) {
                    panic!("bad timestamp");
                }
                e.1
            }),
            |e| e.0,
            sum(),
        )
        .name("windows")
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    let _ = std::panic::take_hook();
    done.report.check_conservation().unwrap();
    let stage = done.report.stage("windows").unwrap();
    assert_eq!(stage.restarts, 1);
    assert_eq!(stage.state_lost, 7, "the 7 keys' open windows were lost");
    // Elements 0..50 were in the lost windows; 50..70 (retried 50 included) count.
    assert_eq!(done.output.iter().map(|r| r.value).sum::<u64>(), 20);
}
