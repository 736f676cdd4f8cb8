//! [`Rows`]: the join's state — rows by key and side, with the queues that say
//! which row leaves next (by arrival for the TTL and the row bound, by event-time
//! deadline for the watermarks) — and its form in a snapshot ([`SavedKey`]).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{age, before};
use crate::keyed::groups::{Groups, KeyGroup, Spread};

/// One row waiting for partners.
#[derive(Clone)]
pub(crate) struct Row<X> {
    pub(crate) value: X,
    pub(crate) ts: i64,
    pub(crate) seq: u64,
    pub(crate) arrived: Instant,
    pub(crate) matched: bool,
}

/// The rows of one key.
#[derive(Clone)]
pub(crate) struct KeyRows<L, R> {
    pub(crate) left: Vec<Row<L>>,
    pub(crate) right: Vec<Row<R>>,
}

/// A row in a snapshot: its arrival stored as an age (how long before the
/// snapshot it arrived).
#[derive(Serialize, Deserialize)]
pub(crate) struct SavedRow<X> {
    pub(crate) value: X,
    pub(crate) ts: i64,
    pub(crate) seq: u64,
    pub(crate) age: Duration,
    pub(crate) matched: bool,
}

/// The rows of one key in a snapshot, each side in seq (arrival) order.
#[derive(Serialize, Deserialize)]
pub(crate) struct SavedKey<L, R> {
    pub(crate) left: Vec<SavedRow<L>>,
    pub(crate) right: Vec<SavedRow<R>>,
}

/// The event-time deadlines of restored rows: `ts` to the left row's deadline
/// and to the right row's (`None`: no event time).
pub(crate) type DueOf<'a> = (
    &'a dyn Fn(i64) -> Option<i64>,
    &'a dyn Fn(i64) -> Option<i64>,
);

/// A row leaving the state.
pub(crate) enum Gone<L, R> {
    Left(Row<L>),
    Right(Row<R>),
}

/// When a row is due to leave by event time; ordered earliest first.
struct Due<K> {
    at: i64,
    seq: u64,
    key: K,
}

impl<K> PartialEq for Due<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<K> Eq for Due<K> {}
impl<K> PartialOrd for Due<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Due<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse for earliest first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Event-time deadlines, earliest `(at, seq)` first. Rows mostly arrive in
/// time order, so their deadlines mostly come in order: those go to the back of
/// a queue (O(1) both ways), and only a deadline earlier than the queue's last
/// goes to a heap. The earliest is the smaller of the two fronts, so the order is
/// exactly that of one heap.
struct Deadlines<K> {
    run: VecDeque<Due<K>>,
    heap: BinaryHeap<Due<K>>,
}

impl<K> Deadlines<K> {
    fn new() -> Self {
        Deadlines {
            run: VecDeque::new(),
            heap: BinaryHeap::new(),
        }
    }

    fn len(&self) -> usize {
        self.run.len() + self.heap.len()
    }

    fn push(&mut self, due: Due<K>) {
        // Seqs only grow, so `at` alone decides whether it extends the run.
        if self.run.back().is_none_or(|last| last.at <= due.at) {
            self.run.push_back(due);
        } else {
            self.heap.push(due);
        }
    }

    /// Whether the earliest deadline is before `watermark`.
    fn due_before(&self, watermark: i64) -> bool {
        self.run.front().is_some_and(|d| d.at < watermark)
            || self.heap.peek().is_some_and(|d| d.at < watermark)
    }

