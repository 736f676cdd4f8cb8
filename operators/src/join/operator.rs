//! [`JoinStage`]: the operator that joins a tagged stream of left and right rows.

use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Context;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_runtime::checkpoint::{Checkpointable, Deferred, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Counting, Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};

use super::rows::{Gone, Rows, SavedKey, saved};
use super::spec::{Config, Counts};
use super::{JoinOut, Side};
use crate::checkpoint::{Mixed, decode_mixed, mixed};
use crate::keyed::OnFull;

/// The version of [`JoinStage`]'s snapshot.
const STATE_VERSION: u32 = 1;

/// The part of a join's snapshot that is not split by key.
#[derive(Serialize, Deserialize)]
struct SavedGlobal {
    /// The largest timestamp seen on each side (the watermarks follow from them).
    max_left: Option<i64>,
    max_right: Option<i64>,
    /// The number of the last row added.
    seq: u64,
    /// The counters of [`JoinCounters`](super::JoinCounters), see [`tallies`].
    tallies: [u64; 8],
}

/// The counters a checkpoint keeps, in the order of [`SavedGlobal::tallies`].
fn tallies(c: &Counts) -> [&std::sync::atomic::AtomicU64; 8] {
    [
        &c.joined,
        &c.unmatched_left,
        &c.unmatched_right,
        &c.late,
        &c.expired,
        &c.evicted,
        &c.rejected,
        &c.peak_rows,
    ]
}

