//! [`Groups`]: the entries of a [`KeyedState`](super::state::KeyedState), split by
//! key group, each group shared with a checkpoint's writer thread by a snapshot and
//! copied on the stage's next write to it.
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
use std::time::Instant;

use weir_runtime::checkpoint::{KEY_GROUPS, key_group_of};

/// One key's value, with its place in the recency order and its last touch.
#[derive(Clone)]
pub(crate) struct Slot<S> {
    pub(crate) value: S,
    pub(crate) seq: u64,
    pub(crate) touched: Instant,
}

/// The entries of one key group.
pub(crate) type Map<K, S> = crate::hash::StateMap<K, Slot<S>>;

/// The key group of a key ([`key_group_of`]), computed once per element and
/// passed to every [`Groups`] call for that key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyGroup(u16);

impl KeyGroup {
    pub(crate) fn of<K: Hash + ?Sized>(key: &K) -> Self {
        KeyGroup(key_group_of(key))
    }

    fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A group's map as a snapshot shares it: behind a trait object, so that a state
/// whose types are not `Sync` (and so is never frozen) is still `Send`.
pub(crate) trait FrozenMap<K, S>: Send + Sync {
    fn map(&self) -> &Map<K, S>;

    /// The map, to write to again: taken back if no one else holds it, or else
    /// copied.
    fn thaw(self: Arc<Self>) -> Map<K, S>;
}

impl<K, S> FrozenMap<K, S> for Map<K, S>
where
    K: Clone + Send + Sync,
    S: Clone + Send + Sync,
{
    fn map(&self) -> &Map<K, S> {
        self
    }

    fn thaw(self: Arc<Self>) -> Map<K, S> {
        Arc::try_unwrap(self).unwrap_or_else(|shared| Map::clone(&shared))
    }
}

/// A group's frozen map, shared by the state and a snapshot's writer.
pub(crate) type Frozen<K, S> = Arc<dyn FrozenMap<K, S>>;

/// A group the stage owns, or one a snapshot shares with the writer.
enum Group<K, S> {
    Owned(Map<K, S>),
    Frozen(Frozen<K, S>),
}

impl<K, S> Group<K, S> {
    fn map(&self) -> &Map<K, S> {
        match self {
            Group::Owned(map) => map,
            Group::Frozen(frozen) => frozen.map(),
        }
    }

    /// The map, to write to: a frozen group is thawed.
    fn owned(&mut self) -> &mut Map<K, S> {
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

/// The entries of a keyed state by key group ([`KEY_GROUPS`] groups), and their
/// number.
pub(crate) struct Groups<K, S> {
    groups: Box<[Group<K, S>]>,
    len: usize,
}

impl<K: Hash + Eq, S> Groups<K, S> {
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

    pub(crate) fn get(&self, g: KeyGroup, key: &K) -> Option<&Slot<S>> {
        self.groups[g.index()].map().get(key)
    }

    /// The slot of `key`, to write to. Thaws the group only if `key` is in it.
    pub(crate) fn get_mut(&mut self, g: KeyGroup, key: &K) -> Option<&mut Slot<S>> {
        let group = &mut self.groups[g.index()];
        if let Group::Frozen(frozen) = group
            && !frozen.map().contains_key(key)
        {
            return None;
        }
        group.owned().get_mut(key)
    }

    /// Inserts `key` (not held yet) and gives its slot.
    pub(crate) fn insert(&mut self, g: KeyGroup, key: K, slot: Slot<S>) -> &mut Slot<S> {
        match self.groups[g.index()].owned().entry(key) {
            Entry::Vacant(vacant) => {
                self.len += 1;
                vacant.insert(slot)
            }
            Entry::Occupied(occupied) => {
                let held = occupied.into_mut();
                *held = slot;
                held
            }
        }
    }

    /// Removes `key`. Thaws the group only if `key` is in it.
    pub(crate) fn remove(&mut self, g: KeyGroup, key: &K) -> Option<Slot<S>> {
        let group = &mut self.groups[g.index()];
        if let Group::Frozen(frozen) = group
            && !frozen.map().contains_key(key)
        {
            return None;
        }
        let slot = group.owned().remove(key)?;
        self.len -= 1;
        Some(slot)
    }

    /// Every entry, group by group.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &Slot<S>)> {
        self.groups.iter().flat_map(|g| g.map().iter())
    }

    /// The non-empty groups, in order, with their key group.
    pub(crate) fn maps(&self) -> impl Iterator<Item = (u16, &Map<K, S>)> {
        self.groups
            .iter()
            .zip(0..)
            .map(|(group, g)| (g, group.map()))
            .filter(|(_, map)| !map.is_empty())
    }

    /// Removes every entry. A frozen group is taken back or copied (only a
    /// snapshot's writer can still hold it).
    pub(crate) fn drain(&mut self) -> Vec<(K, Slot<S>)> {
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
    pub(crate) fn freeze(&mut self) -> Vec<(u16, Frozen<K, S>)>
    where
        K: Clone + Send + Sync + 'static,
        S: Clone + Send + Sync + 'static,
    {
        let mut shared = Vec::new();
        for (group, g) in self.groups.iter_mut().zip(0..) {
            let frozen = match group {
                Group::Owned(map) if map.is_empty() => continue,
                Group::Owned(map) => {
                    let frozen: Frozen<K, S> = Arc::new(std::mem::take(map));
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
    use super::*;

    fn slot(value: u64) -> Slot<u64> {
        Slot {
            value,
            seq: value,
            touched: Instant::now(),
        }
    }

    fn values(groups: &Groups<u64, u64>) -> Vec<(u64, u64)> {
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