    /// Takes the earliest deadline.
    fn pop(&mut self) -> Option<Due<K>> {
        let from_run = match (self.run.front(), self.heap.peek()) {
            (Some(r), Some(h)) => (r.at, r.seq) < (h.at, h.seq),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if from_run {
            self.run.pop_front()
        } else {
            self.heap.pop()
        }
    }

    fn clear(&mut self) {
        self.run.clear();
        self.heap.clear();
    }

    fn retain(&mut self, mut keep: impl FnMut(&Due<K>) -> bool) {
        self.run.retain(&mut keep);
        self.heap.retain(keep);
    }
}

/// Rows by key, and queues of removal candidates. Entries of a queue whose row
/// already left by another way are skipped when met and compacted away when a
/// queue grows past twice the rows, so every queue is bounded by the rows held.
///
/// The rows are held in 128 groups ([`Groups`]), so that a deferred snapshot
/// shares them with the checkpoint's writer and the stage copies a group only
/// if it writes to it before the writer is done. A key's group is
/// [spread](KeyGroup::spread) by a fast hash, not its checkpoint key group (a
/// snapshot regroups the rows by key group on the writer); callers compute it
/// once per element with [`group`](Self::group) and pass it in.
pub(crate) struct Rows<K, L, R> {
    pub(crate) map: Groups<K, KeyRows<L, R>>,
    spread: Spread,
    len: usize,
    seq: u64,
    /// `(seq, is_left, key)` by arrival; kept only with a TTL or a row bound.
    arrivals: Option<VecDeque<(u64, bool, K)>>,
    /// Left rows by `ts + upper`, right rows by `ts - lower`; only with event time.
    due_left: Deadlines<K>,
    due_right: Deadlines<K>,
}

impl<K, L, R> Rows<K, L, R> {
    /// The number of the last row added (rows are numbered from 1 by arrival).
    pub(crate) fn last_seq(&self) -> u64 {
        self.seq
    }
}

impl<K: Hash + Eq + Clone, L, R> Rows<K, L, R> {
    pub(crate) fn new(by_arrival: bool) -> Self {
        Rows {
            map: Groups::new(),
            spread: Spread::default(),
            len: 0,
            seq: 0,
            arrivals: by_arrival.then(VecDeque::new),
            due_left: Deadlines::new(),
            due_right: Deadlines::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The group of `key`'s rows.
    #[inline]
    pub(crate) fn group(&self, key: &K) -> KeyGroup {
        KeyGroup::spread(key, &self.spread)
    }

    fn is_live(&self, key: &K, left: bool, seq: u64) -> bool {
        self.map.get(self.group(key), key).is_some_and(|rows| {
            if left {
                rows.left.iter().any(|r| r.seq == seq)
            } else {
                rows.right.iter().any(|r| r.seq == seq)
            }
        })
    }

    /// Adds a row of key `key` (of group `g`); `due` is its event-time
    /// deadline, if there is event time.
    pub(crate) fn insert_left(
        &mut self,
        (g, key): (KeyGroup, K),
        value: L,
        ts: i64,
        now: Instant,
        due: Option<i64>,
        matched: bool,
    ) {
        let seq = self.next_seq(&key, true, due);
        let row = Row {
            value,
            ts,
            seq,
            arrived: now,
            matched,
        };
        self.map
            .get_or_insert_with(g, key, KeyRows::empty)
            .left
            .push(row);
        self.len += 1;
        self.compact();
    }

    /// Adds a row of key `key` (of group `g`); `due` is its event-time
    /// deadline, if there is event time.
    pub(crate) fn insert_right(
        &mut self,
        (g, key): (KeyGroup, K),
        value: R,
        ts: i64,
        now: Instant,
        due: Option<i64>,
        matched: bool,
    ) {
        let seq = self.next_seq(&key, false, due);
        let row = Row {
            value,
            ts,
            seq,
            arrived: now,
            matched,
        };
        self.map
            .get_or_insert_with(g, key, KeyRows::empty)
            .right
            .push(row);
        self.len += 1;
        self.compact();
    }

    /// Probes the right rows of `key` with `visit` (true: matched) and adds the left
    /// row, with one lookup of the key; the matched right rows are marked only
    /// after every visit, so a panic in `visit` changes nothing but an empty entry
    /// for a new key (nothing to visit, so no panic there). `hits` is scratch.
    /// Returns whether the row matched.
    pub(crate) fn probe_insert_left(
        &mut self,
        g: KeyGroup,
        key: K,
        value: L,
        (ts, now, due): (i64, Instant, Option<i64>),
        hits: &mut Vec<usize>,
        visit: impl FnMut(&L, &Row<R>) -> bool,
    ) -> bool {
        let seq = self.seq + 1;
        let rows = self.map.get_or_insert_with(g, key.clone(), KeyRows::empty);
        let row = Row {
            value,
            ts,
            seq,
            arrived: now,
            matched: false,
        };
        let matched = probe_push(&mut rows.left, &mut rows.right, row, hits, visit);
        self.inserted(&key, true, due, seq);
        matched
    }

    /// [`probe_insert_left`](Self::probe_insert_left) for a right row.
    pub(crate) fn probe_insert_right(
        &mut self,
        g: KeyGroup,
        key: K,
        value: R,
        (ts, now, due): (i64, Instant, Option<i64>),
        hits: &mut Vec<usize>,
        visit: impl FnMut(&R, &Row<L>) -> bool,
    ) -> bool {
        let seq = self.seq + 1;
        let rows = self.map.get_or_insert_with(g, key.clone(), KeyRows::empty);
        let row = Row {
            value,
            ts,
            seq,
            arrived: now,
            matched: false,
        };
        let matched = probe_push(&mut rows.right, &mut rows.left, row, hits, visit);
        self.inserted(&key, false, due, seq);
        matched
    }

    /// The bookkeeping after a probe-and-insert of the row numbered `seq`.
    fn inserted(&mut self, key: &K, left: bool, due: Option<i64>, seq: u64) {
        let taken = self.next_seq(key, left, due);
        debug_assert_eq!(taken, seq);
        self.len += 1;
        self.compact();
    }

    fn next_seq(&mut self, key: &K, left: bool, due: Option<i64>) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        self.enqueue(key, left, due, seq);
        seq
    }

    /// Puts the row numbered `seq` in the queues that say when it leaves.
    fn enqueue(&mut self, key: &K, left: bool, due: Option<i64>, seq: u64) {
        if let Some(arrivals) = &mut self.arrivals {
            arrivals.push_back((seq, left, key.clone()));
        }
        if let Some(at) = due {
            let heap = if left {
                &mut self.due_left
            } else {
                &mut self.due_right
            };
            heap.push(Due {
                at,
                seq,
                key: key.clone(),
            });
        }
    }

    /// Takes a row out of the state (one lookup of its key).
    fn remove(&mut self, key: K, left: bool, seq: u64) -> Option<Gone<L, R>> {
        let take = |rows: &mut KeyRows<L, R>| {
            if left {
                let i = rows.left.iter().position(|r| r.seq == seq)?;
                Some(Gone::Left(rows.left.remove(i)))
            } else {
                let i = rows.right.iter().position(|r| r.seq == seq)?;
                Some(Gone::Right(rows.right.remove(i)))
            }
        };
        let spent = |rows: &KeyRows<L, R>| rows.left.is_empty() && rows.right.is_empty();
        let gone = self.map.change(self.group(&key), key, take, spent)??;
        self.len -= 1;
        Some(gone)
    }

    /// The oldest row still held, taken out.
    pub(crate) fn pop_oldest(&mut self) -> Option<Gone<L, R>> {
        while let Some((seq, left, key)) = self.arrivals.as_mut()?.pop_front() {
            if let Some(gone) = self.remove(key, left, seq) {
                return Some(gone);
            }
        }
        None
    }

    /// When the oldest row arrived.
    pub(crate) fn oldest_arrival(&mut self) -> Option<Instant> {
        loop {
            let (seq, left, key) = self.arrivals.as_ref()?.front()?;
            let rows = self.map.get(self.group(key), key);
            let arrived = rows.and_then(|rows| {
                if *left {
                    rows.left.iter().find(|r| r.seq == *seq).map(|r| r.arrived)
                } else {
                    rows.right.iter().find(|r| r.seq == *seq).map(|r| r.arrived)
                }
            });
            match arrived {
                Some(at) => return Some(at),
                None => {
                    self.arrivals.as_mut()?.pop_front();
                }
            }
        }
    }

    /// The next left row whose deadline is before `watermark`, taken out.
    pub(crate) fn pop_due_left(&mut self, watermark: i64) -> Option<Gone<L, R>> {
        while self.due_left.due_before(watermark) {
            let d = self.due_left.pop()?;
            if let Some(gone) = self.remove(d.key, true, d.seq) {
                return Some(gone);
            }
        }
        None
    }

    /// The next right row whose deadline is before `watermark`, taken out.
    pub(crate) fn pop_due_right(&mut self, watermark: i64) -> Option<Gone<L, R>> {
        while self.due_right.due_before(watermark) {
            let d = self.due_right.pop()?;
            if let Some(gone) = self.remove(d.key, false, d.seq) {
                return Some(gone);
            }
        }
        None
    }

    /// Every row, oldest first, taken out.
    pub(crate) fn drain(&mut self) -> Vec<Gone<L, R>> {
        let mut all: Vec<(u64, Gone<L, R>)> = Vec::with_capacity(self.len);
        for (_, rows) in self.map.drain() {
            all.extend(rows.left.into_iter().map(|r| (r.seq, Gone::Left(r))));
            all.extend(rows.right.into_iter().map(|r| (r.seq, Gone::Right(r))));
        }
        self.len = 0;
        if let Some(a) = &mut self.arrivals {
            a.clear();
        }
        self.due_left.clear();
        self.due_right.clear();
        all.sort_unstable_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, g)| g).collect()
    }