/// The smaller of two largest timestamps, `None` counting as unknown.
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Joins [`Side::Left`] and [`Side::Right`] rows by key (see
/// [`IntervalJoin`](super::IntervalJoin) for when rows match and leave).
/// Created by [`IntervalJoin::on`](super::IntervalJoin::on) and
/// [`JoinExt::interval_join`](super::JoinExt::interval_join).
///
/// Each input is probed against the other side's rows of its key, then kept as a
/// row; it counts as completed once processed. The rows are the stage's state
/// ([`Operator::state_entries`]), bounded by the TTL, the watermarks and the row
/// bound.
///
/// Checkpointable: every key's rows of both sides (value, timestamp, arrival
/// number, age, whether it matched), by the key group of their key; the largest
/// timestamp of each side (so the watermarks) and the counters of
/// [`JoinCounters`](super::JoinCounters). A restore feeds the rows back in
/// arrival order, so they leave (by TTL, row bound or watermark) in the order
/// they would have; a row's TTL goes on from its age at the snapshot (the time
/// the pipeline was down does not count).
pub struct JoinStage<K, L, R, O> {
    config: Config<K, L, R, O>,
    rows: Rows<K, L, R>,
    /// Largest timestamp seen on each side.
    max_left: Option<i64>,
    max_right: Option<i64>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Scratch: the outputs of one step (kept to reuse its allocation).
    out: Vec<JoinOut<O, L, R>>,
    /// Scratch: the positions of the rows an element matched.
    hits: Vec<usize>,
}

impl<K, L, R, O> std::fmt::Debug for JoinStage<K, L, R, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinStage")
            .field("max_left", &self.max_left)
            .field("max_right", &self.max_right)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, L, R, O> JoinStage<K, L, R, O> {
    pub(crate) fn new(config: Config<K, L, R, O>) -> Self {
        let by_arrival = config.ttl.is_some() || config.max_rows.is_some();
        JoinStage {
            config,
            rows: Rows::new(by_arrival),
            max_left: None,
            max_right: None,
            timer: None,
            out: Vec::new(),
            hits: Vec::new(),
        }
    }

    fn watermark(&self, max: Option<i64>) -> i64 {
        let lateness = self.config.time.as_ref().map_or(0, |t| t.lateness);
        max.map_or(i64::MIN, |m| m.saturating_sub(lateness))
    }

    /// Emits what a row leaving the state makes: nothing if it was matched, else
    /// `combine(l, None)` (left-outer) or the side output.
    fn finish(&self, gone: Gone<L, R>, out: &mut Vec<JoinOut<O, L, R>>) {
        let counts = &self.config.counters.0;
        match gone {
            Gone::Left(row) if !row.matched => {
                counts.unmatched_left.fetch_add(1, Relaxed);
                if self.config.outer {
                    out.push(JoinOut::Joined((self.config.combine)(&row.value, None)));
                } else {
                    out.push(JoinOut::Unmatched(Side::Left(row.value)));
                }
            }
            Gone::Right(row) if !row.matched => {
                counts.unmatched_right.fetch_add(1, Relaxed);
                out.push(JoinOut::Unmatched(Side::Right(row.value)));
            }
            Gone::Left(_) | Gone::Right(_) => {}
        }
    }

    /// Removes rows past their TTL.
    fn expire(&mut self, now: Instant, out: &mut Vec<JoinOut<O, L, R>>) {
        let Some(ttl) = self.config.ttl else { return };
        while self.rows.oldest_arrival().is_some_and(|at| at + ttl <= now) {
            let Some(gone) = self.rows.pop_oldest() else {
                break;
            };
            self.config.counters.0.expired.fetch_add(1, Relaxed);
            self.finish(gone, out);
        }
    }

    /// Removes rows that no future on-time element of the other side can match.
    fn pass_watermarks(&mut self, out: &mut Vec<JoinOut<O, L, R>>) {
        if self.config.time.is_none() {
            return;
        }
        let (wl, wr) = (
            self.watermark(self.max_left),
            self.watermark(self.max_right),
        );
        while let Some(gone) = self.rows.pop_due_left(wr) {
            self.finish(gone, out);
        }
        while let Some(gone) = self.rows.pop_due_right(wl) {
            self.finish(gone, out);
        }
    }

    fn publish(&self) {
        let counts = &self.config.counters.0;
        let rows = self.rows.len() as u64;
        counts.rows.store(rows, Relaxed);
        counts.peak_rows.fetch_max(rows, Relaxed);
    }

    /// Arms a timer for the oldest row's TTL, so that it leaves on time without
    /// input.
    fn arm_timer(&mut self, cx: &mut Context<'_>) {
        let Some(ttl) = self.config.ttl else { return };
        let Some(oldest) = self.rows.oldest_arrival() else {
            self.timer = None;
            return;
        };
        let at = tokio::time::Instant::from_std(oldest + ttl);
        let timer = match &mut self.timer {
            Some(t) if t.deadline() == at => t,
            slot => slot.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        if timer.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }
}

impl<K, L, R, O> JoinStage<K, L, R, O>
where
    K: Hash + Eq + Clone,
{
    /// The row bound under [`OnFull::Fail`] if the state is full (then the element
    /// fails; see [`reject`](Self::reject)).
    fn full(&self) -> Option<usize> {
        match self.config.max_rows {
            Some((max, OnFull::Fail)) if self.rows.len() >= max => Some(max),
            _ => None,
        }
    }

    /// Counts a row refused by the full state and says why.
    fn reject(&self, max: usize) -> Failure {
        self.config.counters.0.rejected.fetch_add(1, Relaxed);
        Failure::error(
            ErrorClass::ResourceExhausted,
            format!("interval_join: a row arrived with the state full ({max} rows, OnFull::Fail)"),
        )
    }

    /// Under [`OnFull::EvictLru`], finishes the oldest rows until one more fits.
    fn evict_for_one(&mut self, out: &mut Vec<JoinOut<O, L, R>>) {
        let Some((max, OnFull::EvictLru)) = self.config.max_rows else {
            return;
        };
        while self.rows.len() >= max {
            let Some(gone) = self.rows.pop_oldest() else {
                break;
            };
            self.config.counters.0.evicted.fetch_add(1, Relaxed);
            self.finish(gone, out);
        }
    }

    /// Joins one element; `out` is empty on entry. User code runs first, on
    /// references, and nothing changes before it has run: a panic leaves the state
    /// as it was (so a retry is safe), and its partial outputs in `out` are
    /// dropped with it. A refused element leaves `out` empty.
    fn process(
        &mut self,
        x: Side<L, R>,
        now: Instant,
        out: &mut Vec<JoinOut<O, L, R>>,
    ) -> Result<(), Failure> {
        let full = self.full();
        let mut hits = std::mem::take(&mut self.hits);
        hits.clear();
        let c = &self.config;
        let time = c.time.as_ref();
        match x {
            Side::Left(l) => {
                let key = (c.key_left)(&l);
                let ts = time.map_or(0, |t| (t.left)(&l));
                if time.is_some() && ts < self.watermark(self.max_left) {
                    c.counters.0.late.fetch_add(1, Relaxed);
                    out.push(JoinOut::Unmatched(Side::Left(l)));
                    self.hits = hits;
                    return Ok(());
                }
                let g = self.rows.group(&key);
                if c.max_rows.is_none() {
                    // No row bound: probe and insert with one lookup.
                    let due = time.map(|t| ts.saturating_add(t.upper));
                    let combine = &c.combine;
                    self.rows
                        .probe_insert_left(g, key, l, (ts, now, due), &mut hits, |l, r| {
                            let hit =
                                time.is_none_or(|t| (t.lower..=t.upper).contains(&(r.ts - ts)));
                            if hit {
                                out.push(JoinOut::Joined(combine(l, Some(&r.value))));
                            }
                            hit
                        });
                    self.count_joined(hits.len());
                    self.max_left = Some(self.max_left.map_or(ts, |m| m.max(ts)));
                    self.hits = hits;
                    self.pass_watermarks(out);
                    return Ok(());
                }
                if let Some(rows) = self.rows.map.get_mut(g, &key) {
                    for (i, r) in rows.right.iter().enumerate() {
                        if time.is_none_or(|t| (t.lower..=t.upper).contains(&(r.ts - ts))) {
                            out.push(JoinOut::Joined((c.combine)(&l, Some(&r.value))));
                            hits.push(i);
                        }
                    }
                    if full.is_none() {
                        for &i in &hits {
                            rows.right[i].matched = true;
                        }
                    }
                }
                if let Some(max) = full {
                    out.clear();
                    self.hits = hits;
                    return Err(self.reject(max));
                }
                self.count_joined(hits.len());
                self.evict_for_one(out);
                self.max_left = Some(self.max_left.map_or(ts, |m| m.max(ts)));
                let due = self
                    .config
                    .time
                    .as_ref()
                    .map(|t| ts.saturating_add(t.upper));
                self.rows
                    .insert_left((g, key), l, ts, now, due, !hits.is_empty());
            }
            Side::Right(r) => {
                let key = (c.key_right)(&r);
                let ts = time.map_or(0, |t| (t.right)(&r));
                if time.is_some() && ts < self.watermark(self.max_right) {
                    c.counters.0.late.fetch_add(1, Relaxed);
                    out.push(JoinOut::Unmatched(Side::Right(r)));
                    self.hits = hits;
                    return Ok(());
                }
                let g = self.rows.group(&key);
                if c.max_rows.is_none() {
                    let due = time.map(|t| ts.saturating_sub(t.lower));
                    let combine = &c.combine;
                    self.rows
                        .probe_insert_right(g, key, r, (ts, now, due), &mut hits, |r, l| {
                            let hit =
                                time.is_none_or(|t| (t.lower..=t.upper).contains(&(ts - l.ts)));
                            if hit {
                                out.push(JoinOut::Joined(combine(&l.value, Some(r))));
                            }
                            hit
                        });
                    self.count_joined(hits.len());
                    self.max_right = Some(self.max_right.map_or(ts, |m| m.max(ts)));
                    self.hits = hits;
                    self.pass_watermarks(out);
                    return Ok(());
                }
                if let Some(rows) = self.rows.map.get_mut(g, &key) {
                    for (i, l) in rows.left.iter().enumerate() {
                        if time.is_none_or(|t| (t.lower..=t.upper).contains(&(ts - l.ts))) {
                            out.push(JoinOut::Joined((c.combine)(&l.value, Some(&r))));
                            hits.push(i);
                        }
                    }
                    if full.is_none() {
                        for &i in &hits {
                            rows.left[i].matched = true;
                        }
                    }
                }
                if let Some(max) = full {
                    out.clear();
                    self.hits = hits;
                    return Err(self.reject(max));
                }
                self.count_joined(hits.len());
                self.evict_for_one(out);
                self.max_right = Some(self.max_right.map_or(ts, |m| m.max(ts)));
                let due = self
                    .config
                    .time
                    .as_ref()
                    .map(|t| ts.saturating_sub(t.lower));
                self.rows
                    .insert_right((g, key), r, ts, now, due, !hits.is_empty());
            }
        }
        self.hits = hits;
        self.pass_watermarks(out);
        Ok(())
    }

    fn count_joined(&self, n: usize) {
        if n > 0 {
            self.config.counters.0.joined.fetch_add(n as u64, Relaxed);
        }
    }
}

impl<K, L, R, O> JoinStage<K, L, R, O> {
    /// The part of a snapshot not split by key, now.
    fn global(&self) -> SavedGlobal {
        SavedGlobal {
            max_left: self.max_left,
            max_right: self.max_right,
            seq: self.rows.last_seq(),
            tallies: tallies(&self.config.counters.0).map(|c| c.load(Relaxed)),
        }
    }
}

impl<K, L, R, O> Checkpointable for JoinStage<K, L, R, O>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    L: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    R: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        let now = crate::keyed::state_now();
        let keys = self.rows.saved(now);
        mixed(
            STATE_VERSION,
            &self.global(),
            keys.iter().map(|(k, v)| (*k, v)),
        )
    }

    /// As [`snapshot`](Self::snapshot), encoded by the checkpoint's writer: the
    /// stage pauses only to freeze its key groups of rows (no row is copied),
    /// and copies a group only if it writes to it before the writer is done.
    fn snapshot_deferred(&mut self, _checkpoint: u64) -> Result<Deferred, StateError> {
        let now = crate::keyed::state_now();
        let global = self.global();
        let frozen = self.rows.map.freeze();
        Ok(Deferred::later(move || {
            let keys = saved(frozen.iter().flat_map(|(_, f)| f.map().iter()), now);
            mixed(STATE_VERSION, &global, keys.iter().map(|(k, v)| (*k, v)))
        }))
    }

    /// Replaces the rows with those of the keys `ctx` owns. A snapshot merged
    /// from several replicas restores the smallest largest timestamp of each
    /// side (no row leaves, and no element is late, earlier than in any of
    /// them) and raises the counters to the largest stored.
    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let (globals, keys): Mixed<SavedGlobal, K, SavedKey<L, R>> =
            decode_mixed(snapshot, STATE_VERSION, ctx)?;
        let now = crate::keyed::state_now();
        let time = self.config.time.as_ref();
        let due_left = |ts: i64| time.map(|t| ts.saturating_add(t.upper));
        let due_right = |ts: i64| time.map(|t| ts.saturating_sub(t.lower));
        let seq = globals.iter().map(|g| g.seq).max().unwrap_or(0);
        self.rows.restore(keys, seq, now, (&due_left, &due_right));
        let (max_left, max_right) = globals.iter().fold((None, None), |(l, r), g| {
            (earliest(l, g.max_left), earliest(r, g.max_right))
        });
        self.max_left = max_left;
        self.max_right = max_right;
        let counters = tallies(&self.config.counters.0);
        for g in &globals {
            for (counter, value) in counters.iter().zip(g.tallies) {
                counter.fetch_max(value, Relaxed);
            }
        }
        self.timer = None;
        self.publish();
        Ok(())
    }
}

