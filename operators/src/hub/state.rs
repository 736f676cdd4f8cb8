//! The engine behind a broadcast hub: one bounded queue per subscriber, all under
//! one lock, so that an element is published to every subscriber at one instant.
//!
//! Time-based detaching is evaluated lazily: every access (a publication, a read,
//! a stats call) first applies what the clock says should already have happened,
//! so the result is the same as with a timer, without one.
//!
//! Under a runtime memory budget every buffered element is charged ([`Charge`]:
//! the sink stage's `HeldCharge`) from the moment a subscriber's buffer takes
//! it until it leaves: read, evicted by the lag policy, dropped by a detach,
//! or with its subscriber.
//!
//! This file depends on nothing but the hub's own types, `LagPolicy`, tokio's
//! `Instant` and the `sync` module beside it (`super::sync`: `std`'s lock in
//! weir-operators), so that the loom model in `models/tests/hub_attach.rs`
//! compiles the same code against loom's lock and checks subscribers
//! attaching and leaving while the sink publishes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::task::Waker;

use tokio::time::Instant;
use weir_runtime::junction::LagPolicy;

use super::sync::{Mutex, MutexGuard, PoisonError};
use super::{HubEnd, NoSubscriber, SubscriberStats};

/// The subscriber buffers' share of a memory budget, one element at a time
/// (the sink stage's `HeldCharge` in weir-operators, a counter in the model).
pub(crate) trait Charge<T>: Send + Sync {
    /// The bytes `element` is charged.
    fn size_of(&self, element: &T) -> u64;
    /// One element of `bytes` entered a buffer.
    fn charge(&self, bytes: u64);
    /// One element of `bytes`, charged before, left its buffer.
    fn release(&self, bytes: u64);
}

/// The state shared by the hub's sink, its handles and its subscribers.
pub(crate) struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    pub(crate) fn new(when_alone: NoSubscriber) -> Self {
        Shared {
            state: Mutex::new(State {
                slots: BTreeMap::new(),
                next_id: 0,
                handles: 1,
                sink_waker: None,
                end: None,
                delivered: 0,
                unclaimed: 0,
                when_alone,
                charge: None,
            }),
        }
    }

    /// Locks the state. A panic while it was held (a user `Clone`) leaves it
    /// consistent: nothing is mutated before the clones are made.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) struct State<T> {
    slots: BTreeMap<u64, Slot<T>>,
    next_id: u64,
    /// Live `BroadcastHub` handles.
    pub(crate) handles: usize,
    /// The sink's waker while it waits for room (or for a first subscriber).
    sink_waker: Option<Waker>,
    pub(crate) end: Option<HubEnd>,
    /// Elements that entered at least one subscriber's buffer.
    pub(crate) delivered: u64,
    /// Elements no subscriber took.
    pub(crate) unclaimed: u64,
    when_alone: NoSubscriber,
    /// The buffers' charge to a memory budget, under one.
    charge: Option<Arc<dyn Charge<T>>>,
}

/// One subscriber's queue and counts.
pub(crate) struct Slot<T> {
    /// The buffered elements, each with its index among those offered to the
    /// subscriber (its `offered` count when it arrived).
    pub(crate) queue: VecDeque<(u64, T)>,
    pub(crate) capacity: usize,
    pub(crate) policy: LagPolicy,
    waker: Option<Waker>,
    offered: u64,
    received: u64,
    dropped: u64,
    detachments: u64,
    detached: bool,
    /// Since when elements have waited beyond `capacity` without a read.
    lagging_since: Option<Instant>,
    /// The hub's charge to a memory budget, under one.
    charge: Option<Arc<dyn Charge<T>>>,
}

/// What a subscriber's policy does with the next element.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Decision {
    Accept,
    /// Drop the oldest buffered element, then accept.
    EvictOldest,
    Drop,
    /// Detach: drop what waits beyond the capacity, and the new element.
    DetachAndDrop,
}

impl Decision {
    fn takes(self) -> bool {
        matches!(self, Decision::Accept | Decision::EvictOldest)
    }
}