    /// Every key's rows as they go in a snapshot taken at `now`, borrowed.
    pub(crate) fn saved(&self, now: Instant) -> Vec<(&K, SavedKey<&L, &R>)> {
        saved(self.map.iter(), now)
    }

    /// Replaces the state with `keys` (restored at `now`, each row as old as it
    /// was at the snapshot). The rows go in by seq, every queue fed in that
    /// order as they were when the rows arrived, so rows leave in the same order
    /// as they would have; `due` gives each restored row's deadlines. Rows added
    /// later are numbered after `seq` and after every restored row.
    pub(crate) fn restore(
        &mut self,
        keys: Vec<(K, SavedKey<L, R>)>,
        seq: u64,
        now: Instant,
        (due_left, due_right): DueOf<'_>,
    ) {
        enum Either<L, R> {
            Left(SavedRow<L>),
            Right(SavedRow<R>),
        }
        let mut all: Vec<(u64, K, Either<L, R>)> = Vec::new();
        for (key, saved) in keys {
            for r in saved.left {
                all.push((r.seq, key.clone(), Either::Left(r)));
            }
            for r in saved.right {
                all.push((r.seq, key.clone(), Either::Right(r)));
            }
        }
        all.sort_unstable_by_key(|(seq, _, _)| *seq);
        self.map.clear();
        self.len = 0;
        if let Some(a) = &mut self.arrivals {
            a.clear();
        }
        self.due_left.clear();
        self.due_right.clear();
        let mut last = seq;
        for (seq, key, row) in all {
            last = last.max(seq);
            let rows = self
                .map
                .get_or_insert_with(self.group(&key), key.clone(), KeyRows::empty);
            match row {
                Either::Left(r) => {
                    rows.left.push(Row {
                        value: r.value,
                        ts: r.ts,
                        seq,
                        arrived: before(now, r.age),
                        matched: r.matched,
                    });
                    self.enqueue(&key, true, due_left(r.ts), seq);
                }
                Either::Right(r) => {
                    rows.right.push(Row {
                        value: r.value,
                        ts: r.ts,
                        seq,
                        arrived: before(now, r.age),
                        matched: r.matched,
                    });
                    self.enqueue(&key, false, due_right(r.ts), seq);
                }
            }
            self.len += 1;
        }
        self.seq = last;
    }