impl<K, L, R, O> Operator for JoinStage<K, L, R, O>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    L: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    R: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    O: Send + 'static,
{
    type In = Side<L, R>;
    type Out = JoinOut<O, L, R>;

    fn kind(&self) -> &'static str {
        "interval_join"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.config.time {
            if t.lower > t.upper {
                return Err(format!(
                    "interval_join: event_time interval {}..={} is empty (lower > upper)",
                    t.lower, t.upper
                ));
            }
            if t.lateness < 0 {
                return Err("interval_join: out_of_orderness must not be negative".into());
            }
        }
        if self.config.ttl.is_some_and(|t| t.is_zero()) {
            return Err("interval_join: ttl(0) would expire every row at once".into());
        }
        if let Some((0, _)) = self.config.max_rows {
            return Err("interval_join: max_rows(0) leaves no room for any row".into());
        }
        if self.config.time.is_none() && self.config.ttl.is_none() && self.config.max_rows.is_none()
        {
            return Err(
                "interval_join: without event_time, set a ttl or max_rows, or rows are kept until the input ends"
                    .into(),
            );
        }
        Ok(())
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn state_entries(&self) -> usize {
        self.rows.len()
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }

    fn step(
        &mut self,
        io: &mut Io<'_, Side<L, R>, JoinOut<O, L, R>>,
        cx: &mut Context<'_>,
    ) -> Step {
        let now = crate::keyed::state_now();
        // Taken for the step: a panic drops it (with any partial outputs).
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.expire(now, &mut out);
        io.output().append(&mut out);
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            if let Err(failure) = self.process(x, now, &mut out) {
                self.out = out;
                return Step::Failed(failure);
            }
            io.complete(1);
            io.output().append(&mut out);
        }
        if io.input_exhausted() {
            for gone in self.rows.drain() {
                self.finish(gone, &mut out);
            }
            io.output().append(&mut out);
            self.out = out;
            self.publish();
            return Step::Finished;
        }
        self.out = out;
        self.publish();
        self.arm_timer(cx);
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use weir_runtime::checkpoint::{key_group_of, replica_of_group};

