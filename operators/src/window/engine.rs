//! [`KeyedWindows`]: the keyed window state the window operators share.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_runtime::checkpoint::{RestoreContext, Snapshot, StateError};

use super::spec::{Aggregate, Shape, Window, WindowOverflow, WindowResult, Windows};
use super::timers::Timers;
use crate::checkpoint::{Mixed, decode_mixed, mixed};
use crate::hash::StateMap;

/// An open window in a snapshot: its range, accumulator, id (its place in the
/// firing order), firings so far and the time of its timer.
#[derive(Serialize, Deserialize)]
struct SavedWindow<A> {
    window: Window,
    acc: A,
    id: u64,
    fired: u32,
    timer: u64,
}

/// A result waiting to be taken, in a snapshot, with its place in the queue.
#[derive(Serialize, Deserialize)]
struct SavedResult<R> {
    place: u64,
    window: Window,
    value: R,
    firing: u32,
}

/// One key's part of a snapshot: its open windows and its waiting results.
#[derive(Serialize, Deserialize)]
struct SavedKey<A, R> {
    windows: Vec<SavedWindow<A>>,
    ready: Vec<SavedResult<R>>,
}

impl<A, R> Default for SavedKey<A, R> {
    fn default() -> Self {
        SavedKey {
            windows: Vec::new(),
            ready: Vec::new(),
        }
    }
}

/// The part of a snapshot not split by key: the watermark, the next window id,
/// the counters, and what the operator around the state adds (its clock).
#[derive(Serialize, Deserialize)]
struct SavedGlobal<G> {
    watermark: Option<u64>,
    next_id: u64,
    tallies: [u64; 5],
    outer: G,
}

/// An open window of one key.
struct Open<A> {
    window: Window,
    acc: A,
    id: u64,
    /// Results emitted so far.
    fired: u32,
    /// The time of its entry in the timer index.
    timer: u64,
}

/// A tumbling or sliding window as the state holds it: an [`Open`] less what its
/// key, start and timer entry say (its end follows from the shape, its id is in
/// the timer index), so that an entry of the hot map stays small (32 bytes for a
/// `u64` key and accumulator, not 64): more of the map stays in cache.
struct Slot<A> {
    acc: A,
    fired: u32,
    /// Its timer is its end (it has not fired there yet), not its close.
    at_end: bool,
}

/// A tumbling or sliding window's place in the state: its key and start. Only
/// the key is hashed (a key has few open windows; they share a probe sequence),
/// which halves the hashing per element.
#[derive(PartialEq, Eq)]
struct SlotKey<K> {
    key: K,
    start: u64,
}

impl<K> SlotKey<K> {
    fn new(key: K, start: u64) -> Self {
        SlotKey { key, start }
    }
}

impl<K: Hash> Hash for SlotKey<K> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// What [`KeyedWindows::insert`] did with an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Folded into at least one window.
    Added,
    /// Every window it belongs to is closed (beyond the allowed lateness): it goes
    /// to the side output.
    Late,
    /// Opening its window would exceed the state bound and the policy is
    /// [`WindowOverflow::DropElement`]: it goes to the side output.
    Overflow,
}

