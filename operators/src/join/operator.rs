//! [`JoinStage`]: the operator that joins a tagged stream of left and right rows.

use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Context;
use std::time::Instant;

use weir_runtime::operator::{Counting, Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};

use super::rows::{Gone, Rows};
use super::spec::Config;
use super::{JoinOut, Side};
use crate::keyed::OnFull;

/// Joins [`Side::Left`] and [`Side::Right`] rows by key (see
/// [`IntervalJoin`](super::IntervalJoin) for when rows match and leave).
/// Created by [`IntervalJoin::on`](super::IntervalJoin::on) and
/// [`JoinExt::interval_join`](super::JoinExt::interval_join).
///
/// Each input is probed against the other side's rows of its key, then kept as a
/// row; it counts as completed once processed. The rows are the stage's state
/// ([`Operator::state_entries`]), bounded by the TTL, the watermarks and the row
/// bound.
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
                if c.max_rows.is_none() {
                    // No row bound: probe and insert with one lookup.
                    let due = time.map(|t| ts.saturating_add(t.upper));
                    let combine = &c.combine;
                    self.rows
                        .probe_insert_left(key, l, (ts, now, due), &mut hits, |l, r| {
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
                if let Some(rows) = self.rows.map.get_mut(&key) {
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
                    .insert_left(key, l, ts, now, due, !hits.is_empty());
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
                if c.max_rows.is_none() {
                    let due = time.map(|t| ts.saturating_sub(t.lower));
                    let combine = &c.combine;
                    self.rows
                        .probe_insert_right(key, r, (ts, now, due), &mut hits, |r, l| {
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
                if let Some(rows) = self.rows.map.get_mut(&key) {
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
                    .insert_right(key, r, ts, now, due, !hits.is_empty());
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

impl<K, L, R, O> Operator for JoinStage<K, L, R, O>
where
    K: Hash + Eq + Clone + Send + 'static,
    L: Send + 'static,
    R: Send + 'static,
    O: Send + 'static,
{
    type In = Side<L, R>;
    type Out = JoinOut<O, L, R>;

    fn kind(&self) -> &'static str {
        "interval_join"
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

    /// The rows and watermarks are not in a snapshot yet: building a
    /// checkpointed pipeline with a join is refused rather than restoring it
    /// empty.
    fn not_checkpointable(&self) -> Option<String> {
        Some(
            "the interval join's buffered rows and watermarks are not checkpointed yet; \
             a restore would start it empty"
                .into(),
        )
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