    use super::*;
    use crate::join::{IntervalJoin, JoinCounters};
    use crate::test_support::{assert_refuses_other_versions, replica, run_resumed, run_whole};

    /// `(key, ts, id)`: a row of either side.
    type Row = (u64, i64, u64);
    type Join = JoinStage<u64, Row, Row, (u64, u64)>;

    fn key(x: &Row) -> u64 {
        x.0
    }
    fn ts(x: &Row) -> i64 {
        x.1
    }

    /// An event-time inner join, `0..=20` after the left row, out of order by up
    /// to 5.
    fn event_time(counters: &JoinCounters) -> Join {
        let join = IntervalJoin::inner(key, key, |l: &Row, r: &Row| (l.2, r.2))
            .event_time(ts, ts, 0, 20)
            .out_of_orderness(5)
            .counters(counters);
        JoinStage::new(join.config)
    }

    /// A processing-time left-outer join (a TTL no test reaches) holding at most
    /// 6 rows: which rows the bound evicts depends on the arrival order.
    fn bounded(counters: &JoinCounters) -> Join {
        let join = IntervalJoin::left_outer(key, key, |l: &Row, r: Option<&Row>| {
            (l.2, r.map_or(u64::MAX, |r| r.2))
        })
        .ttl(Duration::from_secs(3600))
        .max_rows(6, OnFull::EvictLru)
        .counters(counters);
        JoinStage::new(join.config)
    }