impl<T> Slot<T> {
    fn new(capacity: usize, policy: LagPolicy, charge: Option<Arc<dyn Charge<T>>>) -> Self {
        Slot {
            queue: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            policy,
            waker: None,
            offered: 0,
            received: 0,
            dropped: 0,
            detachments: 0,
            detached: false,
            lagging_since: None,
            charge,
        }
    }

    /// `x` left the buffer: its bytes leave the budget.
    fn released(&self, x: &T) {
        if let Some(c) = &self.charge {
            c.release(c.size_of(x));
        }
    }

    /// The most elements the queue may hold: the capacity plus what the policy lets
    /// wait beyond it.
    fn limit(&self) -> usize {
        let extra = match self.policy {
            LagPolicy::Block => 0,
            LagPolicy::DropNewest { buffer } | LagPolicy::DropOldest { buffer } => buffer,
            LagPolicy::Detach { max_lag, .. } => max_lag,
        };
        self.capacity.saturating_add(extra)
    }

    /// True when this subscriber holds the hub back: it blocks and is full.
    fn blocks(&self) -> bool {
        self.policy == LagPolicy::Block && self.queue.len() >= self.capacity
    }

    /// Applies an overdue `max_wait`, and reattaches a detached subscriber that has
    /// caught up (its buffer is empty).
    pub(crate) fn refresh(&mut self, now: Instant) {
        if let LagPolicy::Detach {
            max_wait: Some(max_wait),
            ..
        } = self.policy
            && !self.detached
            && let Some(since) = self.lagging_since
            && now.saturating_duration_since(since) >= max_wait
        {
            self.detach();
        }
        if self.detached && self.queue.is_empty() {
            self.detached = false;
        }
    }

    /// Drops what waits beyond the capacity (the newest) and stops taking elements
    /// until the buffer is empty.
    fn detach(&mut self) {
        let beyond = self.queue.len().saturating_sub(self.capacity);
        for (_, x) in self.queue.range(self.capacity.min(self.queue.len())..) {
            self.released(x);
        }
        self.queue.truncate(self.capacity);
        self.dropped += beyond as u64;
        self.detached = true;
        self.detachments += 1;
        self.lagging_since = None;
    }

    fn decide(&self) -> Decision {
        let full = self.queue.len() >= self.limit();
        match self.policy {
            LagPolicy::Block => Decision::Accept,
            LagPolicy::DropNewest { .. } if full => Decision::Drop,
            LagPolicy::DropOldest { .. } if full => Decision::EvictOldest,
            LagPolicy::Detach { .. } if self.detached => Decision::Drop,
            LagPolicy::Detach { .. } if full => Decision::DetachAndDrop,
            _ => Decision::Accept,
        }
    }

    fn apply(&mut self, decision: Decision, x: Option<T>, now: Instant) {
        let index = self.offered;
        self.offered += 1;
        match decision {
            Decision::Accept | Decision::EvictOldest => {
                if decision == Decision::EvictOldest
                    && let Some((_, old)) = self.queue.pop_front()
                {
                    self.released(&old);
                    self.dropped += 1;
                }
                if let (Some(c), Some(x)) = (&self.charge, &x) {
                    c.charge(c.size_of(x));
                }
                self.queue.extend(x.map(|x| (index, x)));
                if self.queue.len() > self.capacity && self.lagging_since.is_none() {
                    self.lagging_since = Some(now);
                }
            }
            Decision::Drop => self.dropped += 1,
            Decision::DetachAndDrop => {
                self.detach();
                self.dropped += 1;
            }
        }
    }

    /// Takes the oldest buffered element, with its index, for the subscriber.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<(u64, T)> {
        self.refresh(now);
        let x = self.queue.pop_front()?;
        self.released(&x.1);
        self.received += 1;
        self.lagging_since = (self.queue.len() > self.capacity).then_some(now);
        if self.detached && self.queue.is_empty() {
            self.detached = false;
        }
        Some(x)
    }

    pub(crate) fn register(&mut self, waker: &Waker) {
        match &self.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.waker = Some(waker.clone()),
        }
    }

    pub(crate) fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            offered: self.offered,
            received: self.received,
            dropped: self.dropped,
            buffered: self.queue.len(),
            detachments: self.detachments,
            detached: self.detached,
        }
    }
}

