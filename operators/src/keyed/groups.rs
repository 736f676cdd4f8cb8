//! [`Groups`]: per-key entries split by key group, each group shared with a
//! checkpoint's writer thread by a snapshot and copied on the stage's next write
//! to it. The entries of a [`KeyedState`](super::state::KeyedState) (keyed
//! `scan`, `reduce`, `fold`, `aggregate`, `dedupe`) and the rows of a join
//! ([`Rows`](crate::join)) are held this way.
//!
//! A snapshot [freezes](Groups::freeze) every non-empty group: it moves the group's
//! map into an `Arc` (no entry is copied) and hands the writer a clone of each
//! `Arc`, so the stage pauses for microseconds whatever the size of the state. The
//! writer encodes the frozen maps, which no one changes, and drops them. The
//! stage's next write to a frozen group *thaws* it: takes the map back if the
//! writer is done with it, or else copies that one group (about 1/128 of the
//! state). Reads of a frozen group copy nothing.

use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::sync::Arc;

use weir_runtime::checkpoint::{KEY_GROUPS, key_group_of};

/// The entries of one key group.
pub(crate) type Map<K, V> = crate::hash::StateMap<K, V>;

/// Which of the [`KEY_GROUPS`] groups of a [`Groups`] a key is in, computed
/// once per element and passed to every [`Groups`] call for that key.
///
/// Two ways to choose, each state keeping to one: [`of`](Self::of), the key's
/// checkpoint key group ([`key_group_of`], a stable hash), so that each group
/// is one part of the snapshot as it is (the keyed state); or
/// [`spread`](Self::spread), a fast hash of the state's own, for a state whose
/// snapshot regroups its entries by key group on the writer anyway (the join's
/// rows, through [`Snapshot::keyed`](weir_runtime::checkpoint::Snapshot::keyed)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyGroup(u16);

/// The hash [`KeyGroup::spread`] spreads keys with: foldhash, seeded once per
/// state.
pub(crate) type Spread = foldhash::fast::RandomState;

impl KeyGroup {
    /// The checkpoint key group of `key`.
    pub(crate) fn of<K: Hash + ?Sized>(key: &K) -> Self {
        KeyGroup(key_group_of(key))
    }

    /// A group of `key` by `spread` (its top bits): a few times cheaper than
    /// [`of`](Self::of), but not a checkpoint key group.
    #[inline]
    pub(crate) fn spread<K: Hash + ?Sized>(key: &K, spread: &Spread) -> Self {
        use std::hash::BuildHasher;
        const BITS: u32 = KEY_GROUPS.trailing_zeros();
        let top = spread.hash_one(key) >> (u64::BITS - BITS);
        KeyGroup(u16::try_from(top).unwrap_or(0))
    }

    fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A group's map as a snapshot shares it: behind a trait object, so that a state
/// whose types are not `Sync` (and so is never frozen) is still `Send`.
pub(crate) trait FrozenMap<K, V>: Send + Sync {
    fn map(&self) -> &Map<K, V>;

    /// The map, to write to again: taken back if no one else holds it, or else
    /// copied.
    fn thaw(self: Arc<Self>) -> Map<K, V>;
}

impl<K, V> FrozenMap<K, V> for Map<K, V>
where
    K: Clone + Send + Sync,
    V: Clone + Send + Sync,
{
    fn map(&self) -> &Map<K, V> {
        self
    }

    fn thaw(self: Arc<Self>) -> Map<K, V> {
        Arc::try_unwrap(self).unwrap_or_else(|shared| Map::clone(&shared))
    }
}

/// A group's frozen map, shared by the state and a snapshot's writer.
pub(crate) type Frozen<K, V> = Arc<dyn FrozenMap<K, V>>;

/// A group the stage owns, or one a snapshot shares with the writer.
enum Group<K, V> {
    Owned(Map<K, V>),
    Frozen(Frozen<K, V>),
}

impl<K, V> Group<K, V> {
    fn map(&self) -> &Map<K, V> {
        match self {
            Group::Owned(map) => map,
            Group::Frozen(frozen) => frozen.map(),
        }
    }