/// Keyed windows driven by a watermark: the state machine behind the window
/// operators, usable on its own.
///
/// Rules, with `W` the watermark and `L` the allowed lateness:
///
/// - a window `[start, end)` fires when `W >= end`, and is closed (its state
///   dropped) when `W >= end + L`;
/// - an element is added to each of its windows that is not closed; if all are
///   closed it is [`Admit::Late`]; an element added to a window that has fired
///   fires it again at once (a late update);
/// - session windows of a key that overlap merge; a merged window whose end the
///   watermark has passed fires at once.
///
/// Results wait in a queue ([`pop_ready`](Self::pop_ready)) in firing order: by
/// the time the watermark passed them, then by window creation.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::window::{Admit, Aggregate, KeyedWindows, Windows};
///
/// let mut w = KeyedWindows::new(Windows::tumbling(Duration::from_millis(10)), Aggregate::count());
/// assert_eq!(w.insert("a", 3, &()).unwrap(), Admit::Added);
/// assert_eq!(w.insert("a", 7, &()).unwrap(), Admit::Added);
/// w.advance(10);
/// let r = w.pop_ready().unwrap();
/// assert_eq!((r.key, r.window.start, r.window.end, r.value), ("a", 0, 10, 2));
/// assert_eq!(w.insert("a", 9, &()).unwrap(), Admit::Late);
/// ```
pub struct KeyedWindows<T, K, A, R> {
    spec: Windows,
    agg: Aggregate<T, A, R>,
    /// Session windows, by key.
    keys: StateMap<K, Vec<Open<A>>>,
    /// Tumbling and sliding windows, by key and start: one lookup per element.
    slots: StateMap<SlotKey<K>, Slot<A>>,
    /// When each open window next needs attention: by (time, window id), bucketed
    /// by time for tumbling and sliding windows (their ends are shared by keys).
    timers: Timers<K>,
    /// Scratch list of an element's windows (kept to reuse its allocation).
    targets: Vec<Window>,
    /// The last tumbling window an element fell in (`start..end`; empty at first):
    /// the next element most likely falls in it too, and finding it again costs
    /// two comparisons where computing it costs a 64-bit division.
    last_tumble: (u64, u64),
    open: usize,
    next_id: u64,
    wm: Option<u64>,
    ready: VecDeque<WindowResult<K, R>>,
}