    /// Both sides interleaved over `keys` keys, timestamps rising with jitter of
    /// up to 4 (on time for an out-of-orderness of 5); with `late`, every 37th
    /// element is 40 behind.
    fn input(n: u64, keys: u64, late: bool) -> Vec<Side<Row, Row>> {
        (0..n)
            .map(|i| {
                let jitter = (i * 7 % 5) as i64;
                let back = if late && i % 37 == 36 { 40 } else { 0 };
                let row = (i * 3 % keys, i as i64 - jitter - back, i);
                if i % 3 == 0 {
                    Side::Right(row)
                } else {
                    Side::Left(row)
                }
            })
            .collect()
    }

    /// The counters' values, in the order of a snapshot's tallies, but for the
    /// peak: it is sampled at the end of each step, so it depends on how the
    /// input was batched, resumed or not.
    fn values(c: &JoinCounters) -> [u64; 7] {
        let [a, b, c, d, e, f, g, _peak] = tallies(&c.0).map(|a| a.load(Relaxed));
        [a, b, c, d, e, f, g]
    }

    /// Resumed after a snapshot at every split point in `ks`, `make` gives what
    /// it gives uninterrupted and its counters end where the uninterrupted
    /// ones do; a snapshot of another version is refused.
    fn resumes(make: fn(&JoinCounters) -> Join, input: &[Side<Row, Row>], ks: &[usize]) {
        let counters = JoinCounters::new();
        let whole = run_whole(make(&counters), input.to_vec());
        let made: Mutex<Vec<JoinCounters>> = Mutex::default();
        let fresh = || {
            let c = JoinCounters::new();
            made.lock().unwrap().push(c.clone());
            make(&c)
        };
        let mut last = None;
        for &k in ks {
            let (resumed, snapshot) = run_resumed(&fresh, input, k, &RestoreContext::default());
            assert_eq!(resumed, whole, "snapshot after {k} elements");
            let restored = made.lock().unwrap().last().cloned().unwrap();
            assert_eq!(
                values(&restored),
                values(&counters),
                "counters after a snapshot at {k}"
            );
            last = Some(snapshot);
        }
        let mut snapshot = last.expect("a split point");
        assert_refuses_other_versions(&mut fresh(), &mut snapshot);
    }