    /// The map, to write to: a frozen group is thawed.
    fn owned(&mut self) -> &mut Map<K, V> {
        if matches!(self, Group::Frozen(_))
            && let Group::Frozen(frozen) = std::mem::replace(self, Group::Owned(Map::default()))
        {
            *self = Group::Owned(frozen.thaw());
        }
        match self {
            Group::Owned(map) => map,
            // Thawed above.
            Group::Frozen(_) => unreachable!("a frozen group after its thaw"),
        }
    }
}

/// Per-key entries by key group ([`KEY_GROUPS`] groups), and their
/// number.
pub(crate) struct Groups<K, V> {
    groups: Box<[Group<K, V>]>,
    len: usize,
}

impl<K: Hash + Eq, V> Groups<K, V> {
    pub(crate) fn new() -> Self {
        Groups {
            groups: (0..KEY_GROUPS)
                .map(|_| Group::Owned(Map::default()))
                .collect(),
            len: 0,
        }
    }

    /// The keys held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, g: KeyGroup, key: &K) -> Option<&V> {
        self.groups[g.index()].map().get(key)
    }

    /// The entry of `key`, to write to. Thaws the group only if `key` is in it.
    pub(crate) fn get_mut(&mut self, g: KeyGroup, key: &K) -> Option<&mut V> {
        let group = &mut self.groups[g.index()];
        if let Group::Frozen(frozen) = group
            && !frozen.map().contains_key(key)
        {
            return None;
        }
        group.owned().get_mut(key)
    }

    /// Inserts `key` (replacing its entry if it is held) and gives its entry.
    pub(crate) fn insert(&mut self, g: KeyGroup, key: K, value: V) -> &mut V {
        match self.groups[g.index()].owned().entry(key) {
            Entry::Vacant(vacant) => {
                self.len += 1;
                vacant.insert(value)
            }
            Entry::Occupied(occupied) => {
                let held = occupied.into_mut();
                *held = value;
                held
            }
        }
    }

    /// Removes `key`. Thaws the group only if `key` is in it.
    pub(crate) fn remove(&mut self, g: KeyGroup, key: &K) -> Option<V> {
        let group = &mut self.groups[g.index()];
        if let Group::Frozen(frozen) = group
            && !frozen.map().contains_key(key)
        {
            return None;
        }
        let value = group.owned().remove(key)?;
        self.len -= 1;
        Some(value)
    }

    /// The entry of `key`, made with `empty` if it is not held.
    pub(crate) fn get_or_insert_with(
        &mut self,
        g: KeyGroup,
        key: K,
        empty: impl FnOnce() -> V,
    ) -> &mut V {
        match self.groups[g.index()].owned().entry(key) {
            Entry::Vacant(vacant) => {
                self.len += 1;
                vacant.insert(empty())
            }
            Entry::Occupied(occupied) => occupied.into_mut(),
        }
    }

    /// Changes the entry of `key` with `change`, and removes it if that leaves
    /// it `spent`, with one lookup. Thaws the group only if `key` is in it.
    /// `None` if `key` is not held.
    pub(crate) fn change<T>(
        &mut self,
        g: KeyGroup,
        key: K,
        change: impl FnOnce(&mut V) -> T,
        spent: impl FnOnce(&V) -> bool,
    ) -> Option<T> {
        let group = &mut self.groups[g.index()];
        if let Group::Frozen(frozen) = group
            && !frozen.map().contains_key(&key)
        {
            return None;
        }
        let Entry::Occupied(mut entry) = group.owned().entry(key) else {
            return None;
        };
        let changed = change(entry.get_mut());
        if spent(entry.get()) {
            entry.remove();
            self.len -= 1;
        }
        Some(changed)
    }