impl<T, K, A, R> fmt::Debug for KeyedWindows<T, K, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedWindows")
            .field("spec", &self.spec)
            .field("open", &self.open)
            .field("watermark", &self.wm)
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl<T, K: Hash + Eq + Clone, A, R> KeyedWindows<T, K, A, R> {
    /// Empty state for windows shaped by `spec`, folding with `agg`.
    pub fn new(spec: Windows, agg: Aggregate<T, A, R>) -> Self {
        let timers = match spec.shape {
            Shape::Session { .. } => Timers::each(),
            Shape::Tumbling { .. } | Shape::Sliding { .. } => Timers::aligned(),
        };
        KeyedWindows {
            spec,
            agg,
            keys: StateMap::default(),
            slots: StateMap::default(),
            timers,
            targets: Vec::new(),
            last_tumble: (1, 0),
            open: 0,
            next_id: 0,
            wm: None,
            ready: VecDeque::new(),
        }
    }

    /// Checks the spec (sizes, session merge, bound).
    ///
    /// # Errors
    ///
    /// What is wrong, in words.
    pub fn validate(&self) -> Result<(), String> {
        self.spec.validate(self.agg.merge.is_some())
    }

    /// The watermark; `None` until the first [`advance`](Self::advance).
    pub fn watermark(&self) -> Option<u64> {
        self.wm
    }

    /// Windows open now, over all keys.
    pub fn open_windows(&self) -> usize {
        self.open
    }

    /// Results waiting to be taken.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Takes the next result.
    pub fn pop_ready(&mut self) -> Option<WindowResult<K, R>> {
        self.ready.pop_front()
    }

    /// The earliest watermark at which something fires or closes.
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.next()
    }

    fn closed(&self, window: Window) -> bool {
        self.wm
            .is_some_and(|wm| wm >= window.end.saturating_add(self.spec.lateness))
    }

    fn due(&self, window: Window) -> bool {
        self.wm.is_some_and(|wm| wm >= window.end)
    }

    /// The windows an element at `ts` belongs to (a session's own window), into
    /// `out` (emptied first).
    fn assign(&self, ts: u64, out: &mut Vec<Window>) {
        out.clear();
        match self.spec.shape {
            Shape::Tumbling { size } => {
                let start = ts - ts % size;
                out.push(Window {
                    start,
                    end: start.saturating_add(size),
                });
            }
            Shape::Sliding { size, slide } => {
                let mut start = ts - ts % slide;
                loop {
                    let end = start.saturating_add(size);
                    if end <= ts {
                        break;
                    }
                    out.push(Window { start, end });
                    if start < slide {
                        break;
                    }
                    start -= slide;
                }
            }
            Shape::Session { gap } => out.push(Window {
                start: ts,
                end: ts.saturating_add(gap),
            }),
        }
    }

    /// Adds `x` (key `key`, timestamp `ts`) to its windows.
    ///
    /// # Errors
    ///
    /// The state bound was reached and the policy is [`WindowOverflow::Fail`].
    #[inline]
    pub fn insert(&mut self, key: K, ts: u64, x: &T) -> Result<Admit, String> {
        let key = match self.spec.shape {
            Shape::Tumbling { size } => match self.insert_tumbling(key, ts, size, x) {
                Ok(admit) => return Ok(admit),
                Err(key) => key,
            },
            _ => key,
        };
        self.insert_general(key, ts, x)
    }

    /// [`insert`](Self::insert) for every case but the tumbling fast path: kept
    /// out of line so that the fast path inlines into the operator's loop.
    #[inline(never)]
    fn insert_general(&mut self, key: K, ts: u64, x: &T) -> Result<Admit, String> {
        let mut targets = std::mem::take(&mut self.targets);
        self.assign(ts, &mut targets);
        targets.retain(|w| !self.closed(*w));
        let admit = self.insert_into(key, &targets, x);
        self.targets = targets;
        admit
    }

    /// The tumbling fast path: an element whose window has not fired goes into its
    /// open window, or opens it when there is room, with one hash lookup. `Err`
    /// gives the key back for the general path (a fired window, or no room).
    #[inline]
    fn insert_tumbling(&mut self, key: K, ts: u64, size: u64, x: &T) -> Result<Admit, K> {
        let (start, end) = self.last_tumble;
        let window = if start <= ts && ts < end {
            Window { start, end }
        } else {
            let start = ts - ts % size;
            let end = start.saturating_add(size);
            self.last_tumble = (start, end);
            Window { start, end }
        };
        let start = window.start;
        if self.due(window) {
            return Err(key);
        }
        match self.slots.entry(SlotKey::new(key, start)) {
            Entry::Occupied(mut o) => {
                (self.agg.add)(&mut o.get_mut().acc, x);
                Ok(Admit::Added)
            }
            Entry::Vacant(v) if self.open < self.spec.max_windows => {
                // User code first: a panic leaves the state as it was.
                let mut acc = (self.agg.init)();
                (self.agg.add)(&mut acc, x);
                let key = v.key().key.clone();
                v.insert(Slot {
                    acc,
                    fired: 0,
                    at_end: true,
                });
                self.opened(window.end, key, start);
                Ok(Admit::Added)
            }
            Entry::Vacant(v) => Err(v.into_key().key),
        }
    }

    /// Books a tumbling window just put in `slots`: its id, the count, and its
    /// timer at its end (it is not due). Out of line: once per window, not per
    /// element.
    #[inline(never)]
    fn opened(&mut self, end: u64, key: K, start: u64) {
        self.next_id += 1;
        self.open += 1;
        self.timers.insert(end, self.next_id, key, start);
        self.spec.metrics.set_open(self.open);
    }

    /// The general path of [`insert`](Self::insert): `targets` are the element's
    /// windows that are not closed.
    fn insert_into(&mut self, key: K, targets: &[Window], x: &T) -> Result<Admit, String> {
        if targets.is_empty() {
            self.spec.metrics.add_late();
            return Ok(Admit::Late);
        }
        let session = matches!(self.spec.shape, Shape::Session { .. });
        // Make room first: evicting may remove windows this element goes to.
        loop {
            let needed = self.needed(&key, targets, session);
            if self.open + needed <= self.spec.max_windows {
                break;
            }
            match self.spec.overflow {
                WindowOverflow::EmitEarliest => self.evict_earliest(),
                WindowOverflow::DropElement => {
                    self.spec.metrics.add_overflowed();
                    return Ok(Admit::Overflow);
                }
                WindowOverflow::Fail => {
                    return Err(format!(
                        "window state bound reached: {} windows open (max_windows {})",
                        self.open, self.spec.max_windows
                    ));
                }
            }
        }
        if session {
            self.add_session(key, targets[0], x);
        } else {
            for &w in targets {
                self.add_to(&key, w, x);
            }
        }
        self.spec.metrics.set_open(self.open);
        Ok(Admit::Added)
    }

    /// Windows `targets` would open.
    fn needed(&self, key: &K, targets: &[Window], session: bool) -> usize {
        if session {
            let open = self.keys.get(key).map_or(&[][..], Vec::as_slice);
            let w = targets[0];
            usize::from(
                !open
                    .iter()
                    .any(|o| o.window.start < w.end && w.start < o.window.end),
            )
        } else {
            targets
                .iter()
                .filter(|w| !self.slots.contains_key(&SlotKey::new(key.clone(), w.start)))
                .count()
        }
    }

    fn new_open(&mut self, window: Window, acc: A, fired: u32) -> Open<A> {
        self.next_id += 1;
        self.open += 1;
        Open {
            window,
            acc,
            id: self.next_id,
            fired,
            timer: 0,
        }
    }

    /// Sets `o`'s timer: its end while it has not fired there, then its close.
    fn schedule(&mut self, key: &K, o: &mut Open<A>) {
        let at = if self.due(o.window) {
            o.window.end.saturating_add(self.spec.lateness)
        } else {
            o.window.end
        };
        o.timer = at;
        self.timers.insert(at, o.id, key.clone(), o.window.start);
    }

    fn emit(&mut self, key: &K, o: &mut Open<A>) {
        let value = (self.agg.output)(&o.acc);
        self.ready.push_back(WindowResult {
            key: key.clone(),
            window: o.window,
            value,
            firing: o.fired,
        });
        o.fired += 1;
        self.spec.metrics.add_fired(1);
    }

    fn add_to(&mut self, key: &K, window: Window, x: &T) {
        let existing = self
            .slots
            .remove(&SlotKey::new(key.clone(), window.start))
            // Its id is not needed: it stays in its timer entry, unchanged here.
            .map(|slot| self.unslot(window.start, 0, slot));
        let mut o = match existing {
            Some(o) => o,
            None => {
                let acc = (self.agg.init)();
                let mut o = self.new_open(window, acc, 0);
                self.schedule(key, &mut o);
                o
            }
        };
        (self.agg.add)(&mut o.acc, x);
        if self.due(window) {
            // A late element within the allowed lateness: fire again now.
            self.emit(key, &mut o);
        }
        self.put(key.clone(), o);
    }

    fn add_session(&mut self, key: K, proto: Window, x: &T) {
        let list = self.keys.remove(&key).unwrap_or_default();
        let (overlapping, mut rest): (Vec<_>, Vec<_>) = list
            .into_iter()
            .partition(|o| o.window.start < proto.end && proto.start < o.window.end);
        let mut merged: Option<Open<A>> = None;
        let mut window = proto;
        let mut fired = 0;
        for o in overlapping {
            self.timers.remove(o.timer, o.id);
            window.start = window.start.min(o.window.start);
            window.end = window.end.max(o.window.end);
            fired = fired.max(o.fired);
            match &mut merged {
                None => merged = Some(o),
                Some(m) => {
                    self.open -= 1;
                    if let Some(merge) = &self.agg.merge {
                        merge(&mut m.acc, o.acc);
                    }
                }
            }
        }
        let mut o = match merged {
            Some(mut m) => {
                m.window = window;
                m.fired = fired;
                m
            }
            None => {
                let acc = (self.agg.init)();
                self.new_open(window, acc, 0)
            }
        };
        (self.agg.add)(&mut o.acc, x);
        if self.due(window) {
            self.emit(&key, &mut o);
        }
        self.schedule(&key, &mut o);
        rest.push(o);
        self.keys.insert(key, rest);
    }

    /// Removes window `id` of `key`.
    fn take(&mut self, key: &K, start: u64, id: u64) -> Option<Open<A>> {
        if !matches!(self.spec.shape, Shape::Session { .. }) {
            let slot = self.slots.remove(&SlotKey::new(key.clone(), start))?;
            return Some(self.unslot(start, id, slot));
        }
        let list = self.keys.get_mut(key)?;
        let i = list.iter().position(|o| o.id == id)?;
        let o = list.swap_remove(i);
        if list.is_empty() {
            self.keys.remove(key);
        }
        Some(o)
    }

    fn put(&mut self, key: K, o: Open<A>) {
        if matches!(self.spec.shape, Shape::Session { .. }) {
            self.keys.entry(key).or_default().push(o);
        } else {
            let slot = Slot {
                at_end: o.timer == o.window.end,
                acc: o.acc,
                fired: o.fired,
            };
            self.slots.insert(SlotKey::new(key, o.window.start), slot);
        }
    }

    /// The range of the tumbling or sliding window at `start`.
    fn slot_window(&self, start: u64) -> Window {
        let size = match self.spec.shape {
            Shape::Tumbling { size } | Shape::Sliding { size, .. } => size,
            Shape::Session { gap } => gap,
        };
        Window {
            start,
            end: start.saturating_add(size),
        }
    }

    /// The [`Open`] form of the tumbling or sliding window `id` at `start`.
    fn unslot(&self, start: u64, id: u64, slot: Slot<A>) -> Open<A> {
        let window = self.slot_window(start);
        let end = window.end;
        Open {
            window,
            acc: slot.acc,
            id,
            fired: slot.fired,
            timer: if slot.at_end {
                end
            } else {
                end.saturating_add(self.spec.lateness)
            },
        }
    }

    /// Fires (if not fired yet) and closes the window that needs attention first.
    fn evict_earliest(&mut self) {
        let Some((_, id, key, start)) = self.timers.pop_first() else {
            return;
        };
        if let Some(mut o) = self.take(&key, start, id) {
            if o.timer == o.window.end {
                self.emit(&key, &mut o);
            }
            self.open -= 1;
            self.spec.metrics.add_evicted();
        }
    }

    /// The state as a snapshot: every open window and every waiting result by
    /// the key group of its key, and one unkeyed part with the watermark, the
    /// window ids, the counters and `outer` (the operator's own state).
    pub(crate) fn snapshot<G: Serialize>(
        &self,
        version: u32,
        outer: &G,
    ) -> Result<Snapshot, StateError>
    where
        K: Serialize,
        A: Serialize,
        R: Serialize,
    {
        let mut keys: HashMap<&K, SavedKey<&A, &R>> = HashMap::new();
        // Every open window has exactly one timer: walking them finds each
        // window with its id, also the slots (which do not keep theirs).
        let mut missing = 0_usize;
        self.timers.for_each(|timer, id, key, start| {
            let found = match self.spec.shape {
                Shape::Session { .. } => self
                    .keys
                    .get_key_value(key)
                    .and_then(|(k, list)| Some((k, list.iter().find(|o| o.id == id)?)))
                    .map(|(k, o)| (k, o.window, &o.acc, o.fired)),
                Shape::Tumbling { .. } | Shape::Sliding { .. } => self
                    .slots
                    .get_key_value(&SlotKey::new(key.clone(), start))
                    .map(|(sk, slot)| (&sk.key, self.slot_window(start), &slot.acc, slot.fired)),
            };
            match found {
                Some((k, window, acc, fired)) => {
                    keys.entry(k).or_default().windows.push(SavedWindow {
                        window,
                        acc,
                        id,
                        fired,
                        timer,
                    })
                }
                None => missing += 1,
            }
        });
        if missing > 0 {
            return Err(StateError::Encode(format!(
                "{missing} window timers without their window"
            )));
        }
        for (place, r) in (0_u64..).zip(&self.ready) {
            keys.entry(&r.key).or_default().ready.push(SavedResult {
                place,
                window: r.window,
                value: &r.value,
                firing: r.firing,
            });
        }
        let global = SavedGlobal {
            watermark: self.wm,
            next_id: self.next_id,
            tallies: self.spec.metrics.tallies(),
            outer,
        };
        mixed(version, &global, keys.iter().map(|(k, v)| (*k, v)))
    }

    /// Replaces the state with the windows and results of `snapshot` whose key
    /// groups `ctx` owns; returns the `outer` values stored (one per replica
    /// the snapshot was merged from). Merged from several replicas, the
    /// watermark is the smallest stored: no window fires earlier than it would
    /// have in any of them.
    ///
    /// # Errors
    ///
    /// The snapshot does not decode, or has another version.
    pub(crate) fn restore<G: DeserializeOwned>(
        &mut self,
        snapshot: &Snapshot,
        version: u32,
        ctx: &RestoreContext,
    ) -> Result<Vec<G>, StateError>
    where
        K: DeserializeOwned,
        A: DeserializeOwned,
        R: DeserializeOwned,
    {
        let (globals, keys): Mixed<SavedGlobal<G>, K, SavedKey<A, R>> =
            decode_mixed(snapshot, version, ctx)?;
        self.keys.clear();
        self.slots.clear();
        self.timers.clear();
        self.ready.clear();
        self.last_tumble = (1, 0);
        self.open = 0;
        self.wm = globals.iter().map(|g| g.watermark).min().flatten();
        self.next_id = globals.iter().map(|g| g.next_id).max().unwrap_or(0);
        let mut ready = Vec::new();
        let session = matches!(self.spec.shape, Shape::Session { .. });
        for (key, saved) in keys {
            for w in saved.windows {
                self.next_id = self.next_id.max(w.id);
                self.open += 1;
                self.timers
                    .insert(w.timer, w.id, key.clone(), w.window.start);
                if session {
                    let open = Open {
                        window: w.window,
                        acc: w.acc,
                        id: w.id,
                        fired: w.fired,
                        timer: w.timer,
                    };
                    self.keys.entry(key.clone()).or_default().push(open);
                } else {
                    let slot = Slot {
                        acc: w.acc,
                        fired: w.fired,
                        at_end: w.timer == w.window.end,
                    };
                    self.slots
                        .insert(SlotKey::new(key.clone(), w.window.start), slot);
                }
            }
            for r in saved.ready {
                let result = WindowResult {
                    key: key.clone(),
                    window: r.window,
                    value: r.value,
                    firing: r.firing,
                };
                ready.push((r.place, result));
            }
        }
        ready.sort_by_key(|(place, _)| *place);
        self.ready = ready.into_iter().map(|(_, r)| r).collect();
        let mut outers = Vec::with_capacity(globals.len());
        for g in globals {
            self.spec.metrics.restore_tallies(g.tallies);
            outers.push(g.outer);
        }
        self.spec.metrics.set_open(self.open);
        Ok(outers)
    }

    /// Moves the watermark to `wm` (never back): fires the windows whose end it
    /// reached and closes those past their allowed lateness.
    #[inline]
    pub fn advance(&mut self, wm: u64) {
        if self.wm.is_some_and(|old| old >= wm) {
            return;
        }
        self.advance_to(wm);
    }

    /// [`advance`](Self::advance) when the watermark moves: out of line, since it
    /// is called per element and mostly moves nothing.
    #[inline(never)]
    fn advance_to(&mut self, wm: u64) {
        self.wm = Some(wm);
        while let Some((_, id, key, start)) = self.timers.pop_until(wm) {
            let Some(mut o) = self.take(&key, start, id) else {
                continue;
            };
            if o.timer == o.window.end {
                // Its end came: fire. (Otherwise this was its close.)
                self.emit(&key, &mut o);
            }
            if self.closed(o.window) {
                self.open -= 1;
            } else {
                self.schedule(&key, &mut o);
                self.put(key, o);
            }
        }
        self.spec.metrics.set_open(self.open);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weir_runtime::checkpoint::{key_group_of, replica_of_group};

    use super::*;

    type Sums = KeyedWindows<(u64, u64), u64, Vec<u64>, Vec<u64>>;

    fn engine(spec: &Windows) -> Sums {
        let agg = Aggregate::new(
            Vec::new,
            |acc: &mut Vec<u64>, x: &(u64, u64)| acc.push(x.1),
            Clone::clone,
        )
        .merge(|a, mut b| a.append(&mut b));
        KeyedWindows::new(spec.clone(), agg)
    }

    /// Feeds `(key, ts)` events, advancing the watermark to the largest
    /// timestamp minus 5 after each; what fires (and what was late), in order.
    fn feed(w: &mut Sums, events: &[(u64, u64)], out: &mut Vec<String>) {
        for &(key, ts) in events {
            let admit = w.insert(key, ts, &(key, ts)).unwrap();
            out.push(format!("{admit:?}"));
            let wm = w.watermark().unwrap_or(0).max(ts.saturating_sub(5));
            w.advance(wm);
            while let Some(r) = w.pop_ready() {
                out.push(format!("{r:?}"));
            }
        }
    }

    fn events() -> Vec<(u64, u64)> {
        // Out of order, with elements late beyond 5 ms and sessions that merge.
        (0..120_u64)
            .map(|i| (i % 5, i * 3 + (i * 7 % 11) - (i % 4) * 4))
            .collect()
    }

    fn specs() -> Vec<Windows> {
        let ms = Duration::from_millis;
        vec![
            Windows::tumbling(ms(10)),
            Windows::tumbling(ms(10)).allowed_lateness(ms(8)),
            Windows::sliding(ms(20), ms(5)).allowed_lateness(ms(3)),
            Windows::session(ms(6)).allowed_lateness(ms(4)),
            Windows::tumbling(ms(10)).max_windows(3, WindowOverflow::EmitEarliest),
        ]
    }

    #[test]
    fn a_restored_engine_fires_what_the_uninterrupted_one_fires() {
        let events = events();
        for spec in specs() {
            for k in [0, 1, 13, 60, 119, 120] {
                let mut first = engine(&spec);
                let mut out = Vec::new();
                feed(&mut first, &events[..k], &mut out);
                // Results waiting in the queue are state too.
                first.advance(first.watermark().unwrap_or(0) + 7);
                let waiting = first.ready_len();
                let snapshot = first.snapshot(1, &()).unwrap();
                let mut second = engine(&spec);
                let outers: Vec<()> = second.restore(&snapshot, 1, &Default::default()).unwrap();
                assert_eq!(outers.len(), 1);
                assert_eq!(second.ready_len(), waiting);
                assert_eq!(second.open_windows(), first.open_windows());
                // The same on both sides of the cut: the uninterrupted run
                // advanced the same way at k.
                let mut reference = engine(&spec);
                let mut want = Vec::new();
                feed(&mut reference, &events[..k], &mut want);
                reference.advance(reference.watermark().unwrap_or(0) + 7);
                let mut a = Vec::new();
                let mut b = Vec::new();
                for (e, out) in [(&mut reference, &mut a), (&mut second, &mut b)] {
                    while let Some(r) = e.pop_ready() {
                        out.push(format!("{r:?}"));
                    }
                    feed(e, &events[k..], out);
                    e.advance(u64::MAX);
                    while let Some(r) = e.pop_ready() {
                        out.push(format!("{r:?}"));
                    }
                }
                assert!(a.iter().filter(|l| l.starts_with("WindowResult")).count() > 0);
                assert_eq!(a, b, "{spec:?} at {k}");
            }
        }
    }

    #[test]
    fn replicas_restore_exactly_the_windows_of_their_keys() {
        let spec =
            Windows::tumbling(Duration::from_millis(10)).allowed_lateness(Duration::from_millis(8));
        let events: Vec<(u64, u64)> = (0..300_u64).map(|i| (i % 40, i / 2)).collect();
        let mut w = engine(&spec);
        feed(&mut w, &events, &mut Vec::new());
        let snapshot = w.snapshot(1, &7_u8).unwrap();
        let mut whole = Vec::new();
        w.advance(u64::MAX);
        while let Some(r) = w.pop_ready() {
            whole.push(r);
        }
        for n in [2, 8] {
            let mut union = Vec::new();
            for i in 0..n {
                let ctx = RestoreContext {
                    replica: Some((i, n)),
                    ..RestoreContext::default()
                };
                let mut r = engine(&spec);
                let outers: Vec<u8> = r.restore(&snapshot, 1, &ctx).unwrap();
                assert_eq!(outers, [7]);
                r.advance(u64::MAX);
                while let Some(x) = r.pop_ready() {
                    assert_eq!(replica_of_group(key_group_of(&x.key), n), i);
                    union.push(x);
                }
            }
            union.sort();
            let mut want = whole.clone();
            want.sort();
            assert_eq!(union, want, "n = {n}");
        }
    }

    #[test]
    fn another_version_is_refused() {
        let spec = Windows::tumbling(Duration::from_millis(10));
        let mut w = engine(&spec);
        w.insert(1, 3, &(1, 3)).unwrap();
        let snapshot = w.snapshot(1, &()).unwrap();
        let r: Result<Vec<()>, _> = engine(&spec).restore(&snapshot, 2, &Default::default());
        assert!(
            matches!(
                r,
                Err(StateError::Version {
                    found: 1,
                    expected: 2
                })
            ),
            "{r:?}"
        );
    }
}