impl<T> State<T> {
    pub(crate) fn add(&mut self, capacity: usize, policy: LagPolicy) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let charge = self.charge.clone();
        self.slots.insert(id, Slot::new(capacity, policy, charge));
        id
    }

    /// Removes a subscriber; what its buffer held is dropped with it (and
    /// leaves the memory budget now).
    pub(crate) fn remove(&mut self, id: u64) -> Option<Slot<T>> {
        let slot = self.slots.remove(&id)?;
        for (_, x) in &slot.queue {
            slot.released(x);
        }
        Some(slot)
    }

    /// Charges the buffers to a memory budget from now on (the first charge
    /// given wins; what they hold already is charged too).
    pub(crate) fn set_charge(&mut self, charge: Arc<dyn Charge<T>>) {
        if self.charge.is_some() {
            return;
        }
        for slot in self.slots.values_mut() {
            for (_, x) in &slot.queue {
                charge.charge(charge.size_of(x));
            }
            slot.charge = Some(Arc::clone(&charge));
        }
        self.charge = Some(charge);
    }

    pub(crate) fn slot(&mut self, id: u64) -> Option<&mut Slot<T>> {
        self.slots.get_mut(&id)
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.slots.len()
    }

    /// True when nobody can ever receive again: no handle to subscribe with, no
    /// subscriber.
    pub(crate) fn orphaned(&self) -> bool {
        self.handles == 0 && self.slots.is_empty()
    }

    /// The sink's waker, taken so that it is woken once (after the lock is released).
    pub(crate) fn take_sink_waker(&mut self) -> Option<Waker> {
        self.sink_waker.take()
    }

    pub(crate) fn park(&mut self, waker: &Waker) {
        match &self.sink_waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.sink_waker = Some(waker.clone()),
        }
    }

    /// Whether the hub can publish now: someone may take the element (or elements
    /// without subscribers are dropped), and no `Block` subscriber is full.
    pub(crate) fn ready(&mut self, now: Instant) -> bool {
        if self.slots.is_empty() {
            return self.when_alone == NoSubscriber::Drop;
        }
        let mut ready = true;
        for slot in self.slots.values_mut() {
            slot.refresh(now);
            ready &= !slot.blocks();
        }
        ready
    }

    /// Offers `x` to every subscriber under its policy. Returns whether at least
    /// one took it (it is then delivered; otherwise unclaimed). `copies` is
    /// scratch space; woken subscribers' wakers go to `wake`.
    pub(crate) fn publish(
        &mut self,
        x: T,
        now: Instant,
        copies: &mut Vec<T>,
        wake: &mut Vec<Waker>,
    ) -> bool
    where
        T: Clone,
    {
        copies.clear();
        let takers = self.slots.values().filter(|s| s.decide().takes()).count();
        if takers == 0 {
            for slot in self.slots.values_mut() {
                let decision = slot.decide();
                slot.apply(decision, None, now);
            }
            self.unclaimed += 1;
            return false;
        }
        // Clones first: a panicking `Clone` leaves every count as it was.
        copies.extend((1..takers).map(|_| x.clone()));
        let mut x = Some(x);
        for slot in self.slots.values_mut() {
            let decision = slot.decide();
            let element = if !decision.takes() {
                None
            } else if copies.is_empty() {
                x.take()
            } else {
                copies.pop()
            };
            slot.apply(decision, element, now);
            if decision.takes()
                && let Some(w) = slot.waker.take()
            {
                wake.push(w);
            }
        }
        self.delivered += 1;
        true
    }

    /// Records the hub's end (the first one wins) and collects every subscriber's
    /// waker.
    pub(crate) fn finish(&mut self, end: HubEnd, wake: &mut Vec<Waker>) {
        self.end.get_or_insert(end);
        wake.extend(self.slots.values_mut().filter_map(|s| s.waker.take()));
        wake.extend(self.sink_waker.take());
    }
}
