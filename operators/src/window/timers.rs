//! [`Timers`]: when each open window next needs attention (its end, then its
//! close), in the order the windows are handled: by time, then by window id
//! (creation order).
//!
//! Two layouts with the same behaviour:
//!
//! - [`Timers::each`]: one `BTreeMap` entry per window, keyed by `(time, id)`.
//!   Any window shape; entries can be removed one by one (sessions merge).
//! - [`Timers::aligned`]: one bucket per time, holding its windows in arrival
//!   order, sorted by id only if they came out of order (rare: a window that
//!   fired and waits for its close joins a bucket after windows created later).
//!   For tumbling and sliding windows many windows (one per key) share an end,
//!   so a window costs a push into a bucket instead of a tree insert and a
//!   removal. Removal of one entry is a linear search in its bucket.

use std::collections::{BTreeMap, VecDeque};

/// One entry: the window's id, key and start.
type Entry<K> = (u64, K, u64);

/// The windows due at one time.
struct Bucket<K> {
    entries: VecDeque<Entry<K>>,
    /// Entries are in increasing id order.
    sorted: bool,
}

impl<K> Bucket<K> {
    fn sort(&mut self) {
        if !self.sorted {
            self.entries.make_contiguous().sort_unstable_by_key(|e| e.0);
            self.sorted = true;
        }
    }
}

enum Layout<K> {
    Each(BTreeMap<(u64, u64), (K, u64)>),
    Aligned(BTreeMap<u64, Bucket<K>>),
}

/// Timers of open windows, earliest `(time, id)` first.
pub(crate) struct Timers<K> {
    layout: Layout<K>,
    len: usize,
    /// The allocation of the last bucket emptied, for the next one: a bucket
    /// holds one entry per key, and the windows of a time come and go together.
    spare: VecDeque<Entry<K>>,
}

impl<K> Timers<K> {
    /// One tree entry per window.
    pub(crate) fn each() -> Self {
        Timers {
            layout: Layout::Each(BTreeMap::new()),
            len: 0,
            spare: VecDeque::new(),
        }
    }

    /// One bucket per time (for windows that share ends).
    pub(crate) fn aligned() -> Self {
        Timers {
            layout: Layout::Aligned(BTreeMap::new()),
            len: 0,
            spare: VecDeque::new(),
        }
    }

    /// Timers set.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sets window `id`'s (key `key`, start `start`) timer at `at`.
    pub(crate) fn insert(&mut self, at: u64, id: u64, key: K, start: u64) {
        self.len += 1;
        match &mut self.layout {
            Layout::Each(map) => {
                map.insert((at, id), (key, start));
            }
            Layout::Aligned(map) => {
                let spare = &mut self.spare;
                let bucket = map.entry(at).or_insert_with(|| Bucket {
                    entries: std::mem::take(spare),
                    sorted: true,
                });
                if bucket.entries.back().is_some_and(|last| last.0 > id) {
                    bucket.sorted = false;
                }
                bucket.entries.push_back((id, key, start));
            }
        }
    }

    /// Removes window `id`'s timer at `at`, if set.
    pub(crate) fn remove(&mut self, at: u64, id: u64) {
        let removed = match &mut self.layout {
            Layout::Each(map) => map.remove(&(at, id)).is_some(),
            Layout::Aligned(map) => match map.get_mut(&at) {
                Some(bucket) => {
                    let i = bucket.entries.iter().position(|e| e.0 == id);
                    let found = i.and_then(|i| bucket.entries.remove(i)).is_some();
                    if bucket.entries.is_empty()
                        && let Some(empty) = map.remove(&at)
                    {
                        self.spare = empty.entries;
                    }
                    found
                }
                None => false,
            },
        };
        if removed {
            self.len -= 1;
        }
    }

    /// The earliest time set.
    pub(crate) fn next(&self) -> Option<u64> {
        match &self.layout {
            Layout::Each(map) => map.keys().next().map(|&(t, _)| t),
            Layout::Aligned(map) => map.keys().next().copied(),
        }
    }