    /// Drops queue entries of rows that left, once a queue holds more than twice
    /// the rows (amortised O(1) per row).
    fn compact(&mut self) {
        let bound = 2 * self.len + 64;
        if self.arrivals.as_ref().is_some_and(|a| a.len() > bound) {
            let mut arrivals = self.arrivals.take().unwrap_or_default();
            arrivals.retain(|(seq, left, key)| self.is_live(key, *left, *seq));
            self.arrivals = Some(arrivals);
        }
        if self.due_left.len() > bound {
            let mut due = std::mem::replace(&mut self.due_left, Deadlines::new());
            due.retain(|d| self.is_live(&d.key, true, d.seq));
            self.due_left = due;
        }
        if self.due_right.len() > bound {
            let mut due = std::mem::replace(&mut self.due_right, Deadlines::new());
            due.retain(|d| self.is_live(&d.key, false, d.seq));
            self.due_right = due;
        }
    }
}

/// The rows of `keys` as they go in a snapshot taken at `now`, borrowed: what
/// the sync snapshot and the deferred one (of frozen key groups) encode.
pub(crate) fn saved<'a, K, L, R>(
    keys: impl Iterator<Item = (&'a K, &'a KeyRows<L, R>)>,
    now: Instant,
) -> Vec<(&'a K, SavedKey<&'a L, &'a R>)>
where
    K: 'a,
    L: 'a,
    R: 'a,
{
    fn save<X>(rows: &[Row<X>], now: Instant) -> Vec<SavedRow<&X>> {
        rows.iter()
            .map(|r| SavedRow {
                value: &r.value,
                ts: r.ts,
                seq: r.seq,
                age: age(now, r.arrived),
                matched: r.matched,
            })
            .collect()
    }
    keys.map(|(k, rows)| {
        let saved = SavedKey {
            left: save(&rows.left, now),
            right: save(&rows.right, now),
        };
        (k, saved)
    })
    .collect()
}

impl<L, R> KeyRows<L, R> {
    fn empty() -> Self {
        KeyRows {
            left: Vec::new(),
            right: Vec::new(),
        }
    }
}

/// Probes `other` with `visit` (true: matched), then marks the matched rows (only
/// after every visit, so a panic in `visit` changes nothing) and pushes `row`
/// onto `own`, matched if anything matched. `hits` is scratch. Returns whether
/// the row matched.
fn probe_push<A, B>(
    own: &mut Vec<Row<A>>,
    other: &mut [Row<B>],
    mut row: Row<A>,
    hits: &mut Vec<usize>,
    mut visit: impl FnMut(&A, &Row<B>) -> bool,
) -> bool {
    hits.clear();
    for (i, r) in other.iter().enumerate() {
        if visit(&row.value, r) {
            hits.push(i);
        }
    }
    for &i in hits.iter() {
        other[i].matched = true;
    }
    row.matched = !hits.is_empty();
    let matched = row.matched;
    own.push(row);
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deadlines mostly in order with some early ones (out-of-order rows): the
    /// run and heap give the same order as one heap, and the same `due_before`.
    #[test]
    fn deadlines_pop_in_heap_order() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut below = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..100 {
            let (mut split, mut heap) = (Deadlines::new(), BinaryHeap::new());
            let (mut clock, mut seq) = (0_i64, 0_u64);
            for _ in 0..400 {
                if below(3) == 0 {
                    let limit = clock - below(10) as i64;
                    assert_eq!(
                        split.due_before(limit),
                        heap.peek().is_some_and(|d: &Due<u64>| d.at < limit)
                    );
                    let (a, b) = (split.pop(), heap.pop());
                    assert_eq!(a.map(|d| (d.at, d.seq)), b.map(|d| (d.at, d.seq)));
                } else {
                    clock += below(4) as i64;
                    seq += 1;
                    // One in five comes up to 8 behind.
                    let at = if below(5) == 0 {
                        clock - below(9) as i64
                    } else {
                        clock
                    };
                    split.push(Due { at, seq, key: seq });
                    heap.push(Due { at, seq, key: seq });
                }
                assert_eq!(split.len(), heap.len());
            }
            while let Some(b) = heap.pop() {
                let a = split.pop().map(|d| (d.at, d.seq));
                assert_eq!(a, Some((b.at, b.seq)));
            }
            assert!(split.pop().is_none());
        }
    }
}