    /// The kinds of outputs `out` holds: joined, unmatched left, unmatched right.
    fn kinds(out: &[JoinOut<(u64, u64), Row, Row>]) -> [usize; 3] {
        let mut n = [0; 3];
        for o in out {
            let i = match o {
                JoinOut::Joined(_) => 0,
                JoinOut::Unmatched(Side::Left(_)) => 1,
                JoinOut::Unmatched(Side::Right(_)) => 2,
            };
            n[i] += 1;
        }
        n
    }

    #[test]
    fn a_restored_event_time_join_goes_on_as_the_uninterrupted_one() {
        let input = input(300, 7, true);
        let c = JoinCounters::new();
        let out = run_whole(event_time(&c), input.clone());
        // Rows held across each split point, rows that left unmatched, late ones.
        assert!(kinds(&out).iter().all(|&n| n > 0), "{:?}", kinds(&out));
        assert!(c.late() > 0 && c.peak_rows() > 10, "{c:?}");
        resumes(event_time, &input, &[0, 1, 37, 150, 299, 300]);
    }

    #[test]
    fn the_arrival_order_survives_a_restore() {
        let input = input(200, 4, false);
        let c = JoinCounters::new();
        let out = run_whole(bounded(&c), input.clone());
        assert!(c.evicted() > 50 && c.joined() > 50, "{c:?}");
        assert!(
            out.iter()
                .any(|o| matches!(o, JoinOut::Joined((_, u64::MAX))))
        );
        resumes(bounded, &input, &[0, 5, 6, 7, 100, 200]);
    }

    /// A row's age at the snapshot is its age at the restore: the TTL goes on
    /// from there.
    #[test]
    fn ages_are_re_anchored_at_the_restore() {
        let c = JoinCounters::new();
        let mut op = bounded(&c);
        let now = crate::keyed::state_now();
        let mut out = Vec::new();
        let arrived = now.checked_sub(Duration::from_secs(3)).unwrap();
        op.process(Side::Left((1, 0, 0)), arrived, &mut out)
            .unwrap();
        op.process(Side::Right((2, 0, 1)), now, &mut out).unwrap();
        let snapshot = op.snapshot(1).unwrap();
        let mut back = bounded(&c);
        back.restore(&snapshot, &RestoreContext::default()).unwrap();
        assert_eq!(back.rows.len(), 2);
        let oldest = back.rows.oldest_arrival().unwrap();
        let age = crate::keyed::state_now().saturating_duration_since(oldest);
        assert!(
            (Duration::from_secs(3)..Duration::from_secs(4)).contains(&age),
            "{age:?}"
        );
        // The next row is numbered after the restored ones.
        back.process(Side::Left((3, 0, 2)), now, &mut out).unwrap();
        let seqs: Vec<u64> = back
            .rows
            .saved(now)
            .iter()
            .flat_map(|(_, k)| k.left.iter().map(|r| r.seq))
            .collect();
        assert!(seqs.contains(&3) && seqs.contains(&1), "{seqs:?}");
    }