    /// Takes the earliest timer `(time, id, key, start)` if its time is at most
    /// `limit`.
    pub(crate) fn pop_until(&mut self, limit: u64) -> Option<(u64, u64, K, u64)> {
        let popped = match &mut self.layout {
            Layout::Each(map) => {
                let entry = map.first_entry()?;
                if entry.key().0 > limit {
                    return None;
                }
                let ((at, id), (key, start)) = entry.remove_entry();
                (at, id, key, start)
            }
            Layout::Aligned(map) => {
                let mut entry = map.first_entry()?;
                let at = *entry.key();
                if at > limit {
                    return None;
                }
                let bucket = entry.get_mut();
                bucket.sort();
                let popped = bucket.entries.pop_front();
                if bucket.entries.is_empty() {
                    self.spare = entry.remove().entries;
                }
                let (id, key, start) = popped?;
                (at, id, key, start)
            }
        };
        self.len -= 1;
        Some(popped)
    }

    /// Every timer `(time, id, key, start)`, in no particular order (one per
    /// open window: what a snapshot walks).
    pub(crate) fn for_each(&self, mut f: impl FnMut(u64, u64, &K, u64)) {
        match &self.layout {
            Layout::Each(map) => {
                for (&(at, id), (key, start)) in map {
                    f(at, id, key, *start);
                }
            }
            Layout::Aligned(map) => {
                for (&at, bucket) in map {
                    for (id, key, start) in &bucket.entries {
                        f(at, *id, key, *start);
                    }
                }
            }
        }
    }

    /// Removes every timer.
    pub(crate) fn clear(&mut self) {
        match &mut self.layout {
            Layout::Each(map) => map.clear(),
            Layout::Aligned(map) => map.clear(),
        }
        self.len = 0;
    }

    /// Takes the earliest timer, whatever its time.
    pub(crate) fn pop_first(&mut self) -> Option<(u64, u64, K, u64)> {
        self.pop_until(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so the test needs no crate.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    /// Random inserts (ids mostly increasing, some out of order), removals and
    /// pops: the aligned layout gives what the per-window tree gives, in order.
    #[test]
    fn aligned_layout_pops_like_the_tree() {
        for seed in 1..200_u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let (mut tree, mut aligned) = (Timers::each(), Timers::aligned());
            let mut set: Vec<(u64, u64)> = Vec::new();
            let mut next_id = 0;
            for _ in 0..300 {
                match rng.below(10) {
                    0..=4 => {
                        next_id += 1;
                        let id = if rng.below(5) == 0 {
                            rng.below(next_id) + 1
                        } else {
                            next_id
                        };
                        let at = rng.below(8) * 10;
                        if set.contains(&(at, id)) {
                            continue;
                        }
                        set.push((at, id));
                        tree.insert(at, id, id % 3, at);
                        aligned.insert(at, id, id % 3, at);
                    }
                    5 if !set.is_empty() => {
                        let (at, id) = set.swap_remove(rng.below(set.len() as u64) as usize);
                        tree.remove(at, id);
                        aligned.remove(at, id);
                    }
                    6 => {
                        let a = tree.pop_first();
                        assert_eq!(a, aligned.pop_first(), "seed {seed}");
                        if let Some((at, id, _, _)) = a {
                            set.retain(|&e| e != (at, id));
                        }
                    }
                    _ => {
                        let limit = rng.below(90);
                        loop {
                            let a = tree.pop_until(limit);
                            assert_eq!(a, aligned.pop_until(limit), "seed {seed}");
                            let Some((at, id, _, _)) = a else { break };
                            assert!(at <= limit);
                            set.retain(|&e| e != (at, id));
                        }
                    }
                }
                assert_eq!(tree.next(), aligned.next(), "seed {seed}");
                assert_eq!((tree.len(), aligned.len()), (set.len(), set.len()));
            }
        }
    }
}