    /// The keys held, in no order.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// Every entry, group by group.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.groups.iter().flat_map(|g| g.map().iter())
    }

    /// The non-empty groups, in order, with their key group.
    pub(crate) fn maps(&self) -> impl Iterator<Item = (u16, &Map<K, V>)> {
        self.groups
            .iter()
            .zip(0..)
            .map(|(group, g)| (g, group.map()))
            .filter(|(_, map)| !map.is_empty())
    }

    /// Removes every entry. A frozen group is taken back or copied (only a
    /// snapshot's writer can still hold it).
    pub(crate) fn drain(&mut self) -> Vec<(K, V)> {
        let mut all = Vec::with_capacity(self.len);
        for group in self.groups.iter_mut().filter(|g| !g.map().is_empty()) {
            all.extend(group.owned().drain());
        }
        self.len = 0;
        all
    }

    /// Empties every group (a frozen one is let go, not copied).
    pub(crate) fn clear(&mut self) {
        for group in self.groups.iter_mut() {
            match group {
                Group::Owned(map) => map.clear(),
                Group::Frozen(_) => *group = Group::Owned(Map::default()),
            }
        }
        self.len = 0;
    }

    /// Shares every non-empty group with the caller (a snapshot's writer): the
    /// groups as they are now, which the stage no longer changes (its next write
    /// to one thaws it). O(groups): no entry is copied.
    pub(crate) fn freeze(&mut self) -> Vec<(u16, Frozen<K, V>)>
    where
        K: Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let mut shared = Vec::new();
        for (group, g) in self.groups.iter_mut().zip(0..) {
            let frozen = match group {
                Group::Owned(map) if map.is_empty() => continue,
                Group::Owned(map) => {
                    let frozen: Frozen<K, V> = Arc::new(std::mem::take(map));
                    *group = Group::Frozen(Arc::clone(&frozen));
                    frozen
                }
                Group::Frozen(frozen) => Arc::clone(frozen),
            };
            shared.push((g, frozen));
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::state::Slot;
    use super::*;

    fn slot(value: u64) -> Slot<u64> {
        Slot {
            value,
            seq: value,
            touched: Instant::now(),
        }
    }

    fn values(groups: &Groups<u64, Slot<u64>>) -> Vec<(u64, u64)> {
        let mut all: Vec<_> = groups.iter().map(|(k, s)| (*k, s.value)).collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn a_frozen_group_is_copied_on_write_and_taken_back_once_let_go() {
        let mut groups = Groups::new();
        for k in 0..1_000_u64 {
            groups.insert(KeyGroup::of(&k), k, slot(k));
        }
        let frozen = groups.freeze();
        assert_eq!(
            frozen.iter().map(|(_, m)| m.map().len()).sum::<usize>(),
            1_000
        );

        // Writes after the freeze go to copies; the frozen maps keep the values.
        let k = 7_u64;
        let g = KeyGroup::of(&k);
        groups.get_mut(g, &k).unwrap().value = 70;
        assert!(groups.remove(KeyGroup::of(&8_u64), &8).is_some());
        assert!(groups.get_mut(g, &5_000).is_none());
        let in_frozen = |key: u64| {
            let (_, map) = frozen
                .iter()
                .find(|(fg, _)| *fg == KeyGroup::of(&key).0)
                .unwrap();
            map.map().get(&key).map(|s| s.value)
        };
        assert_eq!((in_frozen(7), in_frozen(8)), (Some(7), Some(8)));
        assert_eq!(groups.get(g, &k).unwrap().value, 70);
        assert_eq!(groups.len(), 999);

        // Once the writer lets go, a frozen group is taken back, not copied: its
        // entries stay where they are.
        let k = (0..1_000_u64)
            .find(|k| ![7, 8].map(|t| KeyGroup::of(&t)).contains(&KeyGroup::of(k)))
            .unwrap();
        let (_, map) = frozen
            .iter()
            .find(|(fg, _)| *fg == KeyGroup::of(&k).0)
            .unwrap();
        let at = |s: &Slot<u64>| std::ptr::from_ref(s) as usize;
        let frozen_at = at(map.map().get(&k).unwrap());
        drop(frozen);
        let thawed = groups.get_mut(KeyGroup::of(&k), &k).unwrap();
        assert_eq!(at(thawed), frozen_at);

        let mut want: Vec<(u64, u64)> = (0..1_000).filter(|k| *k != 8).map(|k| (k, k)).collect();
        want[7].1 = 70;
        assert_eq!(values(&groups), want);
        assert_eq!(groups.drain().len(), 999);
        assert_eq!(groups.len(), 0);
    }

    /// The pause of a freeze and of each group's first write while the writer
    /// holds the frozen groups, at 10⁶ keys (u64 keys and values).
    #[test]
    #[ignore = "a timing: cargo test --release -p weir-operators copy_on_write_cost -- --ignored --nocapture"]
    fn copy_on_write_cost() {
        let mut groups = Groups::new();
        for k in 0..1_000_000_u64 {
            groups.insert(KeyGroup::of(&k), k, slot(k));
        }
        let mut freezes = Vec::new();
        let mut thaws = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let frozen = groups.freeze();
            freezes.push(t.elapsed());
            for (g, map) in &frozen {
                let key = *map.map().keys().next().unwrap();
                let t = Instant::now();
                groups.get_mut(KeyGroup(*g), &key).unwrap().value += 1;
                thaws.push(t.elapsed());
            }
        }
        freezes.sort_unstable();
        thaws.sort_unstable();
        let p = |v: &[std::time::Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
        println!(
            "freeze: median {:?} max {:?}; first write to a frozen group (copy): median {:?} p99 {:?} max {:?}",
            p(&freezes, 0.5),
            freezes[freezes.len() - 1],
            p(&thaws, 0.5),
            p(&thaws, 0.99),
            thaws[thaws.len() - 1],
        );
    }
}