    /// Restored as replica `i` of `n`, each replica holds exactly the rows of
    /// its key groups; fed the rest of the elements of those keys, the replicas
    /// together make what the uninterrupted join makes after the split (as a
    /// set: each replica's order is its own). No element is late here, so the
    /// pairs do not depend on how far other keys moved the watermarks.
    #[test]
    fn replicas_restore_exactly_their_keys() {
        let input = input(600, 64, false);
        let c = JoinCounters::new();
        let whole = run_whole(event_time(&c), input.clone());
        assert_eq!(c.late(), 0);
        let k = 300;
        let (resumed, snapshot) = run_resumed(
            &|| event_time(&JoinCounters::new()),
            &input,
            k,
            &RestoreContext::default(),
        );
        assert_eq!(resumed, whole);
        // What the join restored whole makes from the elements after the split.
        let mut op = event_time(&JoinCounters::new());
        op.restore(&snapshot, &RestoreContext::default()).unwrap();
        let rest = run_whole(op, input[k..].to_vec());
        assert_eq!(rest[..], whole[whole.len() - rest.len()..]);
        let mut want: Vec<String> = rest.iter().map(|o| format!("{o:?}")).collect();
        want.sort_unstable();
        let key_of = |x: &Side<Row, Row>| match x {
            Side::Left(r) | Side::Right(r) => r.0,
        };
        for n in [2, 8] {
            let mut union: Vec<String> = Vec::new();
            let mut owner: BTreeMap<u64, usize> = BTreeMap::new();
            for i in 0..n {
                let mut op = event_time(&JoinCounters::new());
                op.restore(&snapshot, &replica(i, n)).unwrap();
                for key in op.rows.map.keys() {
                    assert_eq!(owner.insert(*key, i), None, "key {key} in two replicas");
                    assert_eq!(replica_of_group(key_group_of(key), n), i);
                }
                let mine: Vec<Side<Row, Row>> = input[k..]
                    .iter()
                    .filter(|x| replica_of_group(key_group_of(&key_of(x)), n) == i)
                    .cloned()
                    .collect();
                union.extend(run_whole(op, mine).iter().map(|o| format!("{o:?}")));
            }
            assert!(
                owner.len() > 16,
                "rows of many keys held at the split (n = {n})"
            );
            union.sort_unstable();
            assert_eq!(union, want, "n = {n}");
        }
    }

    /// Feeds `input` to `join` as the stage's step would (no row bound), at the
    /// tokio clock; what it emitted.
    fn feed(join: &mut Join, input: Vec<Side<Row, Row>>) -> Vec<JoinOut<(u64, u64), Row, Row>> {
        let now = crate::keyed::state_now();
        let mut out = Vec::new();
        for x in input {
            join.process(x, now, &mut out).unwrap();
        }
        out
    }

    /// A deferred snapshot encodes the same bytes as the sync one taken at the
    /// same time, and holds the rows at the barrier, not the stage's writes
    /// before the writer runs (matches, new rows, rows leaving by watermark);
    /// a second snapshot taken while the first is pending too. Paused time,
    /// so the rows' ages are the same in every snapshot.
    #[tokio::test(start_paused = true)]
    async fn a_deferred_snapshot_holds_the_rows_at_the_barrier() {
        let counters = JoinCounters::new();
        let mut join = event_time(&counters);
        let rows: Vec<Side<Row, Row>> = (0..3_000_u64).map(|i| Side::Left((i, 100, i))).collect();
        feed(&mut join, rows);
        let sync = join.snapshot(1).unwrap();
        let deferred = join.snapshot_deferred(1).unwrap();

        // Matches mark rows of many groups, new keys come, and the right
        // watermark passes every left row (`ts + 20 < 200 - 5`).
        let more: Vec<Side<Row, Row>> = (0..3_000_u64)
            .step_by(7)
            .map(|i| Side::Right((i, 110, i)))
            .chain((5_000..5_500).map(|i| Side::Left((i, 150, i))))
            .chain([Side::Right((9_999, 200, 0))])
            .collect();
        let out = feed(&mut join, more);
        assert!(
            kinds(&out)[0] > 0 && kinds(&out)[1] > 0,
            "{:?}",
            kinds(&out)
        );
        let second_sync = join.snapshot(1).unwrap();
        let second = join.snapshot_deferred(1).unwrap();
        feed(&mut join, vec![Side::Right((9_999, 1_000, 1))]);
        assert_ne!(second_sync, sync);
        assert_eq!(deferred.resolve().unwrap(), sync);
        assert_eq!(second.resolve().unwrap(), second_sync);

        // And the deferred snapshot restores to the rows at the barrier.
        let mut restored = event_time(&JoinCounters::new());
        restored.restore(&sync, &RestoreContext::default()).unwrap();
        assert_eq!(restored.rows.len(), 3_000);
    }
}
