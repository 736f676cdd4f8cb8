//! [`KeyedWindows`]: the keyed window state the window operators share.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;

use super::spec::{Aggregate, Shape, Window, WindowOverflow, WindowResult, Windows};
use super::timers::Timers;

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
    keys: HashMap<K, Vec<Open<A>>>,
    /// Tumbling and sliding windows, by key and start: one lookup per element.
    slots: HashMap<SlotKey<K>, Slot<A>>,
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
            keys: HashMap::new(),
            slots: HashMap::new(),
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

    /// The [`Open`] form of the tumbling or sliding window `id` at `start`.
    fn unslot(&self, start: u64, id: u64, slot: Slot<A>) -> Open<A> {
        let size = match self.spec.shape {
            Shape::Tumbling { size } | Shape::Sliding { size, .. } => size,
            Shape::Session { gap } => gap,
        };
        let end = start.saturating_add(size);
        Open {
            window: Window { start, end },
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
